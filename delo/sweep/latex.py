"""results.tex: the tables of results.md as booktabs LaTeX, for pasting into a paper.

The report's tables are built once, as markdown (``delo.sweep.report``); this module turns each markdown table into
a ``table`` environment: booktabs rules, the mean ± CI cells in math mode, the best value of every column whose
header carries ↑ (highest) or ↓ (lowest) in bold, † kept as a superscript dagger, and a caption naming the table,
the split, the seeds and the interval. The file is a complete document that a stock LaTeX (article + booktabs)
compiles; the tables can be copied out of it as they are.
"""

from __future__ import annotations

import re

LEADING_NUMBER = re.compile(r"^\s*([+-]?\d+(?:\.\d+)?)")
SYMBOLS = {
    "±": r"$\pm$",
    "†": r"$^\dagger$",
    "−": r"$-$",
    "–": "--",
    "×": r"$\times$",
    "↑": r"$\uparrow$",
    "↓": r"$\downarrow$",
    "η": r"$\eta$",
    "λ": r"$\lambda$",
    "≥": r"$\geq$",
    "≤": r"$\leq$",
    "…": r"\ldots{}",
    "Δ": r"$\Delta$",
    "§": r"\S{}",
    "✓": r"$\surd$",
    "β": r"$\beta$",
    "α": r"$\alpha$",
    "·": r"$\cdot$",
    "≈": r"$\approx$",
}
SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
            "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}  # fmt: skip


def escape(text: str) -> str:
    """Plain text -> LaTeX: specials escaped, `code` as \\texttt, the report's symbols as math; any other non-ASCII
    character is refused (a stock LaTeX would stop on it), naming it."""
    out = []
    for i, part in enumerate(text.split("`")):
        body = "".join(SPECIALS.get(ch, ch) for ch in part)
        body = "".join(SYMBOLS.get(ch, ch) for ch in body)
        unknown = sorted({ch for ch in body if ord(ch) > 127})
        if unknown:
            raise ValueError(f"no LaTeX for {unknown} in {text!r}: add it to delo.sweep.latex.SYMBOLS")
        out.append(rf"\texttt{{{body}}}" if i % 2 else body)
    return "".join(out).replace("**", "")


def parse_tables(lines: list[str]) -> list[tuple[str, list[list[str]]]]:
    """Markdown tables in ``lines`` with the nearest heading above each: [(heading, rows)], the header first and
    the ``|---|`` rule dropped."""
    tables: list[tuple[str, list[list[str]]]] = []
    heading, rows = "", []
    for line in [*lines, ""]:
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                rows.append(cells)
        elif rows:
            tables.append((heading, rows))
            rows = []
    return tables


def best_rows(rows: list[list[str]]) -> dict[int, set[int]]:
    """Column -> the body rows holding its best value (by the header's ↑ / ↓; other columns have none)."""
    header, body = rows[0], rows[1:]
    best: dict[int, set[int]] = {}
    for col, name in enumerate(header):
        if "↑" not in name and "↓" not in name:
            continue
        values = {}
        for i, row in enumerate(body):
            match = LEADING_NUMBER.match(row[col]) if col < len(row) else None
            if match:
                values[i] = float(match.group(1))
        if len(values) < 2:
            continue
        target = max(values.values()) if "↑" in name else min(values.values())
        best[col] = {i for i, v in values.items() if v == target}
    return best


def table(heading: str, rows: list[list[str]], note: str) -> str:
    """One booktabs ``table`` environment."""
    best = best_rows(rows)
    width = len(rows[0])
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        rf"\begin{{tabular}}{{l{'r' * (width - 1)}}}",
        r"\toprule",
        " & ".join(escape(c) for c in rows[0]) + r" \\",
        r"\midrule",
    ]
    for i, row in enumerate(rows[1:]):
        cells = [escape(c) for c in row] + [""] * (width - len(row))
        for col, winners in best.items():
            if i in winners:
                cells[col] = rf"\textbf{{{cells[col]}}}"
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{escape(heading)}. {note}}}", r"\end{table}"]
    return "\n".join(lines)


def document(lines: list[str], split: str, seeds: list[int]) -> str:
    """Every markdown table of ``lines`` as a LaTeX table, in a document a stock LaTeX compiles."""
    note = escape(
        f"{split} split, seeds {', '.join(map(str, seeds)) or '–'}; mean ± half-width of the 95 % confidence "
        "interval over seeds (Student's t, n − 1 df); bold: best per column; †: the paired 95 % interval excludes 0."
    )
    body = [table(heading, rows, note) for heading, rows in parse_tables(lines)]
    return "\n".join(
        [
            r"\documentclass{article}",
            r"\usepackage{booktabs}",
            r"\usepackage[utf8]{inputenc}",
            r"\begin{document}",
            "",
            "\n\n".join(body),
            "",
            r"\end{document}",
            "",
        ]
    )


__all__ = ["document", "escape", "parse_tables", "table"]
