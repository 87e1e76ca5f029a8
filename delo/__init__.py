"""DeLo for continual missing-modality learning, and the machinery to run, tune and ablate it.

Public surface: :func:`load_config`, :func:`build_model`, :func:`run_continual`. Imports are lazy, so
``import delo`` stays cheap (no torch, transformers or Ray until a function is used); nothing here imports Ray.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

# OpenMP threads that spin while waiting turn a busy or shared machine (two trials on two cores, a driver
# beside them) into a crawl: measured 1.7 vs 114 samples/s for the same 2-thread run. Passive waiting costs
# nothing measurable when the cores are free. It must be set before torch loads OpenMP, hence here.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__all__ = ["build_model", "load_config", "run_continual"]

_HOMES = {"load_config": "delo.config", "build_model": "delo.train", "run_continual": "delo.train"}

if TYPE_CHECKING:
    from delo.config import load_config
    from delo.train import build_model, run_continual


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        import importlib

        value = getattr(importlib.import_module(_HOMES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'delo' has no attribute {name!r}")
