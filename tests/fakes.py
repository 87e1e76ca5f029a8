"""The fake runner with the ``run_continual`` contract, for tests of the Tune mechanics rather than the model:
resumes from out_dir/checkpoints, one ``on_task_end`` per task, final_* only in the last, and the
``debug.fail_at_task`` / ``debug.nan_at_step`` injections. Shared through the ``fakes`` fixture (tests/conftest.py).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def fake_score(cfg, task: int, on: int) -> float:
    """A deterministic R[task][on] that depends on E, r, the losses and the seed."""
    return 40 + 0.5 * cfg.model.E + cfg.model.r + 10 * cfg.loss.lambda1 + cfg.seed - 3 * (task - on)


def fake_run(cfg, out_dir: Path, on_task_end=None, task_seconds: float = 0.05) -> dict:
    """The run_continual contract in miniature (no model): resumes from out_dir/checkpoints/state.json.

    Every call appends a line to out_dir/invocations.txt, so tests can tell reruns from resumes.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "invocations.txt").open("a") as fh:
        fh.write(f"{time.time()}\n")
    ckpt = out_dir / "checkpoints"
    ckpt.mkdir(parents=True, exist_ok=True)
    state_file = ckpt / "state.json"
    state = json.loads(state_file.read_text()) if state_file.is_file() else {"next_task": 0, "runs": 0}
    T = cfg.data.num_tasks or 3
    state["runs"] += 1
    matrix = [[None] * T for _ in range(T)]
    for k in range(state["next_task"], T):
        time.sleep(task_seconds)
        if cfg.debug.nan_at_step is not None:
            raise FloatingPointError(f"loss is NaN at step {cfg.debug.nan_at_step} (task {k + 1})")
        for j in range(k + 1):
            for i in range(j + 1):
                matrix[j][i] = fake_score(cfg, j, i)
        row = matrix[k][: k + 1]
        metrics = {"task": k + 1, "ap_seen": sum(row) / len(row), "fg_seen": float(k), "acc_new": row[-1]}
        metrics["test_ap_seen"] = metrics["ap_seen"] - 1
        state["next_task"] = k + 1
        state_file.write_text(json.dumps(state))
        (ckpt / f"task_{k + 1}.json").write_text(json.dumps(row))
        if k == T - 1:
            metrics.update(
                final_ap=metrics["ap_seen"],
                final_fg=float(T - 1),
                final_last=row[-1],
                final_bwt=-1.0,
                final_ap_task_aware=metrics["ap_seen"] + 1,
                test_final_ap=metrics["ap_seen"] - 1,
                test_final_fg=float(T),
            )
            result = {
                "matrix": matrix,
                "test_matrix": matrix,
                "params": {"trainable": 1000 * cfg.model.E, "total": 100000 + 1000 * cfg.model.E},
                "final_ap": metrics["final_ap"],
                "runs": state["runs"],
            }
            (out_dir / "result.json").write_text(json.dumps(result))
        if on_task_end is not None:
            on_task_end(dict(metrics), ckpt)
        if cfg.debug.fail_at_task == k + 1:
            raise RuntimeError(f"injected failure after task {k + 1}")
    return json.loads((out_dir / "result.json").read_text())


def slow_fake_run(cfg, out_dir, on_task_end=None) -> dict:
    """fake_run at about 1 s per task (room to interrupt a sweep mid-trial)."""
    return fake_run(cfg, out_dir, on_task_end, task_seconds=1.0)


def write_spec(folder: Path, text: str, name: str = "spec.yaml") -> Path:
    """A spec file in ``folder`` whose base is the shipped tiny_test profile (absolute path)."""
    profile = ROOT / "sweeps" / "profiles" / "tiny_test.yaml"
    path = folder / name
    path.write_text(f"base: {{file: {profile}}}\n" + text)
    return path
