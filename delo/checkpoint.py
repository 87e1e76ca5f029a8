"""Task-boundary checkpoints: small, atomic, plain data, refused when they belong to another run.

Layout under ``out_dir/checkpoints``:

- ``task_{k}.pt`` (k = 1..T): the tensors task k trained (its pools, routers, maps, head: ``model.task_state``).
  Earlier tasks never change again, so each file is written once; nothing of the frozen backbone is saved.
- ``state.pt``: the run's progress, written last, so it is the commit point. It holds the number of completed
  tasks, task keys, RNG states, result matrices and per-task history so far, ``cfg.to_dict()``, ``cfg.hash()``
  and the benchmark fingerprint.

Everything is tensors and plain Python data, saved with ``torch.save`` through a temp file + ``os.replace`` and
read back with ``torch.load(weights_only=True)``. No optimiser state: each task starts a fresh AdamW.

A file that cannot be read back (cut short, garbage, not a checkpoint of this layout) raises
:class:`~delo.config.DamagedFileError` naming it; the runner turns a damaged task file into "retrain from the last
good task" and a damaged ``state.pt`` into exit 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from delo.atomic import atomic_write
from delo.config import ConfigError, DamagedFileError, reader_error

FORMAT_VERSION = 1
CHECKPOINT_DIRNAME = "checkpoints"
STATE_FILE = "state.pt"


class CheckpointMismatchError(ConfigError):
    """A checkpoint folder belongs to a different config or data set; nothing was changed."""


def checkpoint_dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / CHECKPOINT_DIRNAME


def task_file(ckpt_dir: Path, task: int) -> Path:
    """File of task ``task`` (0-based index; the file name is 1-based like the reported ``task``)."""
    return Path(ckpt_dir) / f"task_{task + 1}.pt"


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temp file in the same folder, fsync, then rename over ``path``."""
    atomic_write(path, lambda fh: torch.save(obj, fh), binary=True)


STATE_KEYS = (
    "next_task",
    "num_tasks",
    "rng",
    "results",
    "history",
    "steps_done",
    "elapsed_s",
    "config",
    "config_hash",
    "fingerprint",
)


def _load(path: Path, advice: str) -> dict[str, Any]:
    """torch.load, with any reader failure (truncated zip, garbage pickle, not a dict) as DamagedFileError: a
    checkpoint is only ever written whole, so an unreadable one was damaged after the fact."""
    if path.stat().st_size == 0:
        raise DamagedFileError(path, "empty file", advice)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, ... by failure mode
        raise DamagedFileError(path, f"not a readable checkpoint: {reader_error(exc)}", advice) from None
    if not isinstance(payload, dict):
        raise DamagedFileError(path, f"holds a {type(payload).__name__}, not a checkpoint", advice)
    return payload


def save_task(ckpt_dir: Path, task: int, tensors: dict[str, torch.Tensor]) -> Path:
    """Write one task's trained tensors (detached CPU copies, so the file holds nothing else)."""
    payload = {
        "format": FORMAT_VERSION,
        "task": task,
        "tensors": {name: t.detach().to("cpu").clone() for name, t in tensors.items()},
    }
    path = task_file(ckpt_dir, task)
    atomic_save(payload, path)
    return path


def load_task(ckpt_dir: Path, task: int) -> dict[str, torch.Tensor]:
    """Task ``task``'s tensors; DamagedFileError when the file is absent (state.pt lists it), unreadable or not
    this task's."""
    path = task_file(ckpt_dir, task)
    advice = f"Remove {Path(ckpt_dir)} (or use another output folder) to start the run over"
    if not path.is_file():
        raise DamagedFileError(path, f"missing although {Path(ckpt_dir) / STATE_FILE} lists it", advice)
    payload = _load(path, advice)
    if payload.get("task") != task:
        raise DamagedFileError(path, f"holds task index {payload.get('task')!r}, expected {task}", advice)
    tensors = payload.get("tensors")
    if not isinstance(tensors, dict) or not all(torch.is_tensor(t) for t in tensors.values()):
        raise DamagedFileError(path, "no tensors in it", advice)
    return tensors


def save_state(ckpt_dir: Path, state: dict[str, Any]) -> Path:
    path = Path(ckpt_dir) / STATE_FILE
    atomic_save({"format": FORMAT_VERSION, **state}, path)
    return path


def load_state(ckpt_dir: Path) -> dict[str, Any] | None:
    """The saved run state, or None when the folder holds no checkpoint yet."""
    path = Path(ckpt_dir) / STATE_FILE
    if not path.is_file():
        return None
    advice = (
        f"It is the run's commit point, so nothing can be resumed without it: restore it from a copy, or remove "
        f"{Path(ckpt_dir)} (or use another output folder) to start the run over"
    )
    state = _load(path, advice)
    if state.get("format") != FORMAT_VERSION:
        raise CheckpointMismatchError(
            f"{path}: checkpoint format {state.get('format')!r}, this code reads format {FORMAT_VERSION}"
        )
    absent = [key for key in STATE_KEYS if key not in state]
    if absent:
        raise DamagedFileError(path, f"lacks {', '.join(absent)}", advice)
    return state


def check_compatible(
    state: dict[str, Any], config: dict[str, Any], config_hash: str, fingerprint: str, ckpt_dir: Path
) -> None:
    """Refuse a checkpoint from another config (debug knobs excluded) or another benchmark fingerprint."""
    problems = []
    if state["config_hash"] != config_hash:
        saved = {k: v for k, v in state["config"].items() if k != "debug"}
        now = {k: v for k, v in config.items() if k != "debug"}
        diffs = diff_keys(saved, now)
        shown = ", ".join(f"{k}: {_get(saved, k)!r} -> {_get(now, k)!r}" for k in diffs) or "(hash only)"
        problems.append(f"config differs ({shown})")
    if state["fingerprint"] != fingerprint:
        problems.append(f"data fingerprint differs ({state['fingerprint']} -> {fingerprint})")
    if problems:
        raise CheckpointMismatchError(
            f"{ckpt_dir}: refusing to resume from a checkpoint of a different run: "
            + "; ".join(problems)
            + ". Use another output folder, or remove this one to start over."
        )


def diff_keys(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """Sorted dotted keys whose values differ between two nested dicts (missing on one side counts)."""
    out = []
    for key in sorted(set(a) | set(b)):
        dotted = f"{prefix}{key}"
        va, vb = a.get(key, _MISSING), b.get(key, _MISSING)
        if isinstance(va, dict) and isinstance(vb, dict):
            out.extend(diff_keys(va, vb, dotted + "."))
        elif va != vb:
            out.append(dotted)
    return out


_MISSING = object()


def _get(data: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return "<absent>"
        data = data[part]
    return data
