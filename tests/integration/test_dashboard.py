"""The provisioned Grafana dashboard: its structure, and every query it holds run against the demo's results.

Grafana is not started here. Each panel target, template-variable query and annotation query is
expanded the way Grafana and the ClickHouse plugin expand it (`render_sql`, after the plugin's
pkg/macros) and run on the finished embedded store of the `demo_results` fixture.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "grafana" / "dashboards" / "model-monitor.json"
DATASOURCES = ROOT / "grafana" / "provisioning" / "datasources" / "clickhouse.yml"
PROVIDERS = ROOT / "grafana" / "provisioning" / "dashboards" / "dashboards.yml"
PLUGIN = "grafana-clickhouse-datasource"
# ReplacingMergeTree tables: a read without FINAL may count a rewritten row twice.
REPLACING_TABLES = {"window_metrics", "feature_drift", "alerts", "predictions", "outcomes", "labels", "model_settings",
                    "version_comparison"}

# Columns each query returns, in order. A new or changed panel must be added here.
PANEL_COLUMNS: dict[tuple[str, str], list[str]] = {
    ("Accuracy per window and each version's SLO", "A"): ["time", "model_version", "accuracy"],
    ("Accuracy per window and each version's SLO", "B"): ["time", "model_version", "slo"],
    ("Label coverage (labeled / predictions)", "A"): ["time", "model_version", "label_coverage"],
    ("PSI per feature over time (heatmap)", "A"): ["time", "feature", "model_version", "psi"],
    ("Prediction volume and positive rate", "A"): ["time", "model_version", "predictions"],
    ("Prediction volume and positive rate", "B"): ["time", "model_version", "positive_rate"],
    ("Mean confidence", "A"): ["time", "model_version", "mean_confidence"],
    ("Latency p50 / p95 / p99", "A"): ["time", "model_version", "p50", "p95", "p99"],
    ("Alerts", "A"): ["time", "status", "severity", "type", "model_version", "subject", "value", "threshold",
                      "message"],
    ("Window figures", "A"): ["window_start", "model_version", "predictions", "labeled", "correct", "accuracy",
                              "precision", "recall", "f1", "rolling_accuracy", "final"],
    ("Estimated vs realized accuracy", "A"): ["time", "model_version", "accuracy", "estimated_accuracy",
                                             "estimated_accuracy_low", "estimated_accuracy_high"],
    ("Label delay p50 / p90 (seconds)", "A"): ["time", "model_version", "p50", "p90"],
    ("Version comparison (newer - older accuracy)", "A"): ["time", "model_version", "baseline_version", "diff"],
}
# Panels that need what the demo's one-version models do not have (checked end to end in
# tests/integration/test_labels_versions_e2e.py): their columns are checked, not their rows.
EMPTY_ON_DEMO = {"Version comparison (newer - older accuracy)"}
ANNOTATION_COLUMNS = ["time", "timeEnd", "title", "text", "tags"]

_VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")
_MACRO_WITH_ARG = re.compile(r"\$__(timeFilter|timeInterval)\(\s*([^()]+?)\s*\)")


def sql_string(value: str) -> str:
    """A ClickHouse string literal as Grafana's `sqlstring` format writes it (quote doubled)."""
    return "'" + value.replace("'", "''") + "'"


def render_sql(sql: str, *, start: int, end: int, interval_s: int, variables: Mapping[str, Sequence[str]]) -> str:
    """Expand dashboard variables, then the ClickHouse plugin's macros, as Grafana would for a
    time range [start, end] (Unix seconds), so that a panel's SQL can run outside Grafana.

    Variables: ``${v:sqlstring}`` -> ``'a','b'``; ``${v}`` / ``$v`` -> the value itself, or the
    plugin's ``'a','b'`` for several. Macros as in the plugin's pkg/macros. Anything left that
    looks like a macro or variable raises, so an unsupported one cannot pass unnoticed.

    >>> render_sql("SELECT 1 WHERE $__timeFilter(t) AND m = ${m:sqlstring}", start=10, end=20,
    ...            interval_s=60, variables={"m": ["a"]})
    "SELECT 1 WHERE t >= toDateTime(10) AND t <= toDateTime(20) AND m = 'a'"
    """

    def variable(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        if name.startswith("__"):
            return match.group(0)  # a macro, expanded below
        if name not in variables:
            raise KeyError(f"variable {name!r} has no value")
        values = list(variables[name])
        fmt = match.group(2)
        if fmt == "sqlstring":
            return ",".join(sql_string(v) for v in values)
        if fmt is not None:
            raise ValueError(f"unsupported variable format {fmt!r} in {match.group(0)}")
        return values[0] if len(values) == 1 else "'" + "','".join(values) + "'"

    text = _VARIABLE.sub(variable, sql)
    interval = max(int(interval_s), 1)

    def with_arg(match: re.Match[str]) -> str:
        name, column = match.group(1), match.group(2)
        if name == "timeFilter":
            return f"{column} >= toDateTime({start}) AND {column} <= toDateTime({end})"
        return f"toStartOfInterval(toDateTime({column}), INTERVAL {interval} second)"

    text = _MACRO_WITH_ARG.sub(with_arg, text)
    text = re.sub(r"\$__fromTime\b", f"toDateTime({start})", text)
    text = re.sub(r"\$__toTime\b", f"toDateTime({end})", text)
    text = re.sub(r"\$__interval_s\b", str(interval), text)
    if "$" in text:
        raise ValueError(f"unexpanded macro or variable in: {text}")
    return text


# -- the substitution itself ---------------------------------------------------------------------------

def test_render_sql_time_filter_and_single_value() -> None:
    sql = "SELECT a FROM t WHERE model = ${model:sqlstring} AND $__timeFilter(window_start)"
    assert render_sql(sql, start=1767571200, end=1767646800, interval_s=30, variables={"model": ["churn"]}) == (
        "SELECT a FROM t WHERE model = 'churn' AND window_start >= toDateTime(1767571200) "
        "AND window_start <= toDateTime(1767646800)")


def test_render_sql_multi_value_quotes_and_escapes() -> None:
    sql = "WHERE v IN (${model_version:sqlstring}) AND m = '$model'"
    assert render_sql(sql, start=0, end=1, interval_s=1,
                      variables={"model_version": ["v1", "it's"], "model": ["m1"]}) == (
        "WHERE v IN ('v1','it''s') AND m = 'm1'")


def test_render_sql_plain_variables_and_word_boundaries() -> None:
    sql = "$model/$model_version/${model_version}"
    assert render_sql(sql, start=0, end=1, interval_s=1,
                      variables={"model": ["m"], "model_version": ["a", "b"]}) == "m/'a','b'/'a','b'"


def test_render_sql_interval_and_bounds() -> None:
    sql = "SELECT $__timeInterval(predicted_at) AS time, $__interval_s, $__fromTime, $__toTime"
    assert render_sql(sql, start=100, end=200, interval_s=300, variables={}) == (
        "SELECT toStartOfInterval(toDateTime(predicted_at), INTERVAL 300 second) AS time, 300, "
        "toDateTime(100), toDateTime(200)")
    assert render_sql("$__interval_s", start=0, end=1, interval_s=0, variables={}) == "1"


def test_render_sql_refuses_what_it_cannot_expand() -> None:
    with pytest.raises(ValueError, match="unexpanded"):
        render_sql("WHERE $__timeFilter_ms(t)", start=0, end=1, interval_s=1, variables={})
    with pytest.raises(KeyError, match="region"):
        render_sql("WHERE r = ${region:sqlstring}", start=0, end=1, interval_s=1, variables={})
    with pytest.raises(ValueError, match="format"):
        render_sql("WHERE r = ${model:csv}", start=0, end=1, interval_s=1, variables={"model": ["m"]})


# -- reading the dashboard -----------------------------------------------------------------------------

def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def load_datasource() -> dict[str, Any]:
    (datasource,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    return datasource


def all_panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those folded inside rows included."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def panel_targets(dashboard: Mapping[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(panel, target) for panel in all_panels(dashboard) for target in panel.get("targets", [])]


def query_variables(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [v for v in dashboard["templating"]["list"] if v["type"] == "query"]


def sql_annotations(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [a for a in dashboard["annotations"]["list"] if not a.get("builtIn")]


def every_sql(dashboard: Mapping[str, Any]) -> list[str]:
    return ([t["rawSql"] for _, t in panel_targets(dashboard)] + [v["query"] for v in query_variables(dashboard)]
            + [a["target"]["rawSql"] for a in sql_annotations(dashboard)])


# -- structure -----------------------------------------------------------------------------------------

def test_provisioning_files() -> None:
    datasource = load_datasource()
    assert datasource["type"] == PLUGIN and datasource["uid"]
    json_data = datasource["jsonData"]
    assert (json_data["host"], json_data["port"], json_data["protocol"]) == ("clickhouse", 8123, "http")
    assert json_data["defaultDatabase"] == "monitoring"
    assert re.fullmatch(r"\$\{?CLICKHOUSE_USER\}?", json_data["username"])
    assert re.fullmatch(r"\$\{?CLICKHOUSE_PASSWORD\}?", datasource["secureJsonData"]["password"])
    assert "password" not in json_data
    (provider,) = yaml.safe_load(PROVIDERS.read_text())["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_dashboard_structure() -> None:
    dashboard = load_dashboard()
    uid = load_datasource()["uid"]
    panels = list(all_panels(dashboard))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {ids}"
    assert dashboard["uid"] and dashboard["title"]

    boxes = []
    for panel in panels:
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) for k in ("h", "w", "x", "y")), panel["title"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        boxes.append((grid["x"], grid["y"], grid["x"] + grid["w"], grid["y"] + grid["h"], panel["title"]))
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], f"{a[4]} overlaps {b[4]}"

    assert {(p["title"], t["refId"]) for p, t in panel_targets(dashboard)} == set(PANEL_COLUMNS)
    for panel, target in panel_targets(dashboard):
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        assert panel["datasource"] == {"type": PLUGIN, "uid": uid}, panel["title"]
        assert target["datasource"] == {"type": PLUGIN, "uid": uid}, panel["title"]
        assert target["editorType"] == "sql" and target["rawSql"].strip()
        # sqlds formats: 0 time series (long frames widened by label), 1 table.
        assert (target["format"], target["queryType"]) in {(0, "timeseries"), (1, "table")}, panel["title"]
        # The plugin migrates a query without a v4 pluginVersion as a v3 one.
        assert tuple(int(x) for x in target["pluginVersion"].split(".")) >= (4, 0, 0)
    for variable in query_variables(dashboard):
        assert variable["datasource"] == {"type": PLUGIN, "uid": uid}, variable["name"]
    annotations = sql_annotations(dashboard)
    assert annotations, "alerts as annotations"
    for annotation in annotations:
        assert annotation["datasource"] == {"type": PLUGIN, "uid": uid}
        assert annotation["target"]["datasource"] == {"type": PLUGIN, "uid": uid}
        assert annotation["target"]["editorType"] == "sql"


def test_dashboard_queries_read_final_and_known_variables() -> None:
    dashboard = load_dashboard()
    names = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"model", "model_version"} <= names
    for sql in every_sql(dashboard):
        tables = re.findall(r"\bmonitoring\.(\w+)", sql)
        assert tables, sql
        read_final = re.findall(r"\bmonitoring\.(\w+)(?:\s+AS\s+\w+)?\s+FINAL\b", sql)
        assert sorted(read_final) == sorted(t for t in tables if t in REPLACING_TABLES), sql
        used = {m.group(1) or m.group(3) for m in _VARIABLE.finditer(sql)} - {""}
        assert {u for u in used if not u.startswith("__")} <= names, sql


def test_thresholds_follow_the_settings_defaults() -> None:
    settings = load_settings({})
    panels = {p["title"]: p for p in all_panels(load_dashboard())}
    accuracy = panels["Accuracy per window and each version's SLO"]["fieldConfig"]["defaults"]
    assert [s["value"] for s in accuracy["thresholds"]["steps"]] == [None, settings.accuracy_threshold]
    assert accuracy["custom"]["thresholdsStyle"]["mode"] != "off"
    psi = panels["PSI per feature over time (heatmap)"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in psi] == [None, settings.psi_warn, settings.psi_alert]


def test_psi_panel_is_a_heatmap_of_features_by_window() -> None:
    """The issue asks for a heatmap: one row per feature (and version), one cell per window, coloured by band."""
    panel = {p["title"]: p for p in all_panels(load_dashboard())}["PSI per feature over time (heatmap)"]
    defaults = panel["fieldConfig"]["defaults"]
    assert panel["type"] == "state-timeline" and panel["options"]["mergeValues"] is False  # a cell per window
    assert defaults["color"]["mode"] == "thresholds"
    assert re.fullmatch(r"\$\{__field\.labels\.feature\} \$\{__field\.labels\.model_version\}",
                        defaults["displayName"])
    (target,) = panel["targets"]
    assert (target["format"], target["queryType"]) == (0, "timeseries")  # long frame widened by feature/version


# -- every query against the demo's results -----------------------------------------------------------

def columns_of(run: Any, sql: str) -> list[tuple[str, str]]:
    """(name, type) of each column the query returns, from ClickHouse's own DESCRIBE."""
    return [(row[0], row[1]) for row in run.query(f"DESCRIBE ({sql})")]


def is_time(type_: str) -> bool:
    return re.fullmatch(r"(Nullable\()?DateTime(64)?\b.*", type_) is not None


def is_number(type_: str) -> bool:
    return re.fullmatch(r"(Nullable\()?(U?Int\d+|Float\d+|Decimal.*)\)?", type_) is not None


def is_text(type_: str) -> bool:
    return type_ in {"String", "LowCardinality(String)", "Nullable(String)"}


@pytest.fixture(scope="module")
def scope(demo_results: Any) -> dict[str, Any]:
    """The demo's time range, and each model with the versions the facts hold (not the dashboard)."""
    ((start, end),) = demo_results.query(
        "SELECT toUnixTimestamp(min(window_start)), toUnixTimestamp(max(window_end)) "
        "FROM monitoring.window_metrics FINAL")
    versions: dict[str, list[str]] = {}
    for model, version in demo_results.query(
            "SELECT DISTINCT model, model_version FROM monitoring.predictions FINAL ORDER BY 1, 2"):
        versions.setdefault(model, []).append(version)
    assert len(versions) == 2, versions  # the demo's two scenarios
    return {"start": int(start), "end": int(end), "versions": versions}


def render(sql: str, scope: Mapping[str, Any], model: str, versions: Sequence[str], interval_s: int = 3600) -> str:
    return render_sql(sql, start=scope["start"], end=scope["end"], interval_s=interval_s,
                      variables={"model": [model], "model_version": list(versions)})


def test_template_variables_list_the_models_and_versions(demo_results: Any, scope: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in query_variables(load_dashboard())}
    model_sql = render(variables["model"]["query"], scope, "", [])
    assert [t for _, t in columns_of(demo_results, model_sql)] in (["String"], ["LowCardinality(String)"])
    assert [r[0] for r in demo_results.query(model_sql)] == sorted(scope["versions"])
    for model, versions in scope["versions"].items():
        version_sql = render(variables["model_version"]["query"], scope, model, [])
        assert [r[0] for r in demo_results.query(version_sql)] == versions


def check_columns(run: Any, sql: str, expected: list[str], time_series: bool) -> None:
    described = columns_of(run, sql)
    assert [name for name, _ in described] == expected, sql
    first_type = described[0][1]
    assert is_time(first_type), f"{expected[0]} is {first_type}"
    if time_series:
        # sqlds widens a long frame: strings become labels, at least one number becomes the series.
        kinds = ["text" if is_text(t) else "number" if is_number(t) else t for _, t in described[1:]]
        assert "number" in kinds and all(k in ("text", "number") for k in kinds), described
        assert kinds == sorted(kinds, key=lambda k: k != "text"), f"labels before values: {described}"


@pytest.mark.parametrize("select", ["all", "first"])
def test_every_panel_returns_its_columns(demo_results: Any, scope: dict[str, Any], select: str) -> None:
    dashboard = load_dashboard()
    for model, versions in scope["versions"].items():
        chosen = versions if select == "all" else versions[:1]
        for panel, target in panel_targets(dashboard):
            sql = render(target["rawSql"], scope, model, chosen)
            expected = PANEL_COLUMNS[(panel["title"], target["refId"])]
            check_columns(demo_results, sql, expected, time_series=target["format"] == 0)
            rows = demo_results.query(sql)
            assert rows or panel["title"] in EMPTY_ON_DEMO, f"{panel['title']} {target['refId']} returned nothing for {model}"
            if target["format"] == 0:
                times = [r[0] for r in rows]
                assert times == sorted(times), f"{panel['title']}: long frames must come sorted by time"
            assert {r[expected.index("model_version")] for r in rows} <= set(chosen)


def panel_rows(run: Any, scope: Mapping[str, Any], title: str, model: str, ref_id: str = "A") -> list[tuple]:
    (target,) = [t for p, t in panel_targets(load_dashboard()) if p["title"] == title and t["refId"] == ref_id]
    return run.query(render(target["rawSql"], scope, model, scope["versions"][model]))


def test_accuracy_and_coverage_panels_match_the_facts(demo_results: Any, scope: dict[str, Any]) -> None:
    """The panels show correct/labeled and labeled/predictions, recomputed here from the deduplicated facts."""
    for model in scope["versions"]:
        facts = {(ws, v): (n, c) for ws, v, n, c in demo_results.query(
            "SELECT window_start, model_version, count(), sum(correct) FROM monitoring.outcomes FINAL "
            f"WHERE model = '{model}' GROUP BY 1, 2")}
        predicted = {(ws, v): n for ws, v, n in demo_results.query(
            "SELECT window_start, model_version, uniqExact(request_id) FROM monitoring.predictions FINAL "
            f"WHERE model = '{model}' GROUP BY 1, 2")}
        accuracy = panel_rows(demo_results, scope, "Accuracy per window and each version's SLO", model)
        assert len(accuracy) == len(predicted)
        for time, version, value in accuracy:
            labeled, correct = facts[(time, version)]
            assert math.isclose(value, correct / labeled, rel_tol=1e-12)
        # Each version's own SLO (model_settings; the demo fixture runs without MONITOR_CONFIG).
        slo = panel_rows(demo_results, scope, "Accuracy per window and each version's SLO", model, "B")
        assert [(time, version) for time, version, _ in slo] == [(time, version) for time, version, _ in accuracy]
        assert {value for *_, value in slo} == {load_settings({}).accuracy_threshold}
        coverage = panel_rows(demo_results, scope, "Label coverage (labeled / predictions)", model)
        assert len(coverage) == len(predicted)
        for time, version, value in coverage:
            assert math.isclose(value, facts[(time, version)][0] / predicted[(time, version)], rel_tol=1e-12)
            assert 0 < value <= 1


def test_latency_panel(demo_results: Any, scope: dict[str, Any]) -> None:
    """The demo's scenarios carry latency_ms, so every bucket has ordered percentiles within the data."""
    ((low, high, carried),) = demo_results.query(
        "SELECT min(latency_ms), max(latency_ms), countIf(latency_ms IS NOT NULL) FROM monitoring.predictions FINAL")
    assert carried > 0
    for model in scope["versions"]:
        rows = panel_rows(demo_results, scope, "Latency p50 / p95 / p99", model)
        assert rows
        for _, _, p50, p95, p99 in rows:
            assert low <= p50 <= p95 <= p99 <= high + 1e-3


def test_psi_panel_covers_every_feature(demo_results: Any, scope: dict[str, Any]) -> None:
    for model in scope["versions"]:
        features = {r[0] for r in demo_results.query(
            f"SELECT DISTINCT feature FROM monitoring.feature_drift FINAL WHERE model = '{model}'")}
        rows = panel_rows(demo_results, scope, "PSI per feature over time (heatmap)", model)
        assert {r[1] for r in rows} == features
        assert all(r[3] is None or r[3] >= 0 for r in rows)


def test_annotations_are_the_firing_alerts(demo_results: Any, scope: dict[str, Any]) -> None:
    (annotation,) = sql_annotations(load_dashboard())
    every_alert = demo_results.query(
        "SELECT model, status, window_start, message FROM monitoring.alerts FINAL")
    shown_anywhere = 0
    for model, versions in scope["versions"].items():
        sql = render(annotation["target"]["rawSql"], scope, model, versions)
        check_columns(demo_results, sql, ANNOTATION_COLUMNS, time_series=False)
        rows = demo_results.query(sql)
        expected = sorted((ws, msg) for m, status, ws, msg in every_alert
                          if m == model and status == "firing" and ws is not None)
        assert sorted((r[0], r[3]) for r in rows) == expected
        for time, time_end, title, _, tags in rows:
            assert time_end > time and title and len(tags.split(",")) == 4
        shown_anywhere += len(rows)
    assert shown_anywhere > 0, "the demo fires alerts (degradation, feature drift)"
