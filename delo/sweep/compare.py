"""Two sweeps of the same grid side by side: "did my change move anything?" (``delo-summarize A B``).

Per cell (trial-group label) present in both: each sweep's mean ± 95 % CI, and B − A with its 95 % CI, paired by
seed where both sweeps ran at least two of the same seeds (each seed shares data order and init draws, so the
per-seed difference removes that variance), else Welch's unpaired interval. † marks an interval that excludes 0.
The comparison opens with both sweeps' provenance.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from delo import provenance
from delo.metric_keys import FINAL_AP, FINAL_FG
from delo.sweep.experiment import read_launches
from delo.sweep.records import (
    EXCLUDES_ZERO,
    TrialRecord,
    collect,
    excludes_zero,
    fmt_ms,
    groups,
    mean_ci,
    metric,
    paired_difference,
    split_used,
)


def welch(a: list[float], b: list[float], level: float = 0.95) -> tuple[float | None, float | None]:
    """mean(b) − mean(a) and the half-width of its Welch interval (Welch–Satterthwaite df); None below n = 2."""
    if not a or not b:
        return None, None
    diff = statistics.fmean(b) - statistics.fmean(a)
    if len(a) < 2 or len(b) < 2:
        return diff, None
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if va + vb == 0:
        return diff, 0.0
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    from scipy import stats

    return diff, float(stats.t.ppf((1 + level) / 2, df)) * math.sqrt(va + vb)


def difference(
    b: list[TrialRecord], a: list[TrialRecord], key: str, split: str
) -> tuple[float | None, float | None, str]:
    """(mean, half-width, how): B − A paired by seed over the common seeds when there are two or more, else
    Welch over all completed trials."""
    common = {r.seed for r in a if r.completed} & {r.seed for r in b if r.completed}
    if len(common) >= 2:
        mean, half, n = paired_difference(b, a, key, split)
        return mean, half, f"paired, n={n}"
    values = [
        [v for r in recs if r.completed and (v := metric(r, key, split)) is not None] for recs in (a, b)
    ]
    mean, half = welch(values[0], values[1])
    return mean, half, f"Welch, n={len(values[0])}+{len(values[1])}"


def _fmt(mean: float | None, half: float | None, how: str) -> str:
    if mean is None:
        return "–"
    text = f"{mean:+.2f} ± {half:.2f}" if half is not None else f"{mean:+.2f}"
    return text + (f" {EXCLUDES_ZERO}" if excludes_zero(mean, half) else "") + f" ({how})"


def _cell(recs: list[TrialRecord], key: str, split: str) -> str:
    return fmt_ms(*mean_ci([metric(r, key, split) for r in recs if r.completed]))


def comparison(a_dir: str | Path, b_dir: str | Path) -> str:
    """The markdown comparison of sweep B against sweep A."""
    a_dir, b_dir = Path(a_dir), Path(b_dir)
    a, b = collect(a_dir), collect(b_dir)
    split = "test" if split_used(a) == split_used(b) == "test" else "val"
    ga, gb = groups(a), groups(b)
    lines = [
        f"# `{b_dir.name}` (B) against `{a_dir.name}` (A)",
        "",
        f"Final metrics on the **{split}** split; mean ± half-width of the 95 % CI over seeds. Δ = B − A, paired by "
        f"seed where both ran two or more of the same seeds, else Welch's interval. {EXCLUDES_ZERO}: the interval "
        "excludes 0.",
        "",
    ]
    for name, folder in (("A", a_dir), ("B", b_dir)):
        launches = read_launches(folder)
        lines += [f"## Provenance of {name} (`{folder}`)", ""]
        lines += (
            provenance.describe(launches[0]) if launches else ["- not recorded (written before provenance)"]
        )
        lines.append("")
    lines += [
        "## Cells",
        "",
        "| cell | A AP | B AP | Δ AP | A FG | B FG | Δ FG |",
        "|---|---|---|---|---|---|---|",
    ]
    for label in [g for g in gb if g in ga]:
        row = [f"`{label}`"]
        for key in (FINAL_AP, FINAL_FG):
            row += [_cell(ga[label], key, split), _cell(gb[label], key, split)]
            row.append(_fmt(*difference(gb[label], ga[label], key, split)))
        lines.append("| " + " | ".join(row) + " |")
    only = sorted(set(ga) ^ set(gb))
    if only:
        lines += ["", "In one sweep only: " + ", ".join(f"`{g}`" for g in only) + "."]
    return "\n".join(lines) + "\n"


__all__ = ["comparison", "difference", "welch"]
