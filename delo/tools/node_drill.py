"""The nodes drill (issue 26; ``python launch/drill.py nodes``, see delo.tools.drill): a head without CPUs and
worker nodes a and b; once a trial on a has reported a task, a's raylet and everything under it are killed and
a new node c joins. Trials must move to the survivor b and the newcomer c and finish with the results of
undisturbed runs. Extends issue 17's fault drill (a worker node's raylet killed under a running sweep).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from delo.sweep.experiment import TUNE_RESULT, Status
from delo.tools.cluster import LocalCluster
from delo.tools.drill import (
    HANG_GUARD_S,
    cluster_or,
    common_checks,
    driver_tail,
    grid_spec,
    retries_of,
    start_driver,
    two_worker_cluster,
    unfinished_problems,
    verdict,
    work_folder,
    write_spec,
)

HOLD_GUARD_S = 600.0
"""A guard, not a measurement: the survivor is let go even if the newcomer never got a trial (then the drill
reports that), so that a sweep with nothing left for the newcomer cannot wait on a held process forever."""


class _Placement(threading.Thread):
    """Records the node of every trial worker process while it lives (pid -> node), and removes node
    ``doomed`` once a trial on it has reported a task it can resume after, then starts ``newcomer``.

    Starting a node takes seconds, and a new trial process there seconds more (its imports), while a process of
    the survivor takes the next trial at once (Tune reuses it): on a small grid of short trials the survivor
    would run everything left before the newcomer could, a race with the sweep's end that says nothing about
    the sweep. So the driver is held (SIGSTOP) while the newcomer starts, and the survivor's trial processes are
    held from then until a trial process runs on the newcomer. Only waits: no trial computes anything else."""

    def __init__(self, cluster: LocalCluster, exp: Path, doomed, newcomer: str, num_tasks: int, driver: int):
        super().__init__(daemon=True)
        self.cluster, self.exp, self.doomed, self.newcomer, self.T = cluster, exp, doomed, newcomer, num_tasks
        self.driver = driver
        self.node_of_pid: dict[int, str] = {}
        self.removed_during: tuple[str, int] | None = None  # (trial, its last task reported) at the removal
        self.held: list[int] = []  # the survivor's trial processes, until the newcomer runs one
        self.held_since = 0.0
        self.error: BaseException | None = None
        self.done = threading.Event()

    def run(self) -> None:
        try:
            while not self.done.is_set():
                for pid in self.cluster.trial_workers():
                    if pid not in self.node_of_pid and (node := self.cluster.node_of(pid)):
                        self.node_of_pid[pid] = node
                if self.removed_during is None:
                    self._maybe_remove()
                elif self.held and (
                    self.newcomer in self.node_of_pid.values() or time.time() > self.held_since + HOLD_GUARD_S
                ):
                    self._let_go()
                time.sleep(0.2)
        except BaseException as exc:  # surfaced by the drill
            self.error = exc
        finally:
            self._let_go()

    def _let_go(self) -> None:
        for pid in self.held:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.held = []

    def _maybe_remove(self) -> None:
        if self._candidate() is None:
            return
        os.kill(
            self.driver, signal.SIGSTOP
        )  # no result is handled now: the rows read next are the driver's own
        try:
            candidate = self._candidate()
            if candidate is None:
                return  # it finished meanwhile: look again
            self.cluster.remove_node(self.doomed)
            self.removed_during = candidate
            self.cluster.add_node(self.newcomer, 1)
            self.held = [p for p in self.cluster.trial_workers() if self.cluster.node_of(p)]
            self.held_since = time.time()
            for pid in self.held:
                os.kill(pid, signal.SIGSTOP)
        finally:
            os.kill(self.driver, signal.SIGCONT)

    def _candidate(self) -> tuple[str, int] | None:
        """(trial, its last task) of a trial on the doomed node with tasks to go and its process alive, read
        from the driver's staging copy of Tune's rows (the experiment folder's copy is synced later)."""
        staged = self.cluster.root.glob(
            f"*/session_*/artifacts/*/{self.exp.name}/driver_artifacts/*/{TUNE_RESULT}"
        )
        for path in sorted({p.resolve() for p in staged}):
            lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
            try:
                last = json.loads(lines[-1]) if lines else None
            except ValueError:  # being written
                continue
            on_doomed = last is not None and self.node_of_pid.get(last["pid"]) == self.doomed.name
            # still at it (its process alive, tasks to go): resuming it elsewhere is the point
            if on_doomed and last["task"] < self.T and last["pid"] in self.cluster.trial_workers():
                return path.parent.name, last["task"]
        return None


def nodes(
    trials: int = 8, workdir: Path | None = None, cluster: LocalCluster | None = None
) -> dict[str, Any]:
    """The join/leave drill (module docstring); returns its summary. ``cluster``: a :func:`two_worker_cluster`
    to run on (its node a is removed, a node c added)."""
    with work_folder(workdir) as work, cluster_or(cluster, two_worker_cluster) as cluster:
        (a,) = [n for n in cluster.nodes if n.name == "a"]
        # tiny_test as it is (4 steps per task): a trial on a stays between two tasks long enough to be seen there
        spec = write_spec(work, grid_spec("nodes", trials, shortest=False))
        summary: dict[str, Any] = {"drill": "nodes", "trials": trials}
        storage = work / "drilled"
        exp = storage / "nodes"
        driver = start_driver(cluster, spec, storage)
        placement = _Placement(cluster, exp, a, "c", num_tasks=3, driver=driver.pid)
        placement.start()
        try:
            status = driver.wait(timeout=HANG_GUARD_S)
        finally:
            placement.done.set()
            placement.join()
        if placement.error is not None:
            raise placement.error
        rows = _rows_by_node(exp, placement.node_of_pid)
        ran_on = {n: sorted({t for t, _, node in rows if node == n}) for n in ("a", "b", "c")}
        moved = sorted(_moved_off(rows, "a"))
        summary.update(
            exit_status=status,
            removed_during=placement.removed_during,
            trials_on={n: len(v) for n, v in ran_on.items()},
            moved_off_a=moved,
            retries=retries_of(exp),
        )
        problems = [] if status == 0 else [f"the drilled driver exited {status}:\n{driver_tail(storage)}"]
        if placement.removed_during is None:
            problems.append("node a was never removed (no trial on it reported a task in time: more trials?)")
        if not moved:
            problems.append("no trial interrupted on a finished elsewhere")
        if not ran_on["c"]:
            problems.append("the newcomer c ran no trial")
        if not ran_on["b"]:
            problems.append("the survivor b ran no trial")
        problems += unfinished_problems(exp, trials, (Status.COMPLETED,))
        summary.update(problems=problems, **common_checks(exp))
        return verdict(summary)


def _rows_by_node(exp: Path, node_of_pid: dict[int, str]) -> list[tuple[str, int, str | None]]:
    """(trial, task, node) of every row of Tune's result files, the node from the pid that reported it."""
    out = []
    for path in sorted(exp.glob(f"*/{TUNE_RESULT}")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            out.append((path.parent.name, row["task"], node_of_pid.get(row["pid"])))
    return out


def _moved_off(rows: list[tuple[str, int, str | None]], node: str) -> set[str]:
    """Trials that reported on ``node`` and later elsewhere (resumed on another node)."""
    moved = set()
    for trial in {t for t, _, n in rows if n == node}:
        nodes_in_order = [n for t, _, n in rows if t == trial]
        last_on = max(i for i, n in enumerate(nodes_in_order) if n == node)
        if any(n not in (None, node) for n in nodes_in_order[last_on + 1 :]):
            moved.add(trial)
    return moved
