"""Missing-modality tables (protocol.md §4): built once on the driver, loaded and verified by trials.

Per session s with N_s samples exactly m = floor(N_s * eta) samples miss a modality: all text (code 1) for type
``text``, all image (code 2) for ``image``, and for ``both`` floor(m / 2) image and the rest text. Which
samples is drawn by a generator seeded from a stable hash of (mask seed, dataset, split, session, eta, type),
so a table does not depend on construction order or the training seed. Codes index the session's samples in
the benchmark's order (sorted by id); the header's per-session N and id hash tie the table to that order.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from delo.atomic import atomic_write_text
from delo.data.records import (
    COMPLETE,
    IMAGE_MISSING,
    TEXT_MISSING,
    DataError,
    cache_root,
    ids_digest,
    stable_int,
)

TABLE_FORMAT = "delo-missing-table"
TABLE_VERSION = 1
BOTH_RATIO = 0.5


@dataclass(frozen=True)
class MissingSpec:
    """Which table: one per (dataset, split, eta, type, mask seed)."""

    dataset: str
    split: str
    eta: float
    type: str
    mask_seed: int

    @property
    def filename(self) -> str:
        return f"{self.dataset}_{self.split}_{self.type}_eta{self.eta:g}_seed{self.mask_seed}.json"

    def path(self, root: Path | None = None) -> Path:
        return (root or cache_root()) / "missing" / self.filename


def num_missing(n: int, eta: float) -> int:
    """floor(n * eta), exact for decimal eta (0.29 * 100 is 29, not 28)."""
    return math.floor(n * Fraction(repr(float(eta))))


def session_codes(spec: MissingSpec, session: int, n: int) -> list[int]:
    """Codes of the n samples of one session."""
    m = num_missing(n, spec.eta)
    seed = stable_int(spec.mask_seed, spec.dataset, spec.split, session, repr(float(spec.eta)), spec.type)
    chosen = np.random.default_rng(seed).permutation(n)[:m]
    codes = np.full(n, COMPLETE, dtype=np.int8)
    if spec.type == "text":
        codes[chosen] = TEXT_MISSING
    elif spec.type == "image":
        codes[chosen] = IMAGE_MISSING
    elif spec.type == "both":
        n_image = m // 2
        codes[chosen[:n_image]] = IMAGE_MISSING
        codes[chosen[n_image:]] = TEXT_MISSING
    else:
        raise DataError(f"missing type must be text, image or both, got {spec.type!r}")
    return codes.tolist()


def header(spec: MissingSpec, session_uids: list[list[str]]) -> dict[str, Any]:
    return {
        "format": TABLE_FORMAT,
        "version": TABLE_VERSION,
        "dataset": spec.dataset,
        "split": spec.split,
        "eta": float(spec.eta),
        "type": spec.type,
        "mask_seed": spec.mask_seed,
        "both_ratio": BOTH_RATIO,
        "n_per_session": [len(u) for u in session_uids],
        "ids_hash": ids_digest([f"{s}\t{uid}" for s, uids in enumerate(session_uids) for uid in uids]),
    }


def build_table(spec: MissingSpec, session_uids: list[list[str]]) -> dict[str, Any]:
    codes = [session_codes(spec, s, len(uids)) for s, uids in enumerate(session_uids)]
    return {"header": header(spec, session_uids), "codes": ["".join(map(str, c)) for c in codes]}


def _check(table: Any, spec: MissingSpec, session_uids: list[list[str]], path: Path) -> list[list[int]]:
    """Codes of a valid table; DataError naming the first mismatch otherwise."""
    if not isinstance(table, dict) or not isinstance(table.get("header"), dict):
        raise DataError(f"{path}: not a missing table")
    expected, found = header(spec, session_uids), table["header"]
    wrong = [k for k in expected if found.get(k) != expected[k]]
    if wrong:
        detail = ", ".join(f"{k}: table has {found.get(k)!r}, data gives {expected[k]!r}" for k in wrong[:3])
        raise DataError(
            f"{path}: missing table does not match the data ({detail}); the launchers rebuild it when they start (or delete it)"
        )
    codes = table.get("codes")
    if not isinstance(codes, list) or len(codes) != len(session_uids):
        raise DataError(f"{path}: malformed codes; the launchers rebuild it when they start (or delete it)")
    out = []
    for s, (row, uids) in enumerate(zip(codes, session_uids, strict=False)):
        values = [int(c) for c in row] if isinstance(row, str) and set(row) <= {"0", "1", "2"} else None
        if values is None or values != session_codes(spec, s, len(uids)):
            raise DataError(
                f"{path}: codes of session {s} are corrupt; the launchers rebuild it when they start (or delete it)"
            )
        out.append(values)
    return out


def ensure_table(spec: MissingSpec, session_uids: list[list[str]], root: Path | None = None) -> Path:
    """Driver side: write the table unless a valid one is already there (atomic, under a file lock)."""
    path = spec.path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if path.is_file():
            try:
                _check(json.loads(path.read_text()), spec, session_uids, path)
                return path
            except DataError as exc:  # stale or damaged: the driver rebuilds it, and says so
                print(f"warning: {str(exc).split(';')[0]}; rebuilding it", file=sys.stderr)
            except ValueError as exc:
                print(f"warning: {path}: unreadable missing table ({exc}); rebuilding it", file=sys.stderr)
        atomic_write_text(path, json.dumps(build_table(spec, session_uids), separators=(",", ":")))
    return path


def load_table(spec: MissingSpec, session_uids: list[list[str]], root: Path | None = None) -> list[list[int]]:
    """Trial side: read and verify a table; never builds one."""
    path = spec.path(root)
    if not path.is_file():
        raise DataError(
            f"{path}: missing-modality table not found; run prepare_data(cfg) on the driver first"
        )
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(
            f"{path}: unreadable missing table ({exc}); the launchers rebuild it when they start (or delete it)"
        ) from None
    return _check(table, spec, session_uids, path)
