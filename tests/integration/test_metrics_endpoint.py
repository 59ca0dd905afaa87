"""GET /metrics of a real worker (Tansu broker -> `faust -A streams.app worker`) in Prometheus' format.

A handful of events, one of them malformed, go through the worker; its scrape must
count them per topic, name the DLQ reason, join what matches and hold one latency
observation per message read.
"""

from __future__ import annotations

import time
import urllib.request

import orjson
import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from streams.settings import load_settings
from tests.kafka_helpers import produce, unique_topics
from tests.worker_harness import WorkerRun, worker_env
from tools.topics import create_topics

pytestmark = pytest.mark.integration
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, the start of a window of WINDOW_SECONDS=600
PREDICTIONS = 6
LABELS = {"r0": 1, "r1": 0, "r2": 1, "r3": 1}  # predictions alternate 1, 0, 1, 0: r3 is wrong


def _scrape(port: str) -> tuple[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        content_type = response.headers["Content-Type"]
        text = response.read().decode()
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for family in text_string_to_metric_families(text) for s in family.samples}
    return content_type, values


@pytest.fixture(scope="module")
def scrape(broker, tmp_path_factory):
    topics = unique_topics("metrics")
    create_topics(load_settings({**topics, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap}))
    predictions = [(f"r{i}".encode(), orjson.dumps(
        {"request_id": f"r{i}", "model": "m", "model_version": "v1", "timestamp": T0 + i * 1000,
         "prediction": (i + 1) % 2, "score": 0.8, "features": {"x": i}})) for i in range(PREDICTIONS)]
    produce(broker.bootstrap, topics["TOPIC_PREDICTIONS"], [*predictions, (b"bad", b"{not json")])
    produce(broker.bootstrap, topics["TOPIC_GROUND_TRUTH"], [
        (rid.encode(), orjson.dumps({"request_id": rid, "label": label, "timestamp": T0 + 60_000}))
        for rid, label in LABELS.items()])
    total = PREDICTIONS + 1 + len(LABELS)
    workdir = tmp_path_factory.mktemp("metrics")
    env = worker_env(broker.bootstrap, topics, workdir, WINDOW_SECONDS=600)
    run = WorkerRun(env, workdir).start()
    try:
        run.wait_for_messages(total)
        deadline = time.monotonic() + 30
        while True:  # until the batch is observed and a refresh computed the window's figures
            content_type, values = _scrape(env["MONITOR_WEB_PORT"])
            observed = values.get(("model_monitor_processing_latency_seconds_count", ())) == total
            refreshed = any(name == "model_monitor_window_accuracy_ratio" for name, _ in values)
            if (observed and refreshed) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        code = run.stop()
    assert code == 0, run.log_tail()
    return {"topics": topics, "content_type": content_type, "values": values, "total": total}


def test_served_in_the_text_exposition_format(scrape):
    assert scrape["content_type"] == CONTENT_TYPE_LATEST


def test_messages_counted_per_input_topic(scrape):
    values, topics = scrape["values"], scrape["topics"]
    per_topic = {dict(labels)["topic"]: v for (name, labels), v in values.items()
                 if name == "model_monitor_input_messages_total"}
    assert per_topic == {topics["TOPIC_PREDICTIONS"]: PREDICTIONS + 1, topics["TOPIC_GROUND_TRUTH"]: len(LABELS)}
    assert values[("model_monitor_predictions_total", ())] == PREDICTIONS
    assert values[("model_monitor_labels_total", ())] == len(LABELS)
    assert values[("model_monitor_outcomes_joined_total", ())] == len(LABELS)
    assert values[("model_monitor_join_pending_predictions", ())] == PREDICTIONS - len(LABELS)
    assert values[("model_monitor_join_pending_labels", ())] == 0


def test_the_malformed_message_is_counted_with_its_dlq_reason(scrape):
    dlq = {dict(labels)["reason"]: v for (name, labels), v in scrape["values"].items()
           if name == "model_monitor_dlq_messages_total"}
    assert dlq == {"invalid_json": 1}


def test_latency_histogram_holds_one_observation_per_message(scrape):
    values, total = scrape["values"], scrape["total"]
    assert values[("model_monitor_processing_latency_seconds_count", ())] == total
    assert values[("model_monitor_processing_latency_seconds_bucket", (("le", "+Inf"),))] == total
    assert values[("model_monitor_processing_latency_seconds_sum", ())] > 0
    batches = values[("model_monitor_batch_size_messages_count", ())]
    assert 1 <= batches <= total
    assert values[("model_monitor_batch_size_messages_sum", ())] == total


def test_accuracy_and_sink_figures(scrape):
    values = scrape["values"]
    version = (("model", "m"), ("model_version", "v1"))
    assert values[("model_monitor_window_accuracy_ratio", version)] == 0.75
    assert values[("model_monitor_rolling_accuracy_ratio", version)] == 0.75
    written = {dict(labels)["table"]: v for (name, labels), v in values.items()
               if name == "model_monitor_sink_rows_written_total"}
    assert (written["predictions"], written["labels"], written["outcomes"]) == (PREDICTIONS, len(LABELS), 4)
    assert values[("model_monitor_sink_rows_pending", ())] == 0
