"""The fault drill (issue 17): a real multi-process Ray cluster on this machine, a head and a worker node started
as separate `ray start` processes with one CPU each, a grid of two identical tiny_test trials (one per node)
through launch/sweep.py --address, and the worker node's raylet killed with SIGKILL once the trial on it has
reported its first task. Tune must reschedule the lost trial from its last task checkpoint on the head, and
its final result must equal its twin's, which ran undisturbed on the head: an undisturbed run of the same
config, computed the same way (one CPU, so one thread, in a trial process).

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

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]  # a Ray of its own: not beside the shared one


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


def _ancestors(pid: int) -> list[int]:
    out = []
    while pid > 1:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            break
        pid = int(status.split("\nPPid:\t", 1)[1].split("\n", 1)[0])
        out.append(pid)
    return out


def _kill_tree(pids: list[int]) -> None:
    for pid in [q for p in pids for q in (p, *_children(p))]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _comparable(result: dict) -> dict:
    out = {k: v for k, v in result.items() if k not in ("wall_time_s", "history", "provenance")}
    out["history"] = [{k: v for k, v in h.items() if not k.endswith("_time_s")} for h in result["history"]]
    return out


def test_killed_worker_node_trial_resumes_to_its_undisturbed_twins_result(tmp_path):
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
            [RAY, "start", "--head", f"--port={port}", "--num-cpus=1", f"--temp-dir={temp}",
             "--include-dashboard=false", *common],
            env=env, check=True, capture_output=True, timeout=180,
        )  # fmt: skip
        subprocess.run(
            [RAY, "start", f"--address=127.0.0.1:{port}", "--num-cpus=1", f"--node-manager-port={worker_port}",
             *common],
            env=env, check=True, capture_output=True, timeout=180,
        )  # fmt: skip
        spec = tmp_path / "drill.yaml"
        spec.write_text(
            yaml.safe_dump(
                {
                    "name": "drill",
                    "base": {"file": str(ROOT / "sweeps" / "profiles" / "tiny_test.yaml")},
                    # twins: the same run config under two names (one CPU per node: one trial per node)
                    "grid": {"variants": {"killed_or_not": {}, "twin": {}}, "seeds": [0]},
                    "resources": {"cpu": 1, "gpu": 0},
                    "max_concurrent": 2,
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
        (raylet,) = [
            p
            for p in _pids()
            if "raylet" in _cmdline(p) and f"--node_manager_port={worker_port}" in _cmdline(p)
        ]
        deadline = time.time() + 400
        while (
            time.time() < deadline
        ):  # the worker node's trial reported task 1 (so Tune holds its checkpoint)
            rows = [p.read_text().split("\n", 1)[0] for p in exp.glob("*/result.json")]
            pids = [
                json.loads(row)["pid"] for row in rows if row.strip()
            ]  # each trial's process (Tune's field)
            if any(raylet in _ancestors(pid) for pid in pids):
                break
            assert driver.poll() is None, driver.stdout.read()[-4000:]
            time.sleep(0.2)
        else:
            pytest.fail("the worker node's trial did not report its first task in time")
        finished_before = list(exp.glob("*/*/result.json"))
        _kill_tree([raylet])
        out, _ = driver.communicate(timeout=900)
        assert driver.returncode == 0, out[-4000:]
    finally:
        _kill_tree([p for p in _pids() if temp in _cmdline(p)])
        shutil.rmtree(temp, ignore_errors=True)

    status = yaml.safe_load((exp / "trial_status.yaml").read_text())["trials"]
    assert len(status) == 2 and all(s["status"] == "COMPLETED" for s in status.values()), status
    failed = [name for name, s in status.items() if (s.get("num_failures") or 0) > 0]
    assert len(failed) == 1, (  # the worker node's trial, and only it
        f"rescheduled: {failed}; finished before the kill: {finished_before}; {out[-3000:]}"
    )
    (retried,), (undisturbed,) = failed, set(status) - set(failed)
    # resumed from its last task checkpoint: no task was reported twice, task 1 in particular. (Tune may drop the
    # row of a report made as the node died, [1, 3]; the checkpoint it stored is kept, and the retry resumes there.)
    tasks = [json.loads(line)["task"] for line in (exp / retried / "result.json").read_text().splitlines()]
    assert tasks[0] == 1 and tasks[-1] == 3 and tasks == sorted(set(tasks)), (retried, tasks)

    def run_result(name: str) -> dict:
        info = json.loads((exp / name / "trial.json").read_text())
        return json.loads((exp / name / info["out_dir"] / "result.json").read_text())

    drilled, twin = run_result(retried), run_result(undisturbed)
    assert drilled["config"] == twin["config"]  # the same run, so the same numbers are due
    differ = sorted(
        k for k in set(drilled) | set(twin) if _comparable(drilled).get(k) != _comparable(twin).get(k)
    )
    assert not differ, differ  # key names only: a diff of two results is slow to print
