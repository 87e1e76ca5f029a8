"""Continual methods on the frozen ViLT: DeLo (``delo/``) and the comparators (docs/methods.md).

:mod:`.registry` declares every method once; :mod:`.base` is the contract the runner sees. This package imports
nothing at load time, so the config schema can read the registry and the methods' light ``config`` modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from delo.config import RunConfig
    from delo.methods.base import ContinualMethod


def build_method(vilt, cfg: RunConfig, multilabel: bool) -> ContinualMethod:
    """A fresh model of ``cfg.model.method`` around the frozen ``vilt`` (no task begun)."""
    from delo.methods.registry import entry

    return entry(cfg.model.method).model_class().from_config(vilt, cfg, multilabel)


__all__ = ["build_method"]
