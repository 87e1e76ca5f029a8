"""The cost estimate of --dry-run: workload arithmetic, the schedule's makespan, and the per-trial / total text on a
fake calibration (exact values)."""

import math
from pathlib import Path

import pytest

from delo.config import load_config
from delo.sweep.estimate import UnitCosts, Workload, schedule, workload

SMOKE = str(Path(__file__).resolve().parents[2] / "sweeps" / "smoke.yaml")
SIZES = {"train": [40, 24], "val": [30, 20], "test": [60, 40]}


def test_workload_counts_steps_and_evaluated_samples():
    cfg = load_config(None, ["train.epochs=3", "train.batch_size=8", "eval.split=val", "eval.test=true"])
    work = workload(cfg, SIZES)
    assert work.steps == 3 * 5 + 3 * 3  # ceil(40 / 8) = 5 and ceil(24 / 8) = 3 batches per epoch
    # after task 1: task 1 on val and test; after task 2: tasks 1 and 2 on both
    assert work.eval_samples == (30 + 60) + (30 + 20 + 60 + 40)
    capped = workload(
        load_config(None, ["train.epochs=3", "train.batch_size=8", "train.max_steps_per_task=4"]), SIZES
    )
    assert capped.steps == 4 + 4 and capped.eval_samples == 30 + 50  # val only: eval.test is off by default


def test_seconds_of_a_workload():
    costs = UnitCosts(step_s=0.5, eval_sample_s=0.002, source="fake")
    assert Workload(steps=100, eval_samples=5000).seconds(costs) == pytest.approx(50.0 + 10.0)


def test_schedule_is_the_makespan_of_first_free_slot():
    assert schedule([10, 10, 10, 10], 2) == 20
    assert schedule([30, 10, 10, 10], 2) == 30  # the three short ones share the second slot
    assert schedule([5, 7], 1) == 12
    assert schedule([], 3) == 0


def test_estimate_text_on_a_fake_calibration(tmp_path, monkeypatch):
    from delo.sweep import estimate
    from delo.sweep.spec import load_sweep

    spec = tmp_path / "s.yaml"
    spec.write_text(
        "name: est\ntable: generic\nbase: {file: %s}\n"
        "grid: {variants: {a: {}, b: {train.epochs: 4}}, seeds: [0, 1]}\n"
        "resources: {cpu: 1, gpu: 0}\nmax_concurrent: 2\n" % (tmp_path.parent.parent / "x.yaml")
    )
    (tmp_path.parent.parent / "x.yaml").write_text(
        "train: {epochs: 2, batch_size: 8}\ndata: {num_tasks: 2}\n"
    )
    sweep = load_sweep(spec, storage=str(tmp_path / "out"))
    monkeypatch.setattr(estimate, "split_sizes", lambda cfg: SIZES)
    monkeypatch.setattr("delo.data.prepare_data", lambda cfg: None)  # the sizes above stand in for the data
    costs = UnitCosts(step_s=1.0, eval_sample_s=0.01, source="fake calibration")
    text = estimate.estimate_text(sweep, costs, cpus=2)
    a = 2 * 5 + 2 * 3 + (30 + 50) * 0.01  # 16 steps, 80 val samples
    b = 4 * 5 + 4 * 3 + (30 + 50) * 0.01
    assert text.splitlines()[0] == "cost estimate: fake calibration"
    assert f"~{a / 60:.1f} min" in text and f"~{b / 60:.1f} min" in text  # both under an hour
    wall = schedule([a, a, b, b], 2)
    assert math.isclose(wall, a + b)
    assert (
        text.splitlines()[-1]
        == f"total: 4 trials, ~{wall / 60:.1f} min wall at 2 at a time, {(2 * a + 2 * b) / 3600:.2f} CPU-hours"
    )


def test_calibrate_measures_this_machine_and_prints_the_estimate(tmp_path, capsys):
    """A real calibration of the smoke spec: a few steps of its base config, then the per-trial lines."""
    from delo import cli

    assert cli.sweep([SMOKE, "--dry-run", "--calibrate", "--storage", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "cost estimate: calibrated on this machine (" in out
    assert "total: 2 trials, ~" in out and "CPU-hours" in out
    assert not (tmp_path / "smoke").exists()  # a dry run writes nothing


def test_estimate_needs_dry_run(capsys):
    from delo import cli

    assert cli.sweep([SMOKE, "--calibrate"]) == 2
    assert "--calibrate and --estimate-from go with --dry-run" in capsys.readouterr().err
