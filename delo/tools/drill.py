"""Drills at cluster scale on one machine (issue 26): ``python launch/drill.py chaos|nodes|asha`` (delo.cli.drill).

Every drill starts a Ray cluster of its own (``ray start`` processes with private temp dirs,
delo.tools.cluster), runs real sweeps of the ``tiny_test`` profile through ``launch/sweep.py --address`` as a
user does, disturbs them, then audits the sweep folder (delo.tools.audit) and prints a summary:

- ``chaos``: a grid of >= 16 trials as short as the runner allows, while a chaos process (delo.tools.chaos)
  SIGKILLs a random trial worker every few seconds (a bounded, seeded number of times) and once the driver,
  which the drill resumes with ``--resume``. Every trial must finish with the result of an undisturbed run of
  its config (``audit.reference_results``: each config run again by the runner in a fresh process, with the
  trial's one thread), no trial may report a task twice, and the folder must hold no partial or orphan file.
  ``--search``: the same on an Optuna + ASHA search, whose study must hold one trial per sample, none left
  running, with PRUNED / COMPLETE counts equal to Tune's STOPPED / COMPLETED.
- ``nodes`` (delo.tools.node_drill): a head (no CPUs: the driver's node) and two worker nodes; once a trial on
  worker ``a`` has reported a task, ``a``'s raylet and everything under it are killed, and a new worker ``c``
  joins. Trials must move to the survivor and the newcomer and finish with the undisturbed results. This
  extends the node-kill fault drill of issue 17 (tests/slow/test_drills.py runs small ones of every drill).
- ``asha``: a search of >= 64 samples; ASHA's stops at each rung must be what its rule gives on the results in
  the order its scheduler saw them, and the study's best trial must be Tune's best completed trial, named in
  results.md.

Nothing here depends on how long anything takes: the drills wait for events (a row reported, a process gone),
and the timeouts are guards against a hang, never measurements (speed is bench.json's business).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from delo.metric_keys import FINAL_AP
from delo.sweep.experiment import RESULTS_MD, TRIAL_INFO, Status, read_status
from delo.tools import audit
from delo.tools.chaos import read_log
from delo.tools.cluster import ROOT, LocalCluster

PROFILE = ROOT / "sweeps" / "profiles" / "tiny_test.yaml"
SHORTEST = {"train.max_steps_per_task": 1, "train.epochs": 1, "eval.test": False}
"""tiny_test as short as the runner allows: one step per task (3 tasks still, so a trial can die between them)."""
HANG_GUARD_S = 3600.0
SPACE = {
    "model.E": {"type": "int", "low": 4, "high": 16, "log": True},
    "model.r": {"type": "r_frac"},
    "loss.lambda1": {"type": "float", "low": 1.0e-3, "high": 1.0, "log": True},
}


# ----------------------------------------------------------------------------------------------------------
# Specs and drivers


def grid_spec(name: str, trials: int, *, shortest: bool = True, max_failures: int = 2) -> dict[str, Any]:
    """``trials`` tiny_test trials: two variants (DeLo and its LoRA ablation) times seeds."""
    variants = {"delo": {}, "delo_lora": {"model.variant": "delo_lora"}}
    return {
        "name": name,
        "base": {"file": str(PROFILE), "config": SHORTEST if shortest else {}},
        "grid": {"variants": variants, "seeds": list(range((trials + 1) // 2))},
        "resources": {"cpu": 1, "gpu": 0},
        "max_concurrent": 2,
        "failure": {"max_failures": max_failures},
    }


def search_spec(
    name: str, samples: int, *, num_tasks: int, grace: int, seed: int, max_failures: int = 2
) -> dict:
    """An Optuna TPE + ASHA search of ``samples`` tiny_test trials (as short as the runner allows)."""
    return {
        "name": name,
        "table": "search",
        "base": {"file": str(PROFILE), "config": {**SHORTEST, "data.num_tasks": num_tasks}},
        "search": {
            "space": SPACE,
            "num_samples": samples,
            "searcher": {"seed": seed},
            "scheduler": {"grace_period": grace},
            "metric": "final_ap",
        },
        "resources": {"cpu": 1, "gpu": 0},
        "max_concurrent": 2,
        "failure": {"max_failures": max_failures},
    }


def write_spec(folder: Path, spec: dict[str, Any]) -> Path:
    path = folder / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def start_driver(cluster: LocalCluster, spec: Path, storage: Path, resume: bool = False) -> subprocess.Popen:
    """``launch/sweep.py`` joining the cluster, its output appended to ``<storage>/driver.log``."""
    storage.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(ROOT / "launch" / "sweep.py"), str(spec), "--address", cluster.address,
               "--storage", str(storage), *(["--resume"] if resume else [])]  # fmt: skip
    with (storage / "driver.log").open("a") as log:
        return subprocess.Popen(command, env=cluster.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)


def run_sweep(cluster: LocalCluster, spec: Path, storage: Path) -> int:
    """One undisturbed sweep to its end; its exit status."""
    return start_driver(cluster, spec, storage).wait(timeout=HANG_GUARD_S)


def driver_tail(storage: Path, lines: int = 30) -> str:
    log = storage / "driver.log"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.is_file() else ""


def two_worker_cluster() -> LocalCluster:
    """A head with no CPUs (the driver's node, as on a cluster whose head runs no trials) and worker nodes a and b
    of one CPU each: what the nodes drill needs, and enough for the others (two trials at a time)."""
    cluster = LocalCluster()
    try:
        cluster.start_head(num_cpus=0)
        cluster.add_nodes({"a": 1, "b": 1})
    except BaseException:
        cluster.stop()
        raise
    return cluster


@contextlib.contextmanager
def cluster_or(given: LocalCluster | None, build) -> Iterator[LocalCluster]:
    """``given`` as it is (its owner stops it), or a new one from ``build()``, stopped at the end."""
    if given is not None:
        yield given
        return
    with build() as cluster:
        yield cluster


def _one_node() -> LocalCluster:
    cluster = LocalCluster()
    try:
        cluster.start_head(num_cpus=2)
    except BaseException:
        cluster.stop()
        raise
    return cluster


@contextlib.contextmanager
def work_folder(workdir: Path | None) -> Iterator[Path]:
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        yield workdir
        return
    tmp = Path(tempfile.mkdtemp(prefix="delo-drill-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------------
# Shared checks


def unfinished_problems(exp: Path, expected: int, allowed: tuple[str, ...]) -> list[str]:
    status = read_status(exp).get("trials", {})
    problems = []
    if len(status) != expected:
        problems.append(f"{len(status)} trials in trial_status.yaml, {expected} expected")
    problems += [f"{name}: {s['status']}" for name, s in sorted(status.items()) if s["status"] not in allowed]
    return problems


def common_checks(exp: Path) -> dict[str, Any]:
    """No task twice, no partial or orphan file, and every finished trial's result equal to an undisturbed run of
    its config (audit.reference_results)."""
    drilled = audit.runner_results(exp)
    diff = audit.differences(audit.reference_results(exp), drilled)
    return {
        "repeated_tasks": audit.repeated_tasks(exp),
        "folder_problems": audit.folder_problems(exp),
        "equal": f"{len(drilled) - len(diff)}/{len(drilled)}",
        "differences": diff,
    }


def verdict(summary: dict[str, Any]) -> dict[str, Any]:
    problems = list(summary.get("problems", []))
    problems += [
        f"{t}: tasks {tasks} (a task reported twice)"
        for t, tasks in summary.get("repeated_tasks", {}).items()
    ]
    problems += summary.get("folder_problems", [])
    problems += [
        f"{h}: differs from the undisturbed run in {keys}"
        for h, keys in summary.get("differences", {}).items()
    ]
    problems += summary.get("study", {}).get("problems", [])
    problems += summary.get("asha", {}).get("problems", [])
    summary["problems"] = problems
    summary["ok"] = not problems
    return summary


def retries_of(exp: Path) -> int:
    return sum(s.get("num_failures") or 0 for s in read_status(exp).get("trials", {}).values())


# ----------------------------------------------------------------------------------------------------------
# chaos


def chaos(
    trials: int = 16,
    kills: int = 6,
    seed: int = 0,
    interval_s: float = 3.0,
    search: bool = False,
    workdir: Path | None = None,
    cluster: LocalCluster | None = None,
) -> dict[str, Any]:
    """The chaos drill (module docstring); returns its summary (``ok``, ``problems``, kills, trials, ...).
    ``cluster``: run on this one (two trial slots) instead of a one-node cluster of the drill's own."""
    with work_folder(workdir) as work, cluster_or(cluster, _one_node) as cluster:
        max_failures = kills + 1  # a trial killed at every turn still finishes
        if search:
            spec_dict = search_spec(
                "chaos", trials, num_tasks=3, grace=1, seed=seed, max_failures=max_failures
            )
        else:
            spec_dict = grid_spec("chaos", trials, max_failures=max_failures)
        spec = write_spec(work, spec_dict)
        summary: dict[str, Any] = {
            "drill": "chaos",
            "variant": "search" if search else "grid",
            "trials": trials,
        }
        storage = work / "drilled"
        driver = start_driver(cluster, spec, storage)
        log = work / "kills.jsonl"
        chaos_process = subprocess.Popen(
            [sys.executable, "-m", "delo.tools.chaos", "--root", str(cluster.root), "--log", str(log),
             "--kills", str(kills), "--seed", str(seed), "--interval", str(interval_s), "--driver", str(driver.pid),
             "--exp", str(storage / "chaos"), "--driver-after", str(max(1, trials // 4))],
            env=cluster.env, cwd=ROOT,
        )  # fmt: skip
        resumes = 0
        try:
            while (status := driver.wait(timeout=HANG_GUARD_S)) == -signal.SIGKILL and resumes == 0:
                resumes += 1  # the chaos process killed the driver: what an operator does next
                driver = start_driver(cluster, spec, storage, resume=True)
        finally:
            chaos_process.terminate()
            chaos_process.wait(timeout=60)
        made = read_log(log)
        exp = storage / "chaos"
        summary.update(
            exit_status=status,
            kills={"worker": sum(k["kind"] == "worker" for k in made), "driver": sum(k["kind"] == "driver" for k in made)},
            resumes=resumes,
            retries=retries_of(exp),
        )  # fmt: skip
        problems = [] if status == 0 else [f"the drilled driver exited {status}:\n{driver_tail(storage)}"]
        if summary["kills"]["driver"] != 1 or resumes != 1:
            problems.append(
                "the driver was not killed and resumed once (the sweep ended first: more trials?)"
            )
        allowed = (Status.COMPLETED, Status.STOPPED) if search else (Status.COMPLETED,)
        problems += unfinished_problems(exp, trials, allowed)
        summary.update(problems=problems, **common_checks(exp))
        if search:
            summary["study"] = audit.study_check(exp, "chaos", trials)
        return verdict(summary)


# ----------------------------------------------------------------------------------------------------------
# asha


def asha(
    samples: int = 64,
    num_tasks: int = 5,
    grace: int = 1,
    seed: int = 0,
    workdir: Path | None = None,
    cluster: LocalCluster | None = None,
) -> dict[str, Any]:
    """The ASHA drill (module docstring); returns its summary (``asha.rungs`` per rung: reached, stopped).
    ``cluster``: run on this one instead of a one-node cluster of the drill's own."""
    from delo.sweep.records import best_trial, collect
    from delo.sweep.search import asha_reduction_factor

    with work_folder(workdir) as work, cluster_or(cluster, _one_node) as cluster:
        spec = write_spec(work, search_spec("asha", samples, num_tasks=num_tasks, grace=grace, seed=seed))
        storage = work / "search"
        status = run_sweep(cluster, spec, storage)
        exp = storage / "asha"
        rf = asha_reduction_factor(num_tasks, None)
        summary: dict[str, Any] = {"drill": "asha", "samples": samples, "tasks": num_tasks, "grace": grace, "rf": rf,
                                   "exit_status": status}  # fmt: skip
        problems = [] if status == 0 else [f"the driver exited {status}:\n{driver_tail(storage)}"]
        problems += unfinished_problems(exp, samples, (Status.COMPLETED, Status.STOPPED))
        summary["asha"] = audit.asha_check(exp, num_tasks, grace, rf)
        summary["study"] = study = audit.study_check(exp, "asha", samples)
        records = collect(exp)
        best = best_trial(records)
        if best is not None:
            top = best.last.get(FINAL_AP)
            tied = sum(r.completed and r.last.get(FINAL_AP) == top for r in records)
            summary["best"] = {"trial": best.name, "final_ap": top, "tied": tied}
        if best is None or study["best"] is None:
            problems.append("no completed trial")
        else:
            problems += _best_problems(exp, records, best, study["best"])
        summary["problems"] = problems
        return verdict(summary)


def _best_problems(exp: Path, records, best, study_best: dict[str, Any]) -> list[str]:
    """The study's best trial is a completed Tune trial with Tune's best final_ap (trials may tie on it: the tiny
    evaluation sets give few distinct values), and results.md names a trial with that value."""
    top = best.last.get(FINAL_AP)
    problems = []
    if study_best["value"] != top:
        problems.append(f"the study's best value {study_best['value']} != Tune's best final_ap {top}")
    tied = [r for r in records if r.completed and r.last.get(FINAL_AP) == top]
    searched = {r.name: json.loads((exp / r.name / TRIAL_INFO).read_text())["search"] for r in tied}
    if not any(all(s.get(k) == v for k, v in study_best["params"].items()) for s in searched.values()):
        problems.append(
            f"the study's best trial {study_best['number']} is none of Tune's best: {sorted(searched)}"
        )
    named = (exp / RESULTS_MD).read_text().split("**Best (val final_ap):** `", 1)[-1].split("`", 1)[0]
    if named not in searched:
        problems.append(f"results.md names {named!r} as the best trial, not one of {sorted(searched)}")
    return problems


# ----------------------------------------------------------------------------------------------------------
# Summary and command line


def summary_text(summary: dict[str, Any]) -> str:
    """The few lines a person reads; the JSON (--out) has everything."""
    s = summary
    lines = [f"{s['drill']} drill" + (f" ({s['variant']})" if "variant" in s else "") + ":"]
    if "kills" in s:
        lines.append(f"  kills survived: {s['kills']['worker']} trial workers, {s['kills']['driver']} driver "
                     f"(resumed {s['resumes']}x with --resume); trial retries {s['retries']}")  # fmt: skip
    if "removed_during" in s:
        lines.append(f"  node a removed while {s['removed_during']} ran; trials per node {s['trials_on']}; "
                     f"moved off a: {s['moved_off_a']}; retries {s['retries']}")  # fmt: skip
    if "asha" in s:
        for rung, r in s["asha"]["rungs"].items():
            lines.append(f"  rung task {rung}: {r['reached']} reached, {r['stopped']} stopped "
                         f"(the rule: {r['stopped_by_the_rule']})")  # fmt: skip
        if s.get("best"):
            b, sb = s["best"], s["study"]["best"]
            lines.append(f"  best completed: {b['trial']} final_ap {b['final_ap']} ({b['tied']} trial(s) at that value); "
                         f"study best: trial {sb['number']}, value {sb['value']}")  # fmt: skip
    if "study" in s:
        lines.append(f"  study states {s['study']['states']}; Tune {s['study']['tune']}")
    if "equal" in s:
        lines.append(f"  equal to an undisturbed run: {s['equal']}")
    if "repeated_tasks" in s:
        lines.append(f"  trials reporting a task twice: {len(s['repeated_tasks'])}")
    if "folder_problems" in s:
        lines.append(f"  partial or orphan files: {len(s['folder_problems'])}")
    lines += [f"  problem: {p}" for p in s["problems"][:20]]
    lines.append("  OK" if s["ok"] else f"  FAILED ({len(s['problems'])} problems)")
    return "\n".join(lines)
