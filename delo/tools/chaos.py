"""The chaos process of the chaos drill (delo.tools.drill): every few seconds it SIGKILLs a random trial worker of
one local cluster, a bounded number of times, and once, in place of a worker, the sweep driver.

``python -m delo.tools.chaos --root CLUSTER_TEMP_ROOT --log KILLS.jsonl --kills N --seed S [--driver PID
--exp SWEEP_DIR --driver-after K]``

It runs as a process of its own, started and stopped by the drill, so that its kills come from outside the
sweep as a crash or an operator would. Seeded: the pauses, the choice among the live workers and the turn at
which the driver dies come from one ``random.Random(seed)`` (which process is live at a given moment still
depends on timing). A trial worker is a process titled ``ray::DeloTrial`` under a raylet started with the
cluster's temp root (delo.tools.cluster); nothing else is ever killed. Each kill is one JSON line in the log:
``{"t": seconds since start, "kind": "worker" | "driver", "pid": ..., "title": ...}``. The process ends after
the last kill, or on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import time
from pathlib import Path

from delo.tools.cluster import TRIAL_TITLE, cmdline, trial_workers


def run(
    root: str,
    log: Path,
    kills: int,
    seed: int,
    interval_s: float,
    driver: int | None = None,
    exp: Path | None = None,
    driver_after: int = 0,
) -> int:
    """Kill ``kills`` workers, a pause of about ``interval_s`` before each kill, and the driver once, at a seeded
    turn, once ``driver_after`` trials of the sweep in ``exp`` have finished and while some have not (its
    trial_status.yaml); returns the number of kills made. Between kills it looks every quarter second, so that a
    kill comes as soon as it is due and a worker is there."""
    rng = random.Random(seed)
    driver_turn = rng.randint(1, max(1, kills - 1)) if driver else None  # a worker or more die before it
    start, made, workers_killed = time.time(), 0, 0
    due = start + interval_s * rng.uniform(0.5, 1.5)
    while workers_killed < kills or driver_turn is not None:
        time.sleep(0.25)
        if time.time() < due:
            continue
        finished, total = _progress(exp)
        if driver_turn is not None and workers_killed >= driver_turn and driver_after <= finished < total:
            kind, victim, title = "driver", driver, cmdline(driver)
            driver_turn = None
        else:
            live = trial_workers(root)
            if not live or workers_killed >= kills:
                continue  # between trials, or while the driver is being resumed: try again later
            kind, victim = "worker", rng.choice(live)
            title = cmdline(victim)
            if not title.startswith(TRIAL_TITLE):
                continue  # it ended while we chose
            workers_killed += 1
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            continue
        made += 1
        due = time.time() + interval_s * rng.uniform(0.5, 1.5)
        with log.open("a") as fh:
            line = {"t": round(time.time() - start, 2), "kind": kind, "pid": victim, "title": title}
            fh.write(json.dumps(line) + "\n")
    return made


def _progress(exp: Path | None) -> tuple[int, int]:
    """(finished, total) trials as the driver last recorded them ((0, 0) without a folder, or while its status
    file is being replaced)."""
    if exp is None:
        return 0, 0
    from delo.config import ConfigError
    from delo.sweep.experiment import Status, read_status

    try:
        status = read_status(exp)
    except ConfigError:
        return 0, 0
    trials = status.get("trials", {}).values()
    return sum(t["status"] in Status.FINISHED for t in trials), status.get("total_trials") or 0


def read_log(log: Path) -> list[dict]:
    if not log.is_file():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--root", required=True, help="the cluster's temp root (delo.tools.cluster.LocalCluster.root)"
    )
    p.add_argument("--log", type=Path, required=True, help="JSON lines, one per kill")
    p.add_argument("--kills", type=int, required=True, help="trial workers to kill")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--interval", type=float, default=3.0, help="mean seconds between kills")
    p.add_argument("--driver", type=int, help="the driver's pid: killed once, at a seeded turn")
    p.add_argument("--exp", type=Path, help="the sweep folder (for --driver-after)")
    p.add_argument(
        "--driver-after", type=int, default=0, help="kill the driver once this many trials finished"
    )
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    run(args.root, args.log, args.kills, args.seed, args.interval, args.driver, args.exp, args.driver_after)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
