"""Per-model settings (MONITOR_CONFIG) end to end: Tansu broker -> worker -> embedded ClickHouse.

One log, two models of different quality: `good` (accuracy 0.95) and `weak` (0.80, versions v1
and v2). With one global SLO of 0.90 the good model is fine and both weak versions alert. With a
config file giving `weak` its own SLO (0.70) the weak v1 does not alert, while v2's own override
(0.88, with its own MIN_LABELED) is honoured; `weak`'s positive label "fraud" gives its precision,
recall and score, and its ignored feature has no drift rows. The same input, read twice.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.kafka_helpers import produce, unique_topics
from tests.worker_harness import WorkerRun, worker_env

pytestmark = pytest.mark.integration

WINDOW = 600
GRACE = 600
WINDOWS = 5
PER_WINDOW = 200
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
ACCURACY = {("good", "v1"): 0.95, ("weak", "v1"): 0.80, ("weak", "v2"): 0.80}
CONFIG = """
[defaults]
accuracy_threshold = 0.90

[models.weak]
accuracy_threshold = 0.70
positive_label = "fraud"
ignore_features = ["session"]

[models.weak.versions.v2]
accuracy_threshold = 0.88
min_labeled = 40
"""


def _messages(rng: random.Random) -> tuple[list[tuple[int, str, bytes, bytes]], dict]:
    """Timed messages (ts, topic, key, value) and, per (model, version, window), the confusion
    counts of "fraud" as the positive class and the scores["fraud"] of each request."""
    timed: list[tuple[int, str, bytes, bytes]] = []
    truth: dict = {}
    for (model, version), accuracy in ACCURACY.items():
        for w in range(WINDOWS):
            correct = set(rng.sample(range(PER_WINDOW), round(accuracy * PER_WINDOW)))
            counts = truth.setdefault((model, version, T0 + w * WINDOW * 1000), {"tp": 0, "fp": 0, "fn": 0,
                                                                                   "scores": {}})
            for i in range(PER_WINDOW):
                rid = f"{model}-{version}-{w}-{i}"
                ts = T0 + w * WINDOW * 1000 + rng.randrange(WINDOW * 1000)
                positive = rng.random() < 0.4
                p = round(rng.uniform(0.5, 1.0) if positive else rng.uniform(0.0, 0.5), 4)
                features = {"amount": round(rng.gauss(100, 20), 2), "session": rng.choice("abcde")}
                if model == "weak":
                    event = {"prediction": "fraud" if positive else "ok", "scores": {"fraud": p, "ok": 1 - p}}
                    label = event["prediction"] if i in correct else ("ok" if positive else "fraud")
                    counts["scores"][rid] = p
                    actual = label == "fraud"
                    counts["tp"] += positive and actual
                    counts["fp"] += positive and not actual
                    counts["fn"] += (not positive) and actual
                else:
                    event = {"prediction": int(positive), "score": p}
                    label = int(positive) if i in correct else int(not positive)
                prediction = {"request_id": rid, "model": model, "model_version": version, "timestamp": ts,
                              "features": features, **event}
                timed.append((ts, "p", rid.encode(), orjson.dumps(prediction)))
                at = ts + rng.randint(10_000, 120_000)
                timed.append((at, "g", rid.encode(), orjson.dumps({"request_id": rid, "label": label,
                                                                     "timestamp": at})))
    timed.sort(key=lambda m: m[0])
    return timed, truth


def _run(broker, workdir: Path, timed: list, **extra: str) -> WorkerRun:
    from streams.settings import load_settings
    from tools.topics import create_topics

    topics = unique_topics("model-config")
    create_topics(load_settings({**topics, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap}))
    for key, topic in (("p", topics["TOPIC_PREDICTIONS"]), ("g", topics["TOPIC_GROUND_TRUTH"])):
        produce(broker.bootstrap, topic, [(k, v) for _, t, k, v in timed if t == key])
    run = WorkerRun(worker_env(broker.bootstrap, topics, workdir, WINDOW_SECONDS=WINDOW, LABEL_GRACE_SECONDS=GRACE,
                               ACCURACY_THRESHOLD="0.90", MIN_LABELED="50", MONITOR_IDLE_SECONDS=2, **extra),
                    workdir).start()
    run.wait_until_settled(len(timed))
    assert run.stop() == 0, run.log_tail()
    return run


@pytest.fixture(scope="module")
def runs(broker, tmp_path_factory):
    timed, truth = _messages(random.Random(20261205))
    config = tmp_path_factory.mktemp("config") / "monitor.toml"
    config.write_text(CONFIG)
    global_slo = _run(broker, tmp_path_factory.mktemp("global"), timed)
    per_model = _run(broker, tmp_path_factory.mktemp("per-model"), timed, MONITOR_CONFIG=str(config))
    return {"global": global_slo, "per_model": per_model, "truth": truth}


def _accuracy_alerts(run: WorkerRun) -> list[tuple]:
    return run.query("SELECT model, model_version, status, threshold, evidence FROM monitoring.alerts FINAL "
                     "WHERE type = 'accuracy_below_threshold' ORDER BY model, model_version, window_start, status")


def test_one_global_slo_alerts_the_weak_model_only(runs):
    alerts = _accuracy_alerts(runs["global"])
    assert [(m, v, s, t) for m, v, s, t, _ in alerts] == [("weak", "v1", "firing", 0.90), ("weak", "v2", "firing", 0.90)]
    for *_, evidence in alerts:
        assert orjson.loads(evidence)["labeled"] in (50, 100, 200)  # looks at the global MIN_LABELED * 2**j


def test_the_config_gives_each_model_and_version_its_own_slo(runs):
    alerts = _accuracy_alerts(runs["per_model"])
    assert [(m, v, s, t) for m, v, s, t, _ in alerts] == [("weak", "v2", "firing", 0.88)]
    assert orjson.loads(alerts[0][4])["labeled"] in (40, 80, 160)  # v2's own MIN_LABELED * 2**j


def test_the_same_input_gives_the_same_figures_apart_from_the_positive_label(runs):
    sql = ("SELECT model, model_version, window_start, predictions, labeled, correct, accuracy FROM "
           "monitoring.window_metrics FINAL ORDER BY model, model_version, window_start")
    rows = runs["per_model"].query(sql)
    assert rows == runs["global"].query(sql)
    assert len(rows) == len(ACCURACY) * WINDOWS
    for model, version, _, predictions, labeled, correct, accuracy in rows:
        assert (predictions, labeled, correct) == (PER_WINDOW, PER_WINDOW, round(ACCURACY[(model, version)] * PER_WINDOW))
        assert accuracy == correct / labeled


def test_the_models_own_positive_label_gives_precision_recall_and_score(runs):
    truth = runs["truth"]
    sql = ("SELECT model_version, toUnixTimestamp64Milli(window_start), precision, recall, positive_rate FROM "
           "monitoring.window_metrics FINAL WHERE model = 'weak' ORDER BY model_version, window_start")
    for version, w, precision, recall, positive_rate in runs["per_model"].query(sql):
        c = truth[("weak", version, w)]
        assert precision == pytest.approx(c["tp"] / (c["tp"] + c["fp"]), abs=1e-12)
        assert recall == pytest.approx(c["tp"] / (c["tp"] + c["fn"]), abs=1e-12)
        assert positive_rate == (c["tp"] + c["fp"]) / PER_WINDOW
    # With the global POSITIVE_LABEL (1) no weak prediction is positive: no precision, positive_rate 0.
    assert {(r[2], r[4]) for r in runs["global"].query(sql)} == {(None, 0.0)}
    scores = dict(runs["per_model"].query("SELECT request_id, score FROM monitoring.predictions FINAL "
                                          "WHERE model = 'weak'"))
    want = {rid: p for c in truth.values() for rid, p in c["scores"].items()}
    assert scores == pytest.approx(want)
    assert {s for _, s in runs["global"].query("SELECT request_id, score FROM monitoring.predictions FINAL "
                                               "WHERE model = 'weak'")} == {None}


def test_ignored_features_have_no_drift_rows(runs):
    sql = "SELECT DISTINCT model, feature FROM monitoring.feature_drift FINAL ORDER BY model, feature"
    assert runs["global"].query(sql) == [("good", "__prediction__"), ("good", "__score__"), ("good", "amount"),
                                         ("good", "session"), ("weak", "__prediction__"), ("weak", "amount"),
                                         ("weak", "session")]
    assert runs["per_model"].query(sql) == [("good", "__prediction__"), ("good", "__score__"), ("good", "amount"),
                                            ("good", "session"), ("weak", "__prediction__"), ("weak", "__score__"),
                                            ("weak", "amount")]


def test_no_other_alerts(runs):
    for run in (runs["global"], runs["per_model"]):
        assert run.query("SELECT type, model, model_version FROM monitoring.alerts FINAL "
                         "WHERE type != 'accuracy_below_threshold'") == []


def test_each_versions_settings_are_stored(runs, tmp_path):
    sql = ("SELECT model, model_version, accuracy_threshold, degradation_threshold, min_labeled, psi_warn, psi_alert, "
           "positive_label, ignore_features, source FROM monitoring.model_settings FINAL ORDER BY model, model_version")
    config = runs["per_model"].env["MONITOR_CONFIG"]
    assert runs["per_model"].query(sql) == [
        ("good", "v1", 0.90, 0.05, 50, 0.1, 0.2, "1", [], config),
        ("weak", "v1", 0.70, 0.05, 50, 0.1, 0.2, "fraud", ["session"], config),
        ("weak", "v2", 0.88, 0.05, 40, 0.1, 0.2, "fraud", ["session"], config)]
    assert runs["global"].query(sql) == [
        (model, version, 0.90, 0.05, 50, 0.1, 0.2, "1", [], "environment") for model, version in ACCURACY]


def _settings(run: WorkerRun):  # type: ignore[no-untyped-def]
    from streams.settings import load_settings

    return load_settings({**os.environ, **run.env})


def test_mcp_tools_show_each_versions_own_slo(runs):
    from sinks.mcp import MonitorTools

    got = MonitorTools(_settings(runs["per_model"])).get_model_accuracy("weak")
    assert (got["accuracy_threshold"], got["min_labeled"]) == (0.70, 50)
    assert [(v["model_version"], v["accuracy_threshold"], v["min_labeled"], len(v["windows_below_threshold"]))
            for v in got["versions"]] == [("v1", 0.70, 50, 0), ("v2", 0.88, 40, WINDOWS)]
    good = MonitorTools(_settings(runs["per_model"])).get_model_accuracy("good")
    assert good["accuracy_threshold"] == 0.90 and good["versions"][0]["windows_below_threshold"] == []
    drift = MonitorTools(_settings(runs["per_model"])).detect_data_drift("weak")
    assert [(v["psi_warn"], v["psi_alert"]) for v in drift["versions"]] == [(0.1, 0.2), (0.1, 0.2)]


def test_report_shows_each_versions_own_slo(runs, tmp_path):
    from sinks.report import write_report

    out = tmp_path / "report.html"
    assert write_report(_settings(runs["per_model"]), out) == 3
    page = out.read_text()
    slo = [part.split("</div>")[0].split()[0] for part in page.split('accuracy SLO / PSI bands</div><div class="v">')[1:]]
    assert slo == ["0.9", "0.7", "0.88"]  # good/v1, weak/v1, weak/v2
    assert "ACCURACY_THRESHOLD 0.88" in page  # the threshold line of weak/v2's accuracy figure


def _worker_with(config: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).parent / "faust"), "-A", "streams.app", "worker", "-l", "info"],
                          env={**os.environ, "MONITOR_CONFIG": str(config)}, cwd=cwd, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize(("text", "line"), [
    ("[models.fraud-detector]\npsi_warn = 0.3\npsi_alert = 0.25\n",
     "models.fraud-detector.psi_warn=0.3 is not valid: expected a number <= psi_alert (0.25)"),
    ("[models.fraud-detector]\nslo = 0.9\n",
     "models.fraud-detector.slo=0.9 is not valid: unknown key, expected one of accuracy_threshold, "
     "degradation_threshold, min_labeled, psi_warn, psi_alert, positive_label, reference_path, ignore_features, "
     "versions"),
    ('[models.fraud-detector]\nreference_path = "refs/fraud.csv"\n',
     "models.fraud-detector.reference_path='refs/fraud.csv' is not valid: expected an existing file (relative "
     "paths are read beside the config file: {dir}/refs/fraud.csv)"),
])
def test_a_bad_config_file_stops_the_worker_with_one_line(tmp_path, text, line):
    config = tmp_path / "monitor.toml"
    config.write_text(text)
    done = _worker_with(config, tmp_path)
    assert done.returncode == 2
    assert [x for x in done.stderr.splitlines() if x.strip()] == [
        f"model-monitor: MONITOR_CONFIG={config}: " + line.format(dir=tmp_path)]


def test_unreadable_toml_stops_the_worker_with_one_line(tmp_path):
    config = tmp_path / "monitor.toml"
    config.write_text("[models.fraud-detector\n")
    done = _worker_with(config, tmp_path)
    assert done.returncode == 2
    assert [x for x in done.stderr.splitlines() if x.strip()] == [
        f"model-monitor: MONITOR_CONFIG={config} is not valid TOML: Expected ']' at the end of a table declaration "
        "(at line 1, column 23)"]
