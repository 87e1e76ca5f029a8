"""A small Optuna TPE + ASHA search through Tune (fake runner): stopped trials reach Optuna as PRUNED, the best
trial is a completed one, and the report lists both; the study lives in the sweep folder, where Optuna's own
tools open it. A multi-objective search gives a two-direction study and a Pareto front. The report's plots are
read from the figures they were drawn from (the saved_figures fixture, tests/conftest.py)."""

import warnings
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances
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


def test_search_prunes_and_picks_a_completed_best(ray_session, fakes, tmp_path, capsys, saved_figures):
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

    capsys.readouterr()
    assert finish(sweep) == 0
    figures = _report_figures(capsys.readouterr().out, saved_figures)
    status = yaml.safe_load((sweep.experiment_dir / "trial_status.yaml").read_text())["trials"]
    assert sorted(s["status"] for s in status.values()) == sorted(
        ["COMPLETED"] * len(finished) + ["STOPPED"] * len(stopped)
    )
    records = collect(sweep.experiment_dir)
    assert best_trial(records).last["final_ap"] == best.metrics["final_ap"]
    md = (sweep.experiment_dir / "results.md").read_text()
    assert f"{len(stopped)} stopped early by ASHA" in md and "**Best (val final_ap):**" in md
    assert set(figures) == {"ap_fg.png", "best_matrix.png", "optuna_history.png", "optuna_importances.png"}
    bars = figures["ap_fg.png"].axes[0]  # one group per completed trial, best test AP first
    ap_bars = [b.get_height() for b in bars.containers[0]]
    assert ap_bars == sorted((r.metrics["test_final_ap"] for r in finished), reverse=True)
    best_record = best_trial(records)
    assert best_record.name in figures["best_matrix.png"].axes[0].get_title()
    (image,) = figures["best_matrix.png"].axes[0].images  # its test matrix, empty cells masked
    shown = image.get_array().astype(float).filled(-1.0).tolist()
    assert shown == [[-1.0 if v is None else v for v in row] for row in best_record.test_matrix]
    _check_optuna_figures(
        figures, study, completed=[t for t in study.trials if t.state == TrialState.COMPLETE]
    )


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


def test_multi_objective_search_records_a_two_direction_study_and_a_front(
    ray_session, fakes, tmp_path, capsys, saved_figures
):
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

    capsys.readouterr()
    assert finish(sweep) == 0
    figures = _report_figures(capsys.readouterr().out, saved_figures)
    md = (sweep.experiment_dir / "results.md").read_text()
    assert "## Pareto front" in md
    section = md.split("## Pareto front")[1].split("## Search")[0]
    assert section.count("| val |") == len(front) and section.count("| test |") == len(front)
    pngs = {p.name for p in sweep.experiment_dir.glob("*.png")}
    assert (
        pngs
        == set(figures)
        == {"pareto.png", "best_matrix.png", "optuna_history.png", "optuna_importances.png"}
    )
    scatter = figures["pareto.png"].axes[0]  # (trainable parameters, val final AP) of every trial
    points = {c.get_label(): {tuple(p) for p in c.get_offsets().tolist()} for c in scatter.collections}
    everything = {(t.values[1], t.values[0]) for t in study.trials}
    assert points["Pareto front"] == {(n, ap) for ap, n in front}
    assert points["dominated trial"] == everything - points["Pareto front"]
    _check_optuna_figures(figures, study, completed=study.trials, target=lambda t: t.values[0])


def _report_figures(printed: str, saved: list) -> dict:
    """The figure behind each PNG of the report finish() wrote, by file name (it prints the paths in writing
    order: "results: a, b, ...")."""
    (line,) = [line for line in printed.splitlines() if line.startswith("results: ")]
    pngs = [Path(p).name for p in line.removeprefix("results: ").split(", ") if p.endswith(".png")]
    assert len(pngs) == len(saved), (pngs, saved)
    return dict(zip(pngs, saved, strict=True))


def _check_optuna_figures(figures: dict, study, completed: list, target=None) -> None:
    """Optuna's views show the study: every completed trial's val final AP by trial number, and the PED-ANOVA
    importance of each searched parameter for it."""
    history = figures["optuna_history.png"].axes[0]
    points = next(c for c in history.collections if c.get_label() == "val final AP (%)")
    assert points.get_offsets().tolist() == [[t.number, t.values[0]] for t in completed]
    bars = figures["optuna_importances.png"].axes[0]
    shown = {
        label.get_text(): bar.get_width()
        for label, bar in zip(bars.get_yticklabels(), bars.containers[0], strict=True)
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # as delo.sweep.plots draws it (PED-ANOVA's note on a custom target)
        expected = get_param_importances(study, evaluator=PedAnovaImportanceEvaluator(), target=target)
    assert set(shown) == {"model.E", "model.r_frac", "loss.lambda1"}
    assert shown == pytest.approx(expected)
