"""Evaluation after each task: every seen task, task-agnostic and task-aware, by missing type.

:func:`evaluate_task` runs one task's split once, with both forwards per batch, and keeps per-sample outcomes;
:class:`ResultBook` turns them into the result matrices of protocol.md §6 (R, its task-aware twin, task-key
accuracy and the per-missing-type matrices) and the per-task report keys of ray-tune.md §4. The outcomes of one
task are keyed by the model's read-out (``agnostic``, ``task_aware`` as in ``predict(batch, task_aware=...)``); every
matrix and report key of the task-aware read-out says ``task_aware`` (:data:`delo.metric_keys.TASK_AWARE`).
:func:`format_summary` renders a finished run's ``result.json`` dict as a readable table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from delo import metrics
from delo.metric_keys import (
    AP_SEEN,
    AP_SEEN_TASK_AWARE,
    FINAL_AP_TASK_AWARE,
    FINAL_KEYS,
    TASK_AWARE,
    TASK_ROUTING,
    current_keys,
)
from delo.runtime import autocast, move_batch

AWARE = f"_{TASK_AWARE}"
"""The suffix of a task-aware matrix."""
MATRICES = (
    ("matrix", f"matrix{AWARE}", "key_accuracy")
    + tuple(f"{m}{suffix}" for suffix in ("", AWARE) for m in metrics.MISSING_TYPES)
    + tuple(f"key_accuracy_{m}" for m in metrics.MISSING_TYPES)
    + (TASK_ROUTING,)
)
"""Names of the result matrices kept per split (``complete`` etc. are task-agnostic, ``complete_task_aware``
etc. task-aware, ``key_accuracy_complete`` etc. the task-key accuracy on one missing type). ``task_routing`` is
not indexed (after task j, on task i) but (true task i, inferred task k): the sample counts of the latest row,
each row i rewritten whenever task i is evaluated, so after the last task it is the final row's routing."""


@dataclass
class TaskOutcomes:
    """Per-sample outcomes on one task's split: what the score of any subset needs."""

    missing: np.ndarray  # (N,) 0 complete, 1 text missing, 2 image missing
    key_hit: np.ndarray  # (N,) bool: k* == true task
    task: np.ndarray  # (N,) the task the read-out used: inferred (agnostic) or the true one (task-aware)
    hit: np.ndarray | None = None  # (N,) bool, multi-class: predicted global id == label
    positive: np.ndarray | None = None  # (N, C_i) bool, multi-label: logit > 0 on the task's own labels
    target: np.ndarray | None = None  # (N, C_i) bool

    def score(self, mask: np.ndarray | None = None) -> float:
        """Accuracy (multi-class) or macro-F1 over the task's labels (multi-label) on a subset; nan if empty."""
        if mask is None:
            mask = np.ones_like(self.key_hit, dtype=bool)
        if self.hit is not None:
            return metrics.accuracy(self.hit[mask], np.ones(int(mask.sum()), dtype=bool))
        return metrics.macro_f1(self.positive[mask], self.target[mask])

    def key_accuracy(self, mask: np.ndarray | None = None) -> float:
        """100 · share of samples whose inferred task is the true one, on a subset; nan if empty."""
        hit = self.key_hit if mask is None else self.key_hit[mask]
        return float(100.0 * hit.mean()) if hit.size else math.nan


def _rows(scores: Tensor, batch: dict, cols: Tensor, multilabel: bool) -> dict[str, Tensor]:
    """Per-sample outcome rows of one batch's (B, C_total) scores (-inf outside the predicted task's head)."""
    scores = scores.float()
    if multilabel:
        return {"positive": scores[:, cols] > 0, "target": batch["labels"][:, cols] > 0.5}
    return {"hit": scores.argmax(dim=1) == batch["labels"]}


@dataclass
class Reuse:
    """One task's split after a row of evaluation: what a later row may reuse once the task is frozen."""

    inferred: np.ndarray  # (N,) the task each sample was routed to
    outcomes: dict[str, TaskOutcomes]  # {"agnostic", "task_aware"} of that row


def _collect(parts: dict[str, list[Tensor]]) -> dict[str, np.ndarray]:
    return {k: torch.cat(v).cpu().numpy() for k, v in parts.items()}


@torch.no_grad()
def evaluate_task(
    model, loader, classes: list[int], multilabel: bool, device: torch.device, reuse: Reuse | None = None
) -> tuple[dict[str, TaskOutcomes], Reuse]:
    """Outcomes of one task's loader, ``{"agnostic": ..., "task_aware": ...}``, and what a later row may reuse.

    ``classes`` are the task's global label ids (its own columns for macro-F1). Task-agnostic forwards get the
    batch without its ``task`` field. A sample whose inferred task is the true one gets exactly the task-aware
    prediction (same pools, same head; nothing in the model mixes samples), so the task-aware forward re-runs only
    the samples whose task was inferred wrongly: with working task keys evaluation costs one forward, not two.

    ``reuse`` (the previous row of a task that is frozen since, ``model.frozen_after_task``): the task-aware
    outcomes are final, and a sample's agnostic outcome changes only if the Task-Key Memory now routes it to a
    different task. Only the expert-free key pass runs for every sample; a full forward runs for samples that
    moved to a task other than their own (moving to their own task gives the task-aware outcome).
    """
    cols = torch.as_tensor(classes, device=device)
    agn: dict[str, list[Tensor]] = {}
    ora: dict[str, list[Tensor]] = {}
    inferred: list[Tensor] = []
    start = 0
    for batch in loader:
        batch = move_batch(batch, device)
        n = batch["task"].shape[0]
        blind = {k: v for k, v in batch.items() if k != "task"}
        with autocast(device):
            if reuse is None:
                agnostic = model.predict(blind, task_aware=False)
                aware_scores = agnostic.scores.clone()  # (B, C_total)
                wrong = agnostic.task != batch["task"]  # (B,)
                if wrong.any():
                    rerun = model.predict({k: v[wrong] for k, v in batch.items()}, task_aware=True)
                    aware_scores[wrong] = rerun.scores.to(aware_scores.dtype)
                task = agnostic.task
                agn_rows = _rows(agnostic.scores, batch, cols, multilabel)
                ora_rows = _rows(aware_scores, batch, cols, multilabel)
            else:
                task = model.infer_task(blind)  # (B,)
                span = slice(start, start + n)
                ora_rows = {k: torch.tensor(getattr(reuse.outcomes["task_aware"], k)[span], device=device)
                            for k in _row_names(multilabel)}  # fmt: skip
                agn_rows = {k: torch.tensor(getattr(reuse.outcomes["agnostic"], k)[span], device=device)
                            for k in _row_names(multilabel)}  # fmt: skip
                moved = task != torch.as_tensor(reuse.inferred[span], device=device)  # (B,)
                own = moved & (task == batch["task"])
                for k in agn_rows:
                    agn_rows[k][own] = ora_rows[k][own]
                elsewhere = moved & ~own
                if elsewhere.any():
                    sub = {k: v[elsewhere] for k, v in batch.items()}
                    routed = model.predict({**sub, "task": task[elsewhere]}, task_aware=True)  # as routed
                    for k, v in _rows(routed.scores, sub, cols, multilabel).items():
                        agn_rows[k][elsewhere] = v
        start += n
        inferred.append(task)
        for parts, rows, pred_task in ((agn, agn_rows, task), (ora, ora_rows, batch["task"])):
            parts.setdefault("missing", []).append(batch["missing"])
            parts.setdefault("key_hit", []).append(pred_task == batch["task"])
            parts.setdefault("task", []).append(pred_task)
            for k, v in rows.items():
                parts.setdefault(k, []).append(v)
    if not agn:  # an empty split: every score is nan
        empty = np.zeros(0, dtype=bool)
        cells = np.zeros((0, len(classes)), dtype=bool)
        kw = {"positive": cells, "target": cells} if multilabel else {"hit": empty}
        none = np.zeros(0, dtype=np.int64)
        outcomes = {mode: TaskOutcomes(missing=none, key_hit=empty, task=none, **kw)
                    for mode in ("agnostic", "task_aware")}  # fmt: skip
        return outcomes, Reuse(none, outcomes)
    outcomes = {"agnostic": TaskOutcomes(**_collect(agn)), "task_aware": TaskOutcomes(**_collect(ora))}
    return outcomes, Reuse(torch.cat(inferred).cpu().numpy(), outcomes)


def _row_names(multilabel: bool) -> tuple[str, ...]:
    return ("positive", "target") if multilabel else ("hit",)


class ResultBook:
    """Result matrices of one split, filled row by row; plain data, so it checkpoints as is."""

    def __init__(self, num_tasks: int, data: dict[str, metrics.Matrix] | None = None):
        self.num_tasks = num_tasks
        # a checkpoint written before the task-aware matrices had one name says matrix_oracle etc.
        self.data = current_keys(data) if data else {}
        for name in MATRICES:  # a checkpoint written before task_routing existed lacks it
            self.data.setdefault(name, metrics.empty_matrix(num_tasks))

    def fill(self, j: int, i: int, outcomes: dict[str, TaskOutcomes]) -> None:
        """Entry (after task j, on task i) of every matrix."""
        for mode, suffix in (("agnostic", ""), ("task_aware", AWARE)):
            o = outcomes[mode]
            self.data[f"matrix{suffix}"][j][i] = o.score()
            for code, name in enumerate(metrics.MISSING_TYPES):
                self.data[f"{name}{suffix}"][j][i] = o.score(o.missing == code)
        agnostic = outcomes["agnostic"]
        self.data["key_accuracy"][j][i] = agnostic.key_accuracy()
        for code, name in enumerate(metrics.MISSING_TYPES):
            self.data[f"key_accuracy_{name}"][j][i] = agnostic.key_accuracy(agnostic.missing == code)
        # the latest row's routing of task i: (T,) its samples per inferred task
        routed = np.bincount(agnostic.task, minlength=self.num_tasks)
        self.data[TASK_ROUTING][i] = [int(n) for n in routed]

    def task_metrics(self, j: int, prefix: str = "") -> dict[str, float]:
        """Report keys after task j (ray-tune.md §4), optionally prefixed (``test_``)."""
        R = self.data["matrix"]
        out = {
            AP_SEEN: metrics.seen_average(R, j),
            "acc_new": R[j][j],
            "fg_seen": metrics.seen_forgetting(R, j),
            "bwt_seen": metrics.seen_bwt(R, j),
            "key_acc": metrics.seen_average(self.data["key_accuracy"], j),
            AP_SEEN_TASK_AWARE: metrics.seen_average(self.data[f"matrix{AWARE}"], j),
        }
        for name in metrics.MISSING_TYPES:
            out[f"ap_seen_{name}"] = metrics.seen_average(self.data[name], j)
            out[f"key_acc_{name}"] = metrics.seen_average(self.data[f"key_accuracy_{name}"], j)
        return {prefix + k: v for k, v in out.items()}

    def final_metrics(self, prefix: str = "") -> dict[str, float]:
        """The keys of the last report only."""
        s = metrics.summarize(self.data["matrix"])
        out = {f"final_{k}": v for k, v in s.items()}  # final_ap, final_fg, final_last, final_bwt
        out[FINAL_AP_TASK_AWARE] = metrics.average_performance(self.data[f"matrix{AWARE}"])
        assert tuple(out) == FINAL_KEYS, f"final keys {tuple(out)} differ from delo.metric_keys.FINAL_KEYS"
        return {prefix + k: v for k, v in out.items()}

    def summary(self) -> dict[str, Any]:
        """result.json fields of this split (matrices with nan as null)."""
        task_aware = metrics.summarize(self.data[f"matrix{AWARE}"])
        out: dict[str, Any] = {
            **{k: metrics.json_number(v) for k, v in metrics.summarize(self.data["matrix"]).items()},
            "matrix": metrics.json_matrix(self.data["matrix"]),
            f"matrix{AWARE}": metrics.json_matrix(self.data[f"matrix{AWARE}"]),
            "task_aware": {k: metrics.json_number(v) for k, v in task_aware.items()},
            "task_key_accuracy": metrics.json_matrix(self.data["key_accuracy"]),
            "key_acc": metrics.json_number(metrics.average_performance(self.data["key_accuracy"])),
            "key_acc_by_missing": {
                name: metrics.json_number(metrics.average_performance(self.data[f"key_accuracy_{name}"]))
                for name in metrics.MISSING_TYPES
            },
            "by_missing": {},
            "by_missing_task_aware": {},
        }
        routing = self.data[TASK_ROUTING]
        if all(n is not None for row in routing for n in row):  # every task evaluated in the last row
            out[TASK_ROUTING] = [[int(n) for n in row] for row in routing]
        for name in metrics.MISSING_TYPES:
            for suffix, key in (("", "by_missing"), (AWARE, f"by_missing{AWARE}")):
                R = self.data[name + suffix]
                entry = {k: metrics.json_number(v) for k, v in metrics.summarize(R).items()}
                out[key][name] = {**entry, "matrix": metrics.json_matrix(R)}
        return out


# ----------------------------------------------------------------------------------------------------------
# Human-readable summary


def _fmt(value: float | None, width: int = 6) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:{width}.2f}"


def format_matrix(R: list[list[float | None]], title: str, corner: str = "after\\on") -> str:
    n = len(R)
    head = f"{corner:<9}" + "".join(f"{'T' + str(i + 1):>7}" for i in range(n))
    rows = [f"{'T' + str(j + 1):>8} " + "".join(" " + _fmt(v) for v in row) for j, row in enumerate(R)]
    return "\n".join([title, head, *rows])


def format_summary(result: dict[str, Any]) -> str:
    """Result matrix, AP/FG/Last/BWT, task-key accuracy, by-missing-type AP and parameter counts."""
    lines = []
    for prefix, label in (("", result.get("split", "val")), ("test_", "test")):
        if prefix + "matrix" not in result:
            continue
        lines.append(format_matrix(result[prefix + "matrix"], f"result matrix ({label}, task-agnostic)"))
        lines.append(format_matrix(result[prefix + "task_key_accuracy"], f"task-key accuracy ({label})"))
        if prefix + TASK_ROUTING in result:
            shares = metrics.row_shares(result[prefix + TASK_ROUTING])
            title = f"task routing ({label}): % of each true task's samples (rows) by inferred task (columns)"
            lines.append(format_matrix(shares, title, corner="true\\inf"))
        cols = ("ap", "fg", "last", "bwt")
        lines.append(f"{'':16}{'AP':>8}{'FG':>8}{'Last':>8}{'BWT':>8}")
        for name, row in (
            ("agnostic", {k: result[prefix + k] for k in cols}),
            ("task-aware", result[prefix + TASK_AWARE]),
        ):
            lines.append(f"{label + ' ' + name:16}" + "".join(_fmt(row[k], 8) for k in cols))
        by = result[prefix + "by_missing"]
        lines.append("AP by missing type: " + ", ".join(f"{k} {_fmt(v['ap'], 0)}" for k, v in by.items()))
        by_type = result.get(prefix + "key_acc_by_missing") or {}
        detail = ", ".join(f"{k} {_fmt(v, 0)}" for k, v in by_type.items())
        lines.append(
            f"task-key accuracy (last row mean): {_fmt(result[prefix + 'key_acc'], 0)}"
            + (f" ({detail})" if detail else "")
        )
        lines.append("")
    params = result.get("params") or {}
    if params:
        lines.append(
            f"parameters: trainable per task {params.get('trainable', 0):,}, total {params.get('total', 0):,}"
        )
    if "wall_time_s" in result:
        lines.append(f"wall time: {result['wall_time_s']:.1f} s")
    return "\n".join(lines)
