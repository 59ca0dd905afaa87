"""Accuracy before labels: calibration, the window estimate, its alert rule, and the
covariate-shift scenario on which the estimate foresees the fall (pure numpy)."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest

from producers.scenarios import generate
from streams.alert_rules import AlertBook
from streams.estimate import (
    Calibration,
    SegmentSums,
    WindowEstimate,
    confidence_of,
    estimate,
    estimate_from_sums,
    fit_calibration,
    merge_small_blocks,
    pool_adjacent_violators,
    segment_sums,
)
from streams.estimate_alerts import ESTIMATE_FALSE_ALARM_RATE, estimated_accuracy_below_threshold
from streams.reference import build_reference
from streams.window_estimates import estimate_columns, estimates_from_rows

SLO = 0.85


def test_pool_adjacent_violators_exact_blocks():
    blocks = pool_adjacent_violators([0.2, 0.6, 0.4, 0.9, 0.1, 1.0], [1, 1, 1, 2, 2, 1])
    # 0.6 and 0.4 pool to 0.5; 0.9 (weight 2) and 0.1 (weight 2) pool to 0.5, which equals the block
    # before it, so the two pool into one block of weight 6 at 0.5.
    assert blocks == [(0, 0, 0.2, 1.0), (1, 4, 0.5, 6.0), (5, 5, 1.0, 1.0)]


def test_fit_calibration_pools_equal_confidences_and_is_increasing():
    cal = fit_calibration([0.55, 0.55, 0.6, 0.7, 0.7, 0.9], [True, False, False, True, True, True], min_rows=1)
    assert cal.knots.tolist() == pytest.approx([(0.55 * 2 + 0.6) / 3, (0.7 * 2 + 0.9) / 3])
    assert cal.accuracy.tolist() == [1 / 3, 1.0]
    assert cal.rows.tolist() == [3, 3]


def test_small_blocks_are_merged_into_their_smaller_neighbour():
    blocks = [(0, 0, 0.0, 2.0), (1, 3, 0.5, 100.0), (4, 4, 0.7, 10.0), (5, 6, 0.9, 200.0)]
    merged = merge_small_blocks(blocks, 30)
    # first the 2-row block joins its only neighbour (0-3, 102 rows); then the 10-row block joins
    # the smaller of its neighbours, that one (102 < 200 rows)
    assert [(a, b, w) for a, b, _, w in merged] == [(0, 4, 112.0), (5, 6, 200.0)]
    assert [m for *_, m, _ in merged] == pytest.approx([(50 + 7) / 112, 0.9])


def test_no_calibration_without_labeled_rows():
    assert fit_calibration([], []) is None
    assert build_reference([{"x": 1.0, "score": 0.7, "prediction": 1}] * 10, bins=2).calibration is None


def test_reference_calibration_from_its_labeled_scored_rows():
    rows = [{"x": 1.0, "score": s, "prediction": int(s >= 0.5), "label": label}
            for s, label in [(0.9, 1), (0.8, 1), (0.3, 0), (0.2, 1)] * 10]
    cal = build_reference(rows, bins=2).calibration
    # confidence 0.7: 10 correct; 0.8: 10 correct, 10 wrong (score 0.2, label 1); 0.9: 10 correct.
    # PAV pools 0.7 and 0.8 (1.0 > 0.5): 20/30; the block of 0.9 (10 rows < 30) is merged into it.
    assert cal.knots.tolist() == pytest.approx([0.8]) and cal.accuracy.tolist() == [0.75]
    assert cal.rows.tolist() == [40]
    assert confidence_of(0.2) == 0.8 and confidence_of(None, {"a": 0.1, "b": 0.6}) == 0.6


def test_estimate_is_the_mean_calibrated_probability_and_its_variance():
    cal = Calibration(np.array([0.6, 0.75, 0.95]), np.array([0.55, 0.8, 0.97]), np.array([200, 300, 500]))
    rng = np.random.default_rng(3)
    c = rng.uniform(0.5, 1.0, 1000)
    e = estimate(cal, c)
    p = np.interp(c, cal.knots, cal.accuracy)
    assert e.accuracy == pytest.approx(p.mean(), abs=1e-12)
    # the calibration's share: the predictions' weight on each knot (linear interpolation weights)
    seg = np.searchsorted(cal.knots, c)
    w = np.zeros(3)
    for x, j in zip(c, seg, strict=True):
        if j == 0 or j == 3:
            w[min(j, 2)] += 1
        else:
            t = (x - cal.knots[j - 1]) / (cal.knots[j] - cal.knots[j - 1])
            w[j - 1] += 1 - t
            w[j] += t
    var = np.sum(p * (1 - p)) / 1000**2 + np.sum((w / 1000) ** 2 * cal.variance())
    assert e.std == pytest.approx(math.sqrt(var), rel=1e-9)
    assert (e.low, e.high) == pytest.approx((e.accuracy - 1.959963984540054 * e.std,
                                             e.accuracy + 1.959963984540054 * e.std))


def test_estimate_from_the_store_sums_equals_the_direct_one():
    cal = Calibration(np.array([0.6, 0.8]), np.array([0.6, 0.9]), np.array([100, 100]))
    sums = segment_sums(cal, [0.5, 0.7, 0.7, 0.9, None])
    assert sums == {0: SegmentSums(1, 0.5, 0.25), 1: SegmentSums(2, 1.4, 0.7 * 0.7 * 2), 2: SegmentSums(1, 0.9, 0.81)}
    direct = estimate(cal, [0.5, 0.7, 0.7, 0.9])
    assert direct.accuracy == pytest.approx((0.6 + 0.75 + 0.75 + 0.9) / 4)
    rows = [("m", "v", 0, j, s.n, Decimal(repr(s.sum)), Decimal(repr(s.sum_sq))) for j, s in sums.items()]
    stored = estimates_from_rows({("m", "v"): cal}, rows, [("m", "v", 0, 2)])[("m", "v")][0]
    assert stored == WindowEstimate(estimate_from_sums(cal, sums), 2)
    assert stored.estimate.accuracy == pytest.approx(direct.accuracy, abs=1e-12)
    assert estimate_columns(stored, 0.5) == [stored.estimate.accuracy, stored.estimate.low, stored.estimate.high,
                                             0.5 - stored.estimate.accuracy]
    assert estimate_columns(None, 0.5) == [None, None, None, None]
    assert estimate_from_sums(cal, {}) is None


def test_false_alarm_rate_holds_in_simulation():
    """A calibrated model: the upper bound lies below the window's realized accuracy in at most
    ESTIMATE_FALSE_ALARM_RATE of windows (so an accuracy at or above the SLO rarely fires)."""
    rng = np.random.default_rng(11)
    runs, below_realized, fired = 600, 0, 0
    for _ in range(runs):
        ref = rng.uniform(0.7, 1.0, 3000)
        cal = fit_calibration(ref, rng.random(3000) < ref)
        window = rng.uniform(0.7, 1.0, 500)  # expected accuracy 0.85: at the SLO
        e = estimate(cal, window)
        realized = float(np.mean(rng.random(500) < window))
        below_realized += e.high < realized
        fired += e.high < SLO
    assert below_realized / runs <= ESTIMATE_FALSE_ALARM_RATE + 2 * math.sqrt(0.025 * 0.975 / runs)
    assert fired / runs <= ESTIMATE_FALSE_ALARM_RATE


def _estimate(accuracy: float, high: float, labeled: int) -> WindowEstimate:
    from streams.estimate import AccuracyEstimate
    return WindowEstimate(AccuracyEstimate(accuracy, accuracy - (high - accuracy), high, 1000, 0.01), labeled)


def test_rule_fires_before_labels_and_resolves_on_a_later_window_not_below():
    book = AlertBook()
    seen = []
    for w, e in enumerate([_estimate(0.9, 0.92, 0), _estimate(0.8, 0.83, 3), _estimate(0.79, 0.82, 0),
                           _estimate(0.7, 0.75, 60), _estimate(0.86, 0.88, 0)]):
        condition = estimated_accuracy_below_threshold("m", "v1", e, SLO, 50, None)
        alert = book.observe("m", "v1", w, w + 1, condition, w) if condition else None
        seen.append(alert.status if alert else None)
    # window 1 fires; 2 persists; 3 has enough labels (the accuracy rules decide): nothing; 4 resolves
    assert seen == [None, "firing", None, None, "resolved"]


def test_rule_with_enough_labels_still_resolves():
    assert estimated_accuracy_below_threshold("m", "v", _estimate(0.9, 0.93, 500), SLO, 50, 0.9).active is False


@pytest.fixture(scope="module")
def covariate_shift():
    return generate("covariate-shift")


def _windows(s):
    seen, out = set(), {}
    for r in s.rows:
        if r["request_id"] not in seen:
            seen.add(r["request_id"])
            out.setdefault(r["timestamp"][:13], []).append(r)
    return [out[k] for k in sorted(out)]


def test_covariate_shift_estimate_is_within_two_points_and_foresees_the_fall(covariate_shift):
    s = covariate_shift
    cal = fit_calibration([confidence_of(r["score"]) for r in s.reference],
                          [r["prediction"] == r["label"] for r in s.reference])
    highs, realized = [], []
    for rows in _windows(s):
        assert len(rows) >= 500
        e = estimate(cal, [max(r["prediction_probability_0"], r["prediction_probability_1"]) for r in rows])
        labeled = [r for r in rows if r["actual_label"] is not None]
        accuracy = sum(r["actual_label"] == r["prediction"] for r in labeled) / len(labeled)
        assert abs(accuracy - e.accuracy) <= 0.02
        highs.append(e.high)
        realized.append(accuracy)
    first_below = next(i for i, a in enumerate(realized) if a < SLO)
    assert first_below == s.change_period == 10
    assert all(h >= SLO for h in highs[:first_below]) and all(h < SLO for h in highs[first_below:])


def test_covariate_shift_labels_come_after_their_window_ends(covariate_shift):
    s = covariate_shift
    assert s.period_summaries[0].expected_accuracy > 0.89 and s.period_summaries[-1].expected_accuracy < 0.77
    for rows in _windows(s):
        end = rows[0]["timestamp"][:13]
        assert all(r["actual_timestamp"][:13] > end for r in rows if r["actual_label"] is not None)
    feature = np.array([r["credit_score"] for r in s.rows])
    half = len(feature) // 2
    # most scores are below 0.5 (log-odds < 0): pulled to the boundary, credit scores fall
    assert np.mean(feature[half:]) < np.mean(feature[:half]) - 10


def test_multi_class_reference_calibrates_the_predicted_class_probability():
    rows = [{"x": 1.0, "scores": {"a": 0.6, "b": 0.3, "c": 0.1}, "prediction": "a", "label": label}
            for label in ["a"] * 24 + ["b"] * 16]
    rows += [{"x": 1.0, "scores": {"a": 0.05, "b": 0.05, "c": 0.9}, "prediction": "c", "label": "c"}] * 40
    cal = build_reference(rows, bins=2).calibration
    assert cal.knots.tolist() == pytest.approx([0.6, 0.9]) and cal.accuracy.tolist() == [0.6, 1.0]
    assert estimate(cal, [0.6, 0.9, 0.75]).accuracy == pytest.approx((0.6 + 1.0 + 0.8) / 3)


def test_versions_without_a_calibration_get_no_estimate():
    rows = [("m", "v", 0, 0, 3, Decimal("1.5"), Decimal("0.75"))]
    assert estimates_from_rows({}, rows, []) == {}
