"""PNG plots of a sweep report (PIL only): the E x r heatmap, AP / FG bars per group, the best trial's matrix."""

from __future__ import annotations

from pathlib import Path

from delo.atomic import atomic_write
from delo.metric_keys import FINAL_AP, FINAL_FG
from delo.sweep.records import TrialRecord, best_trial, fmt_ms, groups, mean_std, metric, split_used
from delo.tblog import colour_ramp


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
            ap, ap_s = mean_std([metric(r, FINAL_AP, split) for r in recs if r.completed])
            fg, fg_s = mean_std([metric(r, FINAL_FG, split) for r in recs if r.completed])
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

    image = image if isinstance(image, Image.Image) else Image.fromarray(image)
    atomic_write(path, lambda fh: image.save(fh, format="PNG"), binary=True)
    return path


def _font():
    from PIL import ImageFont

    return ImageFont.load_default()


def _heatmap_er(records: list[TrialRecord], split: str):
    from PIL import Image, ImageDraw

    cells: dict[tuple[int, int], tuple[float | None, float | None]] = {}
    for recs in groups(records).values():
        key = (recs[0].cfg("model.E"), recs[0].cfg("model.r"))
        cells[key] = mean_std([metric(r, FINAL_AP, split) for r in recs if r.completed])
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
                fill=colour_ramp((m - lo) / (hi - lo) if m is not None and hi > lo else 0.5)
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

    def y(v):
        return top + h - int(h * max(v, 0) / peak)

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
