"""Data: readers, sessions, missing-modality tables, the synthetic benchmark and batching.

Drivers call :func:`prepare_data` once (synthetic set and every missing table, atomic and locked); trials call
:func:`load_benchmark` (read-only, verifies the tables) and :func:`make_loader` per split.

Imports are lazy (as in ``delo/__init__.py``): batching pulls in torch and transformers (5 s), which the sweep
spec loader, reading only session counts from :mod:`delo.data.sessions`, must not pay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "COMPLETE",
    "DUMMY_TEXT",
    "IMAGE_MISSING",
    "SPLITS",
    "TEXT_MISSING",
    "Benchmark",
    "DataError",
    "Sample",
    "SessionPlan",
    "dummy_image",
    "load_benchmark",
    "make_loader",
    "missing_settings",
    "prepare_data",
]

_HOMES = {
    **dict.fromkeys(("load_benchmark", "missing_settings", "prepare_data"), "delo.data.benchmark"),
    **dict.fromkeys(("DUMMY_TEXT", "dummy_image", "make_loader"), "delo.data.collate"),
    **dict.fromkeys(
        (
            "COMPLETE",
            "IMAGE_MISSING",
            "SPLITS",
            "TEXT_MISSING",
            "Benchmark",
            "DataError",
            "Sample",
            "SessionPlan",
        ),
        "delo.data.records",
    ),
}

if TYPE_CHECKING:
    from delo.data.benchmark import load_benchmark, missing_settings, prepare_data
    from delo.data.collate import DUMMY_TEXT, dummy_image, make_loader
    from delo.data.records import (
        COMPLETE,
        IMAGE_MISSING,
        SPLITS,
        TEXT_MISSING,
        Benchmark,
        DataError,
        Sample,
        SessionPlan,
    )


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        import importlib

        value = getattr(importlib.import_module(_HOMES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'delo.data' has no attribute {name!r}")
