"""The run config: defaults, YAML + extends, dotted overrides, and one clear message per bad value."""

import pytest
from pydantic import ValidationError

from delo.config import (
    VALID_KEYS,
    ConfigError,
    RunConfig,
    check_key,
    load_config,
    parse_override,
)


def write(path, text):
    path.write_text(text)
    return path


def test_the_paper_symbols_set_the_fields_they_name():
    """method.md §11's names, as a user types them in --set, a YAML file or a sweep axis, set those fields.
    (The defaults have one home, the schema, which README's config reference is generated from and checked
    against; the pins in tests/pins hold what the defaults compute.)"""
    symbols = {"model.E": 12, "model.r": 3, "model.alpha": 2.0, "model.beta": 0.5, "loss.lambda1": 0.3,
               "loss.lambda2": 0.2, "model.variant": "delo_lora", "model.gate": "weighted", "seed": 7}  # fmt: skip
    assert all(key in VALID_KEYS for key in symbols)  # what a sweep axis is checked against
    cfg = load_config(overrides=[f"{k}={v}" for k, v in symbols.items()]).to_dict()
    for key, value in symbols.items():
        section, _, name = key.rpartition(".")
        assert (cfg[section] if section else cfg)[name] == value, key


def test_diagnostics_stay_outside_the_config_hash():
    """debug.diagnostics only adds TensorBoard scalars: a run checkpointed with it on resumes with it off."""
    assert load_config(overrides=["debug.diagnostics=false"]).hash() == load_config().hash()


def test_yaml_extends_and_overrides(tmp_path):
    write(tmp_path / "base.yaml", "model:\n  E: 8\n  r: 2\nloss:\n  lambda1: 1e-3\n")
    child = write(tmp_path / "child.yaml", "extends: base.yaml\nmodel:\n  r: 3\nseed: 5\n")
    cfg = load_config(child, ["loss.lambda2=0", "model.gate=weighted"])
    # YAML 1.1 reads 1e-3 as a string; the lax float still turns it into a number.
    assert cfg.loss.lambda1 == pytest.approx(1e-3)
    assert (cfg.model.E, cfg.model.r, cfg.seed, cfg.loss.lambda2, cfg.model.gate) == (
        8,
        3,
        5,
        0.0,
        "weighted",
    )


def test_config_is_frozen_and_hash_is_stable():
    cfg = load_config()
    with pytest.raises(ValidationError, match="frozen"):
        cfg.seed = 3  # type: ignore[misc]
    assert cfg.hash() == load_config().hash()
    assert cfg.hash() != load_config(overrides=["model.E=8"]).hash()
    # debug knobs do not change what a checkpoint means
    assert cfg.hash() == load_config(overrides=["debug.fail_at_task=1"]).hash()
    assert RunConfig.model_validate(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "override, needle",
    [
        (["model.r=16"], "model.r=16 must be < model.E=16"),
        (["model.E=0"], "model.E"),
        (["model.beta=1.0"], "model.beta"),
        (["model.beta=-0.1"], "model.beta"),
        (["loss.lambda1=-0.5"], "loss.lambda1"),
        (["loss.lambda2=-1"], "loss.lambda2"),
        (["data.missing.eta=1.5"], "data.missing.eta"),
        (["data.missing.type=audio"], "data.missing.type"),
        (["model.variant=moe"], "model.variant"),
        (["model.gate=soft"], "model.gate"),
        (["data.name=cifar"], "data.name"),
        (["data.name=food101"], "data.root must be set"),
        (["model.E=many"], "model.E"),
        (["eval.test=1"], "eval.test"),
    ],
)
def test_bad_values_name_the_key(override, needle):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=override)
    assert needle in str(err.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["model.variant=x", "loss.lambda1=-1", "model.beta=2"])
    text = str(err.value)
    assert "model.variant" in text and "loss.lambda1" in text and "model.beta" in text


def test_unknown_keys_suggest_the_closest(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'model.E'"):
        parse_override("modle.E=3")
    with pytest.raises(ConfigError, match="did you mean 'loss.lambda1'"):
        check_key("loss.lamda1")
    bad = write(tmp_path / "bad.yaml", "model:\n  gaet: ste\n")
    with pytest.raises(ConfigError, match=r"model.gaet: unknown key; did you mean 'model.gate'"):
        load_config(bad)


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    broken = write(tmp_path / "broken.yaml", "model: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml: malformed YAML"):
        load_config(broken)
    listy = write(tmp_path / "list.yaml", "- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(listy)
    loop = write(tmp_path / "loop.yaml", "extends: loop.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(loop)


def test_duplicated_keys_are_refused_with_both_lines(tmp_path):
    """PyYAML alone keeps the last of two equal keys silently; a run config must not run E=8 when it says E=4."""
    dup = write(tmp_path / "dup.yaml", "model:\n  E: 4\n  r: 2\n  E: 8\n")
    with pytest.raises(ConfigError) as err:
        load_config(dup)
    assert str(err.value).startswith(f"{dup}: duplicated key 'model.E' (lines 2 and 4)")
    top = write(tmp_path / "top.yaml", "seed: 1\nmodel: {E: 8}\nseed: 2\n")
    with pytest.raises(ConfigError, match=r"top.yaml: duplicated key 'seed' \(lines 1 and 3\)"):
        load_config(top)
    # in a parent named by extends: the parent file is the one named
    child = write(tmp_path / "child.yaml", "extends: dup.yaml\n")
    with pytest.raises(ConfigError, match=r"dup.yaml: duplicated key 'model.E'"):
        load_config(child)
    # inside a list of mappings
    listed = write(tmp_path / "listed.yaml", "model:\n  targets: [a]\nx:\n  - {a: 1, a: 2}\n")
    with pytest.raises(ConfigError, match=r"duplicated key 'x\[0\].a' \(lines 4 and 4\)"):
        load_config(listed)
    with pytest.raises(ConfigError, match="duplicated key 'E'"):
        load_config(overrides=["model={E: 4, E: 8}"])


def test_keys_differing_only_in_case_are_refused(tmp_path):
    case = write(tmp_path / "case.yaml", "model:\n  E: 4\n  e: 8\n")
    with pytest.raises(ConfigError) as err:
        load_config(case)
    assert f"{case}: keys 'model.E' (line 2) and 'model.e' (line 3) differ only in case" in str(err.value)


def test_merge_keys_may_still_be_overridden(tmp_path):
    """``<<: *anchor`` followed by an explicit key is YAML's own override, not a duplicate."""
    merged = write(tmp_path / "merged.yaml", "base: &b {E: 4, r: 2}\nmodel:\n  <<: *b\n  E: 8\n")
    from delo.config import read_yaml_mapping

    assert read_yaml_mapping(merged)["model"] == {"E": 8, "r": 2}


def test_override_needs_equals_sign():
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("model.E")


def test_delo_lora_may_use_any_rank():
    cfg = load_config(overrides=["model.variant=delo_lora", "model.E=4", "model.r=4"])
    assert cfg.model.r == 4


def test_readme_config_reference_is_current():
    """README's config reference is generated from the schema; regenerate with delo.config.reference_table()."""
    from pathlib import Path

    from delo.config import reference_table

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert reference_table() in readme


@pytest.mark.parametrize("method", ["rank1_pool", "mora"])
def test_variant_is_refused_with_another_method(method):
    """model.variant is DeLo's ablation switch: combined with a comparator it would be silently ignored."""
    with pytest.raises(
        ConfigError, match=f"model.variant=delo_lora is DeLo's ablation switch; with model.method={method}"
    ):
        load_config(None, [f"model.method={method}", "model.variant=delo_lora"])
