"""Sweep reports from an experiment folder: results.csv, results.md in the paper's table layout, PNG plots.

Reads only files (no Ray), so ``launch/summarize.py SWEEP_DIR`` rebuilds everything after the fact
(:mod:`delo.sweep.records` reads the folder, :mod:`delo.sweep.plots` draws).

Final tables use the test split when every completed trial stored test rows (protocol.md §7; they are never used
for selection), else val, and say which. Mean ± the half-width of its 95 % confidence interval over seeds
(Student's t with n − 1 degrees of freedom, scipy); n counts completed trials only.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from delo.atomic import atomic_write_text
from delo.metric_keys import FINAL_AP, FINAL_AP_ORACLE, FINAL_FG, FINAL_KEYS, test_key
from delo.sweep.experiment import RESULTS_CSV, RESULTS_MD, Status, read_saved_spec
from delo.sweep.plots import write_plots
from delo.sweep.records import (
    TrialRecord,
    best_trial,
    collect,
    excludes_zero,
    fmt_ms,
    groups,
    mean_ci,
    metric,
    paired_difference,
    params_of,
    pareto_front,
    split_used,
)

TEST_AP, TEST_FG = test_key(FINAL_AP), test_key(FINAL_FG)
PAPER_NAMES = {
    "delo": "DeLo",
    "delo_lora": "DeLo-LoRA",
    "no_guide": "w/o Cross-Modal Guide",
    "unified_pool": "w/o Modality-Specific Factor Pool",
}
PAPER = {  # method.md §13: UPMC-Food101-CMML, ViLT-B/32, eta = 0.7 both; (AP, FG)
    "components": {
        "delo": (67.42, 9.41),
        "delo_lora": (60.39, 12.08),
        "no_guide": (48.84, 20.13),
        "unified_pool": (56.52, 13.76),
    },
    "rank_factor": {
        (16, 2): (63.78, 11.20),
        (16, 4): (67.42, 9.41),
        (16, 8): (67.11, 10.89),
        (32, 2): (64.53, 13.37),
        (32, 4): (68.03, 8.92),
        (32, 8): (67.92, 9.24),
    },
    "losses": {(False, False): (61.95, 12.37), (True, True): (67.42, 9.41)},
}
METHOD_NAMES = {  # model.method (and DeLo's delo_lora variant) -> the name in Table 2 / the comparators' papers
    "delo": "DeLo",
    "delo_lora": "DeLo-LoRA",
    "rank1_pool": "Rank-1 Expert Pool",
    "mora": "MoRA",
    "moe_lora": "MoE-LoRA",
    "pass_moe": "PASs-MoE",
    "map": "MAP",
    "msp": "MSP",
    "l2p": "L2P",
    "dualprompt": "DualPrompt",
    "rebq": "RebQ",
}
# Table 2, UPMC-Food101-CMML, eta = 70 % both (65 % image / 65 % text present): the food101 profile's setting
PAPER_METHODS = {
    "map": (20.00, 75.95),
    "msp": (19.76, 76.54),
    "l2p": (24.62, 5.66),
    "dualprompt": (40.69, 7.26),
    "rebq": (59.92, 8.56),
    "delo": (67.42, 9.41),
}
PAPER_NOTE = (
    "Paper: UPMC-Food101-CMML, ViLT-B/32, η = 0.7 both (method.md §13); comparable only with the "
    "food101 profile."
)

# ----------------------------------------------------------------------------------------------------------
# Writing


def write_report(exp_dir: str | Path) -> list[Path]:
    """results.csv, results.md and the PNG plots into ``exp_dir``; returns the paths written."""
    exp = Path(exp_dir)
    spec = read_saved_spec(exp)
    records = collect(exp)
    paths = [write_csv(records, exp / RESULTS_CSV)]
    plots = write_plots(records, spec.get("table", GENERIC), exp)
    md = exp / RESULTS_MD
    atomic_write_text(md, markdown(records, spec, [p.name for p in plots]))
    return [*paths, md, *plots]


def write_csv(records: list[TrialRecord], path: Path) -> Path:
    keys = sorted({k for r in records for k in r.overrides if k != "seed"})
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


def markdown(records: list[TrialRecord], spec: dict[str, Any], plots: list[str]) -> str:
    table = spec.get("table", GENERIC)
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
    lines += LAYOUTS.get(table, _table_generic)(records, split)
    lines += _paired_section(records, table, split)
    lines += ["", "## All trials", "", *_table_trials(records)]
    failed = [r for r in records if r.status == Status.ERROR]
    if failed:
        lines += ["", "## Failed trials", ""]
        lines += [f"- `{r.name}` ({r.num_failures} failure(s)): {r.error}" for r in failed]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines).replace("\n\n\n", "\n\n") + "\n"


def _fmt_params(n: int | None) -> str:
    return "–" if n is None else f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


def _ms(recs: list[TrialRecord], key: str, split: str) -> str:
    done = [r for r in recs if r.completed]
    return fmt_ms(*mean_ci([metric(r, key, split) for r in done]))


def _n(recs: list[TrialRecord]) -> str:
    return f"{sum(r.completed for r in recs)}/{len(recs)}"


def _params(recs: list[TrialRecord]) -> tuple[str, str]:
    p = next((r.params for r in recs if r.params), None) or {}
    return _fmt_params(p.get("trainable")), _fmt_params(p.get("total"))


def _paper(ref: tuple[float, float] | None) -> str:
    return f"{ref[0]:.2f} / {ref[1]:.2f}" if ref else "–"


def _table_rank_factor(records, split) -> list[str]:
    out = [
        "## Table 5: number of factors E and rank r",
        "",
        "| E | r | AP ↑ | FG ↓ | trainable | total | n | paper AP / FG |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for recs in sorted(
        groups(records).values(), key=lambda g: (g[0].cfg("model.E", 0), g[0].cfg("model.r", 0))
    ):
        E, r = recs[0].cfg("model.E"), recs[0].cfg("model.r")
        trainable, total = _params(recs)
        out.append(
            f"| {E} | {r} | {_ms(recs, FINAL_AP, split)} | {_ms(recs, FINAL_FG, split)} | {trainable} | "
            f"{total} | {_n(recs)} | {_paper(PAPER['rank_factor'].get((E, r)))} |"
        )
    return out + [
        "",
        "Trainable = the latest task's adapters and head (what its optimiser gets); total = backbone + every task's adapters and heads (delo.methods.delo.params, counted by the runner). "
        + PAPER_NOTE,
    ]


def _table_components(records, split) -> list[str]:
    out = [
        "## Table 4: components",
        "",
        "| Variant | AP ↑ | FG ↓ | n | paper AP / FG |",
        "|---|---|---|---|---|",
    ]
    for recs in groups(records).values():
        v = recs[0].cfg("model.variant", recs[0].variant)
        E, r = recs[0].cfg("model.E"), recs[0].cfg("model.r")
        if recs[0].variant in PAPER_NAMES:  # a spec variant named after a paper row
            name = PAPER_NAMES[v] + (
                f" (E={E}, r={r})" if v == "delo" else f" (r={r})" if v == "delo_lora" else ""
            )
        else:
            name = f"{recs[0].label} ({v})"
        out.append(
            f"| {name} | {_ms(recs, FINAL_AP, split)} | {_ms(recs, FINAL_FG, split)} | {_n(recs)} | "
            f"{_paper(PAPER['components'].get(v) if recs[0].variant in PAPER_NAMES else None)} |"
        )
    return out + ["", PAPER_NOTE]


def method_of(rec: TrialRecord) -> str:
    """The method a trial ran: ``model.method``, with DeLo's static-LoRA ablation as its own row name."""
    method = rec.cfg("model.method", "delo")
    return "delo_lora" if method == "delo" and rec.cfg("model.variant", "delo") == "delo_lora" else method


def _secs(recs: list[TrialRecord], part: str) -> str:
    done = [r.task_seconds[part] for r in recs if r.completed and part in r.task_seconds]
    return f"{sum(done) / len(done):.1f}" if done else "–"


def _table_methods(records, split) -> list[str]:
    out = [
        "## Table 2: methods",
        "",
        "| Method | AP ↑ | FG ↓ | task-aware AP | trainable | total | train s / task | eval s / task | n | "
        "paper AP / FG |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for recs in groups(records).values():
        method = method_of(recs[0])
        trainable, total = _params(recs)
        out.append(
            f"| {METHOD_NAMES.get(method, method)} (`{recs[0].label}`) | {_ms(recs, FINAL_AP, split)} | "
            f"{_ms(recs, FINAL_FG, split)} | {_ms(recs, FINAL_AP_ORACLE, split)} | {trainable} | {total} | "
            f"{_secs(recs, 'train')} | "
            f"{_secs(recs, 'eval')} | {_n(recs)} | {_paper(PAPER_METHODS.get(method))} |"
        )
    return out + [
        "",
        "AP and FG are task-agnostic (the method infers each sample's task); task-aware AP is the same model told "
        "the true task (`*_oracle`), so the gap between the two is the cost of the method's task inference. "
        "Trainable = what the latest task's optimiser gets (adapters or prompts, and the head); total = every "
        "parameter, backbone included. Seconds are wall-clock means over tasks on the machine that ran the trial "
        "(trials share its cores). Paper: Table 2, UPMC-Food101-CMML, ViLT-B/32, η = 70 % both (65 % / 65 %); "
        "comparable only with the food101 profile.",
    ]


def _table_losses(records, split) -> list[str]:
    out = [
        "## Table 6: losses",
        "",
        "| L_cls | L_align (λ1) | L_con (λ2) | AP ↑ | FG ↓ | n | paper AP / FG |",
        "|---|---|---|---|---|---|---|",
    ]
    for recs in groups(records).values():
        l1, l2 = recs[0].cfg("loss.lambda1", 0) or 0, recs[0].cfg("loss.lambda2", 0) or 0

        def mark(x):
            return f"✓ ({x:g})" if x > 0 else ""

        out.append(
            f"| ✓ | {mark(l1)} | {mark(l2)} | {_ms(recs, FINAL_AP, split)} | {_ms(recs, FINAL_FG, split)} "
            f"| {_n(recs)} | {_paper(PAPER['losses'].get((l1 > 0, l2 > 0)))} |"
        )
    return out + [
        "",
        PAPER_NOTE + " The paper's rows with one auxiliary loss (65.15 / 10.85 and 65.88 / 10.74) "
        "need its typeset check marks to assign.",
    ]


def _table_missing(records, split) -> list[str]:
    by: dict[tuple[str, float], list[TrialRecord]] = {}
    for recs in groups(records).values():
        key = (recs[0].cfg("data.missing.type"), recs[0].cfg("data.missing.eta"))
        by.setdefault(key, []).extend(recs)
    etas = sorted({e for _, e in by})
    types = [t for t in ("text", "image", "both") if any(k[0] == t for k in by)]
    out = [
        "## Missing rate η × missing type (AP ↑ / FG ↓)",
        "",
        "| type \\ η | " + " | ".join(f"{e:g}" for e in etas) + " |",
        "|---" * (len(etas) + 1) + "|",
    ]
    for t in types:
        cells = [
            f"{_ms(by[(t, e)], FINAL_AP, split)} / {_ms(by[(t, e)], FINAL_FG, split)}"
            if (t, e) in by
            else "–"
            for e in etas
        ]
        out.append(f"| {t} | " + " | ".join(cells) + " |")
    return out + ["", "`both`: half of the missing samples lack text, half the image (protocol.md §4)."]


def _table_search(records, split) -> list[str]:
    done = sorted((r for r in records if r.completed), key=lambda r: -(r.last.get(FINAL_AP) or -1e9))
    keys = sorted({k for r in records for k in r.overrides if k != "seed"})
    out = [
        "## Search: completed trials by val final_ap",
        "",
        "| rank | trial | " + " | ".join(keys) + " | val AP | val FG | test AP | test FG |",
        "|---" * (len(keys) + 6) + "|",
    ]
    for i, r in enumerate(done[:20], 1):
        vals = " | ".join(_short_value(r.overrides.get(k)) for k in keys)
        out.append(
            f"| {i} | `{r.name}` | {vals} | {_num(r.last.get(FINAL_AP))} | {_num(r.last.get(FINAL_FG))} | "
            f"{_num(r.last.get(TEST_AP))} | {_num(r.last.get(TEST_FG))} |"
        )
    stopped = sum(r.status == Status.STOPPED for r in records)
    best = best_trial(records)
    out += ["", f"{len(done)} completed, {stopped} stopped early by ASHA (told to Optuna as PRUNED)."]
    if best is not None:
        sets = ", ".join(f"{k}={_short_value(v)}" for k, v in best.overrides.items())
        out += [
            "",
            (
                f"**Best (val final_ap):** `{best.name}`: {sets}. val AP {_num(best.last.get(FINAL_AP))}, "
                f"FG {_num(best.last.get(FINAL_FG))}; **test** AP {_num(best.last.get(TEST_AP))}, "
                f"FG {_num(best.last.get(TEST_FG))} (test rows stored with the trial, never used for selection)."
            ),
        ]
    return out


EXCLUDES_ZERO = "†"
"""Marks a paired difference whose 95 % interval excludes 0."""


def reference_group(records: list[TrialRecord], table: str) -> str | None:
    """The label of the row a grid is compared against: the full method for components, DeLo for methods, all losses for losses,
    the paper point (E=16, r=4) for rank_factor; None for other layouts or when the grid lacks that row."""
    for label, recs in groups(records).items():
        first = recs[0]
        if table == "components" and first.variant == "delo" and first.cfg("model.variant", "delo") == "delo":
            return label
        if table == "methods" and method_of(first) == "delo":
            return label
        if table == "losses" and first.variant == "full":
            return label
        if table == "rank_factor" and (first.cfg("model.E"), first.cfg("model.r")) == (16, 4):
            return label
    return None


def _fmt_diff(mean: float | None, half: float | None, n: int) -> str:
    if mean is None:
        return "–"
    text = f"{mean:+.2f} ± {half:.2f}" if half is not None else f"{mean:+.2f}"
    return text + (f" {EXCLUDES_ZERO}" if excludes_zero(mean, half) else "") + f" (n={n})"


def _paired_section(records: list[TrialRecord], table: str, split: str) -> list[str]:
    ref = reference_group(records, table)
    if ref is None:
        return []
    by = groups(records)
    out = [
        "",
        f"## Paired differences vs `{ref}`",
        "",
        f"Per seed, this row's final metric minus `{ref}`'s with the same seed ({split} split); mean ± half-width "
        f"of the 95 % CI of the per-seed differences (Student's t, n − 1 df; n = seeds where both completed). "
        f"{EXCLUDES_ZERO}: the interval excludes 0.",
        "",
        "| row | Δ AP | Δ FG |",
        "|---|---|---|",
    ]
    for label, recs in by.items():
        if label == ref:
            continue
        ap = paired_difference(recs, by[ref], FINAL_AP, split)
        fg = paired_difference(recs, by[ref], FINAL_FG, split)
        out.append(f"| {label} | {_fmt_diff(*ap)} | {_fmt_diff(*fg)} |")
    return out


def _table_pareto(records, split) -> list[str]:
    """The Pareto front of a multi-objective search (val final AP up, trainable parameters down), each front
    trial with its val and test rows, then the usual ranking by val final AP."""
    front = pareto_front(records)
    keys = sorted({k for r in records for k in r.overrides if k != "seed"})
    out = [
        "## Pareto front",
        "",
        "Completed trials that no other completed trial beats on both val final AP (higher) and trainable "
        "parameters per task (fewer: the latest task's adapters and head, counted by the runner); by size. "
        "Chosen on val; the test row is reported, never used for the choice.",
        "",
        "| trial | " + " | ".join(keys) + " | trainable | split | AP ↑ | FG ↓ | Last | BWT |",
        "|---" * (len(keys) + 7) + "|",
    ]
    for r in front:
        first = [f"`{r.name}`", *(_short_value(r.overrides.get(k)) for k in keys), _fmt_params(params_of(r))]
        for row_split in ("val", "test"):
            names = [FINAL_AP, FINAL_FG, "final_last", "final_bwt"]
            if row_split == "test":
                names = [test_key(k) for k in names]
                if r.last.get(names[0]) is None:
                    continue
                first = [""] * len(first)  # the test row sits under its val row
            cells = [*first, row_split, *(_num(r.last.get(k)) for k in names)]
            out.append("| " + " | ".join(cells) + " |")
    if not front:
        out.append("| (no completed trial with a parameter count) |" + " |" * (len(keys) + 6))
    return out + ["", *_table_search(records, split)]


def _table_generic(records, split) -> list[str]:
    out = ["## Results", "", "| trial group | AP ↑ | FG ↓ | n |", "|---|---|---|---|"]
    for label, recs in groups(records).items():
        out.append(f"| {label} | {_ms(recs, FINAL_AP, split)} | {_ms(recs, FINAL_FG, split)} | {_n(recs)} |")
    return out


def _table_trials(records) -> list[str]:
    out = [
        "| trial | status | seed | tasks | val AP | val FG | test AP | test FG | retries |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        out.append(
            f"| `{r.name}` | {r.status} | {r.seed if r.seed is not None else '–'} | {r.tasks_done or '–'} | "
            f"{_num(r.last.get(FINAL_AP))} | {_num(r.last.get(FINAL_FG))} | "
            f"{_num(r.last.get(TEST_AP))} | {_num(r.last.get(TEST_FG))} | {r.num_failures} |"
        )
    return out


def _num(v: Any) -> str:
    return "–" if v is None else f"{v:.2f}" if isinstance(v, (int, float)) else str(v)


def _short_value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


GENERIC = "generic"
LAYOUTS = {
    "rank_factor": _table_rank_factor,
    "components": _table_components,
    "losses": _table_losses,
    "missing": _table_missing,
    "search": _table_search,
    "pareto": _table_pareto,
    "methods": _table_methods,
}
"""A spec's ``table`` -> its results.md layout (paper Tables 5, 4, 6, 2; the missing grid; the search ranking)."""
TABLES = (*LAYOUTS, GENERIC)
"""Every value a spec's ``table`` may take; ``generic`` is one row per trial group."""
