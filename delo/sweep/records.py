"""Reading a sweep's experiment folder into one record per trial, and aggregating over seeds (no Ray).

Reads only files (:mod:`delo.sweep.experiment` has the folder contract), so a report can be rebuilt after the
fact: per trial folder ``trial.json``, Tune's ``result.json`` (one JSON line per task report) and ``error.txt``,
the runner's ``result.json`` (result matrices, parameter counts); the driver's ``trial_status.yaml``.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from delo.metric_keys import (
    FINAL_AP,
    FINAL_FG_TASK_AWARE,
    PARAMS_TRAINABLE,
    TASK,
    TASK_AWARE,
    TASK_ROUTING,
    current_keys,
    test_key,
)
from delo.sweep.experiment import (
    RUNNER_RESULT,
    TRIAL_INFO,
    TUNE_ERROR,
    TUNE_RESULT,
    Status,
    error_reason,
    read_mapping_file,
    read_status,
)


@dataclass
class TrialRecord:
    name: str
    trial_id: str = ""
    label: str = ""
    variant: str | None = None
    seed: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    status: str = Status.PENDING
    tasks_done: int | None = None
    last: dict[str, Any] = field(default_factory=dict)
    num_failures: int = 0
    error: str | None = None
    params: dict[str, int] | None = None
    matrix: list | None = None
    test_matrix: list | None = None
    # the final row's routing counts (true task × inferred task) per split; None for runs written before them
    routing: dict[str, list[list[int]]] = field(default_factory=dict)
    # mean seconds per task over the reported tasks: {"train": ..., "eval": ...} (empty before the first task)
    task_seconds: dict[str, float] = field(default_factory=dict)
    # the runner's provenance of the trial (delo.provenance; None for trials written before it existed)
    provenance: dict[str, Any] | None = None

    @property
    def completed(self) -> bool:
        return self.status == Status.COMPLETED

    def cfg(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.config
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return self.overrides.get(dotted, default)
            node = node[part]
        return node


# ----------------------------------------------------------------------------------------------------------
# Reading


def _json_lines(path: Path) -> list[dict[str, Any]]:
    rows = []
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a killed driver
                continue
    return rows


def _read_json(path: Path, advice: str) -> dict[str, Any] | None:
    """A JSON file a trial wrote (atomically); None when absent, DamagedFileError when it cannot be read back."""
    return read_mapping_file(path, advice, json=True)


_TRIAL_INFO_ADVICE = (
    "The trial writes it when it starts: restore it from a copy, or delete it (the report then leaves this "
    "trial folder out)"
)
_RUNNER_RESULT_ADVICE = (
    "The run writes it at its end: restore it from a copy, or delete it (the report then lacks this trial's "
    "result matrix and parameter counts; its metrics come from Tune's own files)"
)


def collect(exp_dir: str | Path) -> list[TrialRecord]:
    """One record per trial folder (and per trial the driver knew of but never started)."""
    exp = Path(exp_dir)
    status = read_status(exp).get("trials", {})
    records = []
    for trial_dir in sorted(p for p in exp.iterdir() if p.is_dir() and (p / TRIAL_INFO).is_file()):
        records.append(_record(trial_dir, status.get(trial_dir.name, {})))
    known = {r.name for r in records}
    for name, entry in sorted(status.items()):
        if name not in known:
            records.append(
                TrialRecord(
                    name=name,
                    trial_id=entry.get("trial_id", ""),
                    status=entry.get("status", Status.PENDING),
                    error=entry.get("error"),
                    num_failures=entry.get("num_failures") or 0,
                )
            )
    # Tune numbers trials in creation order, which is the spec's order (variants, axes, seeds).
    return sorted(records, key=lambda r: (r.trial_id or "~", r.name))


def _record(trial_dir: Path, status: dict[str, Any]) -> TrialRecord:
    info = _read_json(trial_dir / TRIAL_INFO, _TRIAL_INFO_ADVICE) or {}
    rec = TrialRecord(
        name=trial_dir.name,
        trial_id=info.get("trial_id", ""),
        label=info.get("label", trial_dir.name),
        variant=info.get("variant"),
        seed=info.get("seed"),
        overrides=info.get("overrides", {}),
        config=info.get("config", {}),
        num_failures=status.get("num_failures") or 0,
    )
    rows = [current_keys(row) for row in _json_lines(trial_dir / TUNE_RESULT)]  # older trials say *_oracle
    if rows:
        rec.last = rows[-1]
        rec.tasks_done = max((r.get(TASK) or 0) for r in rows)
    by_task = {r.get(TASK): r for r in rows if r.get(TASK)}  # a retried task's last report counts
    for part in ("train", "eval"):
        times = [r[f"{part}_time_s"] for r in by_task.values() if r.get(f"{part}_time_s") is not None]
        if times:
            rec.task_seconds[part] = sum(times) / len(times)
    finals = [r for r in rows if FINAL_AP in r]
    if finals:
        rec.last = finals[-1]
        rec.status = Status.COMPLETED
    elif status.get("status"):
        rec.status = status["status"]
    elif (trial_dir / TUNE_ERROR).is_file():
        rec.status = Status.ERROR
    else:
        rec.status = Status.INCOMPLETE
    if rec.status == Status.ERROR:
        rec.error = status.get("error") or error_reason(trial_dir / TUNE_ERROR)
    run = (
        _read_json(trial_dir / info.get("out_dir", trial_dir.name) / RUNNER_RESULT, _RUNNER_RESULT_ADVICE)
        or {}
    )
    rec.params = run.get("params")
    if rec.completed:  # the task-aware read-out's forgetting, beside FG in the tables (FINAL_FG_TASK_AWARE)
        for summary, key in (
            (TASK_AWARE, FINAL_FG_TASK_AWARE),
            (test_key(TASK_AWARE), test_key(FINAL_FG_TASK_AWARE)),
        ):
            fg = (run.get(summary) or {}).get("fg")
            if fg is not None:
                rec.last.setdefault(key, fg)
    rec.matrix = run.get("matrix")
    rec.test_matrix = run.get("test_matrix")
    for split, key in (("val", TASK_ROUTING), ("test", test_key(TASK_ROUTING))):
        if run.get(key):
            rec.routing[split] = run[key]
    rec.provenance = run.get("provenance")
    return rec


# ----------------------------------------------------------------------------------------------------------
# Aggregation


def _present(values: list[float]) -> list[float]:
    """The values that were measured (no None, no nan)."""
    return [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    values = _present(values)
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def mean_ci(values: list[float], level: float = 0.95) -> tuple[float | None, float | None]:
    """(mean, half-width of its ``level`` confidence interval): t_{(1+level)/2, n-1} · s / √n; None below n = 2."""
    values = _present(values)
    mean, std = mean_std(values)
    if std is None:
        return mean, None
    from scipy import stats  # 0.5 s to import; only reports need it

    return mean, float(stats.t.ppf((1 + level) / 2, len(values) - 1)) * std / math.sqrt(len(values))


def fmt_ms(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "–"
    return f"{mean:.2f} ± {std:.2f}" if std is not None else f"{mean:.2f}"


def fmt_num(v: Any) -> str:
    return "–" if v is None else f"{v:.2f}" if isinstance(v, (int, float)) else str(v)


def fmt_params(n: int | None) -> str:
    return "–" if n is None else f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


def short_value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def split_used(records: list[TrialRecord]) -> str:
    done = [r for r in records if r.completed]
    return "test" if done and all(test_key(FINAL_AP) in r.last for r in done) else "val"


def metric(rec: TrialRecord, key: str, split: str) -> float | None:
    return rec.last.get(test_key(key) if split == "test" else key)


def swept_keys(records: list[TrialRecord]) -> list[str]:
    """The run-config keys the trials set (the seed aside), sorted: the varied columns of a table."""
    return sorted({k for r in records for k in r.overrides if k != "seed"})


def groups(records: list[TrialRecord]) -> dict[str, list[TrialRecord]]:
    """Trials by label (variant + axis points), in first-seen order; seeds are the repeats."""
    out: dict[str, list[TrialRecord]] = {}
    for r in records:
        if r.label:
            out.setdefault(r.label, []).append(r)
    return out


def best_trial(records: list[TrialRecord]) -> TrialRecord | None:
    """Best by val final_ap among completed trials (Tune's get_best_result("final_ap", "max"))."""
    done = [r for r in records if r.completed and r.last.get(FINAL_AP) is not None]
    return max(done, key=lambda r: r.last[FINAL_AP]) if done else None


def paired_difference(
    recs: list[TrialRecord], ref: list[TrialRecord], key: str, split: str
) -> tuple[float | None, float | None, int]:
    """Mean and 95 % CI half-width of ``key`` minus the reference's ``key``, paired by seed (each seed shares data
    order and init draws with its reference run, so the per-seed difference removes that variance); n pairs."""
    theirs = {r.seed: metric(r, key, split) for r in ref if r.completed}
    diffs = [
        mine - theirs[r.seed]
        for r in recs
        if r.completed and (mine := metric(r, key, split)) is not None and theirs.get(r.seed) is not None
    ]
    mean, half = mean_ci(diffs)
    return mean, half, len(_present(diffs))


EXCLUDES_ZERO = "†"
"""Marks a difference whose 95 % interval excludes 0 (results.md, results.tex, comparisons, figures)."""


def excludes_zero(mean: float | None, half: float | None) -> bool:
    """Whether the interval mean ± half misses 0 (needs an interval, i.e. at least two pairs)."""
    return mean is not None and half is not None and abs(mean) > half


def pooled_routing(recs: list[TrialRecord], split: str) -> tuple[list[list[int]] | None, int]:
    """The routing counts of ``split`` summed over a group's completed trials (its seeds), and how many trials
    had them; (None, 0) when none had (result files written before the runner stored them)."""
    found = [r.routing[split] for r in recs if r.completed and split in r.routing]
    if not found:
        return None, 0
    total = [[sum(cells) for cells in zip(*rows, strict=True)] for rows in zip(*found, strict=True)]
    return total, len(found)


def params_of(rec: TrialRecord) -> int | None:
    """Trainable parameters per task: the runner's count, else the one the trial reported."""
    count = (rec.params or {}).get("trainable")
    return count if count is not None else rec.last.get(PARAMS_TRAINABLE)


def pareto_front(records: list[TrialRecord]) -> list[TrialRecord]:
    """Completed trials no other completed trial beats on both val final AP (higher) and trainable parameters
    (fewer), by parameter count; val only, since the search chose from val."""
    done = [
        r for r in records if r.completed and r.last.get(FINAL_AP) is not None and params_of(r) is not None
    ]

    def dominated(r: TrialRecord) -> bool:
        ap, n = r.last[FINAL_AP], params_of(r)
        return any(
            o.last[FINAL_AP] >= ap and params_of(o) <= n and (o.last[FINAL_AP] > ap or params_of(o) < n)
            for o in done
        )

    return sorted((r for r in done if not dominated(r)), key=lambda r: (params_of(r), -r.last[FINAL_AP]))
