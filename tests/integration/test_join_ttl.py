"""JOIN_TTL_SECONDS end to end: Tansu broker -> `faust -A streams.app worker` -> embedded ClickHouse.

A prediction and its label join only when their event times are at most JOIN_TTL_SECONDS
apart (either half first; exactly the TTL still joins). In the first window: requests
labeled within the TTL, labeled later than the TTL after (or earlier than the TTL before)
the prediction, never labeled, and labels without a prediction. Three TTLs later a few
more requests push the event-time watermark past every one of those halves' ts + TTL, so
they expire; some of the later ones are left waiting. The store's figures, the outcomes
table and the worker's /status counters must say exactly which requests joined.
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
WINDOW, GRACE, TTL = 600, 60, 3600
TTL_MS = TTL * 1000
LATER = T0 + 3 * TTL_MS  # the window of the requests that move event time on


def _prediction(rid: str, ts: int, rng: random.Random) -> dict:
    score = round(rng.random(), 4)
    features = {"amount": round(rng.uniform(1, 5_000), 2), "country": rng.choice(["de", "fr", "日本"]),
                "vip": rng.random() < 0.2, "items": rng.randint(1, 9), "coupon": None}
    event = {"request_id": rid, "model": "ttl", "model_version": "v1", "timestamp": ts,
             "prediction": int(score >= 0.5), "features": features, "latency_ms": rng.randint(1, 50)}
    if rng.random() < 0.5:
        event["scores"] = {"0": round(1 - score, 4), "1": score}
    else:
        event["score"] = score
    return event


def _label(rid: str, ts: int, label: int) -> dict:
    return {"request_id": rid, "label": label, "timestamp": ts}


def _stream(rng: random.Random) -> tuple[list[dict], list[dict]]:
    """(predictions, labels); label delays relative to the prediction say what must join."""
    predictions, labels = [], []

    def request(rid: str, ts: int, delay_ms: int | None) -> None:
        p = _prediction(rid, ts, rng)
        predictions.append(p)
        if delay_ms is not None:
            right = rng.random() < 0.75
            labels.append(_label(rid, ts + delay_ms, p["prediction"] if right else 1 - p["prediction"]))

    first = [rng.randint(1_000, TTL_MS - 1_000) for _ in range(20)]
    first += [-rng.randint(1_000, 120_000) for _ in range(3)]  # labeled before the prediction
    first += [TTL_MS, -TTL_MS]  # exactly the TTL apart: still joins
    first += [TTL_MS + 1, TTL_MS + 60_000, TTL_MS + 1_200_000, -(TTL_MS + 1)]  # beyond: never joins
    first += [None] * 6  # never labeled
    rng.shuffle(first)
    for i, delay in enumerate(first):
        request(f"first-{i}", T0 + 5_000 + i * 15_000, delay)
    for i in range(3):  # labels without any prediction
        labels.append(_label(f"orphan-{i}", T0 + 100_000 + i * 1_000, 1))
    for i in range(12):
        request(f"later-{i}", LATER + i * 5_000, 5_000 if i < 9 else None)  # the last 3 wait at the end
    for i in range(2):  # labels that wait at the end
        labels.append(_label(f"later-orphan-{i}", LATER + 58_000 + i * 1_000, 0))
    return predictions, labels


def _after_restart(predictions: list[dict], labels: list[dict]) -> tuple[list[dict], list[dict]]:
    """Partners, sent while no worker runs, for halves that wait when the first run stops."""
    waiting_prediction = next(p for p in predictions if p["request_id"] == "later-9")
    waiting_label = next(g for g in labels if g["request_id"] == "later-orphan-0")
    late_prediction = _prediction("later-orphan-0", waiting_label["timestamp"] - 5_000, random.Random(9))
    return [late_prediction], [_label("later-9", waiting_prediction["timestamp"] + 10_000,
                                      waiting_prediction["prediction"])]


def _joins(prediction: dict, label: dict) -> bool:
    """The contract's rule as the worker applies it: event times at most JOIN_TTL_SECONDS apart."""
    return abs(label["timestamp"] - prediction["timestamp"]) <= TTL_MS


def _expect(predictions: list[dict], labels: list[dict]) -> dict:
    """Who joins, who expires and who still waits once the watermark is at the last event."""
    by_rid = {p["request_id"]: p for p in predictions}
    label_of = {g["request_id"]: g for g in labels}
    joined = {rid for rid, g in label_of.items() if rid in by_rid and _joins(by_rid[rid], g)}
    watermark = max(e["timestamp"] for e in [*predictions, *labels])
    expired = {rid for rid, p in by_rid.items() if rid not in joined and p["timestamp"] + TTL_MS < watermark}
    unmatched = {rid for rid, g in label_of.items() if rid not in joined and g["timestamp"] + TTL_MS < watermark}
    return {"predictions": by_rid, "labels": label_of, "joined": joined, "expired": expired,
            "unmatched": unmatched, "watermark": watermark, "waiting_predictions": set(by_rid) - joined - expired,
            "waiting_labels": set(label_of) - joined - unmatched}


def _send(bootstrap: str, topics: dict[str, str], predictions: list[dict], labels: list[dict]) -> None:
    for topic, events in ((topics["TOPIC_PREDICTIONS"], predictions), (topics["TOPIC_GROUND_TRUTH"], labels)):
        ordered = sorted(events, key=lambda e: e["timestamp"])
        produce(bootstrap, topic, [(e["request_id"].encode(), orjson.dumps(e)) for e in ordered])


def _wait_for_watermark_at_the_end(run: WorkerRun, expected: int, since_start: bool = False,
                                   timeout: float = 60.0) -> dict:
    """Settled, and the worker's own watermark (the one expiry uses) at the last event time."""
    status = run.wait_until_settled(expected, counted_since_start=since_start)
    deadline = time.monotonic() + timeout
    while status["watermark_ms"] < status["max_event_ms"] or status["refreshed_messages"] < expected:
        assert time.monotonic() < deadline, f"watermark did not reach the last event: {status}"
        time.sleep(0.5)
        status = run.status() or status
    time.sleep(1.5)  # one more refresh: nothing may change any more
    return run.status() or status


@pytest.fixture(scope="module")
def finished(broker, tmp_path_factory):
    """Two runs of the worker on one store: the second starts from what the first left waiting."""
    predictions, labels = _stream(random.Random(3600))
    more_predictions, more_labels = _after_restart(predictions, labels)
    topics = unique_topics("join-ttl")
    create_topics(load_settings({**topics, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap}))
    _send(broker.bootstrap, topics, predictions, labels)
    workdir = tmp_path_factory.mktemp("join-ttl")
    run = WorkerRun(worker_env(broker.bootstrap, topics, workdir, WINDOW_SECONDS=WINDOW,
                               LABEL_GRACE_SECONDS=GRACE, JOIN_TTL_SECONDS=TTL), workdir).start()
    try:
        first = _wait_for_watermark_at_the_end(run, len(predictions) + len(labels))
    finally:
        assert run.stop() == 0, run.log_tail()
    _send(broker.bootstrap, topics, more_predictions, more_labels)
    run.start()
    try:
        second = _wait_for_watermark_at_the_end(run, 0, since_start=True)
    finally:
        assert run.stop() == 0, run.log_tail()
    return {"run": run, "first": first, "second": second, "predictions": predictions, "labels": labels,
            "all_predictions": predictions + more_predictions, "all_labels": labels + more_labels}


@pytest.fixture(scope="module")
def want(finished):
    """What the first run must have done, from what the test sent."""
    return _expect(finished["predictions"], finished["labels"])


@pytest.fixture(scope="module")
def want_all(finished):
    """What the store must hold after both runs."""
    return _expect(finished["all_predictions"], finished["all_labels"])


def test_the_stream_has_every_case(want, want_all):
    # Not a check of the worker: the cases the other tests rely on are really in the data.
    first = {rid for rid in want["predictions"] if rid.startswith("first-")}
    labeled_late = {rid for rid in first & set(want["labels"]) if rid not in want["joined"]}
    assert len(want["joined"] & first) == 25 and len(labeled_late) == 4
    assert len(first - set(want["labels"])) == 6
    assert labeled_late <= want["expired"] and labeled_late <= want["unmatched"]
    assert want["waiting_predictions"] == {"later-9", "later-10", "later-11"}
    assert want["waiting_labels"] == {"later-orphan-0", "later-orphan-1"}
    assert want_all["joined"] - want["joined"] == {"later-9", "later-orphan-0"}
    assert want_all["expired"] == want["expired"] and want_all["unmatched"] == want["unmatched"]


def test_window_figures_count_unmatched_predictions_but_not_as_labeled(finished, want_all):
    rows = finished["run"].query(
        "SELECT toUnixTimestamp64Milli(window_start), predictions, labeled, correct, accuracy, final "
        "FROM monitoring.window_metrics FINAL WHERE model = 'ttl' AND model_version = 'v1' ORDER BY window_start")
    expected: dict[int, tuple[int, int, int]] = {}
    for rid, p in want_all["predictions"].items():
        window = p["timestamp"] // (WINDOW * 1000) * WINDOW * 1000
        n, labeled, correct = expected.get(window, (0, 0, 0))
        joined = rid in want_all["joined"]
        right = joined and want_all["labels"][rid]["label"] == p["prediction"]
        expected[window] = (n + 1, labeled + joined, correct + right)
    assert {w: (n, labeled, correct) for w, n, labeled, correct, _, _ in rows} == expected
    assert {w: final for w, *_, final in rows} == {T0: 1, LATER: 0}
    for _, _, labeled, correct, accuracy, _ in rows:
        assert accuracy == pytest.approx(correct / labeled, abs=1e-12)


def test_status_counts_expired_halves_and_what_still_waits(finished, want):
    status = finished["first"]
    assert status["watermark_ms"] == want["watermark"]
    assert status["pending_predictions"] == len(want["waiting_predictions"])
    assert status["pending_labels"] == len(want["waiting_labels"])
    counters = status["counters"]
    assert counters["expired_predictions"] == len(want["expired"])
    assert counters["unmatched_labels"] == len(want["unmatched"])
    assert counters["outcomes"] == len(want["joined"])
    assert counters["predictions"] == len(want["predictions"])
    assert counters["labels"] == len(want["labels"])


def test_after_a_restart_the_waiting_halves_are_back_and_join(finished, want, want_all):
    status = finished["second"]  # counters count from the restart on
    assert status["watermark_ms"] == want_all["watermark"]
    assert status["pending_predictions"] == len(want_all["waiting_predictions"])
    assert status["pending_labels"] == len(want_all["waiting_labels"])
    counters = status["counters"]
    assert counters["outcomes"] == len(want_all["joined"]) - len(want["joined"])
    assert counters["expired_predictions"] == 0 and counters["unmatched_labels"] == 0


def test_outcomes_hold_the_joined_requests_and_no_other(finished, want_all):
    rows = finished["run"].query(
        "SELECT request_id, toUnixTimestamp64Milli(predicted_at), toUnixTimestamp64Milli(labeled_at), prediction, "
        "label, score, latency_ms, features FROM monitoring.outcomes FINAL")
    assert len(rows) == len(want_all["joined"])
    assert {r[0] for r in rows} == want_all["joined"]
    for rid, predicted_at, labeled_at, prediction, label, score, latency, features in rows:
        p, g = want_all["predictions"][rid], want_all["labels"][rid]
        assert (predicted_at, labeled_at) == (p["timestamp"], g["timestamp"])
        assert abs(labeled_at - predicted_at) <= TTL_MS
        assert (prediction, label) == (str(p["prediction"]), str(g["label"]))
        # The waiting half came back whole, also the one a restart rebuilt from the store.
        assert score == p.get("score", p.get("scores", {}).get("1"))
        assert latency == p["latency_ms"] and orjson.loads(features) == p["features"]
