"""labels_missing: coverage at the usual delay against the usual coverage, exact and simulated."""

from __future__ import annotations

import numpy as np
import pytest

from streams import label_health
from streams.label_health import WindowCoverage, boundaries, decide, lower_tail_p

H = 3_600_000


def _windows(pairs):
    return [WindowCoverage(i * H, n, k) for i, (n, k) in enumerate(pairs)]


def test_usual_coverage_is_pooled_over_the_healthy_windows_before():
    d = decide(_windows([(100, 90), (200, 170), (100, 40)]), min_predictions=50)
    assert d.window_ms == 2 * H and d.history == 2
    assert d.usual == 260 / 300
    assert d.missing is True  # 0.40 < 0.5 * 0.8667 and far in the binomial tail
    assert d.p_value == pytest.approx(lower_tail_p(40, 100, 260 / 300), rel=1e-12)
    assert d.p_value < 1e-20


def test_a_window_at_half_the_usual_coverage_is_healthy():
    d = decide(_windows([(100, 80), (100, 80), (100, 40)]), min_predictions=50)
    assert (d.usual, d.missing) == (0.8, False)  # 0.40 >= 0.5 * 0.80


def test_low_but_not_certain_is_undecided():
    # usual 0.10: 2 of 60 labeled is below half of it, but P(X <= 2 | 60, 0.1) = 0.0530 is no proof
    d = decide(_windows([(100, 10), (100, 10), (60, 2)]), min_predictions=50)
    assert d.missing is None and round(d.p_value, 4) == 0.0530
    assert label_health.condition("m", "v", d, 3600) is None


def test_no_decision_without_history_or_labels():
    assert decide(_windows([(100, 90), (100, 0)]), min_predictions=50) is None  # one healthy window is no history
    assert decide([], min_predictions=50) is None
    # a version that never had labels: every window at 0, no usual coverage to lose
    assert decide(_windows([(100, 0)] * 5), min_predictions=50) is None
    # an outage longer than the lookback: only unlabeled windows left, still nothing resolves it
    assert decide(_windows([(100, 0)] * 30), min_predictions=50) is None
    back = decide(_windows([(100, 0)] * 30 + [(100, 90)] * 3), min_predictions=50)
    assert back.missing is False and back.usual == 0.9


def test_small_windows_are_skipped():
    d = decide(_windows([(100, 90), (100, 90), (10, 0)]), min_predictions=50)
    assert d is None  # the last judged window is the second, still building history


def test_an_outage_does_not_lower_the_usual_coverage():
    history = [(100, 90)] * 3 + [(100, 0)] * 30
    d = decide(_windows(history), min_predictions=50)
    assert d.missing is True and d.usual == 0.9 and d.history == 3
    back = decide(_windows([*history, (100, 85)]), min_predictions=50)
    assert back.missing is False and back.window_ms == 33 * H


def test_condition_fields():
    d = decide(_windows([(100, 90), (100, 90), (100, 0)]), min_predictions=50)
    c = label_health.condition("m", "v2", d, 5400.0)
    assert (c.type, c.subject, c.active, c.severity, c.value, c.threshold, c.baseline) == (
        "labels_missing", "labels", True, "warning", 0.0, 0.45, 0.9)
    assert c.evidence["judged_at_age_s"] == 5400.0 and c.evidence["predictions"] == 100
    assert "1.5 h after its end" in c.message


def test_boundaries_are_the_window_ends_the_watermark_passed():
    assert list(boundaries(0, 3 * H, 3600)) == [H, 2 * H, 3 * H]
    assert list(boundaries(H + 1, 2 * H - 1, 3600)) == []
    assert list(boundaries(2 * H, 2 * H, 3600)) == []


def test_judged_rows():
    assert label_health.judged([]) == (None, [])
    age, windows = label_health.judged([(5_400_123, 0, 100, 90), (5_400_123, H, 80, 70)])
    assert age == 5400.123 and windows == [WindowCoverage(0, 100, 90), WindowCoverage(H, 80, 70)]


def test_false_alarm_rate_holds_on_simulated_healthy_pipelines():
    """Healthy label pipelines (coverage 0.2-0.95, window sizes 50-500, the windows' coverage itself
    varying by +-20% around the version's usual, more than the binomial model allows): the share
    of windows judged missing stays below the stated rate ALPHA = 0.001 per window."""
    rng = np.random.default_rng(16)
    alarms = judged = 0
    for _ in range(400):
        usual = rng.uniform(0.2, 0.95)
        sizes = rng.integers(50, 500, 50)
        rates = np.clip(usual * rng.uniform(0.8, 1.2, 50), 0, 1)
        labeled = rng.binomial(sizes, rates)
        windows = [WindowCoverage(i * H, int(n), int(k)) for i, (n, k) in enumerate(zip(sizes, labeled, strict=True))]
        for d in label_health.verdicts(windows, min_predictions=50):
            judged += d is not None
            alarms += bool(d and d.missing)
    assert judged == 400 * 48 and alarms / judged < label_health.ALPHA


def test_an_outage_is_found_in_its_first_judged_window():
    rng = np.random.default_rng(3)
    found = 0
    for _ in range(200):
        usual = rng.uniform(0.3, 0.95)
        sizes = rng.integers(50, 500, 10)
        labeled = rng.binomial(sizes, usual)
        labeled[-1] = rng.binomial(sizes[-1], usual * 0.1)  # 90% of the labels lost
        d = decide([WindowCoverage(i * H, int(n), int(k)) for i, (n, k) in enumerate(zip(sizes, labeled, strict=True))],
                   min_predictions=50)
        found += bool(d.missing)
    assert found == 200
