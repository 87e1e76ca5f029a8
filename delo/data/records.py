"""Data records shared by the readers, the session planner, the missing tables and the loader.

A reader turns a dataset folder into :class:`RawRecord` objects (label *names*, no sessions yet); the session
planner turns those into :class:`Sample` objects with global label ids and a task; the missing tables set each
sample's missing code; :class:`Benchmark` holds the result.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from delo.config import ConfigError

SPLITS = ("train", "val", "test")
COMPLETE, TEXT_MISSING, IMAGE_MISSING = 0, 1, 2


class DataError(ConfigError):
    """A dataset, sessions file, synthetic cache or missing table is absent, malformed or inconsistent."""


@dataclass(frozen=True)
class Sample:
    """One sample. ``label`` is a global class id (multi-class) or a sorted tuple of global ids (multi-label)."""

    uid: str
    image: Path
    text: str
    label: int | tuple[int, ...]
    task: int
    """0-based session."""
    missing: int = COMPLETE
    """0 complete, 1 text missing, 2 image missing; the loader substitutes the dummy for the missing one."""
    num_labels: int = 0
    """C_total of a multi-label benchmark (width of the multi-hot labels); 0 for multi-class."""


@dataclass(frozen=True)
class RawRecord:
    """What a reader yields: label names, not yet placed in sessions."""

    uid: str
    image: Path
    text: str
    split: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class SessionPlan:
    """Sessions as lists of label names; global ids are the positions in the flattened list."""

    sessions: tuple[tuple[str, ...], ...]
    assign: str = "rarest"
    """Multi-label only: rarest, first or random."""
    samples: tuple[tuple[str, int], ...] = ()
    """Multi-label only: explicit (uid, session) assignments."""

    @property
    def label_names(self) -> list[str]:
        return [name for session in self.sessions for name in session]

    @property
    def task_classes(self) -> list[list[int]]:
        out, offset = [], 0
        for session in self.sessions:
            out.append(list(range(offset, offset + len(session))))
            offset += len(session)
        return out

    def global_ids(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.label_names)}

    def session_of(self) -> dict[str, int]:
        return {name: t for t, session in enumerate(self.sessions) for name in session}


@dataclass
class Benchmark:
    """A continual benchmark: per-task splits with missing codes applied, label layout and a fingerprint."""

    name: str
    multilabel: bool
    task_classes: list[list[int]]
    """Global label ids per task (contiguous: task k owns [offset_k, offset_k + C_k))."""
    label_names: list[str]
    """By global id."""
    fingerprint: str
    """Hash of the ordered sample ids, the missing tables and (synthetic) the content hash."""
    samples: dict[tuple[int, str], list[Sample]] = field(repr=False, default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    """Counts: samples per task and split, skipped or dropped records, the tables used."""

    @property
    def num_tasks(self) -> int:
        return len(self.task_classes)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def split(self, task: int, split: str) -> list[Sample]:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if not 0 <= task < self.num_tasks:
            raise IndexError(f"task {task} out of range: the benchmark has {self.num_tasks} tasks")
        return list(self.samples[(task, split)])


def stable_digest(*parts: Any) -> str:
    """Hex sha256 of a JSON rendering of ``parts``: the same on every run and platform (unlike hash())."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def stable_int(*parts: Any) -> int:
    """A 64-bit seed from ``parts`` (see :func:`stable_digest`)."""
    return int(stable_digest(*parts)[:16], 16)


def ids_digest(uids: list[str]) -> str:
    return hashlib.sha256("\n".join(uids).encode()).hexdigest()


def read_json(path: Path, what: str) -> Any:
    """Parsed JSON, or a DataError naming the file and what it should have been."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable {what}: {exc}") from None


def with_missing(sample: Sample, code: int) -> Sample:
    return replace(sample, missing=code)


def cache_root() -> Path:
    """Synthetic data and missing tables live here: ``$DELO_CACHE``, default ``~/.cache/delo``."""
    return Path(os.environ.get("DELO_CACHE") or Path.home() / ".cache" / "delo").expanduser()
