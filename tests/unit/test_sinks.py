import orjson

from sinks.clickhouse import parse_target
from sinks.query import render
from sinks.schema import ADDED_COLUMNS, columns, create_statements


def test_embedded_and_server_urls():
    embedded = parse_target("chdb:///srv/monitor/store")
    assert (embedded.kind, embedded.embedded_path, embedded.database) == ("chdb", "/srv/monitor/store", "monitoring")
    assert parse_target("chdb://memory").embedded_path is None
    server = parse_target("https://monitor:s%40cret@ch.internal:8443/figures")
    assert (server.kind, server.host, server.port, server.secure) == ("http", "ch.internal", 8443, True)
    assert (server.username, server.password, server.database) == ("monitor", "s@cret", "figures")
    plain = parse_target("http://localhost")
    assert (plain.port, plain.database, plain.username, plain.secure) == (8123, "monitoring", "default", False)


def test_contract_columns_are_present():
    assert columns("window_metrics")[:16] == [
        "model", "model_version", "window_start", "window_end", "predictions", "labeled", "correct", "accuracy",
        "precision", "recall", "f1", "positive_rate", "mean_confidence", "rolling_accuracy", "label_coverage",
        "final"]
    assert {"feature", "psi", "n", "drifted"} <= set(columns("feature_drift"))
    assert {"request_id", "predicted_at", "labeled_at", "prediction", "label", "correct", "score", "latency_ms",
            "features"} <= set(columns("outcomes"))
    assert {"alert_id", "status", "type", "severity", "subject", "baseline", "detected_at", "message",
            "recommended_action", "evidence"} <= set(columns("alerts"))


def test_every_table_is_created_in_the_named_database():
    statements = create_statements("figures")
    assert statements[0] == "CREATE DATABASE IF NOT EXISTS `figures`"
    assert all("`figures`." in s for s in statements[1:])
    assert any("ReplacingMergeTree(updated_at) ORDER BY (model, model_version, window_start)" in s
               for s in statements)


def test_render_formats():
    cols, rows = ["w", "accuracy"], [["2026-01-01", 0.5], ["2026-01-02", None]]
    assert render(cols, rows, "csv") == "w,accuracy\n2026-01-01,0.5\n2026-01-02,"
    assert orjson.loads(render(cols, rows, "json")) == [{"w": "2026-01-01", "accuracy": 0.5},
                                                          {"w": "2026-01-02", "accuracy": None}]
    table = render(cols, rows, "table")
    assert "accuracy" in table and "NULL" in table and "2 row(s)" in table


def test_added_columns_are_in_the_ddl_and_altered_in():
    statements = create_statements("m")
    for table, added in ADDED_COLUMNS.items():
        assert all(column.split()[0] in columns(table) for column in added)
        assert f"ALTER TABLE `m`.`{table}` " + ", ".join(f"ADD COLUMN IF NOT EXISTS {c}" for c in added) in statements
