"""`python -m sinks.mcp` end to end: the official MCP client over stdio, a store written by the real worker.

Three built-in scenarios go through the real broker and `faust -A streams.app worker`:
banking-campaign v1 (the stable scenario) and v2 (the degradation scenario) serving side by
side, and customer-churn (feature drift from 10:00). One MCP server process, spawned with the
worker's settings, answers every tool call twice: while the worker runs (it holds the
embedded store, so the server must go through the worker's `/query` page) and after the
worker stopped (the server opens the store itself). Both answers must be equal, and each is
checked against direct SQL on the store, numpy, and ClickHouse's own proportionsZTest.
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest

from tests.kafka_helpers import unique_topics
from tests.worker_harness import WorkerRun, worker_env

pytestmark = pytest.mark.integration

TOOLS = {"get_model_accuracy", "detect_data_drift", "query_inference_logs", "compare_model_versions",
         "get_feature_distribution", "list_alerts"}
H = 3_600_000
T0 = 1_767_571_200_000  # 2026-01-05T00:00:00Z, where the scenarios start
WRONG_ANSWERS = "SELECT request_id, model_version, prediction, label FROM monitoring.outcomes FINAL " \
                "WHERE model = 'banking-campaign' AND correct = 0 ORDER BY request_id"
CALLS: dict[str, tuple[str, dict]] = {
    "accuracy": ("get_model_accuracy", {"model": "banking-campaign", "last_windows": 1000}),
    "accuracy_range": ("get_model_accuracy", {"model": "banking-campaign", "version": "v2",
                                              "since": "2026-01-05T04:00:00Z", "until": "2026-01-05T12:00:00+02:00"}),
    "accuracy_latest": ("get_model_accuracy", {"model": "banking-campaign", "last_windows": 3}),
    "accuracy_unknown": ("get_model_accuracy", {"model": "no-such-model"}),
    "accuracy_bad_time": ("get_model_accuracy", {"model": "banking-campaign", "since": "last tuesday"}),
    "drift": ("detect_data_drift", {"model": "customer-churn"}),
    "drift_threshold": ("detect_data_drift", {"model": "customer-churn", "threshold": 0.05, "last_windows": 20}),
    "logs": ("query_inference_logs", {"sql": WRONG_ANSWERS, "max_rows": 5}),
    "logs_v1": ("query_inference_logs", {"sql": WRONG_ANSWERS.replace("correct = 0", "correct = 0 AND model_version = 'v1'")
                                         + ";", "max_rows": 1000}),
    "logs_two": ("query_inference_logs", {"sql": "SELECT 1; SELECT 2"}),
    "logs_file": ("query_inference_logs", {"sql": "SELECT file('/etc/hostname')"}),
    "logs_drop": ("query_inference_logs", {"sql": "DROP TABLE monitoring.alerts"}),
    "compare": ("compare_model_versions", {"model": "banking-campaign", "version_a": "v2", "version_b": "v1"}),
    "compare_range": ("compare_model_versions", {"model": "banking-campaign", "version_a": "v2", "version_b": "v1",
                                                 "since": "2026-01-05T00:00:00Z", "until": "2026-01-05T03:00:00Z",
                                                 "confidence": 0.99}),
    "age_after": ("get_feature_distribution", {"feature": "age", "model": "customer-churn",
                                               "since": "2026-01-05T10:00:00Z"}),
    "age_before": ("get_feature_distribution", {"feature": "age", "model": "customer-churn",
                                                "until": "2026-01-05T10:00:00Z"}),
    "region": ("get_feature_distribution", {"feature": "region", "model": "customer-churn", "top": 3}),
    "feature_unknown": ("get_feature_distribution", {"feature": "shoe_size", "model": "customer-churn"}),
    "alerts": ("list_alerts", {"limit": 1000}),
    "alerts_two": ("list_alerts", {"limit": 2}),
    "firing_now": ("list_alerts", {"firing_now": True, "limit": 1000}),
    "alerts_filtered": ("list_alerts", {"model": "banking-campaign", "version": "v2",
                                        "alert_type": "accuracy_below_threshold", "status": "firing"}),
}


def _result(res) -> dict:  # type: ignore[no-untyped-def]
    text = "".join(getattr(c, "text", "") for c in res.content)
    return {"is_error": bool(res.is_error), "structured": res.structured_content, "text": text}


async def _session(env: dict[str, str], workdir: Path, run: WorkerRun) -> dict:
    from mcp.client import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(command=sys.executable, args=["-m", "sinks.mcp"], env={**os.environ, **env},
                                   cwd=str(workdir))
    with (workdir / "mcp-server.log").open("w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            listed = await session.list_tools()
            tools = {t.name: {"description": t.description or "", "schema": t.input_schema,
                              "read_only": bool(t.annotations and t.annotations.read_only_hint)}
                     for t in listed.tools}
            live = {key: _result(await session.call_tool(name, args)) for key, (name, args) in CALLS.items()}
            code = await asyncio.to_thread(run.stop)  # SIGTERM: the server now opens the store itself
            stopped = {key: _result(await session.call_tool(name, args)) for key, (name, args) in CALLS.items()}
    return {"tools": tools, "live": live, "stopped": stopped, "code": code}


@pytest.fixture(scope="module")
def mcp_run(broker, tmp_path_factory):
    from producers.replay import replay
    from producers.scenarios import generate
    from streams.settings import load_settings
    from tools.topics import create_topics

    workdir = tmp_path_factory.mktemp("mcp")
    scenarios = {
        "v1": generate("stable", rows=4000, model="banking-campaign", model_version="v1"),
        "v2": generate("degradation", rows=4000, model="banking-campaign", model_version="v2"),
        "churn": generate("feature-drift"),
    }
    env = worker_env(broker.bootstrap, unique_topics("mcp"), workdir, LABEL_GRACE_SECONDS=21_600,
                     MONITOR_IDLE_SECONDS=2)
    settings = load_settings(env)
    create_topics(settings)
    total = 0
    for s in scenarios.values():
        result = replay(enumerate(s.rows, start=1), settings)
        assert result.ok and result.skipped == 0
        total += result.events
    run = WorkerRun(env, workdir).start()
    run.wait_until_settled(total)
    answers = asyncio.run(_session(env, workdir, run))
    assert answers["code"] == 0, run.log_tail()
    return {"run": run, "scenarios": scenarios, **answers}


def answer(mcp_run, key: str) -> dict:
    """The structured answer of one call (the stopped-worker one; the live one is equal)."""
    got = mcp_run["stopped"][key]
    assert not got["is_error"], got["text"]
    assert orjson.loads(got["text"]) == got["structured"]  # the text block carries the same JSON
    return got["structured"]


def error(mcp_run, key: str) -> str:
    got = mcp_run["stopped"][key]
    assert got["is_error"] and got["structured"] is None
    assert mcp_run["live"][key]["text"] == got["text"]
    return got["text"]


def iso(ms: int) -> str:
    from sinks.mcp import iso as to_iso
    return to_iso(ms)


def test_lists_six_typed_read_only_tools(mcp_run):
    tools = mcp_run["tools"]
    assert set(tools) == TOOLS
    for name, tool in tools.items():
        assert tool["read_only"], name
        assert len(tool["description"]) > 200, name
        properties = tool["schema"]["properties"]
        assert properties and all("description" in p for p in properties.values()), name
    schema = tools["compare_model_versions"]["schema"]
    assert set(schema["required"]) == {"model", "version_a", "version_b"}
    assert schema["properties"]["confidence"]["type"] == "number"
    assert tools["query_inference_logs"]["schema"]["properties"]["max_rows"]["type"] == "integer"
    status = tools["list_alerts"]["schema"]["properties"]["status"]
    assert {"firing", "resolved"} <= {v for option in status.get("anyOf", [status]) for v in option.get("enum", [])}


def test_answers_are_the_same_through_the_worker_and_from_the_store(mcp_run):
    assert mcp_run["live"] == mcp_run["stopped"]
    log = (mcp_run["run"].workdir / "mcp-server.log").read_text()
    assert "Traceback" not in log


def test_get_model_accuracy_equals_window_metrics(mcp_run):
    run, scenarios = mcp_run["run"], mcp_run["scenarios"]
    got = answer(mcp_run, "accuracy")
    rows = run.query("SELECT model_version, toUnixTimestamp64Milli(window_start), toUnixTimestamp64Milli(window_end), "
                     "predictions, labeled, correct, accuracy, precision, recall, f1, rolling_accuracy, final "
                     "FROM monitoring.window_metrics FINAL WHERE model = 'banking-campaign' "
                     "ORDER BY model_version, window_start")
    assert [v["model_version"] for v in got["versions"]] == ["v1", "v2"]
    assert got["accuracy_threshold"] == 0.85 and got["min_labeled"] == 50
    for version in got["versions"]:
        mine = [r for r in rows if r[0] == version["model_version"]]
        assert [[w["window_start"], w["window_end"], w["predictions"], w["labeled"], w["correct"], w["accuracy"],
                 w["precision"], w["recall"], w["f1"], w["rolling_accuracy"], w["final"]] for w in version["windows"]] \
            == [[iso(r[1]), iso(r[2]), *r[3:11], bool(r[11])] for r in mine]
        summaries = scenarios[version["model_version"]].period_summaries
        assert [(w["predictions"], w["labeled"], w["correct"]) for w in version["windows"]] == [
            (p.predictions, p.labeled, p.correct) for p in summaries]
        assert (version["labeled"], version["correct"]) == (sum(r[4] for r in mine), sum(r[5] for r in mine))
        assert version["accuracy"] == version["correct"] / version["labeled"]
        assert version["latest_window"] == version["windows"][-1]
        assert version["windows_below_threshold"] == [iso(r[1]) for r in mine if r[4] >= 50 and r[6] < 0.85]
    assert got["versions"][0]["windows_below_threshold"] == []  # the stable v1 stays at 0.92
    assert len(got["versions"][1]["windows_below_threshold"]) >= 10  # v2 falls 2.5 points an hour

    ranged = answer(mcp_run, "accuracy_range")  # [04:00, 10:00) UTC: until was given as 12:00+02:00
    assert (ranged["since"], ranged["until"]) == ("2026-01-05T04:00:00Z", "2026-01-05T10:00:00Z")
    [v2] = ranged["versions"]
    assert [w["window_start"] for w in v2["windows"]] == [iso(T0 + k * H) for k in range(4, 10)]
    assert v2["correct"] == sum(p.correct for p in scenarios["v2"].period_summaries[4:10])

    latest = answer(mcp_run, "accuracy_latest")
    assert [[w["window_start"] for w in v["windows"]] for v in latest["versions"]] == [
        [iso(T0 + k * H) for k in (17, 18, 19)]] * 2

    unknown = answer(mcp_run, "accuracy_unknown")
    assert unknown["versions"] == [] and "banking-campaign/v1, banking-campaign/v2, customer-churn/v1" in unknown["note"]
    assert "since: 'last tuesday' is not an ISO-8601 time" in error(mcp_run, "accuracy_bad_time")


def test_detect_data_drift_equals_feature_drift(mcp_run):
    run = mcp_run["run"]
    rows = run.query("SELECT toUnixTimestamp64Milli(window_start), feature, psi, drifted, band FROM "
                     "monitoring.feature_drift FINAL WHERE model = 'customer-churn' ORDER BY window_start, feature")
    starts = sorted({r[0] for r in rows})
    latest = {r[1]: r for r in rows if r[0] == starts[-1]}

    got = answer(mcp_run, "drift")
    [v1] = got["versions"]
    assert v1["windows"] == [iso(w) for w in starts[-6:]] and v1["latest_window_start"] == iso(starts[-1])
    by_subject = {s["subject"]: s for s in v1["subjects"]}
    assert set(by_subject) == set(latest)
    for subject, r in latest.items():
        s = by_subject[subject]
        assert (s["latest_psi"], s["drifting"], s["latest_band"]) == (r[2], bool(r[3]), r[4])
        mine = [x for x in rows if x[1] == subject and x[0] in starts[-6:]]
        assert s["psi_by_window"] == [[iso(x[0]), x[2]] for x in mine]
        assert s["max_psi"] == max(x[2] for x in mine) and s["drifted_windows"] == sum(x[3] for x in mine)
        assert s["of"] == ("prediction" if subject.startswith("__") else "feature")
    assert [s["latest_psi"] for s in v1["subjects"]] == sorted((r[2] for r in latest.values()), reverse=True)
    drifted = {k for k, r in latest.items() if r[3]}
    assert set(v1["drifting_features"]) | set(v1["prediction_drift"]) == drifted
    assert v1["drift_detected"] == bool(drifted)
    # The scenario moves age and income from 10:00: drifted in some of the last windows by the monitor's verdict.
    assert by_subject["age"]["drifted_windows"] > 0 and by_subject["income"]["drifted_windows"] > 0
    assert by_subject["age"]["latest_psi"] >= 0.1 and by_subject["age"]["latest_band"] == "small"

    loose = answer(mcp_run, "drift_threshold")
    [v1] = loose["versions"]
    assert loose["drift_rule"] == "PSI >= 0.05" and len(v1["windows"]) == 20
    by_subject = {s["subject"]: s for s in v1["subjects"]}
    for subject, r in latest.items():
        assert by_subject[subject]["drifting"] == (r[2] >= 0.05)
        assert by_subject[subject]["drifted_windows"] == sum(x[2] >= 0.05 for x in rows if x[1] == subject)


def test_query_inference_logs_is_read_only_sql_with_a_row_limit(mcp_run):
    run = mcp_run["run"]
    wrong = run.query(WRONG_ANSWERS)
    got = answer(mcp_run, "logs")
    assert got["columns"] == ["request_id", "model_version", "prediction", "label"]
    assert got["rows"] == [list(r) for r in wrong[:5]] and got["row_count"] == 5 and got["truncated"]
    assert len(wrong) == sum(p.labeled - p.correct for s in ("v1", "v2") for p in mcp_run["scenarios"][s].period_summaries)
    v1 = answer(mcp_run, "logs_v1")  # a trailing ';' is fine; fewer rows than max_rows: not truncated
    assert v1["rows"] == [list(r) for r in wrong if r[1] == "v1"] and not v1["truncated"]
    assert v1["row_count"] == sum(p.labeled - p.correct for p in mcp_run["scenarios"]["v1"].period_summaries)
    assert "refused: one statement per request" in error(mcp_run, "logs_two")
    assert "refused: file()" in error(mcp_run, "logs_file")
    assert "readonly" in error(mcp_run, "logs_drop")
    assert run.query("EXISTS TABLE monitoring.alerts") == [(1,)]


def test_compare_model_versions_matches_clickhouses_proportions_z_test(mcp_run):
    run = mcp_run["run"]
    for key, where, confidence in (("compare", "", 0.95),
                                   ("compare_range", f" AND toUnixTimestamp64Milli(window_start) >= {T0} AND "
                                                     f"toUnixTimestamp64Milli(window_start) < {T0 + 3 * H}", 0.99)):
        got = answer(mcp_run, key)
        [(na, ca, nb, cb, ztest)] = run.query(
            f"SELECT na, ca, nb, cb, proportionsZTest(ca, cb, na, nb, {confidence}, 'pooled') FROM ("
            "SELECT sumIf(labeled, model_version = 'v2') AS na, sumIf(correct, model_version = 'v2') AS ca, "
            "sumIf(labeled, model_version = 'v1') AS nb, sumIf(correct, model_version = 'v1') AS cb "
            f"FROM monitoring.window_metrics FINAL WHERE model = 'banking-campaign'{where})")
        assert (got["a"]["model_version"], got["a"]["labeled"], got["a"]["correct"]) == ("v2", na, ca)
        assert (got["b"]["model_version"], got["b"]["labeled"], got["b"]["correct"]) == ("v1", nb, cb)
        assert got["a"]["accuracy"] == ca / na and got["b"]["accuracy"] == cb / nb
        z, p, lo, hi = (ztest[k] for k in ("z_statistic", "p_value", "confidence_interval_low",
                                           "confidence_interval_high"))
        assert got["difference"] == pytest.approx(ca / na - cb / nb, abs=1e-15)
        assert got["z"] == pytest.approx(z, rel=1e-9)
        assert got["interval"] == pytest.approx([lo, hi], abs=1e-12)
        # ClickHouse's p-value is 2 * (1 - cdf): exact to ~1e-16 absolute, so tiny ones differ relatively.
        assert got["p_value"] == pytest.approx(p, abs=1e-12)
        assert got["significant"] == (got["p_value"] < 1 - confidence) and got["confidence"] == confidence
    whole = answer(mcp_run, "compare")
    assert whole["significant"] and whole["difference"] < 0 and whole["p_value"] < 1e-12
    assert whole["summary"].startswith("v1 is more accurate than v2")
    assert whole["a"]["windows"] == whole["b"]["windows"] == 20
    first_hours = answer(mcp_run, "compare_range")  # v2 still at ~0.95-0.90, v1 at 0.92: no clear winner
    assert first_hours["a"]["windows"] == 3 and not math.isnan(first_hours["z"])


def test_get_feature_distribution_equals_numpy_on_the_stored_values(mcp_run):
    run, churn = mcp_run["run"], mcp_run["scenarios"]["churn"]
    change = f"toUnixTimestamp64Milli(predicted_at) >= {T0 + 10 * H}"
    for key, condition, periods in (("age_after", change, churn.period_summaries[10:]),
                                    ("age_before", f"NOT ({change})", churn.period_summaries[:10])):
        [v1] = answer(mcp_run, key)["versions"]
        values = np.array([r[0] for r in run.query(
            "SELECT num_features['age'] FROM monitoring.predictions FINAL WHERE model = 'customer-churn' "
            f"AND mapContains(num_features, 'age') AND {condition}")])
        assert v1["kind"] == "numeric" and v1["present"] == v1["numeric"]["count"] == len(values)
        assert v1["predictions"] == sum(p.predictions for p in periods)
        assert v1["missing"] == v1["predictions"] - len(values)
        numeric = v1["numeric"]
        assert numeric["mean"] == pytest.approx(values.mean(), rel=1e-12)
        assert numeric["std"] == pytest.approx(values.std(), rel=1e-9)
        assert (numeric["min"], numeric["max"]) == (values.min(), values.max())
        assert [numeric[k] for k in ("p05", "p25", "median", "p75", "p95")] == pytest.approx(
            list(np.percentile(values, [5, 25, 50, 75, 95])), rel=1e-12)
        assert "top_values" not in v1
    after, before = (answer(mcp_run, k)["versions"][0] for k in ("age_after", "age_before"))
    assert after["numeric"]["mean"] > before["numeric"]["mean"] + 1  # N(35, 10) -> N(38, 12)
    assert [w["window_start"] for w in after["psi_by_window"]] == [iso(T0 + k * H) for k in range(10, 20)]
    psi = dict(run.query("SELECT toUnixTimestamp64Milli(window_start), psi FROM monitoring.feature_drift FINAL "
                         "WHERE model = 'customer-churn' AND feature = 'age'"))
    assert [w["psi"] for w in after["psi_by_window"]] == [psi[T0 + k * H] for k in range(10, 20)]

    [region] = answer(mcp_run, "region")["versions"]
    counts = run.query("SELECT cat_features['region'] AS v, count() AS n FROM monitoring.predictions FINAL "
                       "WHERE model = 'customer-churn' AND mapContains(cat_features, 'region') GROUP BY v "
                       "ORDER BY n DESC, v")
    assert region["kind"] == "categorical" and "numeric" not in region
    assert region["distinct_values"] == len(counts) and region["present"] == sum(n for _, n in counts)
    assert [(t["value"], t["count"], t["share"]) for t in region["top_values"]] == [
        (v, n, n / region["present"]) for v, n in counts[:3]]
    unknown = answer(mcp_run, "feature_unknown")
    assert unknown["versions"] == [] and "age" in unknown["note"] and "region" in unknown["note"]


def test_list_alerts_equals_the_alerts_table(mcp_run):
    run = mcp_run["run"]
    rows = run.query("SELECT alert_id, status, type, severity, model, model_version, subject, "
                     "toUnixTimestamp64Milli(window_start), value, toUnixTimestamp64Milli(detected_at), message, "
                     "evidence FROM monitoring.alerts FINAL ORDER BY detected_at DESC, window_start DESC, alert_id")
    got = answer(mcp_run, "alerts")
    assert got["count"] == len(rows) > 2 and not got["truncated"]
    assert [[a["alert_id"], a["status"], a["type"], a["severity"], a["model"], a["model_version"], a["subject"],
             a["window_start"], a["value"], a["detected_at"], a["message"], a["evidence"]] for a in got["alerts"]] \
        == [[*r[:7], iso(r[7]), r[8], iso(r[9]), r[10], orjson.loads(r[11])] for r in rows]
    two = answer(mcp_run, "alerts_two")
    assert two["alerts"] == got["alerts"][:2] and two["truncated"]

    firing = run.query(  # the README's "Alerts firing now"
        "SELECT model, model_version, type, subject, argMax(severity, (window_start, detected_at)), "
        "argMax(message, (window_start, detected_at)) FROM monitoring.alerts FINAL "
        "GROUP BY model, model_version, type, subject "
        "HAVING argMax(status, (window_start, detected_at)) = 'firing'")
    now = answer(mcp_run, "firing_now")
    assert sorted((a["model"], a["model_version"], a["type"], a["subject"], a["severity"], a["message"])
                  for a in now["alerts"]) == sorted(firing)
    assert all(a["status"] == "firing" for a in now["alerts"]) and now["firing_now"]

    filtered = answer(mcp_run, "alerts_filtered")
    assert filtered["alerts"] and [a["alert_id"] for a in filtered["alerts"]] == [
        r[0] for r in rows if r[4:6] == ("banking-campaign", "v2") and r[2] == "accuracy_below_threshold"
        and r[1] == "firing"]
