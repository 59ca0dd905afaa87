"""More than 10,000 hostile messages on both input topics, mixed with good ones.

The worker must never crash, every bad message must reach the DLQ with its
reason (original key and bytes), and the good requests must be counted exactly.
"""

from __future__ import annotations

import random
import time

import orjson
import pytest

from tests import expected
from tests.hostile import hostile_message
from tests.kafka_helpers import consume_all, produce, unique_topics
from tests.worker_harness import WorkerRun, worker_env

pytestmark = pytest.mark.integration
T0 = 1_767_225_600_000


def _good(i: int) -> tuple[dict, dict]:
    rid = f"ok-{i}"
    p = {"request_id": rid, "model": "m", "model_version": "v1", "timestamp": T0 + i * 1000, "prediction": i % 2,
         "score": 0.7, "features": {"x": i % 7, "c": "abc"[i % 3]}, "extra": {"ignored": [1, 2]}}
    g = {"request_id": rid, "label": (i // 3) % 2, "timestamp": T0 + i * 1000 + 5000, "unknown": None}
    return p, g


def test_hostile_stream_never_crashes_and_all_bad_messages_reach_the_dlq(broker, tmp_path):
    rng = random.Random(7)
    topics = unique_topics("hostile-input")
    from streams.settings import load_settings
    from tools.topics import create_topics
    create_topics(load_settings({**topics, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap}))
    goods = [_good(i) for i in range(2000)]
    pred_msgs: list[tuple[bytes, bytes]] = []
    label_msgs: list[tuple[bytes, bytes]] = []
    bad: list[bytes] = []
    for p, g in goods:
        pred_msgs.append((p["request_id"].encode(), orjson.dumps(p)))
        label_msgs.append((g["request_id"].encode(), orjson.dumps(g)))
        for _ in range(3):
            key, value = hostile_message(rng, p)
            pred_msgs.append((key, value))
            bad.append(value)
            key, value = hostile_message(rng, g)
            label_msgs.append((key, value))
            bad.append(value)
    assert len(bad) >= 10_000
    produce(broker.bootstrap, topics["TOPIC_PREDICTIONS"], pred_msgs)
    produce(broker.bootstrap, topics["TOPIC_GROUND_TRUTH"], label_msgs)

    run = WorkerRun(worker_env(broker.bootstrap, topics, tmp_path, WINDOW_SECONDS=600), tmp_path).start()
    status = run.wait_for_messages(len(pred_msgs) + len(label_msgs), timeout=240)
    deadline = time.monotonic() + 60  # the last batch's DLQ sends may still be under way (a loaded host)
    while status["counters"]["rejected"] < len(bad) and time.monotonic() < deadline:
        time.sleep(0.5)
        status = run.status() or status
    assert run.stop() == 0, run.log_tail()
    assert status["counters"]["rejected"] == len(bad)

    dlq = consume_all(broker.bootstrap, topics["TOPIC_DLQ"], expected=len(bad), timeout=60)
    assert sorted((m.value() or b"") for m in dlq) == sorted(bad)
    assert all(dict(m.headers())["dlq.reason"] for m in dlq)

    want = expected.figures([p for p, _ in goods], [g for _, g in goods], window_seconds=600, ttl_seconds=604_800)
    rows = run.query("SELECT toUnixTimestamp64Milli(window_start), predictions, labeled, correct "
                     "FROM monitoring.window_metrics FINAL ORDER BY 1")
    assert [(r[1], r[2], r[3]) for r in rows] == [
        (w.predictions, w.labeled, w.correct) for _, w in sorted(want.items())]
