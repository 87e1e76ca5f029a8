"""Grid expansion: the spec's trials (counts, seeds, distinct configs), their one Tune form and folder names."""

from pathlib import Path

import pytest
from ray.tune.search.variant_generator import generate_variants

from delo.config import VALID_KEYS
from delo.sweep.driver import param_space
from delo.sweep.experiment import trial_dirname
from delo.sweep.grid import TRIAL_KEY, trial_of
from delo.sweep.spec import load_sweep

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = {"rank_factor": 18, "components": 40, "losses": 32, "missing": 45, "smoke": 2}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_tune_runs_the_validated_trials_in_order(name):
    sweep = load_sweep(ROOT / "sweeps" / f"{name}.yaml")
    assert len(sweep.trials) == EXPECTED[name]
    # Tune's own expansion (offline) hands every trial back unchanged, in the spec's order (= trial ids).
    variants = [trial_of(cfg) for _, cfg in generate_variants(param_space(sweep))]
    assert variants == sweep.trials
    hashes = {t.run_config(sweep.base).hash() for t in variants}
    assert len(hashes) == len(variants)  # every trial runs a distinct config


@pytest.mark.parametrize("seeds", [[0], [0, 1, 2], [3, 7, 11, 19]])
def test_seeds_multiply_the_grid(seeds):
    sweep = load_sweep(ROOT / "sweeps/components.yaml", [f"grid.seeds={seeds}"])
    assert len(sweep.trials) == 5 * len(seeds)  # DeLo, three ablations, the frozen floor
    assert sorted(t.seed for t in sweep.trials) == sorted(seeds * 5)
    assert all(t.overrides["seed"] == t.seed for t in sweep.trials)


def test_trial_config_is_typed_and_has_the_overrides():
    sweep = load_sweep(ROOT / "sweeps/missing.yaml")
    trial = next(
        t
        for t in sweep.trials
        if t.overrides["data.missing.eta"] == 0.3 and t.overrides["data.missing.type"] == "image"
    )
    for cfg in (trial.run_config(sweep.base), trial_of({TRIAL_KEY: trial.to_tune()}).run_config(sweep.base)):
        # seeds 1-3: the first trial of the cell runs seed 1
        assert (cfg.data.missing.eta, cfg.data.missing.type, cfg.seed) == (0.3, "image", 1)
        assert cfg.model.backbone == "tiny"


def test_dirnames_are_short_and_safe():
    sweep = load_sweep(ROOT / "sweeps/rank_factor.yaml")
    names = [trial_dirname(t.label, t.seed, f"abcde_{i:05d}") for i, t in enumerate(sweep.trials)]
    assert names[:4] == [
        "E16-r2_s0_abcde_00000",
        "E16-r2_s1_abcde_00001",
        "E16-r2_s2_abcde_00002",
        "E16-r4_s0_abcde_00003",
    ]
    assert len(set(names)) == 18
    assert all(len(n) < 80 and all(ch.isalnum() or ch in "._-" for ch in n) for n in names)


def test_search_trial_overrides_keep_run_config_keys_only():
    config = {
        "seed": 0,
        "model.E": 16,
        "model.r_frac": 0.23,
        "model.r": 4,
        "model.one_minus_beta": 0.01,
        "model.beta": 0.99,
    }
    trial = trial_of(config)
    assert trial.overrides == {"seed": 0, "model.E": 16, "model.r": 4, "model.beta": 0.99}
    assert all(k in VALID_KEYS for k in trial.overrides)
    assert (trial.label, trial.variant, trial.seed) == ("E16_r4", None, 0)
