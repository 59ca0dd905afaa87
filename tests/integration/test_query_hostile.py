"""The worker's own figures stay exact while hostile requests hammer its `/query` page.

A real worker (`faust -A streams.app worker`) on the real broker and embedded store reads
the sudden-drift scenario, replayed live (4000x real time) while a thread sends `/query` one hostile request
after another (several statements, writes, DDL, SET, KILL, USE, file(), url(), INTO OUTFILE,
a statement that fails inside the engine) alternated with normal queries, each of which must
answer itself only. After SIGTERM the store holds exactly the scenario's figures, PSI as
numpy computes it and exactly the alerts the rules give: what the worker measures does not
depend on what users ask of it.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import orjson
import pytest

from tests import expected
from tests.kafka_helpers import unique_topics
from tests.worker_harness import WorkerRun, worker_env

pytestmark = pytest.mark.integration

GRACE = 43_200
SPEED = 4000
BINS = 10
TABLES = ["alerts", "checkpoints", "feature_drift", "labels", "model_settings", "outcomes", "partition_progress",
          "predictions", "references", "stream_checkpoints", "version_comparison", "window_metrics"]


def hostile_requests(workdir: Path) -> list[tuple[str, str]]:
    """(sql, what the answer's error must contain): refused before the engine, or by it."""
    return [
        ("SELECT 1; DROP TABLE monitoring.alerts", "refused: one statement per request"),
        ("SELECT 1; SELECT 2", "refused: one statement per request"),
        ("SELECT 'a;b' AS s; SELECT 2", "refused: one statement per request"),
        ("SELECT 1 /* ; */ ; INSERT INTO monitoring.outcomes (request_id) VALUES ('x')",
         "refused: one statement per request"),
        ("DROP TABLE monitoring.window_metrics", "refused: the query path is readonly"),
        ("TRUNCATE TABLE monitoring.predictions", "refused: the query path is readonly"),
        ("ALTER TABLE monitoring.outcomes DELETE WHERE 1", "refused: the query path is readonly"),
        ("INSERT INTO monitoring.alerts (alert_id) VALUES ('hostile')", "refused: the query path is readonly"),
        ("CREATE TABLE monitoring.hostile (a UInt8) ENGINE = Memory", "refused: the query path is readonly"),
        ("OPTIMIZE TABLE monitoring.outcomes FINAL", "refused: the query path is readonly"),
        ("SET readonly = 0", "refused: the query path is readonly"),
        ("KILL QUERY WHERE 1", "refused: the query path is readonly"),
        ("USE system", "refused: the query path is readonly"),
        ("SELECT file('/etc/hostname')", "refused: file()"),
        ("SELECT * FROM file('/etc/passwd', 'LineAsString')", "refused: file()"),
        ("SELECT * FROM url('http://127.0.0.1:9/x', 'LineAsString')", "refused: url()"),
        (f"SELECT * FROM system.one INTO OUTFILE '{workdir}/outfile.txt'", "refused: INTO OUTFILE"),
        # Past the check: ClickHouse refuses, or the statement fails after its first blocks.
        ("SELECT 1 SETTINGS readonly = 0", "READONLY"),
        ("SELECT number, throwIf(number = 300000) FROM numbers(1000000)", "FUNCTION_THROW_IF_VALUE_IS_NON_ZERO"),
    ]


class Hammer(threading.Thread):
    """Hostile and normal requests in turn until stopped; every wrong answer is kept."""

    def __init__(self, port: str, workdir: Path) -> None:
        super().__init__(daemon=True)
        self.base = f"http://127.0.0.1:{port}"
        self.hostile = hostile_requests(workdir)
        self.stopping = threading.Event()
        self.wrong: list[str] = []
        self.sent = {"hostile": 0, "normal": 0}
        self.messages_seen: list[int] = []  # the worker's message count, now and then

    def ask(self, sql: str) -> tuple[int, dict]:
        request = urllib.request.Request(f"{self.base}/query", data=sql.encode(), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, orjson.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, orjson.loads(err.read())

    def run(self) -> None:
        i = 0
        while not self.stopping.is_set():
            sql, why = self.hostile[i % len(self.hostile)]
            code, body = self.ask(sql)
            self.sent["hostile"] += 1
            if code != 400 or why not in body.get("error", ""):
                self.wrong.append(f"{sql!r} -> {code} {body}")
            marker = f"SELECT {i} AS marker_{i}, count() > 0 AS seen FROM monitoring.window_metrics FINAL"
            code, body = self.ask(marker)
            self.sent["normal"] += 1
            if code != 200 or body["columns"] != [f"marker_{i}", "seen"] or len(body["rows"]) != 1 \
                    or body["rows"][0][0] != i:
                self.wrong.append(f"{marker!r} -> {code} {body}")
            if i % 10 == 0:
                code, body = self.ask("SELECT currentDatabase() AS db, getSetting('readonly') AS ro")
                if (code, body.get("rows")) != (200, [["default", 1]]):
                    self.wrong.append(f"session settings -> {code} {body}")
            try:
                with urllib.request.urlopen(f"{self.base}/status", timeout=5) as response:
                    self.messages_seen.append(orjson.loads(response.read())["counters"]["messages"])
            except OSError:
                pass
            i += 1


@pytest.fixture(scope="module")
def hammered(broker, tmp_path_factory):
    from producers.replay import replay
    from producers.scenarios import generate
    from streams.settings import load_settings
    from tools.topics import create_topics

    workdir = tmp_path_factory.mktemp("query-hostile")
    scenario = generate("sudden-drift")
    reference = workdir / "reference.jsonl"
    reference.write_bytes(b"".join(orjson.dumps({**row, "model": scenario.model,
                                                 "model_version": scenario.model_version}) + b"\n"
                                   for row in scenario.reference))
    env = worker_env(broker.bootstrap, unique_topics("query-hostile"), workdir, LABEL_GRACE_SECONDS=GRACE,
                     PSI_BINS=BINS, REFERENCE_PATH=reference, MONITOR_IDLE_SECONDS=2)
    settings = load_settings(env)
    create_topics(settings)
    run = WorkerRun(env, workdir).start()
    deadline = time.monotonic() + 60
    while not (run.status() or {}).get("started"):
        assert time.monotonic() < deadline and run.process.poll() is None, run.log_tail()
        time.sleep(0.2)
    hammer = Hammer(env["MONITOR_WEB_PORT"], workdir)
    hammer.start()
    try:
        # Live at 4000x real time (the scenario's 20 hours in ~18 s), while the worker reads.
        result = replay(enumerate(scenario.rows, start=1), settings, speed=SPEED)
        assert result.ok and result.skipped == 0
        run.wait_until_settled(result.events)
        live_cli = run.cli("sinks.query", "SELECT 1; SELECT 2")
    finally:
        hammer.stopping.set()
        hammer.join(timeout=120)
    code = run.stop()
    assert code == 0, run.log_tail()
    return {"run": run, "scenario": scenario, "hammer": hammer, "events": result.events, "workdir": workdir,
            "live_cli": live_cli}


def test_every_request_got_its_own_answer_while_the_worker_read(hammered):
    hammer = hammered["hammer"]
    assert hammer.wrong == []
    assert hammer.sent["hostile"] >= 40 and hammer.sent["normal"] >= 40, hammer.sent
    # The requests overlapped the reading: the worker had read some but not all of the input.
    assert any(0 < seen < hammered["events"] for seen in hammer.messages_seen), hammer.messages_seen
    assert not (hammered["workdir"] / "outfile.txt").exists()
    refused = hammered["live_cli"]
    assert refused.returncode == 2 and "refused: one statement per request" in refused.stderr


def test_window_figures_are_exactly_the_scenarios(hammered):
    run, s = hammered["run"], hammered["scenario"]
    rows = run.query("SELECT toUnixTimestamp64Milli(window_start), predictions, labeled, correct, accuracy "
                     f"FROM monitoring.window_metrics FINAL WHERE model = '{s.model}' ORDER BY window_start")
    assert [r[0] for r in rows] == [expected.ts_ms(p.start.replace("Z", "+00:00")) for p in s.period_summaries]
    assert [r[1:4] for r in rows] == [(p.predictions, p.labeled, p.correct) for p in s.period_summaries]
    assert all(r[4] == r[3] / r[2] for r in rows)
    [(outcomes, distinct)] = run.query("SELECT count(), uniqExact(request_id) FROM monitoring.outcomes FINAL")
    assert outcomes == distinct == sum(p.labeled for p in s.period_summaries)
    assert sorted(r[0] for r in run.query("SHOW TABLES FROM monitoring")) == TABLES


def test_psi_equals_numpy(hammered):
    run, s = hammered["run"], hammered["scenario"]
    predictions, labels = expected.scenario_events(s.rows)
    want = expected.figures(predictions, labels, window_seconds=3600, ttl_seconds=604_800)
    got = {(r[0], r[1]): r[2] for r in run.query(
        "SELECT toUnixTimestamp64Milli(window_start), feature, psi FROM monitoring.feature_drift FINAL")}
    ref = {k: [r[k] for r in s.reference] for k in s.reference[0]}
    checked = 0
    for (_, _, w), fig in want.items():
        for feature, values in fig.features.items():
            assert got[(w, feature)] == pytest.approx(expected.psi(ref[feature], values, BINS), abs=1e-9), feature
            checked += 1
        assert got[(w, "__score__")] == pytest.approx(expected.psi_numeric(ref["score"], fig.scores, BINS), abs=1e-9)
    assert checked == len(want) * 10


def test_alerts_are_exactly_those_of_the_rules(hammered):
    run, s = hammered["run"], hammered["scenario"]
    predictions, labels = expected.scenario_events(s.rows)
    want = expected.figures(predictions, labels, window_seconds=3600, ttl_seconds=604_800)
    rows = run.query("SELECT type, subject, status, toUnixTimestamp64Milli(window_start) FROM monitoring.alerts FINAL")
    # Accuracy: the event-time rules on the scenario's outcomes.
    first_label: dict[str, dict] = {}
    for g in labels:
        first_label.setdefault(g["request_id"], g)
    outcomes, latest = [], 0
    for p in predictions:
        t = expected.ts_ms(p["timestamp"])
        latest = max(latest, t)
        g = first_label.get(p["request_id"])
        if g is not None:
            lt = expected.ts_ms(g["timestamp"])
            latest = max(latest, lt)
            outcomes.append((max(t, lt), p["request_id"], t // 3_600_000 * 3_600_000,
                             expected.canon(p["prediction"]) == expected.canon(g["label"])))
    baseline = sum(expected.canon(r["prediction"]) == expected.canon(r["label"]) for r in s.reference) / len(
        s.reference)
    accuracy = expected.stream_accuracy_alerts(outcomes, watermark_ms=latest, window_seconds=3600, grace_seconds=GRACE,
                                               threshold=0.85, degradation=0.05, min_labeled=50, baseline=baseline)
    assert sorted((r[0], r[2], r[3]) for r in rows if r[1] == "accuracy") == sorted(accuracy)
    # Drift: PSI and chi-square p-values of numpy, through the drift rule.
    ref = {k: [r[k] for r in s.reference] for k in s.reference[0]}
    windows = []
    for (_, _, w), fig in sorted(want.items()):
        counts = {f: expected.bins_of(ref[f], v, BINS) for f, v in fig.features.items()}
        counts["__score__"] = expected.bins_of(ref["score"], fig.scores, BINS)
        counts["__prediction__"] = expected.bins_of([expected.canon(v) for v in ref["prediction"]], fig.classes, BINS)
        windows.append((w, {subject: (_psi(c), expected.chi_square_p(*c)) for subject, c in counts.items()
                            if c is not None}))
    drift = [("prediction_drift" if subject.startswith("__") else "feature_drift", subject, status, w)
             for subject, status, w in expected.drift_transitions(windows, psi_warn=0.1, rate=0.001)]
    assert sorted(r for r in rows if r[0] in ("feature_drift", "prediction_drift")) == sorted(drift)
    assert drift and any(r[0] == "error_rate_drift" and r[2] == "firing" for r in rows)


def _psi(counts) -> float:  # type: ignore[no-untyped-def]
    p, q = (np.maximum(c / c.sum(), 1e-4) for c in counts)
    return float(np.sum((q - p) * np.log(q / p)))


def test_the_query_command_refuses_a_second_statement_with_the_worker_gone(hammered):
    run = hammered["run"]
    for sql, why in (("SELECT 1; SELECT 2", "one statement per request"), ("SELECT file('/etc/hostname')", "file()")):
        refused = run.cli("sinks.query", sql)
        assert refused.returncode == 2 and why in refused.stderr, refused.stderr
    ok = run.cli("sinks.query", "SELECT 7 AS seven;", "--format", "json")
    assert ok.returncode == 0 and orjson.loads(ok.stdout) == [{"seven": 7}]
