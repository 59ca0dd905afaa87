"""End to end on the real stack: Tansu broker -> `faust -A streams.app worker` -> embedded ClickHouse.

A hand-made stream with two model versions (binary with scores and features,
three-class without), late and early labels, never-labeled requests, duplicates,
a label beyond the join TTL and malformed messages on both topics. After SIGTERM
the store must hold the contract's figures exactly as numpy computes them, the
DLQ every malformed message with its reason, and exactly the expected alerts.
"""

from __future__ import annotations

import random

import orjson
import pytest

from tests import expected
from tests.kafka_helpers import consume_all, produce, unique_topics
from tests.worker_harness import WorkerRun, worker_env

pytestmark = pytest.mark.integration

WINDOW = 600
GRACE = 600
TTL = 7200
BINS = 5
MIN_LABELED = 20
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
WINDOWS = 8
DEGRADED_FROM = 4


def _stream(rng: random.Random) -> tuple[list[dict], list[dict], list[tuple[int, str, bytes | None, bytes]]]:
    """Predictions, labels and the timed messages (ts, topic, key, value), bad ones included."""
    predictions, labels, timed = [], [], []
    zones = random.Random(7)  # its own draws: the rest of the stream stays as it was

    def emit(ts: int, topic: str, event: dict) -> None:
        timed.append((ts, topic, event["request_id"].encode(), orjson.dumps(event)))

    for w in range(WINDOWS):
        accuracy = 0.95 if w < DEGRADED_FROM else 0.70
        for i in range(400):
            rid = f"fraud-{w}-{i}"
            ts = T0 + w * WINDOW * 1000 + rng.randrange(WINDOW * 1000)
            pred = rng.random() < 0.4
            score = round(rng.uniform(0.5, 1.0) if pred else rng.uniform(0.0, 0.5), 4)
            age = round(rng.gauss(35 + (30 if w >= DEGRADED_FROM else 0), 10), 2)
            p = {"request_id": rid, "model": "fraud", "model_version": "v1", "timestamp": ts,
                 "prediction": int(pred), "score": score, "latency_ms": rng.randint(1, 40),
                 "features": {"age": age, "region": rng.choice(["n", "s", "e", "w"]),
                              "flag": rng.random() < 0.3, "maybe": None if rng.random() < 0.5 else 1.5,
                              "zone": 4.5 if w and i == 5 else zones.choice(ZONES)}}
            predictions.append(p)
            emit(ts, "p", p)
            if i % 50 == 7:
                emit(ts + 5, "p", p)  # duplicate prediction
            if rng.random() < 0.05:
                continue  # never labeled
            label = pred if rng.random() < accuracy else not pred
            delay = -rng.randint(1_000, 60_000) if i % 40 == 3 else rng.randint(10_000, 300_000)
            g = {"request_id": rid, "label": label, "timestamp": ts + delay}
            labels.append(g)
            emit(ts + delay, "g", g)
            if i % 60 == 11:
                emit(ts + delay + 1, "g", g)  # duplicate label
        for i in range(100):
            rid = f"topics-{w}-{i}"
            ts = T0 + w * WINDOW * 1000 + rng.randrange(WINDOW * 1000)
            pred = rng.choice(["a", "b", "c"])
            p = {"request_id": rid, "model": "topics", "model_version": "v2",
                 "timestamp": _iso(ts), "prediction": pred,
                 "features": {"length": rng.randint(10, 500)}}
            predictions.append(p)
            emit(ts, "p", p)
            label = pred if rng.random() < 0.9 else rng.choice(["a", "b", "c"])
            g = {"request_id": rid, "label": label, "timestamp": _iso(ts + rng.randint(5_000, 90_000)),
                 "model": "topics"}
            labels.append(g)
            emit(expected.ts_ms(g["timestamp"]), "g", g)
    # A label far beyond the TTL: counted as unmatched, never joined.
    late = {"request_id": "fraud-0-0", "label": 1, "timestamp": T0 + (TTL + 700) * 1000}
    emit(T0 + 3 * WINDOW * 1000, "g", late)  # arrives mid-stream but its time is far away
    return predictions, labels, timed


# A categorical feature sent as numbers and strings alike: its categories are canonical texts
# ("2" for 2 and 2.0, "1e-05", an integer too large to be exact as a float), and 4.5 (from
# window 1 on) is in none of them.
ZONES = [1, 2, 2.0, "3", 75001, "x", 1e-05, 2**60, True]


def _iso(ms: int) -> str:
    from datetime import UTC, datetime
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


BAD_PREDICTIONS = [
    (b"b1", b"{not json"),
    (b"b2", b'{"request_id":"b2","model":"fraud","model_version":"v1","timestamp":1767225600000}'),
    (b"b3", b'{"request_id":"b3","model":"fraud","model_version":"v1","timestamp":"yesterday","prediction":1}'),
    (b"b4", b"\xff\xfe\x00garbage"),
    (b"other", b'{"request_id":"b5","model":"fraud","model_version":"v1","timestamp":1767225600000,"prediction":1}'),
    (b"b6", b'[1, 2, 3]'),
]
BAD_LABELS = [
    (b"c1", b'{"request_id":"c1","label":{"x":1},"timestamp":1767225600000}'),
    (b"c2", b'{"request_id":"c2","label":1}'),
    (b"c3", b""),
]


@pytest.fixture(scope="module")
def finished_run(broker, tmp_path_factory):
    rng = random.Random(20261123)
    predictions, labels, timed = _stream(rng)
    topics = unique_topics("worker-figures")
    from streams.settings import load_settings
    from tools.topics import create_topics
    create_topics(load_settings({**topics, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap}))
    timed.sort(key=lambda m: m[0])
    name = {"p": topics["TOPIC_PREDICTIONS"], "g": topics["TOPIC_GROUND_TRUTH"]}
    for topic_key in ("p", "g"):
        produce(broker.bootstrap, name[topic_key], [(k, v) for _, t, k, v in timed if t == topic_key])
    produce(broker.bootstrap, name["p"], BAD_PREDICTIONS)
    produce(broker.bootstrap, name["g"], BAD_LABELS)
    workdir = tmp_path_factory.mktemp("worker")
    run = WorkerRun(worker_env(broker.bootstrap, topics, workdir, WINDOW_SECONDS=WINDOW, LABEL_GRACE_SECONDS=GRACE,
                               JOIN_TTL_SECONDS=TTL, PSI_BINS=BINS, MIN_LABELED=MIN_LABELED,
                               MONITOR_IDLE_SECONDS=2), workdir).start()
    total = len(timed) + len(BAD_PREDICTIONS) + len(BAD_LABELS)
    status = run.wait_for_messages(total)
    live_query = run.cli("sinks.query", "SELECT count() AS n FROM monitoring.outcomes FINAL", "--format", "json")
    live_write = run.cli("sinks.query", "DROP TABLE monitoring.outcomes")
    code = run.stop()
    return {"run": run, "predictions": predictions, "labels": labels, "topics": topics, "status": status,
            "code": code, "broker": broker, "live_query": live_query, "live_write": live_write}


@pytest.fixture(scope="module")
def want(finished_run):
    """The contract's figures, computed with numpy from what the test sent."""
    return expected.figures(finished_run["predictions"], finished_run["labels"], window_seconds=WINDOW,
                            ttl_seconds=TTL)


def test_worker_stops_cleanly_on_sigterm(finished_run):
    assert finished_run["code"] == 0, finished_run["run"].log_tail()


def test_window_figures_equal_numpy(finished_run, want):
    run = finished_run["run"]
    rows = run.query(
        "SELECT model, model_version, toUnixTimestamp64Milli(window_start), toUnixTimestamp64Milli(window_end), "
        "predictions, labeled, correct, accuracy, precision, recall, f1, positive_rate, mean_confidence "
        "FROM monitoring.window_metrics FINAL ORDER BY model, model_version, window_start")
    got = {(r[0], r[1], r[2]): r for r in rows}
    assert set(got) == set(want)
    for key, w in want.items():
        row = got[key]
        assert row[3] == key[2] + WINDOW * 1000
        assert (row[4], row[5], row[6]) == (w.predictions, w.labeled, w.correct), key
        assert row[7] == w.correct / w.labeled
        if key[0] == "fraud":
            precision = w.tp / (w.tp + w.fp)
            recall = w.tp / (w.tp + w.fn)
            assert row[8] == pytest.approx(precision, abs=1e-12)
            assert row[9] == pytest.approx(recall, abs=1e-12)
            assert row[10] == pytest.approx(2 * precision * recall / (precision + recall), abs=1e-12)
            assert row[11] == pytest.approx(w.positives / w.predictions, abs=1e-12)
            assert row[12] == pytest.approx(sum(w.confidences) / len(w.confidences), abs=1e-12)
        else:
            assert row[12] is None  # no scores: no confidence


def test_feature_and_prediction_psi_equal_numpy(finished_run, want):
    run = finished_run["run"]
    rows = run.query(
        "SELECT model, model_version, toUnixTimestamp64Milli(window_start), feature, psi, n "
        "FROM monitoring.feature_drift FINAL")
    got = {(r[0], r[1], r[2], r[3]): (r[4], r[5]) for r in rows}
    checked = 0
    for model, version in (("fraud", "v1"), ("topics", "v2")):
        ref_key = min(k for k in want if k[:2] == (model, version) and want[k].predictions >= MIN_LABELED)
        ref = want[ref_key]
        for key, w in want.items():
            if key[:2] != (model, version):
                continue
            for feature, values in w.features.items():
                value = expected.psi(ref.features[feature], values, BINS)
                psi, n = got[(model, version, key[2], feature)]
                assert n == sum(v is not None for v in values)
                assert psi == pytest.approx(value, abs=1e-9), (key, feature)
                checked += 1
            if w.scores:
                assert got[(model, version, key[2], "__score__")][0] == pytest.approx(
                    expected.psi_numeric(ref.scores, w.scores, BINS), abs=1e-9)
            assert got[(model, version, key[2], "__prediction__")][0] == pytest.approx(
                expected.psi_categorical(ref.classes, w.classes), abs=1e-9)
    assert checked == WINDOWS * 6


def test_outcomes_hold_each_joined_request_once(finished_run, want):
    run = finished_run["run"]
    rows = run.query("SELECT count(), uniqExact(request_id), sum(correct) FROM monitoring.outcomes FINAL")
    assert rows[0] == (sum(w.labeled for w in want.values()),) * 2 + (sum(w.correct for w in want.values()),)


def test_every_malformed_message_reaches_the_dlq_with_a_reason(finished_run):
    dlq = consume_all(finished_run["broker"].bootstrap, finished_run["topics"]["TOPIC_DLQ"],
                      expected=len(BAD_PREDICTIONS) + len(BAD_LABELS))
    assert len(dlq) == len(BAD_PREDICTIONS) + len(BAD_LABELS)
    originals = {v for _, v in BAD_PREDICTIONS + BAD_LABELS}
    assert {m.value() or b"" for m in dlq} == originals
    topics = finished_run["topics"]
    reasons = {}
    for m in dlq:
        headers = dict(m.headers() or [])
        source = headers["dlq.source.topic"].decode()
        assert source in (topics["TOPIC_PREDICTIONS"], topics["TOPIC_GROUND_TRUTH"])
        assert int(headers["dlq.source.offset"]) >= 0 and int(headers["dlq.source.partition"]) >= 0
        assert headers["dlq.error"].decode().startswith(headers["dlq.reason"].decode() + ": ")
        reasons[m.value() or b""] = headers["dlq.reason"].decode()
    assert reasons[b"{not json"] == "invalid_json"
    assert reasons[b"\xff\xfe\x00garbage"] == "invalid_utf8"
    assert reasons[BAD_PREDICTIONS[1][1]] == "missing_field"
    assert reasons[BAD_PREDICTIONS[2][1]] == "invalid_value"
    assert reasons[BAD_PREDICTIONS[4][1]] == "key_mismatch"
    assert reasons[b"[1, 2, 3]"] == "not_an_object"
    assert reasons[BAD_LABELS[0][1]] == "wrong_type"
    assert reasons[BAD_LABELS[1][1]] == "missing_field"
    assert reasons[b""] == "invalid_json"


def _outcomes(predictions: list[dict], labels: list[dict], model: str) -> list[tuple[int, str, int, bool]]:
    """(join ms, request_id, window ms, correct) of one model's joined requests, as the contract joins them."""
    first_label: dict[str, dict] = {}
    for g in labels:
        first_label.setdefault(g["request_id"], g)
    out, seen = [], set()
    for p in predictions:
        rid = p["request_id"]
        if p["model"] != model or rid in seen or rid not in first_label:
            continue
        seen.add(rid)
        t, lt = expected.ts_ms(p["timestamp"]), expected.ts_ms(first_label[rid]["timestamp"])
        if abs(lt - t) <= TTL * 1000:
            out.append((max(t, lt), rid, t // (WINDOW * 1000) * WINDOW * 1000,
                        expected.canon(p["prediction"]) == expected.canon(first_label[rid]["label"])))
    return out


def test_expected_alerts_and_no_others(finished_run, want):
    run = finished_run["run"]
    rows = run.query(
        "SELECT status, type, severity, model, subject, toUnixTimestamp64Milli(window_start) "
        "FROM monitoring.alerts FINAL ORDER BY detected_at, window_start")
    degraded = T0 + DEGRADED_FROM * WINDOW * 1000
    final = run.query("SELECT model, toUnixTimestamp64Milli(window_start) FROM monitoring.window_metrics FINAL "
                      "WHERE final ORDER BY window_start")
    released = dict(run.query("SELECT model, max(released_ms) FROM monitoring.stream_checkpoints FINAL GROUP BY model"))
    for model in ("fraud", "topics"):
        starts = sorted(w for m, w in final if m == model)
        all_starts = sorted(k[2] for k in want if k[0] == model)
        assert starts == all_starts[: len(starts)] and len(starts) >= DEGRADED_FROM + 2  # finality is in order
        # The accuracy rules on the outcomes in event time, up to where the worker's stream got.
        transitions = expected.stream_accuracy_alerts(
            _outcomes(finished_run["predictions"], finished_run["labels"], model), watermark_ms=released[model],
            window_seconds=WINDOW, grace_seconds=GRACE, threshold=0.85, degradation=0.05, min_labeled=MIN_LABELED)
        got = [(r[1], r[0], r[5]) for r in rows if r[3] == model and r[4] == "accuracy"]
        assert sorted(got) == sorted(transitions), model
        if model == "fraud":
            fraud = transitions
    # 95% before the degraded windows, 70% from them on: both rules fire there (labels prove it early).
    assert ("accuracy_below_threshold", "firing", degraded) in fraud and ("accuracy_drop", "firing", degraded) in fraud
    assert {r[2] for r in rows if r[1] == "accuracy_drop" and r[3] == "fraud"} == {"critical"}
    # Drift: only fraud's age moved (precondition checked on the numpy figures), from the degraded window on.
    ref = want[("fraud", "v1", T0)]
    for key, w in want.items():
        if key[0] == "fraud" and key[2] >= degraded:
            assert expected.psi(ref.features["age"], w.features["age"], BINS) >= 0.2
        for feature, values in w.features.items():
            if not (key[0] == "fraud" and feature == "age" and key[2] >= degraded):
                base = want[(key[0], key[1], T0)].features[feature]
                assert (expected.psi(base, values, BINS) or 0) < 0.2, (key, feature)
    drift_rows = [(r[0], r[1], r[3], r[4], r[5]) for r in rows if r[1] in ("feature_drift", "prediction_drift")]
    assert drift_rows == [("firing", "feature_drift", "fraud", "age", degraded)]
    published = consume_all(finished_run["broker"].bootstrap, finished_run["topics"]["TOPIC_ALERTS"],
                            expected=len(rows))
    assert sorted(orjson.loads(m.value())["alert_id"] for m in published) == sorted(
        r[0] for r in run.query("SELECT alert_id FROM monitoring.alerts FINAL"))
    events = [orjson.loads(m.value()) for m in published]
    assert all(m.key().decode() == e["model"] for m, e in zip(published, events, strict=True))
    # ADWIN: silent on the stable three-class model; on fraud it fires for a rise, from the degraded windows on.
    adwin = [e for e in events if e["type"] == "error_rate_drift"]  # one key, one partition: topic order
    assert {e["model"] for e in adwin} == {"fraud"}
    assert adwin[0]["status"] == "firing" and adwin[0]["value"] > adwin[0]["baseline"]
    assert expected.ts_ms(adwin[0]["window_start"].replace("Z", "+00:00")) >= degraded
    assert [e["status"] for e in adwin] == ["firing", "resolved"] * (len(adwin) // 2) + ["firing"] * (len(adwin) % 2)


def test_query_cli_goes_through_the_running_worker_read_only(finished_run, want):
    live = finished_run["live_query"]
    assert live.returncode == 0, live.stderr
    assert orjson.loads(live.stdout) == [{"n": sum(w.labeled for w in want.values())}]
    refused = finished_run["live_write"]
    assert refused.returncode == 2 and "readonly" in refused.stderr.lower()
    # With the worker gone, the command opens the embedded store itself, still read-only.
    run = finished_run["run"]
    after = run.cli("sinks.query", "SELECT count() FROM monitoring.outcomes FINAL", "--format", "csv")
    assert after.returncode == 0 and after.stdout.splitlines()[1] == str(sum(w.labeled for w in want.values()))
    assert run.cli("sinks.query", "INSERT INTO monitoring.alerts (alert_id) VALUES ('x')").returncode == 2


def test_alerts_follower_prints_one_line_per_alert(finished_run):
    run = finished_run["run"]
    count = len(run.query("SELECT alert_id FROM monitoring.alerts FINAL"))
    shown = run.cli("streams.alerts", "--from-beginning", "--idle-exit", "3")
    lines = shown.stdout.splitlines()
    assert shown.returncode == 0 and len(lines) == count
    assert sum(" FIRING " in line for line in lines) >= 3
    assert any("accuracy_below_threshold fraud/v1 accuracy" in line for line in lines)
