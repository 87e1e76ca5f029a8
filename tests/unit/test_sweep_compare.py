"""Two sweeps of one grid side by side: per cell both means and B − A with a 95 % CI, paired by seed where both
ran the same seeds, Welch's otherwise; exact values on hand-made records."""

import pytest
from test_sweep_report import _trial

from delo import cli
from delo.sweep.compare import comparison, welch

T_2DF = 4.302652729911275  # t_{0.975, 2}


def _sweep(root, name, aps, seeds):
    exp = root / name
    exp.mkdir()
    for i, (seed, ap) in enumerate(zip(seeds, aps, strict=True)):
        _trial(exp, f"E16-r4_s{seed}_{i:05d}", 16, 4, seed, ap)
    return exp


def test_paired_by_seed_exact_interval(tmp_path):
    a = _sweep(tmp_path, "a", [60.0, 62.0, 64.0], [0, 1, 2])
    b = _sweep(
        tmp_path, "b", [61.0, 64.0, 67.0], [0, 1, 2]
    )  # per-seed differences 1, 2, 3 (test: same, -1 each)
    text = comparison(a, b)
    half = T_2DF * 1.0 / 3**0.5  # sd of (1, 2, 3) is 1
    assert f"+2.00 ± {half:.2f} (paired, n=3)" in text
    assert "| `E=16,r=4` | 61.00 ± " in text  # A's test mean: 62 - 1
    assert "**test** split" in text


def test_an_interval_that_excludes_zero_is_marked(tmp_path):
    a = _sweep(tmp_path, "a", [60.0, 62.0, 64.0], [0, 1, 2])
    b = _sweep(tmp_path, "b", [65.0, 67.1, 69.0], [0, 1, 2])
    assert "+5.03 ± 0.14 † (paired, n=3)" in comparison(a, b)


def test_without_common_seeds_welch(tmp_path):
    a = _sweep(tmp_path, "a", [60.0, 62.0], [0, 1])
    b = _sweep(tmp_path, "b", [63.0, 67.0], [5, 6])
    mean, half = welch([59.0, 61.0], [62.0, 66.0])  # test split: ap - 1
    assert mean == pytest.approx(4.0)
    va, vb = 2.0 / 2, 8.0 / 2  # variances over n
    df = (va + vb) ** 2 / (va**2 + vb**2)
    from scipy import stats

    assert half == pytest.approx(stats.t.ppf(0.975, df) * (va + vb) ** 0.5)
    assert f"+4.00 ± {half:.2f} (Welch, n=2+2)" in comparison(a, b)


def test_cli_writes_the_comparison(tmp_path, capsys):
    a = _sweep(tmp_path, "a", [60.0, 62.0, 64.0], [0, 1, 2])
    b = _sweep(tmp_path, "b", [61.0, 64.0, 67.0], [0, 1, 2])
    assert cli.summarize([str(a), str(b)]) == 0
    assert capsys.readouterr().out.strip() == str(b / "comparison.md")
    assert "Provenance of A" in (b / "comparison.md").read_text()
    assert cli.summarize([str(a), str(tmp_path / "nope")]) == 2
