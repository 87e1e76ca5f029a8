"""Metric formulas on hand-made inputs (protocol.md §6)."""

import math

import numpy as np
import pytest

from delo import metrics

NAN = math.nan

# R[j][i]: score on task i after task j (0-based), None above the diagonal.
R3 = [
    [80.0, None, None],
    [70.0, 90.0, None],
    [60.0, 85.0, 75.0],
]


def test_accuracy():
    assert metrics.accuracy([1, 2, 3, 4], [1, 2, 0, 0]) == 50.0
    assert math.isnan(metrics.accuracy([], []))
    with pytest.raises(ValueError):
        metrics.accuracy([1, 2], [1])


def test_macro_f1_hand_computed():
    target = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]], bool)
    positive = np.array([[1, 1, 0], [0, 1, 0], [0, 1, 0], [1, 0, 0]], bool)
    # label 0: TP 1, FP 1, FN 1 -> 2/4; label 1: TP 2, FP 1, FN 0 -> 4/5;
    # label 2: no positives anywhere -> denominator 0 -> 0, and it still counts.
    expected = 100 * (0.5 + 0.8 + 0.0) / 3
    assert metrics.macro_f1(positive, target) == pytest.approx(expected)


def test_macro_f1_edge_cases():
    none = np.zeros((3, 2), bool)
    assert metrics.macro_f1(none, none) == 0.0  # nothing predicted, nothing true: 0, not 100
    assert metrics.macro_f1(np.ones((2, 2), bool), np.ones((2, 2), bool)) == 100.0
    # all predicted positive, one label never true: that label gets FP only -> 0
    assert metrics.macro_f1(np.ones((2, 2), bool), np.array([[1, 0], [1, 0]], bool)) == 50.0
    assert math.isnan(metrics.macro_f1(np.zeros((0, 2), bool), np.zeros((0, 2), bool)))
    with pytest.raises(ValueError):
        metrics.macro_f1(np.zeros((2, 2), bool), np.zeros((2, 3), bool))


def test_ap_last_bwt():
    assert metrics.average_performance(R3) == pytest.approx((60 + 85 + 75) / 3)
    assert metrics.last(R3) == 75.0
    assert metrics.backward_transfer(R3) == pytest.approx(((60 - 80) + (85 - 90)) / 2)


def test_fg_uses_the_max_over_earlier_rows_not_the_diagonal():
    # Task 0 peaks after task 1 (95), not on the diagonal (80): FG must use 95.
    R = [
        [80.0, None, None],
        [95.0, 90.0, None],
        [60.0, 85.0, 75.0],
    ]
    # i=0: max(80, 95) - 60 = 35; i=1: max(90) - 85 = 5
    assert metrics.forgetting(R) == pytest.approx((35 + 5) / 2)
    # the released code's diagonal-minus-last would give (20 + 5) / 2
    assert metrics.forgetting(R) != pytest.approx(12.5)


def test_fg_can_be_negative_and_excludes_last_row():
    R = [[50.0, None], [60.0, 70.0]]
    assert metrics.forgetting(R) == pytest.approx(-10.0)


def test_seen_metrics_per_row():
    assert metrics.seen_average(R3, 0) == 80.0
    assert metrics.seen_average(R3, 1) == pytest.approx(80.0)
    assert math.isnan(metrics.seen_forgetting(R3, 0))
    assert metrics.seen_forgetting(R3, 1) == pytest.approx(10.0)
    assert math.isnan(metrics.seen_bwt(R3, 0))
    assert metrics.seen_bwt(R3, 1) == pytest.approx(-10.0)
    s = metrics.summarize(R3, upto=1)
    assert s == {
        "ap": pytest.approx(80.0),
        "fg": pytest.approx(10.0),
        "last": 90.0,
        "bwt": pytest.approx(-10.0),
    }


def test_nan_entries_are_left_out():
    # e.g. a per-missing-type matrix where task 1 has no image-missing val samples
    R = [
        [40.0, None, None],
        [30.0, NAN, None],
        [20.0, NAN, 50.0],
    ]
    assert metrics.average_performance(R) == pytest.approx(35.0)
    assert metrics.forgetting(R) == pytest.approx(20.0)  # only task 0 contributes
    assert metrics.backward_transfer(R) == pytest.approx(-20.0)
    all_nan = [[NAN, None], [NAN, NAN]]
    assert math.isnan(metrics.average_performance(all_nan))
    assert math.isnan(metrics.forgetting(all_nan))


def test_empty_matrix_and_json():
    R = metrics.empty_matrix(2)
    assert R == [[None, None], [None, None]]
    R[0][0] = NAN
    R[1][0], R[1][1] = 1 / 3, 2.0
    assert metrics.json_matrix(R) == [[None, None], [0.333333, 2.0]]
