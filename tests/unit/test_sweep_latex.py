"""results.tex: every results table as booktabs LaTeX with the best per column in bold, † kept, and a caption that
names split, seeds and interval; compiled where a TeX engine is installed."""

import shutil
import subprocess

import pytest
from test_sweep_report import _exp

from delo.sweep import latex
from delo.sweep.report import write_report

MD = [
    "## Components",
    "",
    "| variant | AP ↑ | FG ↓ | n |",
    "|---|---|---|---|",
    "| `delo` | 70.00 ± 1.00 | 9.00 ± 0.50 | 3 |",
    "| `no_guide` | 61.50 ± 2.00 | 12.00 ± 1.00 | 3 |",
    "| `frozen` | 58.25 ± 0.40 | 9.00 ± 0.10 | 3 |",
    "",
    "## Paired differences vs `delo`",
    "",
    "| row | Δ AP | Δ FG |",
    "|---|---|---|",
    "| no_guide | -8.50 ± 1.20 † (n=3) | +3.00 ± 4.00 (n=3) |",
]


def test_tables_headings_and_best_per_column():
    tables = latex.parse_tables(MD)
    assert [h for h, _ in tables] == ["Components", "Paired differences vs `delo`"]
    assert tables[0][1][0] == ["variant", "AP ↑", "FG ↓", "n"] and len(tables[0][1]) == 4
    assert latex.best_rows(tables[0][1]) == {1: {0}, 2: {0, 2}}  # AP: the highest; FG: both lowest (a tie)
    assert latex.best_rows(tables[1][1]) == {}  # no ↑ / ↓: nothing is "best"


def test_cells_are_escaped_and_bold_where_best():
    tex = latex.document(MD, "test", [0, 1, 2])
    assert r"\textbf{70.00 $\pm$ 1.00}" in tex
    assert r"\texttt{no\_guide} & 61.50 $\pm$ 2.00 & 12.00 $\pm$ 1.00 & 3 \\" in tex
    assert r"\textbf{9.00 $\pm$ 0.10}" in tex and r"\textbf{9.00 $\pm$ 0.50}" in tex
    assert r"-8.50 $\pm$ 1.20 $^\dagger$ (n=3)" in tex
    assert r"variant & AP $\uparrow$ & FG $\downarrow$ & n \\" in tex
    assert tex.count(r"\begin{table}") == 2 and tex.count(r"\toprule") == 2 and tex.count(r"\bottomrule") == 2
    assert "test split, seeds 0, 1, 2; mean $\\pm$ half-width of the 95 \\% confidence interval" in tex
    assert tex.startswith("\\documentclass{article}\n\\usepackage{booktabs}") and tex.rstrip().endswith(
        r"\end{document}"
    )


def test_every_report_writes_results_tex(tmp_path):
    exp = _exp(tmp_path, table="rank_factor")
    write_report(exp)
    tex = (exp / "results.tex").read_text()
    assert r"\begin{tabular}" in tex and "seeds 0, 1" in tex


@pytest.mark.skipif(
    shutil.which("pdflatex") is None, reason="no TeX engine installed; the structure is tested above"
)
def test_results_tex_compiles(tmp_path):
    (tmp_path / "results.tex").write_text(latex.document(MD, "val", [0, 1]))
    done = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "results.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:]
    assert (tmp_path / "results.pdf").stat().st_size > 0
