"""Each script in launch/ once as the user runs it, in a fresh Python process: the shim imports, runs its
function and turns its return value into the exit status. Everything else about the commands is tested
in-process, through the functions these scripts call (delo.cli, delo.tools)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, *args, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "launch" / script), *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=timeout,
    )


@pytest.mark.slow
def test_train_runs_the_tiny_profile_and_prints_the_summary(tiny_world, tmp_path):
    out = tmp_path / "run"
    profile = ROOT / "sweeps" / "profiles" / "tiny_test.yaml"
    proc = _run("train.py", profile, "--set", "train.threads=1", "--set", "eval.test=false", "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert "test_ap" not in result and {"ap", "fg", "matrix", "params"} <= set(result)
    assert result["config"]["model"]["E"] == 4 and len(result["matrix"]) == 3
    assert "result matrix" in proc.stdout and "AP" in proc.stdout
    (key_line,) = [
        line for line in proc.stdout.splitlines() if line.startswith("task-key accuracy (last row")
    ]
    assert "(complete " in key_line and "image_missing" in key_line
    assert proc.stdout.rstrip().endswith(f"wrote {out / 'result.json'}")
    assert "Traceback" not in proc.stderr


def test_sweep_dry_run_prints_the_trials(tmp_path):
    proc = _run("sweep.py", ROOT / "sweeps" / "rank_factor.yaml", "--dry-run", "--storage", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "18 trials" in proc.stdout, proc.stdout
    assert list(tmp_path.iterdir()) == []  # a dry run writes nothing


def test_summarize_rebuilds_the_report(tmp_path):
    exp = tmp_path / "exp"
    trial = exp / "E4-r2_s0_00000"
    (trial / trial.name).mkdir(parents=True)
    (exp / "sweep_spec.yaml").write_text(yaml.safe_dump({"spec": {"name": "x", "table": "generic"}}))
    info = {"trial_id": "x_00000", "label": "E=4,r=2", "seed": 0, "overrides": {}, "config": {}}
    (trial / "trial.json").write_text(json.dumps({**info, "out_dir": trial.name}))
    (trial / "result.json").write_text(json.dumps({"task": 1, "ap_seen": 50.0, "final_ap": 50.0}) + "\n")
    (trial / trial.name / "result.json").write_text(json.dumps({"matrix": [[50.0]]}))
    proc = _run("summarize.py", exp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines() == [str(exp / name) for name in ("results.csv", "results.md", "results.tex",
                                                                     "ap_fg.png", "best_matrix.png")]  # fmt: skip


def test_bench_refuses_an_unknown_figure(tmp_path):
    proc = _run("bench.py", "--only", "nope", "--out", tmp_path / "x.json")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: unknown figures ['nope']; choose from ["), proc.stderr
    assert not (tmp_path / "x.json").exists()


def test_pretrain_probe_only_needs_a_pretrained_folder(tmp_path):
    proc = _run("pretrain_backbone.py", "--out", tmp_path, "--probe-only")
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == f"error: {tmp_path / 'card.json'} not found: --probe-only needs a pretrained folder"
    )


def test_check_views_refuses_a_folder_that_is_not_a_sweep(tmp_path):
    proc = _run("check_views.py", tmp_path, "--chromium", "/bin/true")
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {tmp_path}: not a sweep folder (no sweep_spec.yaml)"), proc.stderr


def test_drill_refuses_a_drill_too_small_to_drill(tmp_path):
    proc = _run("drill.py", "chaos", "--trials", "1", "--workdir", tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: --trials 1: a drill needs 2 trials or more and 1 kill or more"
    assert list(tmp_path.iterdir()) == []  # refused before any cluster or sweep
