"""PNG figures of a sweep report, drawn with matplotlib: the E x r heatmap, AP / FG bars per group, AP against
the missing rate per missing type, the Pareto scatter of a multi-objective search, the best trial's matrix and the
task routing per group.

Every figure is drawn on an Agg canvas of its own (no pyplot): a report may be rebuilt inside a long-lived
driver or a test process, where pyplot's global figure registry and backend selection would leak state.
Intervals are 95 % Student-t confidence intervals over seeds (:func:`delo.sweep.records.mean_ci`); titles say
which split the numbers come from and which seeds they pool.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from delo.atomic import atomic_write
from delo.metric_keys import FINAL_AP, FINAL_AP_TASK_AWARE, FINAL_FG
from delo.metrics import row_shares
from delo.sweep.layouts import TableLayout
from delo.sweep.records import (
    EXCLUDES_ZERO,
    TrialRecord,
    best_trial,
    excludes_zero,
    groups,
    mean_ci,
    metric,
    paired_difference,
    params_of,
    pareto_front,
    pooled_routing,
    split_used,
)

DPI = 100
WIDTH_IN = 11.0
"""1,100 px wide at DPI: readable at a glance on a laptop screen and in a README."""
AP_COLOUR, FG_COLOUR, AWARE_COLOUR = "#3b6fb6", "#e08a2c", "#7a9fd4"


def write_plots(records: list[TrialRecord], layout: TableLayout, exp: Path) -> list[Path]:
    """The figures the sweep's table layout names (:data:`FIGURES`), in its order; returns the paths written (none
    without a finished trial)."""
    if not any(r.completed for r in records):
        return []
    split = split_used(records)
    return [path for figure in layout.figures for path in FIGURES[figure](records, split, exp, layout)]


def _optuna_figures(exp: Path) -> list[Path]:
    """Optuna's own matplotlib views of the sweep's study (optuna_study.db): the optimisation history and the
    parameter importances of val final AP. PED-ANOVA importances: Optuna's default fANOVA needs scikit-learn,
    which the project does not install. None when there is no study or too few finished trials."""
    import warnings

    from delo.sweep.experiment import OPTUNA_DB, optuna_storage_url

    if not (exp / OPTUNA_DB).is_file():
        return []
    import matplotlib

    matplotlib.use("Agg")  # Optuna draws through pyplot; never a GUI backend in a driver or a test
    import optuna
    from matplotlib import pyplot as plt
    from optuna.importance import PedAnovaImportanceEvaluator
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as ovm

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    summaries = optuna.get_all_study_summaries(optuna_storage_url(exp), include_best_trial=False)
    if len(summaries) != 1:
        return []
    study = optuna.load_study(study_name=summaries[0].study_name, storage=optuna_storage_url(exp))
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done:
        return []
    multi = len(study.directions) > 1
    target = (lambda t: t.values[0]) if multi else None
    name = "val final AP (%)"
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib views experimental
        views = [
            (
                "optuna_history.png",
                lambda: ovm.plot_optimization_history(study, target=target, target_name=name),
            )
        ]
        if len(done) >= 2:
            views.append(
                (
                    "optuna_importances.png",
                    lambda: ovm.plot_param_importances(
                        study, evaluator=PedAnovaImportanceEvaluator(), target=target, target_name=name
                    ),
                )
            )
        for filename, draw in views:
            try:
                ax = draw()
            except (ValueError, RuntimeError, ZeroDivisionError):  # e.g. importances of a constant objective
                plt.close("all")
                continue
            fig = ax.figure
            fig.set_size_inches(WIDTH_IN, 5.5)
            # Optuna titles some views on the left: one centred title with the study and split instead.
            title = ax.get_title() or ax.get_title(loc="left")
            ax.set_title("", loc="left")
            ax.set_title(f"{title}: study {study.study_name!r}, {len(done)} completed trials (val split)")
            fig.tight_layout()
            out.append(_save(fig, exp / filename))
            plt.close(fig)
    return out


# ----------------------------------------------------------------------------------------------------------
# Helpers


def _figure(height_in: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_IN, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=DPI), binary=True)
    return path


def seeds_text(records: list[TrialRecord]) -> str:
    """'seeds 0, 1, 2' (or 'seed 0') of the completed trials, for titles."""
    seeds = sorted({r.seed for r in records if r.completed and r.seed is not None})
    if not seeds:
        return "no seed recorded"
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(map(str, seeds))


def _stats(recs: list[TrialRecord], key: str, split: str) -> tuple[float | None, float | None, int]:
    values = [metric(r, key, split) for r in recs if r.completed]
    mean, half = mean_ci(values)
    return mean, half, sum(v is not None for v in values)


def _cell_text(mean: float | None, half: float | None, n: int) -> str:
    if mean is None:
        return "–"
    return f"{mean:.2f}\n± {half:.2f}\n(n={n})" if half is not None else f"{mean:.2f}\n(n={n})"


# ----------------------------------------------------------------------------------------------------------
# Figures


def colour_range(
    means: dict[str, float], halves: dict[str, float | None], reference: str | None
) -> tuple[float, float, str]:
    """(vmin, vmax, what the range is) of a figure that encodes means by colour, on a scale that means something:
    centred on the reference row's mean, ± the larger of the widest 95 % CI half-width and the largest distance
    of a mean from the reference, so cells whose intervals overlap the reference's look alike and a real
    difference spans the scale. Without a reference row: the mean of the cells ± the same width."""
    centre = means[reference] if reference in means else sum(means.values()) / len(means)
    widest = max((h for h in halves.values() if h is not None), default=0.0)
    spread = max(abs(m - centre) for m in means.values())
    width = max(widest, spread, 0.5)  # 0.5 AP: a floor for a grid of identical means
    what = f"reference `{reference}`" if reference in means else "mean of the cells"
    return centre - width, centre + width, f"{what} {centre:.2f} ± {width:.2f}"


def _heatmap_er(records: list[TrialRecord], split: str, layout: TableLayout):
    import numpy as np

    cells: dict[tuple[int, int], tuple[float | None, float | None, int]] = {}
    labels: dict[tuple[int, int], str] = {}
    for label, recs in groups(records).items():
        key = (recs[0].cfg("model.E"), recs[0].cfg("model.r"))
        cells[key], labels[key] = _stats(recs, FINAL_AP, split), label
    Es, rs = sorted({k[0] for k in cells}), sorted({k[1] for k in cells})
    grid = np.full((len(Es), len(rs)), np.nan)
    for (E, r), (mean, _, _) in cells.items():
        if mean is not None:
            grid[Es.index(E), rs.index(r)] = mean
    reference = layout.reference_group(records)
    by_label = groups(records)
    means = {labels[k]: c[0] for k, c in cells.items() if c[0] is not None}
    vmin, vmax, what = colour_range(means, {labels[k]: c[1] for k, c in cells.items()}, reference)
    fig = _figure(max(4.0, 1.3 * len(Es) + 2.2))
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="RdBu", vmin=vmin, vmax=vmax, aspect="auto")
    for (E, r), (mean, half, n) in cells.items():
        i, j = Es.index(E), rs.index(r)
        text = _cell_text(mean, half, n)
        if reference is not None and labels[(E, r)] != reference:
            diff, diff_half, _ = paired_difference(
                by_label[labels[(E, r)]], by_label[reference], FINAL_AP, split
            )
            if excludes_zero(diff, diff_half):
                text += f"\n{EXCLUDES_ZERO} vs ref"
        elif labels[(E, r)] == reference:
            text += "\n(reference)"
        strong = mean is not None and abs(mean - (vmin + vmax) / 2) > 0.6 * (vmax - vmin) / 2
        ax.text(j, i, text, ha="center", va="center", fontsize=11,
                color="white" if strong else "black")  # fmt: skip
    ax.set_xticks(range(len(rs)), [str(r) for r in rs])
    ax.set_yticks(range(len(Es)), [str(E) for E in Es])
    ax.set_ylabel("number of factors E")
    ax.set_title(
        f"Final AP (%, {split} split) over E × r: mean ± 95 % CI half-width (Student t), {seeds_text(records)}"
    )
    fig.colorbar(image, ax=ax, label=f"mean final AP (%, {split})")
    ax.set_xlabel(
        "rank r (factors selected per input)\n"
        f"colour scale: {what} (the widest 95 % CI half-width or the farthest mean, whichever is larger)\n"
        f"{EXCLUDES_ZERO}: the paired 95 % interval of the difference to the reference excludes 0",
        fontsize=9,
    )
    return fig


def _bar_chart(records: list[TrialRecord], split: str, top: int | None = None):
    import numpy as np

    rows = []
    for label, recs in groups(records).items():
        ap = _stats(recs, FINAL_AP, split)
        if ap[0] is not None:
            rows.append((label, ap, _stats(recs, FINAL_FG, split), _stats(recs, FINAL_AP_TASK_AWARE, split)))
    if top is not None:
        rows = sorted(rows, key=lambda row: -row[1][0])[:top]
    fig = _figure(5.5)
    ax = fig.add_subplot()
    x = np.arange(len(rows))
    series = [(1, AP_COLOUR, "AP ↑"), (2, FG_COLOUR, "FG ↓")]
    if any(row[3][0] is not None for row in rows):  # the task given: what the adaptation reaches on its own
        series.insert(1, (3, AWARE_COLOUR, "task-aware AP ↑"))
    width = 0.76 / len(series)
    for k, (which, colour, name) in enumerate(series):
        offset = (k - (len(series) - 1) / 2) * width
        means = [row[which][0] or 0.0 for row in rows]
        halves = [row[which][1] or 0.0 for row in rows]
        bars = ax.bar(x + offset, means, width, yerr=halves if any(halves) else None, capsize=5, color=colour,
                      label=name)  # fmt: skip
        ax.bar_label(bars, labels=[f"{m:.1f}" for m in means], padding=2, fontsize=9)
    crowded = len(rows) > 6
    ax.set_xticks(x, [row[0] if crowded else _wrap(row[0]) for row in rows], rotation=25 if crowded else 0,
                  ha="right" if crowded else "center", fontsize=9 if crowded else 10)  # fmt: skip
    ax.set_ylabel(f"final metric (%, {split} split)")
    ax.set_xlabel("trial group (variant / axis point)")
    ax.set_ylim(
        0, max([100.0] + [(r[w][0] or 0) + (r[w][1] or 0) for r in rows for w, _, _ in series]) * 1.08
    )
    ax.legend(loc="upper right")
    note = "error bars: 95 % CI (Student t; none with one seed)"
    shown = "AP, task-aware AP and FG" if len(series) == 3 else "AP and FG"
    ax.set_title(f"Final {shown} per trial group ({split} split), {seeds_text(records)}\n{note}")
    return fig


def _wrap(label: str, width: int = 14) -> str:
    return "\n".join(label[k : k + width] for k in range(0, len(label), width))


def _missing_lines(records: list[TrialRecord], split: str):
    """AP against η, one line per missing type (the layout of the paper's Tables 2 and 3)."""
    by: dict[str, dict[float, list[TrialRecord]]] = {}
    for r in records:
        kind, eta = r.cfg("data.missing.type"), r.cfg("data.missing.eta")
        if kind is not None and eta is not None:
            by.setdefault(kind, {}).setdefault(float(eta), []).append(r)
    fig = _figure(5.5)
    ax = fig.add_subplot()
    for kind in sorted(
        by, key=lambda k: ("text", "image", "both").index(k) if k in ("text", "image", "both") else 9
    ):
        points = []
        for eta, recs in sorted(by[kind].items()):
            mean, half, _ = _stats(recs, FINAL_AP, split)
            if mean is not None:
                points.append((eta, mean, half or 0.0))
        if points:
            xs, ys, es = zip(*points, strict=True)
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=4, label=f"{kind} missing")
    ax.set_xlabel("missing rate η (share of samples missing a modality)")
    ax.set_ylabel(f"final AP (%, {split} split)")
    ax.grid(alpha=0.3)
    ax.legend(title="missing type")
    ax.set_title(f"Final AP against missing rate per missing type ({split} split), {seeds_text(records)}")
    return fig


def _pareto_scatter(records: list[TrialRecord]):
    """Val final AP against trainable parameters per task; the front drawn as a step line (val only: the
    front is what the search chose from)."""
    done = [r for r in records if r.completed and r.last.get(FINAL_AP) is not None and params_of(r)]
    front = pareto_front(records)
    names = {r.name for r in front}
    fig = _figure(6.0)
    ax = fig.add_subplot()
    others = [r for r in done if r.name not in names]
    ax.scatter([params_of(r) for r in others], [r.last[FINAL_AP] for r in others], s=40, color="#999999",
               label="dominated trial")  # fmt: skip
    pts = sorted((params_of(r), r.last[FINAL_AP], r) for r in front)
    if pts:
        ax.step([p[0] for p in pts], [p[1] for p in pts], where="post", color=AP_COLOUR, lw=1.5)
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=70, color=AP_COLOUR, label="Pareto front",
                   zorder=3)  # fmt: skip
        for n, _, r in pts:
            ax.annotate(r.label, (n, r.last[FINAL_AP]), textcoords="offset points", xytext=(6, 6), fontsize=9)
    ax.set_xscale("log")
    ax.margins(x=0.08, y=0.08)  # room for the labels of the outermost points
    ax.set_xlabel("trainable parameters per task (latest task's adapters + head, log scale)")
    ax.set_ylabel("final AP (%, val split)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right")
    ax.set_title(f"Pareto front: val final AP ↑ vs trainable parameters ↓, {len(done)} completed trials, "
                 f"{seeds_text(records)}")  # fmt: skip
    return fig


def _matrix(best: TrialRecord, split: str):
    import numpy as np

    use_test = split == "test" and bool(best.test_matrix)
    R = best.test_matrix if use_test else best.matrix
    n = len(R)
    grid = np.array([[_finite(v) for v in row] for row in R], dtype=float)
    fig = _figure(max(4.5, 0.8 * n + 2.5))
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="Blues", vmin=0, vmax=100, aspect="auto")
    for j in range(n):
        for i in range(n):
            value = _finite(R[j][i]) if i < len(R[j]) else math.nan
            if not math.isnan(value):
                ax.text(i, j, f"{value:.1f}", ha="center", va="center", fontsize=11,
                        color="white" if value > 60 else "black")  # fmt: skip
    ax.set_xticks(range(n), [f"T{i + 1}" for i in range(n)])
    ax.set_yticks(range(n), [f"T{j + 1}" for j in range(n)])
    ax.set_xlabel("evaluated on task")
    ax.set_ylabel("after training task")
    ax.set_title(
        f"Accuracy matrix (%) of the best trial by val final AP: {best.name}\n"
        f"{'test' if use_test else 'val'} split, seed {best.seed}"
    )
    fig.colorbar(image, ax=ax, label="accuracy (%)")
    return fig


def _routing(rows: list[tuple[str, list[list[int]], int]], split: str, seeds: str):
    """One heatmap per row (name, seed-summed counts, trials): % of each true task's samples by inferred task."""
    import numpy as np

    cols = min(4, len(rows))
    lines = math.ceil(len(rows) / cols)
    fig = _figure(2.9 * lines + 1.0)
    axes = []
    for k, (name, counts, n) in enumerate(rows):
        ax = fig.add_subplot(lines, cols, k + 1)
        shares = row_shares(counts)
        grid = np.array([[math.nan if v is None else v for v in row] for row in shares], dtype=float)
        image = ax.imshow(np.ma.masked_invalid(grid), cmap="Blues", vmin=0, vmax=100)
        for i, row in enumerate(shares):  # i: true task, j: inferred task
            for j, value in enumerate(row):
                if value is not None:
                    ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=8,
                            color="white" if value > 60 else "black")  # fmt: skip
        t = len(counts)
        ax.set_xticks(range(t), [f"T{j + 1}" for j in range(t)], fontsize=8)
        ax.set_yticks(range(t), [f"T{i + 1}" for i in range(t)], fontsize=8)
        ax.set_xlabel("inferred task", fontsize=9)
        ax.set_ylabel("true task", fontsize=9)
        ax.set_title(f"{name} (n={n})", fontsize=10)
        axes.append(ax)
    fig.colorbar(image, ax=axes, label="% of the true task's samples", shrink=0.8)
    fig.suptitle(
        f"Task routing after the last task ({split} split): % of each true task's samples (row) by the task the "
        f"task-agnostic read-out inferred (column)\ncounts summed over each panel's n trials ({seeds}), then "
        "normalised per row",
        fontsize=10,
    )
    return fig


def _finite(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else math.nan


# ----------------------------------------------------------------------------------------------------------
# The figures a layout may name


def _png(filename: str, draw: Callable[[list[TrialRecord], str], Any]) -> FigureWriter:
    return lambda records, split, exp, layout: [_save(draw(records, split), exp / filename)]


def _best_matrix(records: list[TrialRecord], split: str, exp: Path, layout: TableLayout) -> list[Path]:
    best = best_trial(records)
    if best is None or not (best.matrix or best.test_matrix):
        return []
    return [_save(_matrix(best, split), exp / "best_matrix.png")]


def _task_routing(records: list[TrialRecord], split: str, exp: Path, layout: TableLayout) -> list[Path]:
    rows = []
    for recs in groups(records).values():
        counts, n = pooled_routing(recs, split)
        if counts is not None:  # trials written before the runner stored routing counts are left out
            rows.append((layout.display(recs[0]), counts, n))
    if not rows:
        return []
    return [_save(_routing(rows, split, seeds_text(records)), exp / "task_routing.png")]


FigureWriter = Callable[[list[TrialRecord], str, Path, TableLayout], list[Path]]
"""(records, split, experiment folder, the sweep's layout) -> the PNGs written."""
FIGURES: dict[str, FigureWriter] = {
    "ap_grid": lambda records, split, exp, layout: [
        _save(_heatmap_er(records, split, layout), exp / "ap_grid.png")
    ],
    "ap_missing": _png("ap_missing.png", _missing_lines),
    "ap_fg": _png("ap_fg.png", _bar_chart),
    "ap_fg_top": _png("ap_fg.png", lambda records, split: _bar_chart(records, split, top=12)),
    "pareto": _png("pareto.png", lambda records, split: _pareto_scatter(records)),
    "best_matrix": _best_matrix,
    "task_routing": _task_routing,
    "optuna": lambda records, split, exp, layout: _optuna_figures(exp),
}
"""A layout's figure names -> how each is drawn: E x r heatmap, AP against η per missing type, AP / FG bars per
group (the top 12 for a search), the Pareto scatter, the best trial's matrix, the routing heatmaps per group (true
task × inferred task), Optuna's own views."""
