"""Accuracy before labels through the real stack, on the covariate-shift scenario.

The scenario (10 periods of 2,500 predictions, labels drawn from calibrated scores, 1.25-4
periods late) is replayed into one worker with its reference file. The store must hold,
for every window, the estimate numpy computes from the reference and the window's
confidences, within 2 points of the realized accuracy; and the alert
``estimated_accuracy_below_threshold`` must fire once, in the first window below the SLO,
decided when that window closed, before any of its labels. The same input with one input
partition instead of four, and with kill -9 twice in the middle, gives the same alert ids and
estimates.
"""

from __future__ import annotations

import orjson
import pytest

from streams.estimate import confidence_of, estimate, fit_calibration
from tests import expected
from tests.kafka_helpers import unique_topics
from tests.worker_harness import WorkerRun, worker_env

pytestmark = pytest.mark.integration

PERIODS = 10
SLO = 0.85


def _replayed(broker, workdir, s, partitions: int) -> tuple[dict[str, str], int]:
    """The scenario replayed into new topics; the worker's environment and the events sent."""
    from producers.replay import replay
    from streams.settings import load_settings

    reference = workdir / "reference.jsonl"
    with reference.open("wb") as out:
        for row in s.reference:
            out.write(orjson.dumps({**row, "model": s.model, "model_version": s.model_version}) + b"\n")
    topics = unique_topics(f"estimate-e2e-{partitions}")
    env = worker_env(broker.bootstrap, topics, workdir, LABEL_GRACE_SECONDS=43_200, REFERENCE_PATH=reference,
                     MONITOR_IDLE_SECONDS=2, TOPIC_PARTITIONS=partitions)
    result = replay(enumerate(s.rows, start=1), load_settings(env))
    assert result.ok and result.skipped == 0
    return env, result.events


def _run(broker, workdir, s, partitions: int) -> WorkerRun:
    env, events = _replayed(broker, workdir, s, partitions)
    run = WorkerRun(env, workdir).start()
    run.wait_until_settled(events, timeout=300)
    code = run.stop()
    assert code == 0, run.log_tail()
    return run


@pytest.fixture(scope="module")
def scenario():
    from producers.scenarios import generate

    return generate("covariate-shift", periods=PERIODS)


@pytest.fixture(scope="module")
def finished(broker, tmp_path_factory, scenario):
    return _run(broker, tmp_path_factory.mktemp("estimate"), scenario, 4)


def _windows(s) -> dict[int, list[dict]]:
    seen, out = set(), {}
    for r in s.rows:
        if r["request_id"] not in seen:
            seen.add(r["request_id"])
            out.setdefault(expected.ts_ms(r["timestamp"]) // 3_600_000 * 3_600_000, []).append(r)
    return out


def test_estimate_per_window_is_numpys_and_within_two_points(finished, scenario):
    s = scenario
    cal = fit_calibration([confidence_of(r["score"]) for r in s.reference],
                          [r["prediction"] == r["label"] for r in s.reference])
    rows = finished.query(
        "SELECT toUnixTimestamp64Milli(window_start), predictions, accuracy, estimated_accuracy, "
        "estimated_accuracy_low, estimated_accuracy_high, estimation_error "
        f"FROM monitoring.window_metrics FINAL WHERE model = '{s.model}' ORDER BY window_start")
    windows = _windows(s)
    assert [r[0] for r in rows] == sorted(windows)
    for w, n, accuracy, est, low, high, error in rows:
        want = estimate(cal, [max(r["prediction_probability_0"], r["prediction_probability_1"]) for r in windows[w]])
        assert (est, low, high) == pytest.approx((want.accuracy, want.low, want.high), abs=1e-9)
        assert error == pytest.approx(accuracy - est, abs=1e-12)
        assert n >= 500 and abs(error) <= 0.02


def test_alert_fires_in_the_first_window_below_the_slo_before_its_labels(finished, scenario):
    s = scenario
    windows = _windows(s)
    realized = finished.query(
        "SELECT toUnixTimestamp64Milli(window_start), accuracy FROM monitoring.window_metrics FINAL "
        f"WHERE model = '{s.model}' ORDER BY window_start")
    first_below = next(w for w, accuracy in realized if accuracy < SLO)
    alerts = finished.query(
        "SELECT status, toUnixTimestamp64Milli(window_start), evidence FROM monitoring.alerts FINAL "
        f"WHERE model = '{s.model}' AND type = 'estimated_accuracy_below_threshold' ORDER BY detected_at")
    assert [(a[0], a[1]) for a in alerts] == [("firing", first_below)]
    evidence = orjson.loads(alerts[0][2])
    window_end = first_below + 3_600_000
    labels = [expected.ts_ms(r["actual_timestamp"]) for r in windows[first_below] if r["actual_label"] is not None]
    # Decided at the window's close: none of its labels had come (they come 1.25-4 hours later).
    assert evidence["labeled_by_window_end"] == sum(t < window_end for t in labels) == 0
    assert evidence["interval_high"] < SLO and evidence["false_alarm_rate"] == 0.025
    # The labels' own alert on that window comes later in event time, once they prove the breach.
    accuracy_alerts = finished.query(
        "SELECT toUnixTimestamp64Milli(window_start) FROM monitoring.alerts FINAL "
        f"WHERE model = '{s.model}' AND type = 'accuracy_below_threshold' AND status = 'firing'")
    assert accuracy_alerts and min(a[0] for a in accuracy_alerts) >= first_below


ALERT_IDS = ("SELECT alert_id FROM monitoring.alerts FINAL WHERE type = 'estimated_accuracy_below_threshold' "
             "ORDER BY alert_id")
ESTIMATES = ("SELECT toUnixTimestamp64Milli(window_start), estimated_accuracy, estimated_accuracy_low, "
             "estimated_accuracy_high, estimation_error FROM monitoring.window_metrics FINAL ORDER BY window_start")


def test_same_alert_ids_with_one_partition(broker, tmp_path_factory, finished, scenario):
    other = _run(broker, tmp_path_factory.mktemp("estimate-one"), scenario, 1)
    assert other.query(ALERT_IDS) == finished.query(ALERT_IDS) != []
    assert other.query(ESTIMATES) == finished.query(ESTIMATES)


def test_same_alerts_and_estimates_after_kill_9(broker, tmp_path_factory, finished, scenario):
    workdir = tmp_path_factory.mktemp("estimate-crashy")
    env, total = _replayed(broker, workdir, scenario, 4)
    crashy = WorkerRun(env, workdir)
    for reads in (total // 3, total // 4):  # each life reads this much more, then kill -9
        crashy.start().wait_for_messages(reads, settle=0)
        crashy.kill()
    crashy.start().wait_until_settled(total, timeout=300, counted_since_start=True)
    assert crashy.stop() == 0, crashy.log_tail()
    assert crashy.query(ALERT_IDS) == finished.query(ALERT_IDS) != []
    assert crashy.query(ESTIMATES) == finished.query(ESTIMATES)
