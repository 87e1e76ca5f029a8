"""Figures that do not exaggerate: a mean encoded by colour is coloured on the reference ± a width that means
something (the widest interval or the largest real distance), stated on the colour bar, and cells whose paired
difference to the reference excludes 0 are marked. Values are read back from the matplotlib figure."""

import pytest
from test_sweep_report import _trial

from delo.sweep.layouts import layout_of
from delo.sweep.plots import _heatmap_er, colour_range
from delo.sweep.records import collect


def test_colour_range_is_reference_plus_minus_the_widest_interval():
    means = {"E=16,r=4": 70.0, "E=16,r=8": 70.6, "E=32,r=8": 69.9}
    halves = {"E=16,r=4": 1.2, "E=16,r=8": 2.5, "E=32,r=8": 0.8}
    lo, hi, what = colour_range(means, halves, "E=16,r=4")
    assert (lo, hi) == (pytest.approx(67.5), pytest.approx(72.5))
    assert what == "reference `E=16,r=4` 70.00 ± 2.50"


def test_a_real_distance_wider_than_every_interval_sets_the_range():
    lo, hi, _ = colour_range({"ref": 70.0, "far": 60.0}, {"ref": 1.0, "far": 1.0}, "ref")
    assert (lo, hi) == (pytest.approx(60.0), pytest.approx(80.0))


def test_without_a_reference_the_cells_mean_is_the_centre():
    lo, hi, what = colour_range({"a": 70.0, "b": 72.0}, {"a": None, "b": None}, None)
    assert (lo, hi, what) == (pytest.approx(70.0), pytest.approx(72.0), "mean of the cells 71.00 ± 1.00")


def test_heatmap_colours_and_marks_read_back(tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    n = 0
    for E, r, aps in ((16, 4, [70.0, 71.0, 72.0]), (16, 8, [71.0, 70.5, 72.2]), (32, 8, [60.0, 61.0, 62.5])):
        for seed, ap in enumerate(aps):
            _trial(exp, f"E{E}-r{r}_s{seed}_{n:05d}", E, r, seed, ap)
            n += 1
    records = collect(exp)
    fig = _heatmap_er(records, "val", layout_of("rank_factor"))
    ax = fig.axes[0]
    lo, hi = ax.images[0].get_clim()
    width = 71.0 - (60.0 + 61.0 + 62.5) / 3  # ref mean 71, the farthest mean 61.17: wider than every interval
    assert (lo, hi) == (pytest.approx(71.0 - width), pytest.approx(71.0 + width))
    texts = {t.get_text().split("\n")[0]: t.get_text() for t in ax.texts if "\n" in t.get_text()}
    assert "(reference)" in texts["71.00"]
    assert "† vs ref" in texts["61.17"]  # -10, -10, -9.5 per seed: the paired interval excludes 0
    assert "†" not in texts["71.23"]  # +1.0, -0.5, +0.2 per seed: it does not
    assert f"colour scale: reference `E=16,r=4` 71.00 ± {width:.2f}" in ax.get_xlabel()
