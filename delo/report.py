"""Sweep reports from an experiment folder: results.csv, results.md in the paper's table layout, PNG plots.

Reads only files (no Ray), so ``launch/summarize.py SWEEP_DIR`` rebuilds everything after the fact:

- ``sweep_spec.yaml`` (the resolved spec the launcher saved: table layout, name);
- per trial folder: ``trial.json`` (label, variant, seed, overrides, full config; written by the trainable),
  Tune's ``result.json`` (one JSON line per task report), ``error.txt`` (Tune, on failures) and the runner's
  ``<trial folder>/<trial folder>/result.json`` (result matrices, parameter counts);
- ``trial_status.yaml`` (the driver's last view: ``{"total_trials": N, "trials": {folder: {status, error, ...}}}``;
  statuses COMPLETED, STOPPED (by ASHA), ERROR, INTERRUPTED, RUNNING, PENDING).

Final tables use the test split when every completed trial stored test rows (protocol.md §7; they are never used
for selection), else val, and say which. Mean ± the half-width of its 95 % confidence interval over seeds
(Student's t with n − 1 degrees of freedom, scipy); n counts completed trials only.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from scipy import stats

STATUS_FILE = "trial_status.yaml"
TRIAL_INFO = "trial.json"
FINAL_KEYS = ("final_ap", "final_fg", "final_last", "final_bwt", "final_ap_oracle")
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
PAPER_NOTE = (
    "Paper: UPMC-Food101-CMML, ViLT-B/32, η = 0.7 both (method.md §13); comparable only with the "
    "food101 profile."
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
    status: str = "PENDING"
    tasks_done: int | None = None
    last: dict[str, Any] = field(default_factory=dict)
    num_failures: int = 0
    error: str | None = None
    params: dict[str, int] | None = None
    matrix: list | None = None
    test_matrix: list | None = None

    @property
    def completed(self) -> bool:
        return self.status == "COMPLETED"

    def cfg(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.config
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return self.overrides.get(dotted, default)
            node = node[part]
        return node


# ----------------------------------------------------------------------------------------------------------
# Reading


def error_reason(error_file: str | Path | None) -> str:
    """The last line of the latest failure in a Tune error.txt (the exception type and message)."""
    if not error_file or not Path(error_file).is_file():
        return "unknown error (no error.txt)"
    text = Path(error_file).read_text(errors="replace")
    latest = text.rsplit("Failure # ", 1)[-1]
    lines = [ln.strip() for ln in latest.splitlines()[1:] if ln.strip()]
    return lines[-1] if lines else "unknown error"


def _json_lines(path: Path) -> list[dict[str, Any]]:
    rows = []
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a killed driver
                continue
    return rows


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def collect(exp_dir: str | Path) -> list[TrialRecord]:
    """One record per trial folder (and per trial the driver knew of but never started)."""
    exp = Path(exp_dir)
    status = (_read_yaml(exp / STATUS_FILE) or {}).get("trials", {})
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
                    status=entry.get("status", "PENDING"),
                    error=entry.get("error"),
                    num_failures=entry.get("num_failures") or 0,
                )
            )
    # Tune numbers trials in creation order, which is the spec's order (variants, axes, seeds).
    return sorted(records, key=lambda r: (r.trial_id or "~", r.name))


def _record(trial_dir: Path, status: dict[str, Any]) -> TrialRecord:
    info = _read_json(trial_dir / TRIAL_INFO) or {}
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
    rows = _json_lines(trial_dir / "result.json")
    if rows:
        rec.last = rows[-1]
        rec.tasks_done = max((r.get("task") or 0) for r in rows)
    finals = [r for r in rows if "final_ap" in r]
    if finals:
        rec.last = finals[-1]
        rec.status = "COMPLETED"
    elif status.get("status"):
        rec.status = status["status"]
    elif (trial_dir / "error.txt").is_file():
        rec.status = "ERROR"
    else:
        rec.status = "INCOMPLETE"
    if rec.status == "ERROR":
        rec.error = status.get("error") or error_reason(trial_dir / "error.txt")
    run = _read_json(trial_dir / info.get("out_dir", trial_dir.name) / "result.json") or {}
    rec.params = run.get("params")
    rec.matrix = run.get("matrix")
    rec.test_matrix = run.get("test_matrix")
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
    return mean, float(stats.t.ppf((1 + level) / 2, len(values) - 1)) * std / math.sqrt(len(values))


def fmt_ms(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "–"
    return f"{mean:.2f} ± {std:.2f}" if std is not None else f"{mean:.2f}"


def _fmt_params(n: int | None) -> str:
    return "–" if n is None else f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


def split_used(records: list[TrialRecord]) -> str:
    done = [r for r in records if r.completed]
    return "test" if done and all("test_final_ap" in r.last for r in done) else "val"


def metric(rec: TrialRecord, key: str, split: str) -> float | None:
    return rec.last.get(f"test_{key}" if split == "test" else key)


def groups(records: list[TrialRecord]) -> dict[str, list[TrialRecord]]:
    """Trials by label (variant + axis points), in first-seen order; seeds are the repeats."""
    out: dict[str, list[TrialRecord]] = {}
    for r in records:
        if r.label:
            out.setdefault(r.label, []).append(r)
    return out


def best_trial(records: list[TrialRecord]) -> TrialRecord | None:
    """Best by val final_ap among completed trials (Tune's get_best_result("final_ap", "max"))."""
    done = [r for r in records if r.completed and r.last.get("final_ap") is not None]
    return max(done, key=lambda r: r.last["final_ap"]) if done else None


# ----------------------------------------------------------------------------------------------------------
# Writing


def write_report(exp_dir: str | Path) -> list[Path]:
    """results.csv, results.md and the PNG plots into ``exp_dir``; returns the paths written."""
    exp = Path(exp_dir)
    spec = (
        (yaml.safe_load((exp / "sweep_spec.yaml").read_text()) or {}).get("spec", {})
        if (exp / "sweep_spec.yaml").is_file()
        else {}
    )
    records = collect(exp)
    paths = [write_csv(records, exp / "results.csv")]
    plots = write_plots(records, spec.get("table", "generic"), exp)
    md = exp / "results.md"
    md.write_text(markdown(records, spec, [p.name for p in plots]))
    return [*paths, md, *plots]


def write_csv(records: list[TrialRecord], path: Path) -> Path:
    keys = sorted({k for r in records for k in r.overrides if k != "seed"})
    metric_keys = [*FINAL_KEYS, *(f"test_{k}" for k in FINAL_KEYS)]
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
    with path.open("w", newline="") as fh:
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
    return path


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return value


def markdown(records: list[TrialRecord], spec: dict[str, Any], plots: list[str]) -> str:
    table = spec.get("table", "generic")
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
    layout = {
        "rank_factor": _table_rank_factor,
        "components": _table_components,
        "losses": _table_losses,
        "missing": _table_missing,
        "search": _table_search,
    }.get(table, _table_generic)
    lines += layout(records, split)
    lines += ["", "## All trials", "", *_table_trials(records)]
    failed = [r for r in records if r.status == "ERROR"]
    if failed:
        lines += ["", "## Failed trials", ""]
        lines += [f"- `{r.name}` ({r.num_failures} failure(s)): {r.error}" for r in failed]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines).replace("\n\n\n", "\n\n") + "\n"


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
            f"| {E} | {r} | {_ms(recs, 'final_ap', split)} | {_ms(recs, 'final_fg', split)} | {trainable} | "
            f"{total} | {_n(recs)} | {_paper(PAPER['rank_factor'].get((E, r)))} |"
        )
    return out + [
        "",
        "Trainable = the latest task's adapters and head (what its optimiser gets); total = backbone + every task's adapters and heads (delo.params, counted by the runner). "
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
            f"| {name} | {_ms(recs, 'final_ap', split)} | {_ms(recs, 'final_fg', split)} | {_n(recs)} | "
            f"{_paper(PAPER['components'].get(v) if recs[0].variant in PAPER_NAMES else None)} |"
        )
    return out + ["", PAPER_NOTE]


def _table_losses(records, split) -> list[str]:
    out = [
        "## Table 6: losses",
        "",
        "| L_cls | L_align (λ1) | L_con (λ2) | AP ↑ | FG ↓ | n | paper AP / FG |",
        "|---|---|---|---|---|---|---|",
    ]
    for recs in groups(records).values():
        l1, l2 = recs[0].cfg("loss.lambda1", 0) or 0, recs[0].cfg("loss.lambda2", 0) or 0
        mark = lambda x: f"✓ ({x:g})" if x > 0 else ""
        out.append(
            f"| ✓ | {mark(l1)} | {mark(l2)} | {_ms(recs, 'final_ap', split)} | {_ms(recs, 'final_fg', split)} "
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
            f"{_ms(by[(t, e)], 'final_ap', split)} / {_ms(by[(t, e)], 'final_fg', split)}"
            if (t, e) in by
            else "–"
            for e in etas
        ]
        out.append(f"| {t} | " + " | ".join(cells) + " |")
    return out + ["", "`both`: half of the missing samples lack text, half the image (protocol.md §4)."]


def _table_search(records, split) -> list[str]:
    done = sorted((r for r in records if r.completed), key=lambda r: -(r.last.get("final_ap") or -1e9))
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
            f"| {i} | `{r.name}` | {vals} | {_num(r.last.get('final_ap'))} | {_num(r.last.get('final_fg'))} | "
            f"{_num(r.last.get('test_final_ap'))} | {_num(r.last.get('test_final_fg'))} |"
        )
    stopped = sum(r.status == "STOPPED" for r in records)
    best = best_trial(records)
    out += ["", f"{len(done)} completed, {stopped} stopped early by ASHA (told to Optuna as PRUNED)."]
    if best is not None:
        sets = ", ".join(f"{k}={_short_value(v)}" for k, v in best.overrides.items())
        out += [
            "",
            (
                f"**Best (val final_ap):** `{best.name}`: {sets}. val AP {_num(best.last.get('final_ap'))}, "
                f"FG {_num(best.last.get('final_fg'))}; **test** AP {_num(best.last.get('test_final_ap'))}, "
                f"FG {_num(best.last.get('test_final_fg'))} (test rows stored with the trial, never used for selection)."
            ),
        ]
    return out


def _table_generic(records, split) -> list[str]:
    out = ["## Results", "", "| trial group | AP ↑ | FG ↓ | n |", "|---|---|---|---|"]
    for label, recs in groups(records).items():
        out.append(
            f"| {label} | {_ms(recs, 'final_ap', split)} | {_ms(recs, 'final_fg', split)} | {_n(recs)} |"
        )
    return out


def _table_trials(records) -> list[str]:
    out = [
        "| trial | status | seed | tasks | val AP | val FG | test AP | test FG | retries |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        out.append(
            f"| `{r.name}` | {r.status} | {r.seed if r.seed is not None else '–'} | {r.tasks_done or '–'} | "
            f"{_num(r.last.get('final_ap'))} | {_num(r.last.get('final_fg'))} | "
            f"{_num(r.last.get('test_final_ap'))} | {_num(r.last.get('test_final_fg'))} | {r.num_failures} |"
        )
    return out


def _num(v: Any) -> str:
    return "–" if v is None else f"{v:.2f}" if isinstance(v, (int, float)) else str(v)


def _short_value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


# ----------------------------------------------------------------------------------------------------------
# Plots (PIL only)


def write_plots(records: list[TrialRecord], table: str, exp: Path) -> list[Path]:
    out = []
    split = split_used(records)
    done = [r for r in records if r.completed]
    if not done:
        return out
    if table == "rank_factor":
        out.append(_save(_heatmap_er(records, split), exp / "ap_grid.png"))
    else:
        bars = []
        for label, recs in groups(records).items():
            ap, ap_s = mean_std([metric(r, "final_ap", split) for r in recs if r.completed])
            fg, fg_s = mean_std([metric(r, "final_fg", split) for r in recs if r.completed])
            if ap is not None:
                bars.append((label, ap, ap_s or 0.0, fg or 0.0, fg_s or 0.0))
        if table == "search":
            bars = sorted(bars, key=lambda b: -b[1])[:12]
        out.append(_save(_bar_chart(bars, f"AP / FG per trial group ({split})"), exp / "ap_fg.png"))
    best = best_trial(records)
    matrix = (
        best.test_matrix
        if best is not None and split == "test" and best.test_matrix
        else best.matrix
        if best
        else None
    )
    if matrix:
        from delo.tblog import render_matrix

        title = f"best ({best.name}), {split if best.test_matrix and split == 'test' else 'val'}"
        out.append(_save(render_matrix(matrix, title), exp / "best_matrix.png"))
    return out


def _save(image, path: Path) -> Path:
    from PIL import Image

    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(path)
    return path


def _font():
    from PIL import ImageFont

    return ImageFont.load_default()


def _colour(x: float) -> tuple[int, int, int]:
    x = min(max(x, 0.0), 1.0)
    return (int(255 - 200 * x), int(255 - 140 * x), 255)


def _heatmap_er(records: list[TrialRecord], split: str):
    from PIL import Image, ImageDraw

    cells: dict[tuple[int, int], tuple[float | None, float | None]] = {}
    for recs in groups(records).values():
        key = (recs[0].cfg("model.E"), recs[0].cfg("model.r"))
        cells[key] = mean_std([metric(r, "final_ap", split) for r in recs if r.completed])
    Es, rs = sorted({k[0] for k in cells}), sorted({k[1] for k in cells})
    cw, ch, left, top = 110, 44, 60, 50
    img = Image.new("RGB", (left + cw * len(rs) + 10, top + ch * len(Es) + 10), "white")
    d = ImageDraw.Draw(img)
    d.text((left, 6), f"AP ({split}) over E x r, mean ± std over seeds", fill="black", font=_font())
    vals = [m for m, _ in cells.values() if m is not None]
    lo, hi = (min(vals), max(vals)) if vals else (0, 1)
    for j, r in enumerate(rs):
        d.text((left + j * cw + cw // 2 - 10, top - 18), f"r={r}", fill="black", font=_font())
    for i, E in enumerate(Es):
        d.text((6, top + i * ch + ch // 2 - 6), f"E={E}", fill="black", font=_font())
        for j, r in enumerate(rs):
            m, s = cells.get((E, r), (None, None))
            box = (left + j * cw, top + i * ch, left + (j + 1) * cw - 3, top + (i + 1) * ch - 3)
            d.rectangle(
                box,
                fill=_colour((m - lo) / (hi - lo) if m is not None and hi > lo else 0.5)
                if m is not None
                else (230, 230, 230),
            )
            d.text((box[0] + 8, box[1] + ch // 2 - 8), fmt_ms(m, s), fill="black", font=_font())
    return img


def _bar_chart(bars: list[tuple[str, float, float, float, float]], title: str):
    """Per group: an AP bar (blue) and an FG bar (orange), each with a ±std whisker; values 0..100."""
    from PIL import Image, ImageDraw

    gw, h, left, top, bottom = 90, 260, 40, 30, 80
    img = Image.new("RGB", (max(420, left + gw * max(len(bars), 1) + 20), top + h + bottom), "white")
    d = ImageDraw.Draw(img)
    d.text((10, 8), title + "  (blue AP, orange FG, ±std)", fill="black", font=_font())
    peak = max([100.0] + [b[1] + b[2] for b in bars] + [b[3] + b[4] for b in bars])
    y = lambda v: top + h - int(h * max(v, 0) / peak)
    d.line((left, top + h, left + gw * len(bars), top + h), fill="black")
    for i, (label, ap, ap_s, fg, fg_s) in enumerate(bars):
        x = left + i * gw + 10
        for dx, value, std, colour in ((0, ap, ap_s, (70, 110, 200)), (34, fg, fg_s, (230, 140, 50))):
            d.rectangle((x + dx, y(value), x + dx + 28, top + h), fill=colour)
            if std:
                d.line((x + dx + 14, y(value + std), x + dx + 14, y(value - std)), fill="black", width=2)
            d.text((x + dx, y(value) - 14), f"{value:.1f}", fill="black", font=_font())
        for n, chunk in enumerate([label[k : k + 13] for k in range(0, len(label), 13)][:4]):
            d.text((x - 6, top + h + 6 + 14 * n), chunk, fill="black", font=_font())
    return img
