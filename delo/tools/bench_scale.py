"""Figures at cluster scale, measured on one machine (issue 26): what the sweep driver costs per trial, and the
report path on thousands of trial records. Registered in :mod:`delo.tools.bench` (``delo-bench --only ...``).

- ``driver_cost``: real grids through the real trainable on a local Ray (the ``tiny_test`` profile, one step per
  task), each driver in a fresh process that reports its own CPU seconds, peak RSS and wall time. Driver overhead
  per trial = driver CPU seconds / trials; RSS growth per trial = the slope of peak RSS between a small and a large
  grid; wall time against the sum of the trials' own times at the concurrency used.
- ``report_scale``: sweep folders of 1,000 and 5,000 trial records written in the runner's schema (trial.json,
  Tune's result.json rows, the runner's result.json with matrices, parameter counts and provenance; values varied),
  then ``delo-summarize`` in a fresh process: its time and peak RSS, with results.md, results.csv, results.tex and
  the plots written. Also the time to write the TensorBoard HParams experiment config of a 1,000-trial grid.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
TASKS = 5

_MEASURE = """
import json, resource, sys, time
t0 = time.perf_counter()
{body}
usage = resource.getrusage(resource.RUSAGE_SELF)
print("MEASURED " + json.dumps({{"wall_s": time.perf_counter() - t0, "cpu_s": usage.ru_utime + usage.ru_stime,
                                 "peak_rss_mb": usage.ru_maxrss / 1024, "status": status}}))
"""


def measured(body: str, env: dict[str, str] | None = None, timeout: float = 3600) -> dict[str, Any]:
    """Run ``body`` (which sets ``status``) in a fresh interpreter; its wall, CPU seconds and peak RSS."""
    import os

    done = subprocess.run(
        [sys.executable, "-c", _MEASURE.format(body=body)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("MEASURED ")]
    if not lines:
        raise RuntimeError(f"measurement failed (exit {done.returncode}): {done.stderr[-2000:]}")
    return json.loads(lines[-1].removeprefix("MEASURED "))


# ----------------------------------------------------------------------------------------------------------
# The report path on many records


def write_fake_sweep(folder: Path, n: int, seed: int = 0) -> Path:
    """A finished grid sweep of ``n`` trials in the runner's on-disk schema (4 variants x n/4 seeds)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True)
    variants = ["delo", "delo_lora", "no_guide", "unified_pool"]
    spec = {"spec": {"name": folder.name, "table": "components", "description": "scale"}, "base": {}}
    (folder / "sweep_spec.yaml").write_text(yaml.safe_dump(spec))
    statuses = {}
    for i in range(n):
        variant, s = variants[i % 4], i // 4
        name = f"{variant}_s{s}_{i:05d}"
        trial = folder / name
        (trial / name).mkdir(parents=True)
        cfg = {"seed": s, "model": {"method": "delo", "variant": variant, "E": 16, "r": 4}, "loss": {}}
        info = {"trial_id": f"t_{i:05d}", "label": variant, "variant": variant, "seed": s,
                "overrides": {"model.variant": variant, "seed": s}, "config": cfg, "out_dir": name}  # fmt: skip
        (trial / "trial.json").write_text(json.dumps(info))
        base = 60 + 5 * (variant == "delo") + rng.gauss(0, 2)
        rows = []
        for t in range(1, TASKS + 1):
            row = {"task": t, "ap_seen": base + rng.gauss(0, 1), "acc_new": base, "fg_seen": 5.0, "bwt_seen": -5.0,
                   "key_acc": 90.0, "train_time_s": 10.0, "eval_time_s": 2.0, "task_time_s": 12.0,
                   "test_ap_seen": base - 1}  # fmt: skip
            if t == TASKS:
                row.update(final_ap=base, final_fg=rng.uniform(3, 12), final_last=base, final_bwt=-4.0,
                           final_ap_task_aware=base + 8, test_final_ap=base - 1, test_final_fg=8.0)  # fmt: skip
            rows.append(row)
        (trial / "result.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        matrix = [[base if j <= i else None for j in range(TASKS)] for i in range(TASKS)]
        runner = {"matrix": matrix, "test_matrix": matrix, "params": {"trainable": 200_000, "total": 2_000_000},
                  "provenance": {"package_version": "0.1.0", "git_commit": "a" * 40, "git_dirty": False,
                                 "libraries": {"torch": "2.13.0"}}}  # fmt: skip
        (trial / name / "result.json").write_text(json.dumps(runner))
        statuses[name] = {"status": "COMPLETED", "trial_id": f"t_{i:05d}"}
    (folder / "trial_status.yaml").write_text(yaml.safe_dump({"total_trials": n, "trials": statuses}))
    return folder


def report_scale(quick: bool = False) -> dict[str, Any]:
    """delo-summarize on 1,000 and 5,000 trial records (quick: 200 and 1,000): time, peak RSS, files written;
    target: 1,000 trials summarized in <= 15 s."""
    sizes = (200, 1000) if quick else (1000, 5000)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="delo-report-scale-") as tmp:
        for n in sizes:
            folder = write_fake_sweep(Path(tmp) / f"s{n}", n)
            m = measured(f"from delo import cli\nstatus = cli.summarize([{str(folder)!r}])")
            written = sorted(
                p.name for p in folder.iterdir() if p.is_file() and p.name.startswith(("results", "ap_"))
            )
            out[f"trials_{n}"] = {**{k: round(v, 2) for k, v in m.items() if k != "status"}, "status": m["status"],
                                  "written": written}  # fmt: skip
        out["hparams_config_1000"] = _hparams_scale(Path(tmp), 1000)
    at_1000 = out.get("trials_1000", {}).get("wall_s")
    return {"value": at_1000, "target": 15.0, "met": None if at_1000 is None else at_1000 <= 15.0, **out}


def _hparams_scale(tmp: Path, n: int) -> dict[str, Any]:
    """Time to write the TensorBoard HParams experiment of an ``n``-trial grid (the driver's first step)."""
    spec = tmp / "hp.yaml"
    spec.write_text(yaml.safe_dump({"name": "hp", "table": "generic", "base": {"file": str(ROOT / "sweeps/profiles/tiny_test.yaml")},
                                    "grid": {"variants": {"a": {}}, "seeds": list(range(n))}}))  # fmt: skip
    body = (
        "from delo.sweep.spec import load_sweep\nfrom delo.sweep.driver import write_hparams_config\n"
        f"sweep = load_sweep({str(spec)!r}, storage={str(tmp / 'hp_out')!r})\n"
        "sweep.experiment_dir.mkdir(parents=True)\nt1 = time.perf_counter()\nwrite_hparams_config(sweep)\n"
        "print('HP', time.perf_counter() - t1)\nstatus = 0"
    )
    m = measured(body)
    return {"load_and_write_s": round(m["wall_s"], 2), "peak_rss_mb": round(m["peak_rss_mb"], 1)}


# ----------------------------------------------------------------------------------------------------------
# The driver's cost per trial


def driver_cost(quick: bool = False) -> dict[str, Any]:
    """Real grids of tiny trials (tiny_test, one step per task) on a local Ray at concurrency 2: the driver's CPU
    seconds per trial (target <= 0.5 s), its peak-RSS growth per trial (<= 1 MB) and wall time per trial against the
    trial's own time, each the slope between a small and a large grid (fixed costs paid once drop out). quick: grids of 2 x 2 and 2 x 6 seeds; full: 2 x 25 and 2 x 100 (200 trials)."""
    small, large = (2, 6) if quick else (25, 100)
    runs = {}
    with tempfile.TemporaryDirectory(prefix="delo-driver-cost-") as tmp:
        for n in (small, large):
            sets = [f"grid.seeds={list(range(n))}", "train.max_steps_per_task=1", "train.epochs=1",
                    "eval.test=false", "max_concurrent=2", "data.num_tasks=2"]  # fmt: skip
            args = [str(ROOT / "sweeps" / "smoke.yaml"), "--storage", str(Path(tmp) / f"n{n}"), "--dashboard-port", "0",
                    "--num-cpus", "2", *[x for s in sets for x in ("--set", s)]]  # fmt: skip
            m = measured(f"from delo import cli\nstatus = cli.sweep({args!r})", env={"RAY_DEDUP_LOGS": "0"})
            exp = Path(tmp) / f"n{n}" / "smoke"
            trial_s = _trial_seconds(exp)
            runs[n] = {**{k: round(v, 2) for k, v in m.items() if k != "status"}, "status": m["status"],
                       "trials": 2 * n, "trial_seconds_sum": round(sum(trial_s), 1),
                       "ideal_wall_s": round(sum(trial_s) / 2, 1)}  # fmt: skip
    a, b = runs[small], runs[large]
    extra = b["trials"] - a["trials"]
    # per trial = the slope between the two grids: Ray's start and the imports are paid once, not per trial
    per_trial_cpu = (b["cpu_s"] - a["cpu_s"]) / extra
    rss_slope = (b["peak_rss_mb"] - a["peak_rss_mb"]) / extra
    wall_slope = (b["wall_s"] - a["wall_s"]) / extra
    return {
        "value": round(per_trial_cpu, 3),
        "target": 0.5,
        "met": per_trial_cpu <= 0.5,
        "wall_s_per_trial": round(wall_slope, 2),
        "trial_s_per_trial": round((b["trial_seconds_sum"] - a["trial_seconds_sum"]) / extra, 2),
        "rss_mb_per_trial": round(rss_slope, 3),
        "rss_target_mb_per_trial": 1.0,
        "rss_met": rss_slope <= 1.0,
        "runs": runs,
        "method": "smoke.yaml (tiny_test: 2 variants) x seeds, 2 tasks, 1 step per task, val only, local Ray with 2 "
        "CPUs, max_concurrent 2; driver CPU = user + sys of the driver process (launch() in a fresh interpreter)",
    }


def _trial_seconds(exp: Path) -> list[float]:
    """Each trial's own time: the sum of its reported task times (Tune's result rows)."""
    out = []
    for rows in exp.glob("*/result.json"):
        times = [
            json.loads(line).get("task_time_s", 0.0) for line in rows.read_text().splitlines() if line.strip()
        ]
        out.append(sum(times))
    return out


__all__ = ["driver_cost", "measured", "report_scale", "write_fake_sweep"]
