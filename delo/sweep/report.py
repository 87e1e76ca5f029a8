"""Sweep reports from an experiment folder: results.csv, results.md in the spec's table layout, PNG plots.

Reads only files (no Ray), so ``launch/summarize.py SWEEP_DIR`` rebuilds everything after the fact
(:mod:`delo.sweep.records` reads the folder, :mod:`delo.sweep.layouts` owns each table layout, :mod:`delo.sweep.plots`
draws).

Final tables use the test split when every completed trial stored test rows (protocol.md §7; they are never used
for selection), else val, and say which. Mean ± the half-width of its 95 % confidence interval over seeds
(Student's t with n − 1 degrees of freedom, scipy); n counts completed trials only.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from delo import provenance
from delo.atomic import atomic_write_text
from delo.metric_keys import FINAL_AP, FINAL_AP_TASK_AWARE, FINAL_FG, FINAL_KEYS, test_key
from delo.metrics import row_shares
from delo.sweep import latex
from delo.sweep.experiment import RESULTS_CSV, RESULTS_MD, RESULTS_TEX, Status, read_launches, read_saved_spec
from delo.sweep.layouts import TableLayout, layout_of
from delo.sweep.plots import write_plots
from delo.sweep.records import (
    EXCLUDES_ZERO,
    TrialRecord,
    collect,
    excludes_zero,
    fmt_num,
    groups,
    paired_difference,
    pooled_routing,
    split_used,
    swept_keys,
)

TEST_AP, TEST_FG = test_key(FINAL_AP), test_key(FINAL_FG)

# ----------------------------------------------------------------------------------------------------------
# Writing


def write_report(exp_dir: str | Path) -> list[Path]:
    """results.csv, results.md and the PNG plots into ``exp_dir``; returns the paths written."""
    exp = Path(exp_dir)
    spec = read_saved_spec(exp)
    records = collect(exp)
    paths = [write_csv(records, exp / RESULTS_CSV)]
    plots = write_plots(records, layout_of(spec.get("table")), exp)
    md = exp / RESULTS_MD
    atomic_write_text(md, markdown(records, spec, [p.name for p in plots], read_launches(exp)))
    tex = exp / RESULTS_TEX
    atomic_write_text(tex, latex_tables(records, spec))
    return [*paths, md, tex, *plots]


def latex_tables(records: list[TrialRecord], spec: dict[str, Any]) -> str:
    """results.tex: the layout's tables and the paired differences of results.md, as booktabs LaTeX."""
    layout = layout_of(spec.get("table"))
    split = split_used(records)
    seeds = sorted({r.seed for r in records if r.seed is not None and r.completed})
    sections = [
        *layout.rows(records, split),
        *_paired_section(records, layout, split),
        *_routing_section(records, layout, split),
    ]
    return latex.document(sections, split, seeds)


def write_csv(records: list[TrialRecord], path: Path) -> Path:
    keys = swept_keys(records)
    metric_keys = [*FINAL_KEYS, *(test_key(k) for k in FINAL_KEYS)]
    header = [
        "trial",
        "trial_id",
        "label",
        "variant",
        "seed",
        "status",
        "tasks_done",
        "num_failures",
        *keys,
        *metric_keys,
        "params_trainable",
        "params_total",
        "error",
    ]
    fh = io.StringIO(newline="")
    w = csv.writer(fh)
    w.writerow(header)
    for r in records:
        w.writerow(
            [
                r.name,
                r.trial_id,
                r.label,
                r.variant or "",
                r.seed if r.seed is not None else "",
                r.status,
                r.tasks_done or "",
                r.num_failures,
                *(_cell(r.overrides.get(k)) for k in keys),
                *(_cell(r.last.get(k)) for k in metric_keys),
                *((r.params or {}).get(k, "") for k in ("trainable", "total")),
                r.error or "",
            ]
        )
    atomic_write_text(path, fh.getvalue())
    return path


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return value


def mixed_code_warning(records: list[TrialRecord]) -> str | None:
    """One line naming the trials of each code version when the trials of this sweep ran different code or
    library versions (e.g. a --resume after a git pull); None when they agree."""
    groups = provenance.mixed({r.name: r.provenance for r in records if r.completed})
    if not groups:
        return None
    by_trial = {r.name: r.provenance or {} for r in records}

    def label(names: list[str]) -> str:
        block = by_trial[names[0]]
        commit = block.get("git_commit")
        code = (
            (commit[:12] + (" dirty" if block.get("git_dirty") else "")) if commit else "no commit recorded"
        )
        libs = ", ".join(f"{k} {v}" for k, v in (block.get("libraries") or {}).items() if v)
        return f"[{code}; {libs or 'no versions recorded'}]: " + ", ".join(f"`{n}`" for n in names)

    return "trials of this sweep ran different code or library versions: " + "; ".join(
        label(g) for g in groups
    )


def markdown(
    records: list[TrialRecord], spec: dict[str, Any], plots: list[str], launches: list[dict] | None = None
) -> str:
    layout = layout_of(spec.get("table"))
    split = split_used(records)
    name = spec.get("name", "sweep")
    counts = {s: sum(r.status == s for r in records) for s in sorted({r.status for r in records})}
    lines = [
        f"# Sweep `{name}`",
        "",
        spec.get("description", "").strip(),
        "",
        f"Trials: {len(records)} ({', '.join(f'{v} {k.lower()}' for k, v in counts.items())}). "
        f"Split in the tables: **{split}**"
        + (
            " (stored test rows; selection reads val only)." if split == "test" else " (no test rows stored)."
        ),
        "Mean ± half-width of the 95 % confidence interval over seeds (Student's t, n − 1 df); n = completed trials.",
        "",
    ]
    if launches:
        first = launches[0]
        # started by the first launch, ended when the last one (a --resume) ended
        lines += ["## Provenance", "", *provenance.describe({**first, "ended": launches[-1].get("ended")})]
        if len(launches) > 1:
            lines.append(f"- resumed {len(launches) - 1} time(s); last: `{' '.join(launches[-1].get('command') or [])}` "
                         f"at {launches[-1].get('started')}")  # fmt: skip
        lines.append("")
    warning = mixed_code_warning(records)
    if warning:
        lines += [f"**Warning:** {warning}.", ""]
    lines += layout.rows(records, split)
    lines += _paired_section(records, layout, split)
    lines += _routing_section(records, layout, split)
    lines += ["", "## All trials", "", *_table_trials(records)]
    failed = [r for r in records if r.status == Status.ERROR]
    if failed:
        lines += ["", "## Failed trials", ""]
        lines += [f"- `{r.name}` ({r.num_failures} failure(s)): {r.error}" for r in failed]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines).replace("\n\n\n", "\n\n") + "\n"


def _fmt_diff(mean: float | None, half: float | None, n: int) -> str:
    if mean is None:
        return "–"
    text = f"{mean:+.2f} ± {half:.2f}" if half is not None else f"{mean:+.2f}"
    return text + (f" {EXCLUDES_ZERO}" if excludes_zero(mean, half) else "") + f" (n={n})"


PAIRED_KEYS = (FINAL_AP, FINAL_AP_TASK_AWARE, FINAL_FG)
"""The paired columns: task-agnostic AP (the method's own task inference), task-aware AP (the task given), FG."""


def _paired_section(records: list[TrialRecord], layout: TableLayout, split: str) -> list[str]:
    """Paired differences against the layout's reference row, then against the floor (the frozen backbone) where
    the grid has one: the first says what each change costs against the method, the second what each row adds
    over no adaptation at all."""
    refs = [layout.reference_group(records), layout.floor_group(records)]
    out: list[str] = []
    for ref in dict.fromkeys(r for r in refs if r is not None):
        out += _paired_against(records, ref, split)
    return out


def _paired_against(records: list[TrialRecord], ref: str, split: str) -> list[str]:
    by = groups(records)
    out = [
        "",
        f"## Paired differences vs `{ref}`",
        "",
        f"Per seed, this row's final metric minus `{ref}`'s with the same seed ({split} split); mean ± half-width "
        f"of the 95 % CI of the per-seed differences (Student's t, n − 1 df; n = seeds where both completed). "
        f"{EXCLUDES_ZERO}: the interval excludes 0.",
        "",
        "| row | Δ AP | Δ task-aware AP | Δ FG |",
        "|---|---|---|---|",
    ]
    for label, recs in by.items():
        if label == ref:
            continue
        cells = [_fmt_diff(*paired_difference(recs, by[ref], key, split)) for key in PAIRED_KEYS]
        out.append(f"| {label} | {' | '.join(cells)} |")
    return out


def _routing_section(records: list[TrialRecord], layout: TableLayout, split: str) -> list[str]:
    """For a layout with the task_routing figure: per row, the share of each true task's samples its task-agnostic
    read-out routed to that task (the figure's diagonal); nothing when no trial stored routing counts."""
    if "task_routing" not in layout.figures:
        return []
    rows = []
    for recs in groups(records).values():
        counts, n = pooled_routing(recs, split)
        if counts is not None:  # trials written before the runner stored routing counts are left out
            rows.append((recs[0], [row[i] for i, row in enumerate(row_shares(counts))], n))
    if not rows:
        return []
    tasks = max(len(own) for _, own, _ in rows)
    out = [
        "",
        "## Task routing",
        "",
        "| Method | own task ↑ | " + " | ".join(f"T{i + 1}" for i in range(tasks)) + " | n |",
        "|---" * (tasks + 3) + "|",
    ]
    for first, own, n in rows:
        present = [v for v in own if v is not None]
        mean = sum(present) / len(present) if present else None
        cells = [fmt_num(v) for v in own] + ["–"] * (tasks - len(own))
        out.append(
            f"| {layout.display(first)} (`{first.label}`) | {fmt_num(mean)} | {' | '.join(cells)} | {n} |"
        )
    return out + [
        "",
        "Share (%) of each true task's samples that the task-agnostic read-out routed to their own task after the "
        f"last task ({split} split): T1, T2, ... are the diagonal of the routing matrix (`task_routing` in each "
        "trial's result.json, drawn in task_routing.png), own task their mean over tasks (for one trial, the last "
        "row of its task-key accuracy and its `key_acc`). A row's counts are summed over its n seeds before "
        "normalising, so a seed weighs by its number of samples.",
    ]


def _table_trials(records) -> list[str]:
    out = [
        "| trial | status | seed | tasks | val AP | val FG | test AP | test FG | retries |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        out.append(
            f"| `{r.name}` | {r.status} | {r.seed if r.seed is not None else '–'} | {r.tasks_done or '–'} | "
            f"{fmt_num(r.last.get(FINAL_AP))} | {fmt_num(r.last.get(FINAL_FG))} | "
            f"{fmt_num(r.last.get(TEST_AP))} | {fmt_num(r.last.get(TEST_FG))} | {r.num_failures} |"
        )
    return out
