"""The fault drill (issue 17): a real multi-process Ray cluster on this machine, a head and a worker node started
as separate `ray start` processes, a 4-trial grid on tiny_test through launch/sweep.py --address, and the worker
node's raylet killed with SIGKILL once every trial has reported its first task. Tune must reschedule the lost
trials from their last task checkpoint on the head, and every trial's final result must equal an undisturbed
run's.

Why a private --temp-dir: `ray start` records its address in <temp dir>/ray_current_cluster, and a plain
`ray.init()` joins the cluster recorded in /tmp/ray; other Ray users on this machine must not join this one.
Only processes this test started are killed, by pid (found by that temp dir, and their children)."""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _children(pid: int) -> list[int]:
    out = []
    for child in _pids():
        try:
            status = Path(f"/proc/{child}/status").read_text()
        except OSError:
            continue
        if f"\nPPid:\t{pid}\n" in status:
            out += [child, *_children(child)]
    return out


def _kill_tree(pids: list[int]) -> None:
    for pid in [q for p in pids for q in (p, *_children(p))]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _comparable(result: dict) -> dict:
    out = {k: v for k, v in result.items() if k not in ("wall_time_s", "history", "provenance")}
    out["history"] = [{k: v for k, v in h.items() if not k.endswith("_time_s")} for h in result["history"]]
    return out


def test_killed_worker_node_trials_resume_from_their_checkpoints(tmp_path, monkeypatch):
    temp = tempfile.mkdtemp(prefix="rd", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0",
        # the GCS declares the killed node dead after period x threshold (default 3 s x 5)
        "RAY_health_check_period_ms": "1000",
        "RAY_health_check_failure_threshold": "3",
    }
    env.pop("RAY_ADDRESS", None)
    port, worker_port = _free_port(), _free_port()
    common = ["--num-gpus=0", "--disable-usage-stats", "--object-store-memory=100000000"]
    try:
        subprocess.run(
            [RAY, "start", "--head", f"--port={port}", "--num-cpus=2", f"--temp-dir={temp}",
             "--include-dashboard=false", *common],
            env=env, check=True, capture_output=True, timeout=180,
        )  # fmt: skip
        subprocess.run(
            [RAY, "start", f"--address=127.0.0.1:{port}", "--num-cpus=2", f"--node-manager-port={worker_port}",
             *common],
            env=env, check=True, capture_output=True, timeout=180,
        )  # fmt: skip
        spec = tmp_path / "drill.yaml"
        spec.write_text(
            yaml.safe_dump(
                {
                    "name": "drill",
                    "base": {"file": str(ROOT / "sweeps" / "profiles" / "tiny_test.yaml")},
                    "grid": {"seeds": [0, 1, 2, 3]},
                    "resources": {"cpu": 1, "gpu": 0},
                    "max_concurrent": 4,
                    "failure": {"max_failures": 2},
                }
            )
        )
        storage = tmp_path / "results"
        driver = subprocess.Popen(
            [sys.executable, str(ROOT / "launch" / "sweep.py"), str(spec), "--address", f"127.0.0.1:{port}",
             "--storage", str(storage)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
        )  # fmt: skip
        exp = storage / "drill"
        deadline = time.time() + 400
        while time.time() < deadline:  # every trial has reported task 1 (so Tune holds its checkpoint)
            reported = [p for p in exp.glob("*/result.json") if p.read_text().strip()]
            if len(reported) == 4:
                break
            assert driver.poll() is None, driver.stdout.read()[-4000:]
            time.sleep(0.2)
        else:
            pytest.fail("the trials did not all report their first task in time")
        (raylet,) = [
            p
            for p in _pids()
            if "raylet" in _cmdline(p) and f"--node_manager_port={worker_port}" in _cmdline(p)
        ]
        finished_before = list(exp.glob("*/*/result.json"))
        _kill_tree([raylet])
        out, _ = driver.communicate(timeout=900)
        assert driver.returncode == 0, out[-4000:]
    finally:
        _kill_tree([p for p in _pids() if temp in _cmdline(p)])
        shutil.rmtree(temp, ignore_errors=True)

    status = yaml.safe_load((exp / "trial_status.yaml").read_text())["trials"]
    assert len(status) == 4 and all(s["status"] == "COMPLETED" for s in status.values()), status
    retried = [name for name, s in status.items() if (s.get("num_failures") or 0) > 0]
    assert retried, f"no trial was rescheduled (finished before the kill: {finished_before}); {out[-3000:]}"
    for name in retried:
        # resumed from its last task checkpoint: no task was reported twice, task 1 in particular
        tasks = [json.loads(line)["task"] for line in (exp / name / "result.json").read_text().splitlines()]
        assert tasks == sorted(set(tasks)) == [1, 2, 3], (name, tasks)

    from delo.config import RunConfig
    from delo.train import run_continual

    # a trial computes with 1 thread (its one CPU); so must the reference, or the float sums of the losses differ
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for name in status:
        info = json.loads((exp / name / "trial.json").read_text())
        drilled = _comparable(json.loads((exp / name / info["out_dir"] / "result.json").read_text()))
        undisturbed = run_continual(RunConfig.model_validate(info["config"]), tmp_path / "undisturbed" / name)
        undisturbed = _comparable(json.loads(json.dumps(undisturbed)))
        differ = sorted(k for k in set(drilled) | set(undisturbed) if drilled.get(k) != undisturbed.get(k))
        assert not differ, (name, differ)  # key names only: a diff of two results is slow to print
