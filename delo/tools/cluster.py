"""A Ray cluster of separate ``ray start`` processes on this machine, for the drills (issue 26): a head and worker
nodes, each with a private temp dir, that a drill adds and removes while a sweep runs on them.

No Ray import here (only the Ray seam imports Ray, docs/architecture.md): nodes are started with the ``ray`` CLI
and drivers with ``launch/sweep.py --address``, as a user does. Processes are found through /proc and killed by
pid, never by name: only those under this cluster's temp dirs or its raylets, so other Ray users on the machine
are left alone.

Why a private temp dir per node: ``ray start`` records its address in ``<temp dir>/ray_current_cluster`` and a
plain ``ray.init()`` joins the cluster recorded in /tmp/ray; nobody else must join this one. The paths are short
because Ray's socket paths have a length limit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))
TRIAL_TITLE = "ray::DeloTrial"
"""The process title of a trial's worker (Ray names it after the actor class, delo.sweep.trainable)."""
HEALTH_CHECK_PERIOD_MS = 1000
HEALTH_CHECK_FAILURES = 3
"""The GCS declares a silent node dead after period x failures (Ray's default is 3 s x 5)."""


# ----------------------------------------------------------------------------------------------------------
# Processes, by pid


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cmdline(pid: int) -> str:
    """The command line (or, for a Ray worker, the process title Ray set); "" when the process is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def all_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def parent_of(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return int(status.split("\nPPid:\t", 1)[1].split("\n", 1)[0])


def ancestors(pid: int) -> list[int]:
    out = []
    while pid > 1:
        parent = parent_of(pid)
        if parent is None:
            break
        out.append(parent)
        pid = parent
    return out


def descendants(pid: int) -> list[int]:
    parents = {p: parent_of(p) for p in all_pids()}
    out, frontier = [], [pid]
    while frontier:
        frontier = [p for p, parent in parents.items() if parent in frontier]
        out += frontier
    return out


def kill_tree(pids: list[int]) -> None:
    """SIGKILL each pid and its descendants (the tree is read first, so children cannot be re-parented away)."""
    for pid in [q for p in pids for q in (p, *descendants(p))]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def trial_workers(root: str) -> list[int]:
    """Live trial workers (by their Ray title) under a raylet whose temp dir is under ``root``."""
    pids = all_pids()
    raylets = {p for p in pids if "raylet" in cmdline(p) and root in cmdline(p)}
    return sorted(p for p in pids if cmdline(p).startswith(TRIAL_TITLE) and raylets & set(ancestors(p)))


# ----------------------------------------------------------------------------------------------------------
# The cluster


def cluster_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of this cluster's nodes and drivers: auth and usage stats off, fast node-death detection,
    this checkout importable, and no RAY_ADDRESS from the caller's shell."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0",
        "RAY_health_check_period_ms": str(HEALTH_CHECK_PERIOD_MS),
        "RAY_health_check_failure_threshold": str(HEALTH_CHECK_FAILURES),
        **(extra or {}),
    }
    env.pop("RAY_ADDRESS", None)
    return env


@dataclass
class Node:
    name: str
    temp_dir: Path
    port: int
    """Its raylet's node-manager port: how its raylet is told from the others'."""
    num_cpus: int

    def raylet(self) -> int | None:
        """The pid of this node's raylet (None once it is gone)."""
        flag = f"--node_manager_port={self.port}"
        found = [p for p in all_pids() if "raylet" in cmdline(p) and flag in cmdline(p)]
        return found[0] if found else None


class LocalCluster:
    """``with LocalCluster() as c: c.start_head(0); a = c.add_node("a", 1); ...; c.remove_node(a)``.

    Leaving the block kills every process under the cluster's temp dirs and the raylets' trees, then removes
    the temp dirs (also after a failure)."""

    def __init__(self, env: dict[str, str] | None = None):
        self.root = Path(tempfile.mkdtemp(prefix="rd", dir="/tmp"))  # short: Ray's socket path limit
        self.env = cluster_env(env)
        self.nodes: list[Node] = []
        self.address: str | None = None
        self._raylets: list[int] = []

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _start(self, name: str, num_cpus: int, head_args: list[str]) -> Node:
        node = Node(name, self.root / name, free_port(), num_cpus)
        node.temp_dir.mkdir()
        command = [RAY, "start", *head_args, f"--num-cpus={num_cpus}", "--num-gpus=0",
                   f"--node-manager-port={node.port}", f"--temp-dir={node.temp_dir}", "--disable-usage-stats",
                   "--object-store-memory=100000000"]  # fmt: skip
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"ray start of node {name} failed: {done.stderr[-2000:]}")
        raylet = node.raylet()
        if raylet is None:
            raise RuntimeError(f"node {name} started without a raylet on port {node.port}")
        self._raylets.append(raylet)
        self.nodes.append(node)
        return node

    def start_head(self, num_cpus: int) -> Node:
        port = free_port()
        node = self._start("head", num_cpus, ["--head", f"--port={port}", "--include-dashboard=false"])
        self.address = f"127.0.0.1:{port}"
        return node

    def add_node(self, name: str, num_cpus: int) -> Node:
        """A worker node joining the head (a newcomer when the sweep already runs)."""
        if self.address is None:
            raise RuntimeError("start the head first")
        return self._start(name, num_cpus, [f"--address={self.address}"])

    def add_nodes(self, cpus: dict[str, int]) -> list[Node]:
        """Several worker nodes started at once (``ray start`` is mostly waiting), by name."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(cpus)) as pool:
            return list(pool.map(self.add_node, cpus, cpus.values()))

    def remove_node(self, node: Node) -> None:
        """The node dies: its raylet and every process under it are SIGKILLed (the GCS then finds it silent)."""
        raylet = node.raylet()
        if raylet is not None:
            kill_tree([raylet])

    def node_of(self, pid: int) -> str | None:
        """The name of the node whose raylet ``pid`` runs under (None: not this cluster's, or gone)."""
        chain = ancestors(pid)
        for node in self.nodes:
            raylet = node.raylet()
            if raylet is not None and raylet in chain:
                return node.name
        return None

    def trial_workers(self) -> list[int]:
        return trial_workers(str(self.root))

    def stop(self) -> None:
        root = str(self.root)
        kill_tree(
            [p for p in all_pids() if root in cmdline(p)]
            + [p for p in self._raylets if "raylet" in cmdline(p)]
        )
        deadline = time.time() + 30  # a guard: the kernel reaps them at once
        while time.time() < deadline and any(root in cmdline(p) for p in all_pids()):
            time.sleep(0.2)
        shutil.rmtree(self.root, ignore_errors=True)
