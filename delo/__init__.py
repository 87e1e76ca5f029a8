"""DeLo for continual missing-modality learning, and the machinery to run, tune and ablate it.

Public surface: :func:`load_config`, :func:`build_model`, :func:`run_continual`. Imports are lazy, so
``import delo`` stays cheap (no torch, transformers or Ray until a function is used); nothing here imports Ray.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
