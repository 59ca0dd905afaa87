"""Labels after their window is final, end to end on the real stack.

The rule (README "Guarantees"): a label that joins after its window became final still
counts in the window's figures, the outcome is marked ``late`` and the window's
``late_labels`` says how many such labels it holds; the window's accuracy alerts, decided
when it became final, are not re-evaluated. The test sends a first window whose labels
are all right, moves the watermark past its end + LABEL_GRACE_SECONDS, waits until the
store says the window is final, then sends wrong labels for the rest of its requests.
"""

from __future__ import annotations

import random
import time

import orjson
import pytest

from streams.settings import load_settings
from tests.kafka_helpers import produce, unique_topics
from tests.worker_harness import WorkerRun, worker_env
from tools.topics import create_topics

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, the start of a window
WINDOW, GRACE, TTL = 600, 60, 7200
LATER = T0 + 3_600_000  # a window an hour later moves the watermark past T0's end + grace
ON_TIME, LATE, MOVERS = 40, 20, 40


def _prediction(rid: str, ts: int, rng: random.Random) -> dict:
    return {"request_id": rid, "model": "late", "model_version": "v1", "timestamp": ts,
            "prediction": rng.randint(0, 1), "score": round(rng.random(), 4),
            "features": {"amount": round(rng.uniform(1, 100), 2)}}


def _send(bootstrap: str, topic: str, events: list[dict]) -> None:
    produce(bootstrap, topic, [(e["request_id"].encode(), orjson.dumps(e))
                               for e in sorted(events, key=lambda e: e["timestamp"])])


def _live(run: WorkerRun, sql: str) -> list[dict]:
    done = run.cli("sinks.query", sql, "--format", "json")
    assert done.returncode == 0, done.stderr
    return orjson.loads(done.stdout)


@pytest.fixture(scope="module")
def finished(broker, tmp_path_factory):
    rng = random.Random(6)
    first = [_prediction(f"w0-{i}", T0 + i * 5_000, rng) for i in range(ON_TIME + LATE)]
    movers = [_prediction(f"later-{i}", LATER + i * 1_000, rng) for i in range(MOVERS)]
    right = [{"request_id": p["request_id"], "label": p["prediction"], "timestamp": p["timestamp"] + 10_000}
             for p in first[:ON_TIME]]
    mover_labels = [{"request_id": p["request_id"], "label": p["prediction"], "timestamp": p["timestamp"] + 500}
                    for p in movers]
    # Wrong labels for the rest of the first window, 30 minutes after their predictions: within
    # the TTL, behind the watermark, so they arrive when the window is already final.
    wrong = [{"request_id": p["request_id"], "label": 1 - p["prediction"], "timestamp": p["timestamp"] + 1_800_000}
             for p in first[ON_TIME:]]
    topics = unique_topics("late-labels")
    create_topics(load_settings({**topics, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap}))
    _send(broker.bootstrap, topics["TOPIC_PREDICTIONS"], first + movers)
    _send(broker.bootstrap, topics["TOPIC_GROUND_TRUTH"], right + mover_labels)
    workdir = tmp_path_factory.mktemp("late-labels")
    run = WorkerRun(worker_env(broker.bootstrap, topics, workdir, WINDOW_SECONDS=WINDOW, LABEL_GRACE_SECONDS=GRACE,
                               JOIN_TTL_SECONDS=TTL, MIN_LABELED=10, ACCURACY_THRESHOLD=0.85), workdir).start()
    try:
        run.wait_until_settled(len(first) + len(movers) + len(right) + len(mover_labels))
        deadline = time.monotonic() + 60
        final_before: list[dict] = []
        while not final_before:
            assert time.monotonic() < deadline, run.log_tail()
            final_before = _live(run, "SELECT labeled, correct, late_labels FROM monitoring.window_metrics FINAL "
                                      f"WHERE final = 1 AND toUnixTimestamp64Milli(window_start) = {T0}")
            time.sleep(0.5)
        _send(broker.bootstrap, topics["TOPIC_GROUND_TRUTH"], wrong)
        run.wait_until_settled(len(first) + len(movers) + len(right) + len(mover_labels) + len(wrong))
        time.sleep(1.5)  # one more refresh after the last batch
    finally:
        assert run.stop() == 0, run.log_tail()
    return {"run": run, "final_before": final_before[0], "wrong": {g["request_id"] for g in wrong}}


def test_the_window_was_final_before_the_late_labels(finished):
    assert finished["final_before"] == {"labeled": ON_TIME, "correct": ON_TIME, "late_labels": 0}


def test_late_labels_still_count_and_are_counted_as_late(finished):
    rows = finished["run"].query(
        "SELECT toUnixTimestamp64Milli(window_start), predictions, labeled, correct, accuracy, late_labels, final "
        "FROM monitoring.window_metrics FINAL ORDER BY window_start")
    by_window = {w: rest for w, *rest in rows}
    assert by_window[T0] == [ON_TIME + LATE, ON_TIME + LATE, ON_TIME,
                             pytest.approx(ON_TIME / (ON_TIME + LATE), abs=1e-12), LATE, 1]
    assert by_window[LATER][4] == 0  # the later window's labels came in time


def test_each_late_outcome_is_marked(finished):
    rows = finished["run"].query("SELECT request_id, late FROM monitoring.outcomes FINAL")
    assert {rid for rid, late in rows if late} == finished["wrong"]
    assert len(rows) == ON_TIME + LATE + MOVERS


def test_final_windows_are_not_re_evaluated(finished):
    # 40/60 right is below ACCURACY_THRESHOLD, but the decision was taken when the window became final.
    rows = finished["run"].query("SELECT type FROM monitoring.alerts FINAL WHERE type LIKE 'accuracy%'")
    assert rows == []
