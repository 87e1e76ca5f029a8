"""A small Optuna TPE + ASHA search through Tune (fake runner): stopped trials reach Optuna as PRUNED, the best
trial is a completed one, and the report lists both."""

import yaml
from optuna.trial import TrialState

from delo.sweep.driver import build_tuner, finish
from delo.sweep.experiment import save_spec
from delo.sweep.records import best_trial, collect
from delo.sweep.searcher import make_searcher
from delo.sweep.spec import load_sweep

SPEC = """name: tiny_search
table: search
search:
  space:
    model.E: {type: int, low: 4, high: 16, log: true}
    model.r: {type: r_frac}
    loss.lambda1: {type: float, low: 1.0e-3, high: 1.0, log: true}
  points_to_evaluate: [{model.E: 16, model.r: 4, loss.lambda1: 0.1}]
  num_samples: 6
  searcher: {seed: 0}
  scheduler: {grace_period: 2}
max_concurrent: 2
"""


def test_search_prunes_and_picks_a_completed_best(ray_session, fakes, tmp_path):
    sweep = load_sweep(fakes.write_spec(tmp_path, SPEC), storage=tmp_path / "out")
    save_spec(sweep)
    searcher = make_searcher(sweep)
    tuner = build_tuner(sweep, run_fn=fakes.fake_run, searcher=searcher)
    grid = tuner.fit()
    assert len(grid) == 6 and not grid.errors
    points = [(r.config["model.E"], r.config["model.r"], r.config["loss.lambda1"]) for r in grid]
    assert (16, 4, 0.1) in points  # the paper point was evaluated
    for r in grid:
        assert 1 <= r.config["model.r"] < r.config["model.E"]
    finished = [r for r in grid if "final_ap" in r.metrics]
    stopped = [r for r in grid if "final_ap" not in r.metrics]
    assert stopped, "ASHA stopped no trial: the test lost its point"
    assert all(r.metrics["task"] == 2 for r in stopped)
    best = grid.get_best_result("final_ap", "max")
    assert best.metrics["final_ap"] == max(r.metrics["final_ap"] for r in finished)

    states = [t.state for t in searcher.study.get_trials(deepcopy=False)]
    assert states.count(TrialState.PRUNED) == len(stopped)
    assert states.count(TrialState.COMPLETE) == len(finished)
    assert searcher.study.best_value == best.metrics["final_ap"]

    assert finish(sweep) == 0
    status = yaml.safe_load((sweep.experiment_dir / "trial_status.yaml").read_text())["trials"]
    assert sorted(s["status"] for s in status.values()) == sorted(
        ["COMPLETED"] * len(finished) + ["STOPPED"] * len(stopped)
    )
    records = collect(sweep.experiment_dir)
    assert best_trial(records).last["final_ap"] == best.metrics["final_ap"]
    md = (sweep.experiment_dir / "results.md").read_text()
    assert f"{len(stopped)} stopped early by ASHA" in md and "**Best (val final_ap):**" in md
