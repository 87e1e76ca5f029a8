"""Sweep spec validation: every shipped spec and profile loads and dry-runs; bad specs name the key and file."""

from pathlib import Path

import pytest
import yaml

from delo.config import ConfigError, load_config
from delo.sweep.experiment import check_resumable, save_spec
from delo.sweep.spec import load_sweep

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted((ROOT / "sweeps").glob("*.yaml"))
PROFILES = sorted((ROOT / "sweeps" / "profiles").glob("*.yaml"))


def test_shipped_files_exist():
    assert {p.stem for p in SPECS} >= {"rank_factor", "components", "losses", "missing", "search", "smoke"}
    assert {p.stem for p in PROFILES} >= {"synthetic", "tiny_test", "food101", "mmimdb"}


DATA_OF_PROFILE = {
    "synthetic": "synthetic",
    "tiny_test": "synthetic",
    "food101": "food101",
    "mmimdb": "mmimdb",
}


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.stem)
def test_every_profile_is_a_valid_run_config(profile):
    cfg = load_config(profile)
    assert cfg.data.name == DATA_OF_PROFILE[profile.stem]
    assert (cfg.model.backbone == "tiny") == (cfg.data.name == "synthetic")


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
@pytest.mark.parametrize("profile", [None, "food101", "mmimdb", "tiny_test"])
def test_every_spec_loads_with_every_profile(spec, profile, tmp_path):
    sweep = load_sweep(spec, profile=profile, cwd=tmp_path)
    assert sweep.experiment_dir == tmp_path / "sweep_results" / sweep.name
    text = sweep.describe()
    assert sweep.name in text
    if sweep.spec.grid is not None:
        assert len(sweep.trials) >= 2
    else:  # the dry run lists every searched key
        assert all(key in text for key in sweep.space.hparam_domains())


def test_paper_profile_switch_sets_the_paper_setting():
    sweep = load_sweep(ROOT / "sweeps/rank_factor.yaml", profile="food101")
    cfg = sweep.base_config
    assert (cfg.model.backbone, cfg.data.name, cfg.data.missing.eta, cfg.data.missing.type) == (
        "dandelin/vilt-b32-mlm",
        "food101",
        0.7,
        "both",
    )
    assert sweep.num_tasks == 10
    same = load_sweep(ROOT / "sweeps/rank_factor.yaml", ["base.file=profiles/food101.yaml"])
    assert same.hash() == sweep.hash()


def test_embedded_default_is_synthetic_tiny():
    sweep = load_sweep(ROOT / "sweeps/rank_factor.yaml")
    assert (sweep.base_config.model.backbone, sweep.base_config.data.name) == ("tiny", "synthetic")
    assert len(sweep.trials) == 18
    assert {(t.overrides["model.E"], t.overrides["model.r"]) for t in sweep.trials} == {
        (16, 2),
        (16, 4),
        (16, 8),
        (32, 2),
        (32, 4),
        (32, 8),
    }


def test_sets_split_between_spec_and_run_config():
    sweep = load_sweep(
        ROOT / "sweeps/rank_factor.yaml", ["grid.seeds=[0]", "train.epochs=1", "max_concurrent=1"]
    )
    assert len(sweep.trials) == 6 and sweep.spec.max_concurrent == 1 and sweep.base_config.train.epochs == 1


def _write(tmp_path, text: str, name: str = "spec.yaml") -> Path:
    (tmp_path / "profiles").mkdir(exist_ok=True)
    (tmp_path / "profiles" / "p.yaml").write_text("data: {num_tasks: 3}\n")
    path = tmp_path / name
    path.write_text(text)
    return path


BAD = {
    "malformed": ("name: x\ngrid: {seeds: [0\n", "malformed YAML"),
    "not_mapping": ("- a\n- b\n", "is a mapping"),
    "unknown_field": ("name: x\ngird: {seeds: [0]}\n", "did you mean 'grid'"),
    "no_mode": ("name: x\n", "exactly one of 'grid' or 'search'"),
    "both_modes": (
        "name: x\ngrid: {}\nsearch: {space: {model.E: {type: int, low: 4, high: 8}}, num_samples: 2}\n",
        "exactly one",
    ),
    "axis_bad_key": (
        "name: x\ngrid: {axes: {model.EE: [1, 2]}}\n",
        "model.EE: unknown key; did you mean 'model.E'",
    ),
    "axis_empty": ("name: x\ngrid: {axes: {model.E: []}}\n", "grid.axes.model.E: empty list"),
    "variant_bad_key": (
        "name: x\ngrid: {variants: {a: {loss.lambda3: 0}}}\n",
        "grid.variants.a: loss.lambda3",
    ),
    "pair_bad_key": ("name: x\ngrid: {axes: {E_r: [{model.E: 8, modl.r: 2}]}}\n", "grid.axes.E_r[0]: modl.r"),
    "invalid_trial": ("name: x\ngrid: {axes: {E_r: [{model.E: 4, model.r: 4}]}}\n", "trial E=4,r=4 seed 0"),
    "bad_value": ("name: x\ngrid: {axes: {data.missing.type: [text, audio]}}\n", "data.missing.type"),
    "base_bad_key": ("name: x\nbase: {config: {train: {epoch: 2}}}\ngrid: {}\n", "train.epoch: unknown key"),
    "base_missing_file": ("name: x\nbase: {file: nope.yaml}\ngrid: {}\n", "nope.yaml: config file not found"),
    "empty_range": (
        "name: x\nsearch: {space: {loss.lambda1: {type: float, low: 0.5, high: 0.5}}, num_samples: 2}\n",
        "search.space.loss.lambda1: empty range",
    ),
    "log_nonpositive": (
        (
            "name: x\nsearch: {space: {loss.lambda1: {type: float, low: 0, high: 1, log: true}}, "
            "num_samples: 2}\n"
        ),
        "log scale needs low > 0",
    ),
    "search_bad_key": (
        "name: x\nsearch: {space: {loss.lamda1: {type: float, low: 0.1, high: 1}}, num_samples: 2}\n",
        "did you mean 'loss.lambda1'",
    ),
    "test_metric": (
        (
            "name: x\nsearch: {space: {model.E: {type: int, low: 4, high: 8}}, num_samples: 2, "
            "metric: test_final_ap}\n"
        ),
        "test-split metric",
    ),
    "unknown_metric": (
        ("name: x\nsearch: {space: {model.E: {type: int, low: 4, high: 8}}, num_samples: 2, metric: loss}\n"),
        "not a searchable metric",
    ),
    "empty_choice": (
        "name: x\nsearch: {space: {model.gate: {type: choice, values: []}}, num_samples: 2}\n",
        "non-empty 'values'",
    ),
    "r_frac_elsewhere": (
        "name: x\nsearch: {space: {model.E: {type: r_frac}}, num_samples: 2}\n",
        "r_frac derives model.r only",
    ),
    "search_data": (
        (
            "name: x\nsearch: {space: {data.missing.eta: {type: float, low: 0.1, high: 0.9}}, "
            "num_samples: 2}\n"
        ),
        "data and seed are fixed",
    ),
    "point_outside": (
        (
            "name: x\nsearch: {space: {model.E: {type: int, low: 4, high: 8}, model.r: {type: r_frac}}, "
            "num_samples: 2, points_to_evaluate: [{model.E: 16, model.r: 4}]}\n"
        ),
        "outside the space",
    ),
    "grace_too_big": (
        (
            "name: x\nbase: {file: profiles/p.yaml}\nsearch: {space: {model.E: {type: int, low: 8, "
            "high: 16}}, num_samples: 2, scheduler: {grace_period: 3}}\n"
        ),
        "must be < T=3",
    ),
    "bad_name": ("name: a/b\ngrid: {}\n", "names a folder"),
    "duplicated_top_key": ("name: x\ngrid: {}\nname: y\n", "duplicated key 'name' (lines 1 and 3)"),
    "duplicated_axis": (
        "name: x\ngrid:\n  axes:\n    model.E: [4]\n    model.E: [8]\n",
        "duplicated key 'grid.axes.model.E' (lines 4 and 5)",
    ),
    "duplicated_in_base_config": (
        "name: x\nbase: {config: {model: {E: 4, E: 8}}}\ngrid: {}\n",
        "duplicated key 'base.config.model.E' (lines 2 and 2)",
    ),
    "case_only_variants": (
        "name: x\ngrid:\n  variants:\n    wide: {model.E: 8}\n    Wide: {model.E: 4}\n",
        "keys 'grid.variants.wide' (line 4) and 'grid.variants.Wide' (line 5) differ only in case",
    ),
    "conflict": ("name: x\ngrid: {variants: {a: {model.E: 8}}, axes: {model.E: [8, 16]}}\n", "also sets"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_spec_names_the_problem(case, tmp_path):
    text, expected = BAD[case]
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_sweep(path, cwd=tmp_path)
    assert expected in str(err.value)
    assert str(path) in str(err.value)
    assert not (tmp_path / "sweep_results").exists()


def test_every_problem_reported_at_once(tmp_path):
    path = _write(tmp_path, "name: x\ngrid: {axes: {model.EE: [1]}, variants: {a: {loss.lambda3: 0}}}\n")
    with pytest.raises(ConfigError) as err:
        load_sweep(path)
    assert "model.EE" in str(err.value) and "loss.lambda3" in str(err.value)


def test_bad_set_key_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="model.rank: unknown key"):
        load_sweep(ROOT / "sweeps/smoke.yaml", ["model.rank=3"])
    with pytest.raises(ConfigError, match="key=value"):
        load_sweep(ROOT / "sweeps/smoke.yaml", ["model.E"])


def test_set_on_a_gridded_key_is_refused():
    with pytest.raises(ConfigError, match="override would be ignored"):
        load_sweep(ROOT / "sweeps/rank_factor.yaml", ["model.E=32"])


def test_storage_default_and_override(tmp_path):
    assert load_sweep(ROOT / "sweeps/smoke.yaml", cwd=tmp_path).storage == tmp_path / "sweep_results"
    assert (
        load_sweep(ROOT / "sweeps/smoke.yaml", storage=tmp_path / "s").experiment_dir
        == tmp_path / "s" / "smoke"
    )


def test_resume_requires_equal_hash_and_shows_diff(tmp_path):
    sweep = load_sweep(ROOT / "sweeps/smoke.yaml", storage=tmp_path)
    with pytest.raises(ConfigError, match="no saved spec"):
        check_resumable(sweep)
    save_spec(sweep)
    check_resumable(load_sweep(ROOT / "sweeps/smoke.yaml", storage=tmp_path))
    changed = load_sweep(ROOT / "sweeps/smoke.yaml", ["train.lr=0.01"], storage=tmp_path)
    with pytest.raises(ConfigError) as err:
        check_resumable(changed)
    assert "--resume refused" in str(err.value) and "lr: 0.01" in str(err.value)
    assert yaml.safe_load((tmp_path / "smoke" / "sweep_spec.yaml").read_text())["spec"]["name"] == "smoke"
