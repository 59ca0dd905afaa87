"""Topic creation and checks against a real broker, and the Kafka test helpers themselves."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections import Counter

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from streams.settings import Settings, load_settings
from tests.kafka_helpers import consume_all, produce, unique_topics
from tools.broker import free_port
from tools.topics import KafkaUnreachable, TopicError, check_topics, create_topics

pytestmark = pytest.mark.integration


def unique_settings(bootstrap: str, **env: str) -> Settings:
    return load_settings({"KAFKA_BOOTSTRAP_SERVERS": bootstrap, **unique_topics(), **env})


def partitions(bootstrap: str, topics: list[str]) -> dict[str, int | None]:
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    return {t: len(metadata.topics[t].partitions) if t in metadata.topics else None for t in topics}


def make_topics(bootstrap: str, counts: dict[str, int]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the futures resolve
    futures = admin.create_topics([NewTopic(t, num_partitions=n, replication_factor=1) for t, n in counts.items()])
    for future in futures.values():
        future.result(timeout=10)


def names(s: Settings) -> list[str]:
    return [s.topic_predictions, s.topic_ground_truth, s.topic_alerts, s.topic_dlq]


def test_create_topics_uses_topic_partitions_and_is_idempotent(broker):
    settings = unique_settings(broker.bootstrap, TOPIC_PARTITIONS="3")
    assert sorted(create_topics(settings)) == sorted(names(settings))
    assert partitions(broker.bootstrap, names(settings)) == dict.fromkeys(names(settings), 3)
    assert create_topics(settings) == []
    assert check_topics(settings) == []


def test_topic_settings_fixture_gives_fresh_ready_topics(broker, topic_settings):
    assert topic_settings.kafka_bootstrap_servers == broker.bootstrap
    assert partitions(broker.bootstrap, names(topic_settings)) == dict.fromkeys(names(topic_settings), 4)
    assert check_topics(topic_settings) == []


def test_bootstrap_argument_overrides_the_settings(broker):
    settings = unique_settings("127.0.0.1:1")
    assert len(create_topics(settings, bootstrap=broker.bootstrap)) == 4
    assert check_topics(settings, bootstrap=broker.bootstrap) == []


def test_partition_mismatch_is_reported_exactly(broker):
    s = unique_settings(broker.bootstrap)
    make_topics(broker.bootstrap, {s.topic_predictions: 4, s.topic_ground_truth: 2, s.topic_alerts: 1, s.topic_dlq: 1})
    mismatch = (f"{s.topic_predictions} has 4 partitions but {s.topic_ground_truth} has 2: both input topics "
                "need the same count so both halves of a request meet in one partition")
    assert check_topics(s) == [mismatch]
    with pytest.raises(TopicError) as caught:
        create_topics(s)
    assert caught.value.problems == [mismatch]


def test_missing_topics_are_reported_one_line_each(broker):
    s = unique_settings(broker.bootstrap)
    hint = "does not exist: run `python -m tools.topics create`"
    assert check_topics(s) == [f"topic '{t}' {hint}" for t in names(s)]
    make_topics(broker.bootstrap, {s.topic_predictions: 4, s.topic_ground_truth: 4})
    assert check_topics(s) == [f"topic '{s.topic_alerts}' {hint}", f"topic '{s.topic_dlq}' {hint}"]


def test_a_missing_input_topic_is_created_to_match_its_partner(broker):
    s = unique_settings(broker.bootstrap, TOPIC_PARTITIONS="4")
    make_topics(broker.bootstrap, {s.topic_predictions: 6})
    assert sorted(create_topics(s)) == sorted([s.topic_ground_truth, s.topic_alerts, s.topic_dlq])
    assert partitions(broker.bootstrap, names(s)) == {s.topic_predictions: 6, s.topic_ground_truth: 6,
                                                      s.topic_alerts: 4, s.topic_dlq: 4}


def test_unreachable_kafka_is_one_error_within_the_timeout():
    s = unique_settings(f"127.0.0.1:{free_port()}")
    with pytest.raises(KafkaUnreachable, match=r"^cannot reach Kafka at 127\.0\.0\.1:\d+ within 1 s: "):
        check_topics(s, timeout=1)


# --- command line ---

def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TOPIC_", "KAFKA_"))}
    return subprocess.run([sys.executable, "-m", "tools.topics", *args], env={**clean, **env},
                          capture_output=True, text=True, timeout=60)


def test_cli_check_create_check(broker):
    s = unique_settings(broker.bootstrap)
    env = {"TOPIC_PREDICTIONS": s.topic_predictions, "TOPIC_GROUND_TRUTH": s.topic_ground_truth,
           "TOPIC_ALERTS": s.topic_alerts, "TOPIC_DLQ": s.topic_dlq, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap}
    missing = run_cli("check", **env)
    assert missing.returncode == 1
    assert missing.stderr.splitlines() == [
        f"topics: topic '{t}' does not exist: run `python -m tools.topics create`" for t in names(s)]
    created = run_cli("create", **env)
    assert created.returncode == 0, created.stderr
    assert created.stdout.splitlines() == [f"created {t} (4 partitions)" for t in names(s)]
    again = run_cli("create", "--bootstrap", broker.bootstrap, **{**env, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [f"exists  {t} (4 partitions)" for t in names(s)]
    ok = run_cli("check", **env)
    assert (ok.returncode, ok.stderr) == (0, "")
    assert ok.stdout.startswith("OK: ")


def test_cli_check_reports_a_mismatch_with_exit_1(broker):
    s = unique_settings(broker.bootstrap)
    make_topics(broker.bootstrap, {s.topic_predictions: 4, s.topic_ground_truth: 2, s.topic_alerts: 1, s.topic_dlq: 1})
    result = run_cli("check", "--bootstrap", broker.bootstrap, TOPIC_PREDICTIONS=s.topic_predictions,
                     TOPIC_GROUND_TRUTH=s.topic_ground_truth, TOPIC_ALERTS=s.topic_alerts, TOPIC_DLQ=s.topic_dlq)
    assert result.returncode == 1
    assert result.stderr == (f"topics: {s.topic_predictions} has 4 partitions but {s.topic_ground_truth} has 2: "
                             "both input topics need the same count so both halves of a request meet in one "
                             "partition\n")


def test_cli_unreachable_kafka_exits_2_with_one_line():
    for command in ("check", "create"):
        result = run_cli(command, "--bootstrap", f"127.0.0.1:{free_port()}", "--timeout", "1")
        assert result.returncode == 2
        assert len(result.stderr.splitlines()) == 1
        assert result.stderr.startswith("topics: cannot reach Kafka at 127.0.0.1:")


def test_cli_bad_setting_exits_2_with_its_line():
    result = run_cli("check", TOPIC_PARTITIONS="0")
    assert result.returncode == 2
    assert result.stderr == ("topics: TOPIC_PARTITIONS='0' is not valid: "
                             "expected an integer between 1 and 1024\n")


# --- test helpers: produce and consume_all against the real broker ---

def test_produce_and_consume_all_round_trip(topic_settings):
    bootstrap, topic = topic_settings.kafka_bootstrap_servers, topic_settings.topic_predictions
    items = [(f"r{i % 20}".encode(), f'{{"n": {i}}}'.encode()) for i in range(60)] + [(None, b"no key")]
    assert produce(bootstrap, topic, items, headers=[("source", b"test")]) == 61
    messages = consume_all(bootstrap, topic, expected=61)
    assert Counter((m.key(), m.value()) for m in messages) == Counter(items)
    assert all(m.headers() == [("source", b"test")] for m in messages)
    by_key: dict[bytes, set[int]] = {}
    for m in messages:
        if m.key() is not None:
            by_key.setdefault(m.key(), set()).add(m.partition())
    assert all(len(parts) == 1 for parts in by_key.values())
    assert len({m.partition() for m in messages}) > 1


def test_consume_all_catches_extras_and_stops_at_the_timeout(topic_settings):
    bootstrap, topic = topic_settings.kafka_bootstrap_servers, topic_settings.topic_dlq
    produce(bootstrap, topic, [(b"k", b"%d" % i) for i in range(30)])
    assert len(consume_all(bootstrap, topic, expected=10)) == 30
    assert len(consume_all(bootstrap, topic, expected=31, timeout=1.5)) == 30


def test_one_key_meets_in_the_same_partition_number_on_both_input_topics(topic_settings):
    s = topic_settings
    keys = [f"req-{i}".encode() for i in range(40)]
    for topic in s.input_topics:
        produce(s.kafka_bootstrap_servers, topic, [(k, b"{}") for k in keys])
    where = [{m.key(): m.partition() for m in consume_all(s.kafka_bootstrap_servers, t, expected=40)}
             for t in s.input_topics]
    assert where[0] == where[1] and len(where[0]) == 40


def test_produce_raises_on_failure(topic_settings):
    with pytest.raises(KafkaException):
        produce(topic_settings.kafka_bootstrap_servers, topic_settings.topic_alerts, [(b"k", b"x" * 2_000_000)])


def test_consume_all_of_a_missing_topic_raises(broker):
    with pytest.raises(KafkaException, match="does not exist"):
        consume_all(broker.bootstrap, f"missing-{uuid.uuid4().hex}", expected=1, timeout=2)
