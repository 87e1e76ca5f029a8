"""Data: readers, sessions, missing-modality tables, the synthetic benchmark and batching.

Drivers call :func:`prepare_data` once (synthetic set and every missing table, atomic and locked); trials call
:func:`load_benchmark` (read-only, verifies the tables) and :func:`make_loader` per split.
"""

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
