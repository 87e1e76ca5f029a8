"""Grid expansion: Tune's own expansion (generate_variants, offline) matches the spec's trials, seeds included."""

from pathlib import Path

import pytest
from ray.tune.search.variant_generator import generate_variants

from delo.config import VALID_KEYS
from delo.sweep import load_sweep, trial_dirname, trial_label, trial_overrides, trial_run_config
from delo.tune import dry_run_text, param_space

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = {"rank_factor": 18, "components": 12, "losses": 12, "missing": 15, "smoke": 2}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_tune_expansion_matches_spec(name):
    sweep = load_sweep(ROOT / "sweeps" / f"{name}.yaml")
    variants = [cfg for _, cfg in generate_variants(param_space(sweep))]
    assert len(variants) == len(sweep.trials) == EXPECTED[name]
    tune_set = sorted((trial_label(c), c["seed"], sorted(trial_overrides(c).items())) for c in variants)
    spec_set = sorted((t.label, t.seed, sorted(t.overrides.items())) for t in sweep.trials)
    assert tune_set == spec_set
    hashes = {trial_run_config(sweep.base, c).hash() for c in variants}
    assert len(hashes) == len(variants)  # every trial runs a distinct config
    assert "MISMATCH" not in dry_run_text(sweep)


@pytest.mark.parametrize("seeds", [[0], [0, 1, 2], [3, 7, 11, 19]])
def test_seeds_multiply_the_grid(seeds):
    sweep = load_sweep(ROOT / "sweeps/components.yaml", [f"grid.seeds={seeds}"])
    variants = [cfg for _, cfg in generate_variants(param_space(sweep))]
    assert len(variants) == 4 * len(seeds)
    assert sorted(c["seed"] for c in variants) == sorted(seeds * 4)


def test_trial_config_is_typed_and_has_the_overrides():
    sweep = load_sweep(ROOT / "sweeps/missing.yaml")
    config = next(c for _, c in generate_variants(param_space(sweep))
                  if c["axes"]["data.missing.eta"]["set"]["data.missing.eta"] == 0.3
                  and c["axes"]["data.missing.type"]["set"]["data.missing.type"] == "image")
    cfg = trial_run_config(sweep.base, config)
    assert (cfg.data.missing.eta, cfg.data.missing.type, cfg.seed) == (0.3, "image", 0)
    assert cfg.model.backbone == "tiny"


def test_dirnames_are_short_and_safe():
    sweep = load_sweep(ROOT / "sweeps/rank_factor.yaml")
    names = {trial_dirname(c, f"abcde_{i:05d}") for i, (_, c) in enumerate(generate_variants(param_space(sweep)))}
    assert len(names) == 18
    assert "E16-r4_s1_abcde_00004" in names or any(n.startswith("E16-r4_s") for n in names)
    assert all(len(n) < 80 and all(ch.isalnum() or ch in "._-" for ch in n) for n in names)


def test_search_trial_overrides_keep_run_config_keys_only():
    config = {"seed": 0, "model.E": 16, "model.r_frac": 0.23, "model.r": 4, "model.one_minus_beta": 0.01,
              "model.beta": 0.99}
    over = trial_overrides(config)
    assert over == {"seed": 0, "model.E": 16, "model.r": 4, "model.beta": 0.99}
    assert all(k in VALID_KEYS for k in over)
    assert trial_label(config) == "E16_r4"
