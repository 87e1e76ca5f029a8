"""Which code, libraries, machine and command produced a result: the ``provenance`` block of every result.json and
sweep folder, and the comparison that flags trials of one sweep run by different code.

``collect(command)`` is cheap (no torch import unless torch is loaded already, one ``git`` call): the runner calls
it at the start of a run and ``finish`` stamps the end time. Outside a git checkout (an installed wheel) the git
fields are None, never an error.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGE = "delo-sweep"
LIBRARIES = ("torch", "transformers", "ray", "optuna", "pydantic", "numpy")
"""Library versions recorded (those installed; a missing one is None)."""
CODE_KEYS = ("package_version", "git_commit", "git_dirty")
"""The fields that say which code ran: trials of one sweep that differ in one are reported."""


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def git_state(where: Path | None = None) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout holding this package, or (None, None) outside one or without git."""
    root = where or Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None, None
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit or None, bool(status.strip())


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info() -> dict[str, Any]:
    """CPU model and usable threads; GPU names, count and CUDA version when torch is already loaded."""
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "gpus": [],
        "cuda": None,
    }
    torch = sys.modules.get("torch")  # never import torch just to look: the driver stays light
    if torch is not None:
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            info["cuda"] = torch.version.cuda
    return info


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def collect(command: list[str] | None = None) -> dict[str, Any]:
    """The provenance of a run starting now; ``command`` defaults to this process's command line."""
    commit, dirty = git_state()
    return {
        "package_version": _version(PACKAGE),
        "git_commit": commit,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "libraries": {name: _version(name) for name in LIBRARIES},
        "device": device_info(),
        "host": platform.node(),
        "command": list(command if command is not None else sys.argv),
        "started": now(),
        "ended": None,
    }


def finish(block: dict[str, Any]) -> dict[str, Any]:
    """``block`` with its end time stamped."""
    return {**block, "ended": now()}


def code_identity(block: dict[str, Any] | None) -> tuple:
    """What must agree between trials of one sweep: the code fields and the library versions."""
    if not block:
        return ()
    return (*(block.get(k) for k in CODE_KEYS), tuple(sorted((block.get("libraries") or {}).items())))


def mixed(blocks: dict[str, dict[str, Any] | None]) -> list[list[str]]:
    """Groups of trial names by code identity, when there is more than one group ([] when all agree; trials
    without provenance, e.g. written by an older version, form their own group)."""
    groups: dict[tuple, list[str]] = {}
    for name, block in blocks.items():
        groups.setdefault(code_identity(block), []).append(name)
    return [] if len(groups) <= 1 else [sorted(names) for names in groups.values()]


def describe(block: dict[str, Any]) -> list[str]:
    """Markdown lines: the provenance of a sweep or run, for the head of results.md."""
    libs = ", ".join(f"{k} {v}" for k, v in (block.get("libraries") or {}).items() if v)
    commit = block.get("git_commit")
    code = f"{block.get('package_version') or '?'}" + (
        f", git {commit[:12]}{' (dirty)' if block.get('git_dirty') else ''}"
        if commit
        else ", not from a checkout"
    )
    dev = block.get("device") or {}
    gpus = dev.get("gpus") or []
    hardware = f"{dev.get('cpu', '?')}, {dev.get('cpus', '?')} CPUs" + (
        f", {len(gpus)} × {gpus[0]} (CUDA {dev.get('cuda')})" if gpus else ", no GPU"
    )
    return [
        f"- code: delo-sweep {code}",
        f"- Python {block.get('python', '?')}; {libs}",
        f"- hardware: {hardware} ({block.get('host', '?')})",
        f"- command: `{' '.join(block.get('command') or [])}`",
        f"- started {block.get('started') or '?'}, ended {block.get('ended') or '–'}",
    ]


__all__ = [
    "CODE_KEYS",
    "LIBRARIES",
    "code_identity",
    "collect",
    "describe",
    "device_info",
    "finish",
    "git_state",
    "mixed",
]
