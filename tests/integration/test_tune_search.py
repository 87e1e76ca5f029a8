"""A small Optuna TPE + ASHA search through Tune (fake runner): stopped trials reach Optuna as PRUNED, the best
trial is a completed one, and the report lists both; the study lives in the sweep folder, where Optuna's own
tools open it. A multi-objective search gives a two-direction study and a Pareto front."""

import optuna
import yaml
from optuna.trial import TrialState

from delo.sweep.driver import build_tuner, finish
from delo.sweep.experiment import OPTUNA_DB, optuna_storage_url, save_spec
from delo.sweep.records import best_trial, collect
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
    tuner = build_tuner(sweep, run_fn=fakes.fake_run)  # the default searcher, with the study on disk
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

    # What a user does with Optuna's tools (optuna-dashboard reads the same file).
    assert (sweep.experiment_dir / OPTUNA_DB).is_file()
    study = optuna.load_study(study_name="tiny_search", storage=optuna_storage_url(sweep.experiment_dir))
    states = [t.state for t in study.trials]
    assert len(states) == 6
    assert states.count(TrialState.PRUNED) == len(stopped)
    assert states.count(TrialState.COMPLETE) == len(finished)
    assert study.best_value == best.metrics["final_ap"]

    assert finish(sweep) == 0
    status = yaml.safe_load((sweep.experiment_dir / "trial_status.yaml").read_text())["trials"]
    assert sorted(s["status"] for s in status.values()) == sorted(
        ["COMPLETED"] * len(finished) + ["STOPPED"] * len(stopped)
    )
    records = collect(sweep.experiment_dir)
    assert best_trial(records).last["final_ap"] == best.metrics["final_ap"]
    md = (sweep.experiment_dir / "results.md").read_text()
    assert f"{len(stopped)} stopped early by ASHA" in md and "**Best (val final_ap):**" in md
    assert {"ap_fg.png", "optuna_history.png", "optuna_importances.png"} <= {
        p.name for p in sweep.experiment_dir.glob("*.png")
    }
    _all_matplotlib(sweep.experiment_dir)


PARETO = """name: tiny_pareto
table: pareto
search:
  space:
    model.E: {type: int, low: 2, high: 16, log: true}
    model.r: {type: r_frac}
    loss.lambda1: {type: float, low: 1.0e-3, high: 1.0, log: true}
  objectives: [{metric: final_ap, mode: max}, {metric: params_trainable, mode: min}]
  num_samples: 5
  searcher: {seed: 0}
  scheduler: {type: none}
max_concurrent: 2
"""


def test_multi_objective_search_records_a_two_direction_study_and_a_front(ray_session, fakes, tmp_path):
    sweep = load_sweep(fakes.write_spec(tmp_path, PARETO), storage=tmp_path / "out")
    save_spec(sweep)
    grid = build_tuner(sweep, run_fn=fakes.fake_run).fit()
    assert len(grid) == 5 and not grid.errors
    for r in grid:  # the trainable adds the runner's counts to the last report (fake: 1000 * E)
        assert r.metrics["params_trainable"] == 1000 * r.config["model.E"]
    study = optuna.load_study(study_name="tiny_pareto", storage=optuna_storage_url(sweep.experiment_dir))
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
    assert len(study.trials) == 5 and all(t.state == TrialState.COMPLETE for t in study.trials)
    told = sorted(tuple(t.values) for t in study.trials)
    assert told == sorted((r.metrics["final_ap"], r.metrics["params_trainable"]) for r in grid)
    front = {tuple(t.values) for t in study.best_trials}

    assert finish(sweep) == 0
    md = (sweep.experiment_dir / "results.md").read_text()
    assert "## Pareto front" in md
    section = md.split("## Pareto front")[1].split("## Search")[0]
    assert section.count("| val |") == len(front) and section.count("| test |") == len(front)
    pngs = {p.name for p in sweep.experiment_dir.glob("*.png")}
    assert pngs == {"pareto.png", "best_matrix.png", "optuna_history.png", "optuna_importances.png"}
    _all_matplotlib(sweep.experiment_dir)


def _all_matplotlib(folder):
    from PIL import Image

    for path in folder.glob("*.png"):
        with Image.open(path) as image:
            assert "matplotlib" in image.info.get("Software", "").lower() and image.size[0] >= 1000, path
