"""Process-level runtime: seeds, device and autocast dtype, torch threads, RNG state capture/restore.

Determinism on CPU rests on two rules: data shuffling uses its own generator (seeded per task), and every phase
that consumes the global torch RNG (ViLT draws a random patch order on every forward) starts from a seed derived
from (run seed, phase, task, ...), so a resumed run replays exactly what an uninterrupted run would have done.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
from typing import Any

import numpy as np
import torch


def derive_seed(seed: int, *parts: object) -> int:
    """A stable 63-bit seed from the run seed and any labels (never Python's salted ``hash``)."""
    text = "/".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def available_cpus() -> int:
    """CPUs this process was given: the affinity mask, capped by OMP_NUM_THREADS when set (Ray sets it)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) > 0:
        cpus = min(cpus, int(omp))
    return max(1, cpus)


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op threads to ``threads`` or the available CPUs; returns the number set."""
    n = threads or available_cpus()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def resolve_device(name: str) -> torch.device:
    """`auto` -> cuda when available, else cpu; `cuda` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device=cuda but no CUDA GPU is visible (set train.device=auto or cpu)")
    return torch.device(name)


def autocast(device: torch.device):
    """bf16 autocast on CUDA (no grad scaler needed); plain fp32 on CPU (method.md §10)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def move_batch(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Tensors of a batch dict onto ``device`` (non-blocking where it helps)."""
    if device.type == "cpu":
        return batch
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


# ----------------------------------------------------------------------------------------------------------
# RNG state as plain data (tensors, ints, lists): loadable with torch.load(weights_only=True)


def capture_rng(data_generator: torch.Generator | None = None) -> dict[str, Any]:
    """Python, numpy, torch (CPU and every CUDA device) and optionally a data generator's state."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": _tuples_to_lists(random.getstate()),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    if data_generator is not None:
        state["data"] = data_generator.get_state()
    return state


def restore_rng(state: dict[str, Any], data_generator: torch.Generator | None = None) -> None:
    """Inverse of :func:`capture_rng` (CUDA states are restored only where as many devices are visible)."""
    random.setstate(_lists_to_tuples(state["python"]))
    npst = state["numpy"]
    np.random.set_state(
        (
            npst["kind"],
            npst["keys"].numpy().astype(np.uint32),
            npst["pos"],
            npst["has_gauss"],
            npst["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    if data_generator is not None and "data" in state:
        data_generator.set_state(state["data"])


def _tuples_to_lists(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_tuples_to_lists(v) for v in value]
    return value


def _lists_to_tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_lists_to_tuples(v) for v in value)
    return value
