"""version_worse: the two-proportion test, the looks and the false-alarm rate over them."""

from __future__ import annotations

import numpy as np
import pytest

from streams import version_compare
from streams.version_compare import ALPHA, Look, compare, look_at, ordered_pairs


def test_compare_exact_numbers():
    c = compare(1000, 950, 250, 215)
    assert c.diff == pytest.approx(0.86 - 0.95, abs=1e-15)
    # unpooled standard error sqrt(.95*.05/1000 + .86*.14/250)
    assert c.se == pytest.approx(0.0230022, abs=1e-7)
    assert (round(c.diff_low, 6), round(c.diff_high, 6)) == (-0.135083, -0.044917)  # -0.09 -+ 1.96 se
    # pooled: 85 errors of 1250, z = 0.09 / sqrt(.068 * .932 * (1/1000 + 1/250)) = 5.056
    assert round(c.p_value, 9) == 4.28e-07
    assert c.worse(0.05, 0.01) and not c.worse(0.10, 0.01)


def test_equal_versions_are_proven_not_worse_with_enough_labels():
    c = compare(2000, 1800, 2000, 1800)
    assert c.diff == 0 and c.p_value == 1.0
    assert c.not_worse(0.05, 0.005)
    small = compare(60, 54, 60, 54)
    assert not small.not_worse(0.05, 0.005)  # 60 labels each cannot rule out 5 points


def test_looks_at_doubling_label_counts_then_finality():
    assert look_at(49, 0, 50, False) is None
    assert look_at(50, 49, 50, False) == Look(0, 0.005)
    assert look_at(99, 50, 50, False) is None
    assert look_at(400, 99, 50, False) == Look(3, 0.01 / 16)  # several looks passed at once: the highest
    assert look_at(400, 400, 50, True) == Look(None, ALPHA)


def test_condition_firing_undecided_and_resolved():
    worse = compare(1000, 950, 250, 215)
    c = version_compare.condition("m", "v1", "v2", worse, Look(2, 0.00125), 0.05)
    assert (c.type, c.subject, c.active, c.severity, c.value, c.threshold, c.baseline) == (
        "version_worse", "v1", True, "warning", worse.diff, 0.05, 0.95)
    assert c.evidence["look"] == 2 and c.evidence["candidate_version"] == "v2"
    unsure = compare(100, 92, 60, 52)
    assert version_compare.condition("m", "v1", "v2", unsure, Look(0, 0.005), 0.05) is None
    fine = compare(3000, 2850, 3000, 2850)
    assert version_compare.condition("m", "v1", "v2", fine, Look(None, 0.01), 0.05).active is False
    much = compare(1000, 950, 500, 400)
    assert version_compare.condition("m", "v1", "v2", much, Look(None, 0.01), 0.05).severity == "critical"


def test_newer_is_the_version_first_seen_later():
    assert ordered_pairs([("b", 10), ("a", 3_600_020)], 3600) == [("b", "a")]
    assert ordered_pairs([("b", 10), ("a", 20)], 3600) == [("a", "b"), ("b", "a")]  # same window: both ways
    assert ordered_pairs([("only", 1)], 3600) == []


def test_false_alarm_rate_over_all_looks_of_a_window():
    """Two versions of equal accuracy (0.7-0.95), labels arriving in random order: the share of
    windows in which any look or the final decision fires stays below ALPHA = 1%."""
    rng = np.random.default_rng(16)
    trials, alarms = 5_000, 0
    for _ in range(trials):
        acc = rng.uniform(0.7, 0.95)
        n_a, n_b = int(rng.integers(60, 2000)), int(rng.integers(60, 800))
        a, b = rng.random(n_a) < acc, rng.random(n_b) < acc
        # boundaries: the labels arrive in 6 steps of event time, then the window is final
        steps = np.linspace(0, 1, 7)[1:]
        before = 0
        for i, share in enumerate(steps):
            ka, kb = int(share * n_a), int(share * n_b)
            look = look_at(min(ka, kb), before, 50, final=i == len(steps) - 1)
            before = min(ka, kb)
            if look is None:
                continue
            c = compare(ka, int(a[:ka].sum()), kb, int(b[:kb].sum()))
            if c.worse(0.05, look.level):
                alarms += 1
                break
    assert alarms / trials < ALPHA


def test_a_canary_eight_points_worse_is_found():
    rng = np.random.default_rng(5)
    found = 0
    for _ in range(200):
        a, b = rng.random(1600) < 0.95, rng.random(400) < 0.87
        c = compare(1600, int(a.sum()), 400, int(b.sum()))
        found += c.worse(0.05, 0.01 / 8)  # look j=2
    assert found >= 180


def test_pooled_windows_sum_only_windows_where_both_have_enough_labels():
    from streams.version_compare import Pooled, pooled

    h = 3_600_000
    counts = {("a", 0): (300, 285, 300, 285), ("b", 0): (60, 50, 55, 46),
              ("a", h): (300, 290, 100, 97), ("b", h): (55, 45, 20, 17),
              ("a", 2 * h): (100, 95, 0, 0), ("b", 2 * h): (20, 18, 0, 0)}
    got = pooled(counts, "a", "b", 50, 3 * h, 2 * h, 3600)
    assert got == Pooled(600, 575, 115, 95, 2, 55)  # window 2 h: b has 20 labels; before: window 0 only
    look = look_at(min(got.n_a, got.n_b), got.smaller_before, 50, final=False)
    assert look == Look(1, 0.0025)
    c = compare(got.n_a, got.correct_a, got.n_b, got.correct_b)
    assert round(c.diff, 6) == round(95 / 115 - 575 / 600, 6) and c.worse(0.05, look.level)


def test_false_alarm_rate_of_the_pooled_looks():
    """Equal versions, 24 windows of 60-300 labels each added one boundary at a time: the share of
    pairs whose pooled looks ever fire stays below ALPHA."""
    rng = np.random.default_rng(7)
    trials, alarms = 3000, 0
    for _ in range(trials):
        acc = rng.uniform(0.7, 0.95)
        na, nb = rng.integers(60, 300, 24), rng.integers(60, 300, 24)
        ka, kb = rng.binomial(na, acc), rng.binomial(nb, acc)
        before = 0
        for i in range(2, 25):  # at least two windows pooled
            n_a, n_b = int(na[:i].sum()), int(nb[:i].sum())
            look = look_at(min(n_a, n_b), before, 50, final=False)
            before = min(n_a, n_b)
            if look is not None and compare(n_a, int(ka[:i].sum()), n_b, int(kb[:i].sum())).worse(0.05, look.level):
                alarms += 1
                break
    assert alarms / trials < ALPHA
