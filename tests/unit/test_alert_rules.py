import orjson
import pytest

from streams.alert_rules import (
    AccuracyEvidence,
    AlertBook,
    DriftEvidence,
    accuracy_below_threshold,
    accuracy_drop,
    alert_id,
    drift,
    error_rate_change,
    iso_ms,
)
from streams.stats import wilson_bounds

HOUR = 3_600_000


def final(correct: int, labeled: int = 100, window: int = 0) -> AccuracyEvidence:
    return AccuracyEvidence(window, labeled, correct, None, 0.99, 0.0, 1.0)


def look(correct: int, labeled: int, j: int = 0, alpha: float = 0.005) -> AccuracyEvidence:
    lower, upper = wilson_bounds(correct, labeled, alpha)
    return AccuracyEvidence(0, labeled, correct, j, 1 - alpha, lower, upper)


def evidence(psi: float, p: float = 1e-9, level: float = 1e-4, n: int = 500) -> DriftEvidence:
    return DriftEvidence(psi, n, 5000, 50.0, 9, p, level, 0.001)


def test_alert_id_is_deterministic_and_distinguishes_status():
    a = alert_id("m", "v1", "accuracy_drop", "accuracy", 0, "firing")
    assert a == alert_id("m", "v1", "accuracy_drop", "accuracy", 0, "firing")
    assert a != alert_id("m", "v1", "accuracy_drop", "accuracy", 0, "resolved")
    assert len(a) == 32


def test_state_machine_fires_once_and_resolves_once():
    book = AlertBook()
    seq = [90, 80, 70, 80, 86, 90, 84]
    events = []
    for i, correct in enumerate(seq):
        c = accuracy_below_threshold("m", "v1", final(correct), 0.85, {})
        a = book.observe("m", "v1", i * HOUR, (i + 1) * HOUR, c, 0)
        if a:
            events.append((a.status, i))
    assert events == [("firing", 1), ("resolved", 4), ("firing", 6)]


def test_a_decision_about_an_older_window_does_not_change_a_newer_state():
    book = AlertBook()
    bad = accuracy_below_threshold("m", "v1", final(70), 0.85, {})
    good = accuracy_below_threshold("m", "v1", final(95), 0.85, {})
    assert book.observe("m", "v1", 6 * HOUR, 7 * HOUR, bad, 0).status == "firing"
    assert book.observe("m", "v1", 5 * HOUR, 6 * HOUR, good, 0) is None  # window 5's finality comes late
    assert book.observe("m", "v1", 6 * HOUR, 7 * HOUR, good, 0).status == "resolved"


def test_detected_at_increases_per_condition_so_stored_events_sort_back():
    book = AlertBook()
    up = error_rate_change("m", "v1", 0.05, 0.15, 100, 200, 0.002, 0, None)
    down = error_rate_change("m", "v1", 0.15, 0.05, 100, 200, 0.002, 0, None)
    first = book.observe("m", "v1", 0, HOUR, up, 5_000)
    second = book.observe("m", "v1", HOUR, 2 * HOUR, down, 5_000)
    assert (first.detected_at, second.detected_at) == ("1970-01-01T00:00:05.000Z", "1970-01-01T00:00:05.001Z")


def test_book_keeps_conditions_apart():
    book = AlertBook()
    age = drift("m", "v1", "age", evidence(0.3), 0.1, 0.2)
    income = drift("m", "v1", "income", evidence(0.05), 0.1, 0.2)
    assert book.observe("m", "v1", 0, HOUR, age, 0).status == "firing"
    assert book.observe("m", "v1", 0, HOUR, income, 0) is None
    assert book.observe("m", "v2", 0, HOUR, age, 0).status == "firing"


def test_accuracy_drop_severity_and_boundaries_at_finality():
    warning = accuracy_drop("m", "v1", final(90), 0.95, 0.05, {})
    assert warning.active and warning.severity == "warning" and warning.recommended_action == "investigate"
    critical = accuracy_drop("m", "v1", final(84), 0.95, 0.05, {})
    assert critical.active and critical.severity == "critical" and critical.recommended_action == "retrain"
    at_twice = accuracy_drop("m", "v1", final(85), 0.95, 0.05, {})
    assert at_twice.severity == "warning"
    assert not accuracy_drop("m", "v1", final(91), 0.95, 0.05, {}).active
    assert warning.evidence["decided_by"] == "point_estimate_at_finality"


def test_an_early_look_decides_only_what_its_sample_proves():
    # 35/50 = 70%: the one-sided 99.5% Wilson upper bound is 0.8352 < 0.85 -> proven below
    proven = accuracy_below_threshold("m", "v1", look(35, 50), 0.85, {})
    assert proven.active and proven.evidence["decided_by"] == "wilson_bound"
    assert proven.evidence["wilson_upper"] == pytest.approx(0.8351600, abs=1e-6)
    assert "representative" in proven.evidence["provisional"]
    # 40/50 = 80%: below 85% but not proven (upper 0.9062) -> no decision either way
    assert accuracy_below_threshold("m", "v1", look(40, 50), 0.85, {}) is None
    # 195/200 = 97.5%: lower bound 0.9279 >= 0.85 -> proven fine
    fine = accuracy_below_threshold("m", "v1", look(195, 200, 2), 0.85, {})
    assert fine is not None and not fine.active
    # drop: baseline 0.95, limit 0.90; 170/200 = 85% has upper 0.9037 -> not proven
    assert accuracy_drop("m", "v1", look(170, 200, 2), 0.95, 0.05, {}) is None
    # 160/200 = 80%: upper 0.8627 < 0.90 proven; 0.95 - 0.8627 = 0.087 < 0.10 -> warning
    drop = accuracy_drop("m", "v1", look(160, 200, 2), 0.95, 0.05, {})
    assert drop.active and drop.severity == "warning" and drop.evidence["drop"] == pytest.approx(0.15)


def test_drift_needs_a_large_and_a_certain_change():
    assert drift("m", "v", "__score__", evidence(0.5), 0.1, 0.2).type == "prediction_drift"
    assert drift("m", "v", "__prediction__", evidence(0.5), 0.1, 0.2).type == "prediction_drift"
    large_certain = drift("m", "v", "age", evidence(0.15), 0.1, 0.2)
    assert large_certain.active and large_certain.severity == "warning"
    assert drift("m", "v", "age", evidence(0.2), 0.1, 0.2).severity == "critical"
    assert not drift("m", "v", "age", evidence(0.0999), 0.1, 0.2).active  # certain but small
    noisy = drift("m", "v", "age", evidence(0.35, p=0.01, n=40), 0.1, 0.2)  # large but within chance
    assert not noisy.active and "by chance" in noisy.message
    assert set(large_certain.evidence) >= {"psi", "n", "test", "statistic", "dof", "p_value", "level",
                                           "false_alarm_rate"}


def test_error_rate_fires_only_on_rise_and_says_what_decided_it():
    up = error_rate_change("m", "v", 0.05, 0.15, 400, 300, 0.002, 7_200_000, 1e-5)
    assert up.active and "from 5.0% (400 outcomes) to 15.0% (300 outcomes" in up.message
    assert up.evidence["detected_event_time"] == "1970-01-01T02:00:00.000Z"
    assert up.evidence["test"] == "ADWIN" and up.evidence["two_proportion_p_value"] == 1e-5
    assert not error_rate_change("m", "v", 0.15, 0.05, 400, 300, 0.002, 0, None).active


def test_alert_event_has_every_contract_field():
    book = AlertBook()
    c = accuracy_below_threshold("m", "v1", final(80), 0.85, {"top_drifted_features": []})
    event = orjson.loads(book.observe("m", "v1", 0, HOUR, c, 1_000).to_json())
    assert set(event) == {
        "alert_id", "status", "type", "severity", "model", "model_version", "subject", "window_start",
        "window_end", "value", "threshold", "baseline", "detected_at", "message", "recommended_action", "evidence",
    }
    assert event["window_start"] == "1970-01-01T00:00:00.000Z" and event["window_end"] == "1970-01-01T01:00:00.000Z"
    assert iso_ms(1_767_225_600_123) == "2026-01-01T00:00:00.123Z"


def test_no_two_events_share_an_id_when_a_condition_flips_within_one_window():
    book = AlertBook()
    up = error_rate_change("m", "v1", 0.05, 0.15, 100, 100, 0.002, 0, None)
    down = error_rate_change("m", "v1", 0.15, 0.05, 100, 100, 0.002, 0, None)
    sent = [book.observe("m", "v1", 0, HOUR, c, 0) for c in (up, down, up, down)]
    assert [a.status if a else None for a in sent] == ["firing", "resolved", None, None]
    elsewhere = book.observe("m", "v1", HOUR, 2 * HOUR, up, 0)
    assert elsewhere.status == "firing" and elsewhere.alert_id != sent[0].alert_id


def test_a_restored_book_still_ignores_decisions_about_older_windows():
    """After a restart the book is rebuilt from the stored alerts, window included: window 0's
    finality (fine) must not resolve what window 5 proved, nor let window 2 fire it again."""
    live = AlertBook()
    bad = accuracy_below_threshold("m", "v1", final(70), 0.85, {})
    sent = live.observe("m", "v1", 5 * HOUR, 6 * HOUR, bad, 0)
    restored = AlertBook()
    restored.restore(sent)
    good = accuracy_below_threshold("m", "v1", final(95), 0.85, {})
    assert restored.observe("m", "v1", 0, HOUR, good, 0) is None
    assert restored.observe("m", "v1", 2 * HOUR, 3 * HOUR, bad, 0) is None
    assert restored.observe("m", "v1", 6 * HOUR, 7 * HOUR, good, 0).status == "resolved"
