"""Interrupt the sweep driver (SIGINT or SIGKILL) mid-sweep, then --resume: the sweep finishes, finished trials
are not rerun and the results table is complete. The interrupted driver is a subprocess joining the shared Ray
(fake runner, ~1 s per task); the refusal without --resume and the resume run in-process
(``delo.sweep.driver.launch``, what delo-sweep calls)."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from delo.folderlock import LOCK_FILE

SPEC = """name: resumable
table: components
grid:
  variants: {a: {}, b: {model.E: 8}}
  seeds: [0, 1]
max_concurrent: 2
"""

DRIVER = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("delo_tune_fakes", {fakes_path!r})
fakes = importlib.util.module_from_spec(spec)
sys.modules["delo_tune_fakes"] = fakes
spec.loader.exec_module(fakes)
import ray
ray.cloudpickle.register_pickle_by_value(fakes)
from delo.sweep.driver import launch
sys.exit(launch({spec!r}, address={address!r}, storage={storage!r}, resume="--resume" in sys.argv,
                run_fn=fakes.slow_fake_run, check_inputs=False, progress_interval_s=2))
"""


def _driver(tmp_path, fakes, address) -> Path:
    spec = fakes.write_spec(tmp_path, SPEC)
    script = tmp_path / "driver.py"
    script.write_text(
        DRIVER.format(
            fakes_path=str(fakes.path), spec=str(spec), address=address, storage=str(tmp_path / "out")
        )
    )
    return script


def _start(script, *args):
    env = {**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "1"}
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def _launch_here(tmp_path, fakes, address, monkeypatch, resume: bool) -> int:
    """The driver script's launch() in this process (which must hold no connection to Ray of its own)."""
    import ray

    from delo.sweep.driver import launch

    ray.shutdown()  # this process's driver connection, if a test left one: launch() makes its own
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "1")
    spec = tmp_path / "spec.yaml"  # fakes.write_spec's, written by _driver
    return launch(spec, address=address, storage=str(tmp_path / "out"), resume=resume,
                  run_fn=fakes.slow_fake_run, check_inputs=False, progress_interval_s=2)  # fmt: skip


def _driver_files(exp: Path) -> dict[str, bytes]:
    """The experiment folder's own files (spec, status, Tune state), without the folder lock."""
    return {p.name: p.read_bytes() for p in exp.iterdir() if p.is_file() and p.name != LOCK_FILE}


def _wait_for(exp: Path, proc, done: int, timeout: float = 180.0) -> dict:
    """Until `done` trials completed and another is running (per the driver's trial_status.yaml)."""
    end = time.time() + timeout
    while time.time() < end:
        assert proc.poll() is None, proc.stdout.read()
        try:
            status = yaml.safe_load((exp / "trial_status.yaml").read_text())["trials"]
        except (OSError, TypeError, yaml.YAMLError):
            status = {}
        states = [s["status"] for s in status.values()]
        if states.count("COMPLETED") >= done and "RUNNING" in states:
            return status
        time.sleep(0.3)
    raise AssertionError("sweep made no progress in time")


def _check_finished(exp: Path, finished_before: dict[str, str]) -> None:
    rows = list(csv.DictReader((exp / "results.csv").open()))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"COMPLETED"}
    for name in finished_before:  # a finished trial ran once, and its Tune results were not extended
        assert len((exp / name / name / "invocations.txt").read_text().splitlines()) == 1
        lines = (exp / name / "result.json").read_text().splitlines()
        assert [json.loads(x)["task"] for x in lines] == [1, 2, 3]
    md = (exp / "results.md").read_text()
    assert "| 2/2 |" in md and "Failed trials" not in md


@pytest.mark.slow
def test_sigint_then_resume_repairs_the_state_and_finishes_only_missing_trials(
    ray_cluster, fakes, tmp_path, capsys, monkeypatch
):
    """SIGINT mid-sweep: exit 130, naming --resume. Rerun without --resume: refused, nothing touched. A Tune state
    file then cut short in the experiment folder (the driver died while Ray copied it there) is replaced by Ray's
    intact staging copy on --resume, with a warning naming it; the sweep finishes, finished trials not rerun."""
    script = _driver(tmp_path, fakes, ray_cluster.address)
    exp = tmp_path / "out" / "resumable"
    proc = _start(script)
    status = _wait_for(exp, proc, done=1)
    finished = {n for n, s in status.items() if s["status"] == "COMPLETED"}
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "--resume" in out

    # without --resume: refused, none of the driver's files touched
    before = _driver_files(exp)
    assert _launch_here(tmp_path, fakes, ray_cluster.address, monkeypatch, resume=False) == 2
    assert "Pass --resume" in capsys.readouterr().err
    assert _driver_files(exp) == before

    newest = sorted(exp.glob("basic-variant-state-*.json"))[-1]
    newest.write_bytes(newest.read_bytes()[:10])
    assert _launch_here(tmp_path, fakes, ray_cluster.address, monkeypatch, resume=True) == 0
    captured = capsys.readouterr()
    assert f"warning: {newest}: damaged" in captured.err
    assert "Traceback" not in captured.out + captured.err
    _check_finished(exp, dict.fromkeys(finished, "COMPLETED"))


@pytest.mark.slow
def test_sigkill_then_resume_finishes(ray_cluster, fakes, tmp_path, monkeypatch):
    script = _driver(tmp_path, fakes, ray_cluster.address)
    exp = tmp_path / "out" / "resumable"
    proc = _start(script)
    _wait_for(exp, proc, done=1)
    time.sleep(1.5)  # let Tune snapshot the experiment state (every second here)
    state = next(exp.glob("experiment_state-*.json")).read_text()
    proc.kill()
    proc.communicate(timeout=60)
    status = yaml.safe_load((exp / "trial_status.yaml").read_text())["trials"]
    finished = {n for n, s in status.items() if s["status"] == "COMPLETED" and s["trial_id"] in state}

    assert _launch_here(tmp_path, fakes, ray_cluster.address, monkeypatch, resume=True) == 0
    # Only trials the last snapshot recorded as finished are guaranteed not to rerun after a SIGKILL.
    snap = next(exp.glob("experiment_state-*.json")).read_text()
    assert snap
    rows = list(csv.DictReader((exp / "results.csv").open()))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"COMPLETED"}
    assert finished
