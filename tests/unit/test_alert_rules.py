import orjson

from streams.alert_rules import (
    AlertBook,
    accuracy_below_threshold,
    accuracy_drop,
    alert_id,
    drift,
    error_rate_change,
    iso_ms,
)

HOUR = 3_600_000


def test_alert_id_is_deterministic_and_distinguishes_status():
    a = alert_id("m", "v1", "accuracy_drop", "accuracy", 0, "firing")
    assert a == alert_id("m", "v1", "accuracy_drop", "accuracy", 0, "firing")
    assert a != alert_id("m", "v1", "accuracy_drop", "accuracy", 0, "resolved")
    assert len(a) == 32


def test_state_machine_fires_once_and_resolves_once():
    book = AlertBook()
    seq = [0.9, 0.8, 0.7, 0.8, 0.86, 0.9, 0.84]
    events = []
    for i, acc in enumerate(seq):
        c = accuracy_below_threshold("m", "v1", acc, 100, int(acc * 100), 0.85, {})
        a = book.observe("m", "v1", i * HOUR, (i + 1) * HOUR, c, 0)
        if a:
            events.append((a.status, i))
    assert events == [("firing", 1), ("resolved", 4), ("firing", 6)]


def test_book_keeps_conditions_apart():
    book = AlertBook()
    age = drift("m", "v1", "age", 0.3, 0.2, 500, 5000)
    income = drift("m", "v1", "income", 0.05, 0.2, 500, 5000)
    assert book.observe("m", "v1", 0, HOUR, age, 0).status == "firing"
    assert book.observe("m", "v1", 0, HOUR, income, 0) is None
    assert book.observe("m", "v2", 0, HOUR, age, 0).status == "firing"


def test_accuracy_drop_severity_and_boundaries():
    warning = accuracy_drop("m", "v1", 0.90, 0.95, 0.05, {})
    assert warning.active and warning.severity == "warning" and warning.recommended_action == "investigate"
    critical = accuracy_drop("m", "v1", 0.84, 0.95, 0.05, {})
    assert critical.active and critical.severity == "critical" and critical.recommended_action == "retrain"
    at_twice = accuracy_drop("m", "v1", 0.85, 0.95, 0.05, {})
    assert at_twice.severity == "warning"
    assert not accuracy_drop("m", "v1", 0.91, 0.95, 0.05, {}).active


def test_drift_subjects_choose_the_type():
    assert drift("m", "v", "__score__", 0.5, 0.2, 1, 1).type == "prediction_drift"
    assert drift("m", "v", "__prediction__", 0.5, 0.2, 1, 1).type == "prediction_drift"
    assert drift("m", "v", "age", 0.2, 0.2, 1, 1).active
    assert not drift("m", "v", "age", 0.1999, 0.2, 1, 1).active


def test_error_rate_fires_only_on_rise():
    assert error_rate_change("m", "v", 0.05, 0.15, 0.002, 500).active
    assert not error_rate_change("m", "v", 0.15, 0.05, 0.002, 500).active


def test_alert_event_has_every_contract_field():
    book = AlertBook()
    c = accuracy_below_threshold("m", "v1", 0.8, 100, 80, 0.85, {"top_drifted_features": []})
    event = orjson.loads(book.observe("m", "v1", 0, HOUR, c, 1_000).to_json())
    assert set(event) == {
        "alert_id", "status", "type", "severity", "model", "model_version", "subject", "window_start",
        "window_end", "value", "threshold", "baseline", "detected_at", "message", "recommended_action", "evidence",
    }
    assert event["window_start"] == "1970-01-01T00:00:00.000Z" and event["window_end"] == "1970-01-01T01:00:00.000Z"
    assert iso_ms(1_767_225_600_123) == "2026-01-01T00:00:00.123Z"


def test_no_two_events_share_an_id_when_a_condition_flips_within_one_window():
    book = AlertBook()
    up = error_rate_change("m", "v1", 0.05, 0.15, 0.002, 100)
    down = error_rate_change("m", "v1", 0.15, 0.05, 0.002, 100)
    sent = [book.observe("m", "v1", 0, HOUR, c, 0) for c in (up, down, up, down)]
    assert [a.status if a else None for a in sent] == ["firing", "resolved", None, None]
    elsewhere = book.observe("m", "v1", HOUR, 2 * HOUR, up, 0)
    assert elsewhere.status == "firing" and elsewhere.alert_id != sent[0].alert_id
    # back in the first window: firing there was already sent, so the change is not made
    book2 = AlertBook()
    ids = [book2.observe("m", "v1", w, w + HOUR, c, 0) for w, c in ((0, up), (HOUR, down), (0, up))]
    assert [a.status if a else None for a in ids] == ["firing", "resolved", None]
    assert not book2.firing
