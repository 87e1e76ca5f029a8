"""What the drills (delo.tools.drill) check in a finished sweep folder: results equal to an undisturbed run, no
task reported twice, no partial or orphan file, an Optuna study that matches Tune's trials, and ASHA's rung
decisions against its arithmetic. Each check returns plain data (problems as lines naming the file or trial),
so a drill prints it and a test asserts on it.
"""

from __future__ import annotations

import csv
import fnmatch
import json
import re
import sqlite3
import struct
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from delo.folderlock import LOCK_FILE
from delo.metric_keys import FINAL_AP, TASK
from delo.sweep.experiment import (
    OPTUNA_DB,
    PROVENANCE_FILE,
    RESULTS_CSV,
    RUNG_LOG,
    STATUS_FILE,
    TRIAL_INFO,
    TUNE_RESULT,
    Status,
    optuna_storage_url,
    read_rung_log,
    read_status,
)
from delo.sweep.search import asha_replay

# ----------------------------------------------------------------------------------------------------------
# Results against an undisturbed run


def comparable(result: dict[str, Any]) -> dict[str, Any]:
    """A runner result.json without what may differ between two runs of one config: wall times and provenance."""
    out = {k: v for k, v in result.items() if k not in ("wall_time_s", "history", "provenance")}
    out["history"] = [
        {k: v for k, v in h.items() if not k.endswith("_time_s")} for h in result.get("history", [])
    ]
    return out


def runner_results(exp: Path) -> dict[str, dict[str, Any]]:
    """Every trial's runner result.json, by the trial's config hash (absent for an unfinished trial)."""
    out = {}
    for info_file in sorted(exp.glob(f"*/{TRIAL_INFO}")):
        info = json.loads(info_file.read_text())
        result = info_file.parent / info["out_dir"] / "result.json"
        if result.is_file():
            out[info["config_hash"]] = json.loads(result.read_text())
    return out


def reference_results(exp: Path, threads: int = 1) -> dict[str, dict[str, Any]]:
    """Each finished trial's config run again, undisturbed, by ``delo.train.run_continual`` in a fresh process
    with the trial's thread count (a trial's OMP_NUM_THREADS): the result of an undisturbed run of the same
    config, by config hash. A fresh process, so that nothing the caller set (torch's threads, its RNG) leaks in;
    no Ray, since a trial's result depends only on its config (what the drills check)."""
    import os
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="delo-reference-") as tmp:
        out = Path(tmp) / "results.json"
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        code = f"from delo.tools.audit import _run_references; _run_references({str(exp)!r}, {str(out)!r})"
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"the reference runs failed: {done.stderr[-3000:]}")
        return json.loads(out.read_text())


def _run_references(exp: str, out: str) -> None:
    import tempfile

    from delo.config import RunConfig
    from delo.train import run_continual

    results = {}
    with tempfile.TemporaryDirectory(prefix="delo-reference-runs-") as tmp:
        for info_file in sorted(Path(exp).glob(f"*/{TRIAL_INFO}")):
            info = json.loads(info_file.read_text())
            cfg = RunConfig.model_validate(info["config"])
            finished = (info_file.parent / info["out_dir"] / "result.json").is_file()  # not stopped by ASHA
            if finished and info["config_hash"] not in results:
                results[info["config_hash"]] = run_continual(cfg, Path(tmp) / info_file.parent.name)
    Path(out).write_text(json.dumps(results))


def differences(reference: dict[str, dict], drilled: dict[str, dict]) -> dict[str, list[str]]:
    """Per config hash of the drilled sweep: the result keys that differ from the reference run (["missing"]
    when either side has no result); {} when every result equals its reference."""
    out = {}
    for key in sorted(set(reference) | set(drilled)):
        if key not in reference or key not in drilled:
            out[key] = ["missing in " + ("the reference" if key not in reference else "the drilled sweep")]
            continue
        a, b = comparable(reference[key]), comparable(drilled[key])
        differ = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        if differ:
            out[key] = differ
    return out


# ----------------------------------------------------------------------------------------------------------
# Tune's rows


def tune_tasks(exp: Path) -> dict[str, list[int]]:
    """The task of every row of each trial's Tune result.json, in file order."""
    return {
        path.parent.name: [json.loads(line)[TASK] for line in path.read_text().splitlines() if line.strip()]
        for path in sorted(exp.glob(f"*/{TUNE_RESULT}"))
    }


def repeated_tasks(exp: Path) -> dict[str, list[int]]:
    """Trials whose rows report a task twice or go back (a row dropped as a process died is no repeat)."""
    return {name: tasks for name, tasks in tune_tasks(exp).items() if tasks != sorted(set(tasks))}


# ----------------------------------------------------------------------------------------------------------
# Partial and orphan files

_TOP_FILES = {
    "sweep_spec.yaml", "sweep_spec.sha256", STATUS_FILE, PROVENANCE_FILE, "tuner.pkl", OPTUNA_DB, RUNG_LOG,
    "results.csv", "results.md", "results.tex", LOCK_FILE, ".validate_storage_marker",
}  # fmt: skip
_TOP_PATTERNS = (r"experiment_state-.*\.json", r"basic-variant-state-.*\.json", r"search_gen_state-.*\.json",
                 r"searcher-state-.*\.pkl", r"events\.out\.tfevents\..*", r".*\.png")  # fmt: skip
_TRIAL_FILES = {
    TRIAL_INFO,
    TUNE_RESULT,
    "params.json",
    "params.pkl",
    "progress.csv",
    "error.txt",
    "error.pkl",
}
_TEMP = re.compile(r"^\..+\.tmp$")  # delo.atomic's temp files: left behind only by a killed writer


def folder_problems(exp: Path) -> list[str]:
    """Every file of the sweep folder that is cut short, unreadable, a writer's leftover temp file, or not
    listed in the records (a trial folder the driver's trial_status.yaml does not name, a file no part of the
    project or Tune writes there); [] when there is none."""
    status = read_status(exp).get("trials", {})
    problems = []
    csv_rows = (
        {row["trial"] for row in csv.DictReader((exp / RESULTS_CSV).open())}
        if (exp / RESULTS_CSV).is_file()
        else set()
    )
    for path in sorted(exp.iterdir()):
        if path.is_dir():
            if path.name not in status:
                problems.append(f"{path}: a trial folder trial_status.yaml does not list")
            elif csv_rows and path.name not in csv_rows:
                problems.append(f"{path}: a trial folder results.csv does not list")
            problems += _trial_folder_problems(path)
        elif path.name not in _TOP_FILES and not any(re.fullmatch(p, path.name) for p in _TOP_PATTERNS):
            problems.append(f"{path}: a file no part of the sweep writes there")
        else:
            problems += _file_problems(path)
    problems += [
        f"{exp / name}: listed in trial_status.yaml, no folder"
        for name in status
        if not (exp / name).is_dir()
    ]
    return problems


def _trial_folder_problems(trial: Path) -> list[str]:
    problems = []
    info = json.loads((trial / TRIAL_INFO).read_text()) if (trial / TRIAL_INFO).is_file() else {}
    for path in sorted(trial.iterdir()):
        if path.is_dir() and path.name.startswith("checkpoint_"):
            problems += _checkpoint_problems(path)
        elif path.is_dir() and path.name == info.get("out_dir"):
            problems += [p for f in sorted(path.rglob("*")) if f.is_file() for p in _file_problems(f)]
            if (path / "checkpoints").is_dir():
                problems += _checkpoint_problems(path / "checkpoints")
        elif path.is_dir():
            problems.append(f"{path}: a folder neither Tune nor the trial writes there")
        elif path.name not in _TRIAL_FILES:
            problems.append(f"{path}: a file neither Tune nor the trial writes there")
        else:
            problems += _file_problems(path)
    return problems


def _checkpoint_problems(folder: Path) -> list[str]:
    """A task checkpoint folder (Tune's copy or the runner's own) holds a state and every task it lists."""
    from delo.checkpoint import load_state, load_task
    from delo.config import ConfigError

    try:
        state = load_state(folder)
        if state is None:
            return [f"{folder}: no state.pt"]
        for task in range(state["next_task"]):
            load_task(folder, task)
    except ConfigError as exc:
        return [f"{folder}: {exc}"]
    return [f"{f}: a writer's leftover temp file" for f in sorted(folder.iterdir()) if _TEMP.match(f.name)]


def _file_problems(path: Path) -> list[str]:
    """Whether one file reads back whole, by its kind; [] when it does (or its kind has no check here)."""
    from delo.sweep.ray_state import PATTERNS, problem_of  # Tune's state: loaded as Tune loads it

    name = path.name
    if _TEMP.match(name):
        return [f"{path}: a writer's leftover temp file"]
    try:
        if name.endswith(".pkl") or any(fnmatch.fnmatch(name, p) for p in PATTERNS):
            problem = problem_of(path)  # basic-variant-state-*.json is a pickle
            if problem:
                return [f"{path}: {problem}"]
        elif name.endswith((".json", ".jsonl")):
            _json_or_lines(path.read_text())
        elif name.endswith(".yaml"):
            yaml.safe_load(path.read_text())
        elif name.endswith(".csv"):
            rows = list(csv.reader(path.open()))
            if any(len(row) != len(rows[0]) for row in rows):
                return [f"{path}: a row with another number of fields than the header (cut short)"]
        elif name.endswith(".png"):
            data = path.read_bytes()
            if not data.startswith(b"\x89PNG") or not data.endswith(b"IEND\xaeB`\x82"):
                return [f"{path}: not a whole PNG"]
        elif ".tfevents." in name:
            return [f"{path}: {p}"] if (p := _tfrecord_problem(path.read_bytes())) else []
        elif name == OPTUNA_DB:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
                if db.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                    return [f"{path}: SQLite integrity check failed"]
    except (OSError, ValueError, yaml.YAMLError, sqlite3.Error) as exc:
        return [f"{path}: unreadable ({type(exc).__name__}: {str(exc)[:120]})"]
    return []


def _json_or_lines(text: str) -> None:
    """One JSON document (the runner's result.json), or one per line (Tune's result.json, the rung log), the last
    line included; ValueError otherwise."""
    try:
        json.loads(text)
    except ValueError:
        for line in text.splitlines():
            json.loads(line)


def _tfrecord_problem(data: bytes) -> str | None:
    """A TensorBoard event file is a run of records (8-byte length, 4-byte CRC, data, 4-byte CRC): one cut short
    at the end is what a killed writer leaves."""
    at = 0
    while at < len(data):
        if at + 12 > len(data):
            return f"a record header cut short at byte {at}"
        (length,) = struct.unpack("<Q", data[at : at + 8])
        at += 12 + length + 4
        if at > len(data):
            return f"the last record cut short ({len(data)} bytes of {at})"
    return None


# ----------------------------------------------------------------------------------------------------------
# The Optuna study against Tune's trials


def study_check(exp: Path, study_name: str, num_samples: int, objective: str = FINAL_AP) -> dict[str, Any]:
    """The study's trial states against Tune's: as many study trials as samples (none duplicated, none lost),
    none left running, PRUNED = Tune's STOPPED, COMPLETE = Tune's COMPLETED, and the told values equal to the
    completed trials' objective."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name, storage=optuna_storage_url(exp))
    states = Counter(t.state.name for t in study.trials)
    status = read_status(exp).get("trials", {})
    tune = Counter(s["status"] for s in status.values())
    problems = []
    if len(study.trials) != num_samples:
        problems.append(
            f"{len(study.trials)} study trials for {num_samples} samples (duplicated or lost trials)"
        )
    for state in ("RUNNING", "WAITING", "FAIL"):
        if states.get(state):
            problems.append(f"{states[state]} study trial(s) {state}")
    if states.get("PRUNED", 0) != tune.get(Status.STOPPED, 0):
        problems.append(f"PRUNED {states.get('PRUNED', 0)} != Tune's STOPPED {tune.get(Status.STOPPED, 0)}")
    if states.get("COMPLETE", 0) != tune.get(Status.COMPLETED, 0):
        problems.append(
            f"COMPLETE {states.get('COMPLETE', 0)} != Tune's COMPLETED {tune.get(Status.COMPLETED, 0)}"
        )
    told = sorted(t.value for t in study.trials if t.state.name == "COMPLETE" and t.value is not None)
    last_rows = _last_rows(exp)
    finals = sorted(
        last_rows.get(name, {}).get(objective, float("nan"))
        for name, s in status.items()
        if s["status"] == Status.COMPLETED
    )
    if told != finals:
        problems.append(f"the told values differ from the completed trials' {objective}")
    best = None
    if states.get("COMPLETE"):
        best = {"number": study.best_trial.number, "value": study.best_value, "params": study.best_params}
    return {"states": dict(states), "tune": dict(tune), "best": best, "problems": problems}


def _last_rows(exp: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for path in exp.glob(f"*/{TUNE_RESULT}"):
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        out[path.parent.name] = json.loads(lines[-1]) if lines else {}
    return out


# ----------------------------------------------------------------------------------------------------------
# ASHA's decisions against its arithmetic


def asha_check(exp: Path, num_tasks: int, grace: int, rf: float, mode: str = "max") -> dict[str, Any]:
    """Per rung: the trials that reached it, those ASHA stopped there (Tune's STOPPED trials whose last task is
    the rung), and those its rule stops when replayed on the results in the order the scheduler saw them
    (``asha_rungs.jsonl``). The two must be the same trials; the log's own stop marks must agree too."""
    log = read_rung_log(exp)
    replay = asha_replay([(r["trial"], r["task"], r["value"]) for r in log], num_tasks, grace, rf, mode)
    status = read_status(exp).get("trials", {})
    rungs, problems = {}, []
    for rung, replayed in replay.items():
        stopped = sorted(n for n, s in status.items() if s["status"] == Status.STOPPED and s["task"] == rung)
        marked = sorted({r["trial"] for r in log if r["task"] == rung and r["stop"]})
        reached = len({r["trial"] for r in log if r["task"] == rung})
        rungs[rung] = {"reached": reached, "stopped": len(stopped), "stopped_by_the_rule": len(replayed)}
        if sorted(replayed) != stopped:
            problems.append(f"rung {rung}: stopped {stopped}, the rule stops {sorted(replayed)}")
        if marked != stopped:
            problems.append(f"rung {rung}: the log marks {marked} stopped, Tune's status {stopped}")
    other = [n for n, s in status.items() if s["status"] == Status.STOPPED and s["task"] not in replay]
    if other:
        problems.append(f"stopped away from a rung: {other}")
    return {"rungs": rungs, "problems": problems}
