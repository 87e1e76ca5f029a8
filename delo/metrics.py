"""Continual-learning metrics (protocol.md §6): per-task scores and result-matrix summaries.

A result matrix ``R`` is a list of T rows; ``R[j][i]`` is the score on task i after training task j (0-based
here, 1-based in the protocol). Entries above the diagonal are ``None``; an entry computed on an empty subset is
``nan`` and is left out of every mean (per-missing-type matrices). All scores are percentages.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Matrix = list[list[float | None]]

MISSING_TYPES = ("complete", "text_missing", "image_missing")
"""Names of the missing codes 0, 1, 2 (protocol.md §4)."""


# ----------------------------------------------------------------------------------------------------------
# Per-task scores


def accuracy(pred: Sequence[int] | np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """100 · mean(pred == label); nan for no samples."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    if pred.shape != labels.shape:
        raise ValueError(f"accuracy: pred shape {pred.shape} != labels shape {labels.shape}")
    if pred.size == 0:
        return math.nan
    return float(100.0 * np.mean(pred == labels))


def macro_f1(positive: np.ndarray, target: np.ndarray) -> float:
    """Unweighted mean over labels (columns) of 2TP / (2TP + FP + FN), × 100; nan for no samples.

    ``positive`` and ``target`` are (N, C) booleans over the task's own labels only (positive = logit > 0). A label
    whose denominator is 0 scores 0 and still counts (protocol.md §6).
    """
    positive, target = np.asarray(positive, dtype=bool), np.asarray(target, dtype=bool)
    if positive.shape != target.shape or positive.ndim != 2:
        raise ValueError(f"macro_f1: need equal (N, C) shapes, got {positive.shape} and {target.shape}")
    if positive.shape[0] == 0:
        return math.nan
    tp = np.sum(positive & target, axis=0)  # (C,)
    fp = np.sum(positive & ~target, axis=0)
    fn = np.sum(~positive & target, axis=0)
    denom = 2 * tp + fp + fn
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    return float(100.0 * f1.mean())


# ----------------------------------------------------------------------------------------------------------
# Result matrices


def empty_matrix(num_tasks: int) -> Matrix:
    """T × T matrix of ``None`` (rows are filled as tasks end)."""
    return [[None] * num_tasks for _ in range(num_tasks)]


def _finite(values) -> list[float]:
    return [float(v) for v in values if v is not None and not math.isnan(v)]


def _mean(values) -> float:
    kept = _finite(values)
    return sum(kept) / len(kept) if kept else math.nan


def seen_average(R: Matrix, j: int) -> float:
    """ap_seen after task j (0-based): mean_{i <= j} R[j][i], nan entries left out."""
    return _mean(R[j][: j + 1])


def seen_forgetting(R: Matrix, j: int) -> float:
    """FG with T := j + 1 tasks (paper eq. 11): mean over i < j of max_{i <= l < j} (R[l][i] - R[j][i]).

    nan for j = 0 (nothing can have been forgotten yet) and where no term is defined.
    """
    terms = []
    for i in range(j):
        if R[j][i] is None or math.isnan(R[j][i]):
            continue
        drops = _finite(R[m][i] for m in range(i, j))
        if drops:
            terms.append(max(drops) - R[j][i])
    return _mean(terms)


def seen_bwt(R: Matrix, j: int) -> float:
    """BWT with T := j + 1 tasks: mean over i < j of R[j][i] - R[i][i]; nan for j = 0."""
    terms = [R[j][i] - R[i][i] for i in range(j) if _finite([R[j][i]]) and _finite([R[i][i]])]
    return _mean(terms)


def average_performance(R: Matrix) -> float:
    """AP: mean of the last row."""
    return seen_average(R, len(R) - 1)


def forgetting(R: Matrix) -> float:
    """FG (paper eq. 11) after the last task."""
    return seen_forgetting(R, len(R) - 1)


def last(R: Matrix) -> float:
    """Last: R[T][T]."""
    value = R[-1][-1]
    return math.nan if value is None else float(value)


def backward_transfer(R: Matrix) -> float:
    """BWT after the last task."""
    return seen_bwt(R, len(R) - 1)


def summarize(R: Matrix, upto: int | None = None) -> dict[str, float]:
    """ap, fg, last, bwt of the matrix truncated to tasks 0..upto (default: all)."""
    j = len(R) - 1 if upto is None else upto
    cell = R[j][j]
    return {
        "ap": seen_average(R, j),
        "fg": seen_forgetting(R, j),
        "last": math.nan if cell is None else float(cell),
        "bwt": seen_bwt(R, j),
    }


def row_shares(counts: Sequence[Sequence[int]]) -> Matrix:
    """Counts (rows: true task, columns: inferred task) -> 100 · each count / its row's sum; a row without
    samples is all ``None``."""
    out: Matrix = []
    for row in counts:
        total = sum(row)
        out.append([100.0 * n / total if total else None for n in row])
    return out


def json_matrix(R: Matrix) -> list[list[float | None]]:
    """R with nan turned into None (strict JSON), values rounded to 1e-6."""
    return [[json_number(v) for v in row] for row in R]


def json_number(value: float | None) -> float | None:
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    return round(float(value), 6)
