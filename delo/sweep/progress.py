"""The driver's live progress view, a Tune callback that also keeps ``trial_status.yaml`` up to date."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.experiment import Trial
from ray.tune.logger import CSVLoggerCallback

from delo.metric_keys import AP_SEEN, FINAL_AP, FINAL_FG, TASK, test_key
from delo.sweep.experiment import RUNG_LOG, Status, ended_status, error_reason, write_status


class SweepProgress(tune.Callback):
    """Readable live progress: one line per trial start/finish/error and a periodic summary, best final_ap
    so far; keeps ``trial_status.yaml`` (status, task, final metrics, error reason per trial folder).

    Stateless across restores (Tune pickles callbacks into the experiment): everything is recomputed from the
    ``trials`` list Tune passes in.
    """

    def __init__(self, name: str, exp_dir: str, num_tasks: int, total: int | None, interval_s: float = 20.0):
        self.name = name
        self.exp_dir = exp_dir
        self.num_tasks = num_tasks
        # Trials the sweep will run: the grid's size or a search's num_samples (None: open-ended, shown as '?').
        # Not len(trials): Tune's generators create trials lazily, so that count grows while the sweep runs.
        self.total = total
        self.interval_s = interval_s
        self.setup()

    def setup(self, **info) -> None:
        self._start = time.time()
        self._last_print = 0.0
        self._last_written = ""
        self._live: dict[str, str] = {}  # trial folder -> Tune status at the last step

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._say(f"start  {_trial_name(trial)}")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        last = trial.last_result or {}
        if FINAL_AP in last:
            extra = f"{FINAL_AP}={last[FINAL_AP]:.2f} {FINAL_FG}={last.get(FINAL_FG, float('nan')):.2f}"
            if test_key(FINAL_AP) in last:
                extra += f" {test_key(FINAL_AP)}={last[test_key(FINAL_AP)]:.2f}"
        else:
            extra = (
                f"stopped after task {last.get(TASK, '?')}/{self.num_tasks} "
                f"({AP_SEEN}={last.get(AP_SEEN, float('nan')):.2f})"
            )
        self._say(f"done   {_trial_name(trial)} {extra}")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._say(f"ERROR  {_trial_name(trial)}: {error_reason(trial.error_file)}")

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self._say(
            f"retry  {_trial_name(trial)} (failure {trial.num_failures}): {error_reason(trial.error_file)}"
        )

    def on_step_end(self, iteration, trials, **info) -> None:
        self._follow(trials)
        self._write(self._snapshot(trials))
        self._live = {_trial_name(t): t.status for t in trials}
        if time.time() - self._last_print >= self.interval_s:
            self._say(self._summary(trials))

    def on_experiment_end(self, trials, **info) -> None:
        # An interrupt (SIGINT) ends the loop and Tune then marks running trials TERMINATED; they were live at
        # the last step and have no final_ap: they are INTERRUPTED (restored as pending by --resume).
        self._follow(trials)
        snapshot = self._snapshot(trials)
        for name, entry in snapshot.items():
            if entry["status"] == Status.STOPPED and self._live.get(name) in Status.LIVE:
                entry["status"] = Status.INTERRUPTED
        self._write(snapshot)
        self._say(self._summary(trials))

    def _write(self, snapshot: dict[str, Any]) -> None:
        text = json.dumps({"total_trials": self.total, "trials": snapshot}, sort_keys=True, default=str)
        if text != self._last_written:
            self._last_written = text
            write_status(self.exp_dir, self.total, snapshot)

    def _follow(self, trials) -> None:
        """The experiment folder is where Tune keeps the trials: after a restore with another --storage the
        unpickled callback still names the old folder, while the trials carry the new one."""
        path = next((t.path for t in trials if t.path), None)
        if path:
            self.exp_dir = str(Path(path).parent)

    def _snapshot(self, trials) -> dict[str, Any]:
        out = {}
        for t in trials:
            last = t.last_result or {}
            status = t.status
            if status == Status.TERMINATED:
                status = ended_status(FINAL_AP in last)
            out[_trial_name(t)] = {
                "trial_id": t.trial_id,
                "status": status,
                "task": last.get(TASK),
                "final_ap": last.get(FINAL_AP),
                "num_failures": t.num_failures,
                "error": error_reason(t.error_file) if t.status == Status.ERROR else None,
            }
        return out

    def _summary(self, trials) -> str:
        self._last_print = time.time()
        count = dict.fromkeys((*Status.LIVE, Status.TERMINATED, Status.ERROR), 0)
        best, best_name = None, ""
        running = []
        for t in trials:
            count[t.status] = count.get(t.status, 0) + 1
            last = t.last_result or {}
            if t.status == Status.RUNNING:
                running.append(f"{_trial_name(t)}@{last.get(TASK, 0)}/{self.num_tasks}")
            if FINAL_AP in last and (best is None or last[FINAL_AP] > best):
                best, best_name = last[FINAL_AP], _trial_name(t)
        elapsed = time.time() - self._start
        best_text = f"best final_ap {best:.2f} ({best_name})" if best is not None else "best final_ap -"
        line = (
            f"{int(elapsed) // 60:02d}:{int(elapsed) % 60:02d} running {count[Status.RUNNING]} | "
            f"done {count[Status.TERMINATED]}/{self.total or '?'} | errored {count[Status.ERROR]} | "
            f"pending {count[Status.PENDING] + count[Status.PAUSED]} | {best_text}"
        )
        return line + (f"\n        running: {', '.join(running)}" if running else "")

    def _say(self, text: str) -> None:
        print(f"[sweep {self.name}] {text}", flush=True)


class RungLog(tune.Callback):
    """Appends every result at one of ASHA's rungs (below the last task) to ``asha_rungs.jsonl`` in the order the
    driver handled them: trial folder, task, the metric ASHA compares, and whether it stopped the trial there.

    ASHA compares a result with the values recorded at its rung *before* it, so its decisions can be recomputed
    (``delo.sweep.search.asha_replay``) only from this order, which no trial file keeps. Tune calls the scheduler
    first and then the callbacks with the same result, marked ``done`` when the scheduler stopped the trial."""

    def __init__(self, exp_dir: str, rungs: list[int], metric: str, num_tasks: int):
        self.exp_dir = exp_dir
        self.rungs = [r for r in rungs if r < num_tasks]  # a rung at the last task decides nothing
        self.metric = metric

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if result.get(TASK) not in self.rungs:
            return
        path = next((t.path for t in trials if t.path), None)  # follows a restore from another --storage
        exp_dir = Path(path).parent if path else Path(self.exp_dir)
        line = {"trial": _trial_name(trial), "task": result[TASK], "value": result.get(self.metric),
                "stop": bool(result.get("done"))}  # fmt: skip
        with (exp_dir / RUNG_LOG).open(
            "a"
        ) as fh:  # one short line per write: appended whole, or cut at the end
            fh.write(json.dumps(line) + "\n")


class ProgressCsv(CSVLoggerCallback):
    """Tune's ``progress.csv`` writer, keeping the header of a file it continues.

    Ray 2.60's writer takes its columns from the first result after a trial (re)starts and, when the file
    already exists, writes no header: a trial resumed just before its last task (whose report adds the final_*
    columns) got rows shifted under the old header. The columns of a continued file are now its header's."""

    def log_trial_result(self, iteration: int, trial: Trial, result: dict) -> None:
        if trial not in self._trial_files:
            self._setup_trial(trial)
        if self._trial_csv[trial] is None and self._trial_continue[trial]:
            with (Path(trial.local_path) / "progress.csv").open(newline="") as fh:
                header = next(csv.reader(fh), None)
            if header:
                self._trial_csv[trial] = csv.DictWriter(self._trial_files[trial], header)
        super().log_trial_result(iteration, trial, result)


def _trial_name(trial: Trial) -> str:
    path = trial.local_path or trial.path
    return Path(path).name if path else str(trial)
