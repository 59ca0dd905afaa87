"""The replay producer against a real broker: every event acknowledged, keyed, valid and in order."""

from __future__ import annotations

import time
from collections import Counter, defaultdict

import pytest
from confluent_kafka import Message

from producers.replay import main, prepare, replay
from producers.scenarios import generate, write
from streams.parsing import parse_ground_truth, parse_prediction
from streams.records import Rejection
from streams.settings import Settings, load_settings
from tests.kafka_helpers import consume_all, unique_topics

pytestmark = pytest.mark.integration


def _topic_env(bootstrap: str) -> dict[str, str]:
    return {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, **unique_topics("replay")}


def _read_back(settings: Settings, predictions: int, labels: int) -> tuple[list[Message], list[Message]]:
    bootstrap = settings.kafka_bootstrap_servers
    return (consume_all(bootstrap, settings.topic_predictions, predictions),
            consume_all(bootstrap, settings.topic_ground_truth, labels))


def _event_times(messages: list[Message], parse) -> list[int]:
    """Parse every message (each must be valid and keyed by its request_id); their event times."""
    times = []
    for message in messages:
        event = parse(message.value(), key=message.key())
        assert not isinstance(event, Rejection), event
        assert message.key() == event.request_id.encode()
        times.append(event.ts_ms)
    return times


def _assert_event_time_order(predictions: list[Message], labels: list[Message]) -> None:
    """Per partition of each topic, and across both topics (by produce time), event time never goes back."""
    stamped = [(ts, m.timestamp()[1], m) for ts, m in zip(_event_times(predictions, parse_prediction), predictions, strict=True)]
    stamped += [(ts, m.timestamp()[1], m) for ts, m in zip(_event_times(labels, parse_ground_truth), labels, strict=True)]
    per_partition = defaultdict(list)
    for ts, _, m in sorted(stamped, key=lambda item: (item[2].topic(), item[2].partition(), item[2].offset())):
        per_partition[(m.topic(), m.partition())].append(ts)
    assert all(times == sorted(times) for times in per_partition.values())
    produce_times = [created for _, created, _ in sorted(stamped, key=lambda item: (item[0], item[1]))]
    assert produce_times == sorted(produce_times)


def test_scenario_file_is_replayed_completely_and_in_event_time_order(broker, tmp_path):
    scenario = generate("degradation", rows=2000, periods=4)
    path, _ = write(scenario, tmp_path / "degradation.csv")
    settings = load_settings(_topic_env(broker.bootstrap))
    labeled = [row for row in scenario.rows if row["actual_label"] is not None]

    result = replay(path, settings, workers=2)

    assert result.ok and (result.rows, result.skipped, result.rejected) == (len(scenario.rows), 0, [])
    assert result.acknowledged == {settings.topic_predictions: len(scenario.rows),
                                   settings.topic_ground_truth: len(labeled)}
    assert sorted(result.created_topics) == sorted([settings.topic_predictions, settings.topic_ground_truth,
                                                    settings.topic_alerts, settings.topic_dlq])
    predictions, labels = _read_back(settings, len(scenario.rows), len(labeled))
    assert (len(predictions), len(labels)) == (len(scenario.rows), len(labeled)) == (2013, 1904)
    assert Counter(m.key().decode() for m in predictions) == Counter(r["request_id"] for r in scenario.rows)
    assert Counter(m.key().decode() for m in labels) == Counter(r["request_id"] for r in labeled)
    assert {m.partition() for m in predictions} == set(range(settings.topic_partitions))
    partition_of = {m.key(): m.partition() for m in predictions}
    assert all(partition_of[m.key()] == m.partition() for m in labels)  # both halves meet
    _assert_event_time_order(predictions, labels)
    early = [r for r in labeled if r["actual_timestamp"] < r["timestamp"]]
    assert early, "the scenario has labels that precede their prediction"


def test_worker_processes_prepare_exactly_what_one_process_does(tmp_path):
    scenario = generate("sudden-drift", rows=3000, periods=5)
    path, _ = write(scenario, tmp_path / "log.jsonl")
    settings = load_settings({})
    one = prepare(path, settings, workers=1, limit=2500)
    three = prepare(path, settings, workers=3, limit=2500)
    assert (three.rows, three.skipped, three.events) == (one.rows, one.skipped, one.events)
    assert one.rows == 2500 and len(one.events) == 2500 + sum(
        r["actual_label"] is not None for r in scenario.rows[:2500])
    assert [e[0] for e in one.events] == sorted(e[0] for e in one.events)


BROKEN_CSV = """\
request_id,timestamp,prediction,score,actual_label,actual_timestamp,age
r1,2026-01-05T00:00:00Z,1,0.9,1,2026-01-05T00:10:00Z,30
r2,,0,0.2,0,2026-01-05T00:11:00Z,40
r3,2026-01-05T00:02:00Z,0,1.5,,,50
r4,2026-01-05T00:03:00Z,1,0.7,1,yesterday,60
r5,2026-01-05T00:04:00Z,1,0.8,0,2026-01-05T00:00:30Z,70
r6,2026-01-05T00:05:00Z,0,0.1,,,80,extra
7,1767571500000,true,0.1,false,1767571800000,
"""


def test_broken_rows_are_reported_with_their_line_and_skipped(broker, tmp_path, monkeypatch, capsys):
    path = tmp_path / "log.csv"
    path.write_text(BROKEN_CSV)
    env = _topic_env(broker.bootstrap)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    code = main(["--input", str(path), "--model", "fraud"])

    out, err = capsys.readouterr()
    assert code == 0
    assert err.splitlines()[-4:] == [
        "line 3: skipped: prediction missing_field: timestamp is required",
        "line 4: skipped: prediction invalid_value: score=1.5 is not a probability in [0, 1]",
        "line 5: skipped: ground truth invalid_value: timestamp 'yesterday' is not ISO-8601",
        "line 7: skipped: 8 cells, the header has 7",
    ]
    assert out.splitlines()[1:4] == [
        f"{env['TOPIC_PREDICTIONS']}: 3 acknowledged",
        f"{env['TOPIC_GROUND_TRUTH']}: 3 acknowledged",
        "skipped rows: 4",
    ]
    settings = load_settings(env)
    predictions, labels = _read_back(settings, 3, 3)
    assert sorted(m.key() for m in predictions) == sorted(m.key() for m in labels) == [b"7", b"r1", b"r5"]
    _assert_event_time_order(predictions, labels)
    r5 = next(parse_prediction(m.value()) for m in predictions if m.key() == b"r5")
    assert (r5.model, r5.model_version, r5.prediction, r5.score, r5.features) == ("fraud", "v1", "1", 0.8, {"age": 70})
    seven = next(parse_ground_truth(m.value()) for m in labels if m.key() == b"7")
    assert (seven.label, seven.ts_ms) == ("0", 1767571800000)


IDENTIFIERS_CSV = """\
request_id,model,model_version,timestamp,prediction,score,actual_label,actual_timestamp,region
00123,churn,2026.10,2026-01-05T00:00:00Z,1,0.9,1,2026-01-05T00:10:00Z,007
123,churn,2026.10,2026-01-05T00:01:00Z,0,0.3,,,north
1e5,7,3,2026-01-05T00:02:00Z,1,0.8,0,2026-01-05T00:20:00Z,south
"""


def test_identifiers_are_sent_exactly_as_the_csv_wrote_them(broker, tmp_path):
    path = tmp_path / "log.csv"
    path.write_text(IDENTIFIERS_CSV)
    settings = load_settings(_topic_env(broker.bootstrap))

    result = replay(path, settings, workers=1)

    assert result.ok and (result.rows, result.skipped, result.rejected) == (3, 0, [])
    predictions, labels = _read_back(settings, 3, 2)
    _assert_event_time_order(predictions, labels)
    sent = {m.key(): parse_prediction(m.value(), key=m.key()) for m in predictions}
    assert {key: (p.request_id, p.model, p.model_version) for key, p in sent.items()} == {
        b"00123": ("00123", "churn", "2026.10"),
        b"123": ("123", "churn", "2026.10"),
        b"1e5": ("1e5", "7", "3"),
    }
    assert sent[b"00123"].features == {"region": 7}  # other columns keep the CSV typing rule
    truths = {m.key(): parse_ground_truth(m.value(), key=m.key()) for m in labels}
    assert {key: (t.request_id, t.model, t.model_version) for key, t in truths.items()} == {
        b"00123": ("00123", "churn", "2026.10"),
        b"1e5": ("1e5", "7", "3"),
    }


def test_speed_paces_events_relative_to_the_first(broker):
    settings = load_settings(_topic_env(broker.bootstrap))
    rows = [{"request_id": f"r{i}", "timestamp": 1767571200000 + 1000 * i, "prediction": 1} for i in range(3)]
    started = time.monotonic()
    result = replay(enumerate(rows, start=1), settings, speed=4.0)
    elapsed = time.monotonic() - started
    assert result.acknowledged[settings.topic_predictions] == 3
    assert 0.5 <= elapsed < 5.0  # 2 s of event time at 4x real time
