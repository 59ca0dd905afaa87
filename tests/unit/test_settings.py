"""Settings: the contract's defaults, every variable parsed, and one clear line for a bad value."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from streams.settings import Settings, SettingsError, defaults, load_settings, variable_names

# The contract's settings table, copied by hand: a changed default must fail here.
CONTRACT_DEFAULTS = {
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
    "CLICKHOUSE_URL": "",
    "TOPIC_PREDICTIONS": "predictions",
    "TOPIC_GROUND_TRUTH": "ground-truth",
    "TOPIC_ALERTS": "alerts",
    "TOPIC_DLQ": "monitor-dlq",
    "TOPIC_PARTITIONS": 4,
    "WINDOW_SECONDS": 3600,
    "LABEL_GRACE_SECONDS": 86400,
    "JOIN_TTL_SECONDS": 604800,
    "ACCURACY_THRESHOLD": 0.85,
    "DEGRADATION_THRESHOLD": 0.05,
    "MIN_LABELED": 50,
    "PSI_WARN": 0.1,
    "PSI_ALERT": 0.2,
    "PSI_BINS": 10,
    "ADWIN_DELTA": 0.002,
    "ROLLING_SIZE": 1000,
    "REFERENCE_PATH": "",
    "POSITIVE_LABEL": "1",
}


def test_every_default_matches_the_contract():
    settings = load_settings({})
    got = {name: getattr(settings, name.lower()) for name in CONTRACT_DEFAULTS}
    assert got == CONTRACT_DEFAULTS
    assert settings == Settings()
    assert defaults()["topic_partitions"] == 4


def test_every_contract_variable_is_read():
    assert set(CONTRACT_DEFAULTS) <= set(variable_names())


def test_empty_values_keep_the_defaults():
    assert load_settings(dict.fromkeys(CONTRACT_DEFAULTS, "  ")) == Settings()


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        load_settings({}).window_seconds = 1  # type: ignore[misc]


def test_reads_the_process_environment_by_default(monkeypatch):
    monkeypatch.setenv("WINDOW_SECONDS", "60")
    monkeypatch.setenv("TOPIC_DLQ", "dead-letters")
    settings = load_settings()
    assert (settings.window_seconds, settings.topic_dlq) == (60, "dead-letters")


@pytest.mark.parametrize(("variable", "raw", "field", "value"), [
    ("KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9092, kafka-2:9093", "kafka_bootstrap_servers", "kafka-1:9092,kafka-2:9093"),
    ("KAFKA_BOOTSTRAP_SERVERS", "PLAINTEXT://broker:29092", "kafka_bootstrap_servers", "PLAINTEXT://broker:29092"),
    ("KAFKA_BOOTSTRAP_SERVERS", "[::1]:9092", "kafka_bootstrap_servers", "[::1]:9092"),
    ("TOPIC_PREDICTIONS", "preds.v2", "topic_predictions", "preds.v2"),
    ("TOPIC_GROUND_TRUTH", "labels_v2", "topic_ground_truth", "labels_v2"),
    ("TOPIC_ALERTS", "monitor-alerts", "topic_alerts", "monitor-alerts"),
    ("TOPIC_DLQ", "dlq", "topic_dlq", "dlq"),
    ("TOPIC_PARTITIONS", "12", "topic_partitions", 12),
    ("WINDOW_SECONDS", " 600 ", "window_seconds", 600),
    ("LABEL_GRACE_SECONDS", "0", "label_grace_seconds", 0),
    ("JOIN_TTL_SECONDS", "7200", "join_ttl_seconds", 7200),
    ("ACCURACY_THRESHOLD", "0.9", "accuracy_threshold", 0.9),
    ("ACCURACY_THRESHOLD", "1", "accuracy_threshold", 1.0),
    ("DEGRADATION_THRESHOLD", "0.1", "degradation_threshold", 0.1),
    ("MIN_LABELED", "20", "min_labeled", 20),
    ("PSI_WARN", "0.15", "psi_warn", 0.15),
    ("PSI_ALERT", "0.3", "psi_alert", 0.3),
    ("PSI_BINS", "5", "psi_bins", 5),
    ("ADWIN_DELTA", "0.01", "adwin_delta", 0.01),
    ("ROLLING_SIZE", "250", "rolling_size", 250),
    ("POSITIVE_LABEL", "fraud", "positive_label", "fraud"),
    ("KAFKA_SECURITY_PROTOCOL", " ssl ", "kafka_security_protocol", "SSL"),
    ("KAFKA_SASL_MECHANISM", "scram-sha-256", "kafka_sasl_mechanism", "SCRAM-SHA-256"),
])
def test_each_variable_is_parsed(variable, raw, field, value):
    assert getattr(load_settings({variable: raw}), field) == value


@pytest.mark.parametrize(("raw", "canonical"), [
    ("true", "1"), ("TRUE", "1"), ("false", "0"), ("1", "1"), ("1.0", "1"), (" 0.0 ", "0"),
    ("2.5", "2.5"), ("fraud", "fraud"), ("nan", "nan"), ("inf", "inf"),
])
def test_positive_label_is_canonical(raw, canonical):
    assert load_settings({"POSITIVE_LABEL": raw}).positive_label == canonical


@pytest.mark.parametrize("url", [
    "chdb:///var/lib/monitor/store",
    "chdb://memory",
    "http://default:secret@clickhouse:8123/monitoring",
    "https://user:pass@ch.example.com:8443/db",
    "http://localhost:8123",
])
def test_clickhouse_url_forms_accepted(url):
    settings = load_settings({"CLICKHOUSE_URL": url})
    assert settings.clickhouse_url == url
    assert settings.clickhouse_dsn() == url


def test_clickhouse_default_is_the_embedded_store_under_the_working_directory(tmp_path):
    dsn = load_settings({}).clickhouse_dsn(cwd=tmp_path)
    assert dsn == "chdb://" + str((tmp_path / ".data" / "clickhouse").resolve())
    assert dsn.startswith("chdb:///")


def test_reference_path_must_be_an_existing_table_file(tmp_path):
    reference = tmp_path / "ref.csv"
    reference.write_text("score,label\n0.5,1\n")
    assert load_settings({"REFERENCE_PATH": str(reference)}).reference_path == str(reference)


CHDB_ALLOWED = "expected chdb:///absolute/path, chdb://memory or http(s)://user:pass@host:port/database"


@pytest.mark.parametrize(("variable", "raw", "allowed"), [
    ("KAFKA_BOOTSTRAP_SERVERS", "localhost", "expected a comma-separated list of host:port (port 1-65535)"),
    ("KAFKA_BOOTSTRAP_SERVERS", "host:99999", "expected a comma-separated list of host:port (port 1-65535)"),
    ("KAFKA_BOOTSTRAP_SERVERS", "host:0", "expected a comma-separated list of host:port (port 1-65535)"),
    ("KAFKA_BOOTSTRAP_SERVERS", "a b:1", "expected a comma-separated list of host:port (port 1-65535)"),
    ("CLICKHOUSE_URL", "chdb://.data/clickhouse", CHDB_ALLOWED),
    ("CLICKHOUSE_URL", "chdb:///", CHDB_ALLOWED),
    ("CLICKHOUSE_URL", "ftp://host/db", CHDB_ALLOWED),
    ("CLICKHOUSE_URL", "/var/lib/store", CHDB_ALLOWED),
    ("CLICKHOUSE_URL", "http://host:port/db", "expected a numeric port in the http(s) URL"),
    ("TOPIC_PREDICTIONS", "bad topic", "expected a Kafka topic name: 1-249 of letters, digits, '.', '_', '-'"),
    ("TOPIC_DLQ", "..", "expected a Kafka topic name: 1-249 of letters, digits, '.', '_', '-'"),
    ("TOPIC_ALERTS", "x" * 250, "expected a Kafka topic name: 1-249 of letters, digits, '.', '_', '-'"),
    ("TOPIC_PARTITIONS", "0", "expected an integer between 1 and 1024"),
    ("TOPIC_PARTITIONS", "four", "expected an integer between 1 and 1024"),
    ("TOPIC_PARTITIONS", "4.0", "expected an integer between 1 and 1024"),
    ("WINDOW_SECONDS", "-60", "expected an integer between 1 and 31622400"),
    ("LABEL_GRACE_SECONDS", "-1", "expected an integer between 0 and 31622400"),
    ("JOIN_TTL_SECONDS", "0", "expected an integer between 1 and 31622400"),
    ("ACCURACY_THRESHOLD", "1.5", "expected a number in [0, 1]"),
    ("ACCURACY_THRESHOLD", "nan", "expected a number in [0, 1]"),
    ("DEGRADATION_THRESHOLD", "0", "expected a number in (0, 1]"),
    ("MIN_LABELED", "0", "expected an integer between 1 and 1000000000"),
    ("PSI_WARN", "0", "expected a number in (0, 100]"),
    ("PSI_ALERT", "inf", "expected a number in (0, 100]"),
    ("PSI_BINS", "1", "expected an integer between 2 and 1000"),
    ("ADWIN_DELTA", "1.01", "expected a number in (0, 1]"),
    ("ROLLING_SIZE", "lots", "expected an integer between 1 and 100000000"),
    ("REFERENCE_PATH", "reference.xlsx", "expected a .csv, .parquet or .jsonl file"),
    ("REFERENCE_PATH", "/nonexistent/reference.csv", "expected an existing file"),
    ("KAFKA_SECURITY_PROTOCOL", "TLS", "expected one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"),
    ("KAFKA_SASL_MECHANISM", "GSSAPI", "expected one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"),
    ("KAFKA_SSL_CAFILE", "/nonexistent/ca.pem", "expected an existing file"),
    ("KAFKA_SSL_CERTFILE", "/nonexistent/client.pem", "expected an existing file"),
    ("KAFKA_SSL_KEYFILE", "/nonexistent/client.key", "expected an existing file"),
])
def test_bad_value_is_one_line_naming_variable_value_and_allowed(variable, raw, allowed):
    with pytest.raises(SettingsError) as caught:
        load_settings({variable: raw})
    message = str(caught.value)
    assert message == f"{variable}={raw!r} is not valid: {allowed}"
    assert "\n" not in message


def test_psi_alert_below_psi_warn_is_rejected():
    with pytest.raises(SettingsError) as caught:
        load_settings({"PSI_WARN": "0.3", "PSI_ALERT": "0.2"})
    assert str(caught.value) == "PSI_ALERT='0.2' is not valid: expected a number >= PSI_WARN (0.3)"


def test_psi_warn_above_the_default_alert_is_rejected_naming_psi_alert():
    with pytest.raises(SettingsError, match=r"^PSI_ALERT=0\.2 is not valid: expected a number >= PSI_WARN \(0\.5\)$"):
        load_settings({"PSI_WARN": "0.5"})


def test_equal_psi_bands_are_allowed():
    settings = load_settings({"PSI_WARN": "0.2", "PSI_ALERT": "0.2"})
    assert settings.psi_warn == settings.psi_alert == 0.2


@pytest.mark.parametrize("env", [
    {"TOPIC_GROUND_TRUTH": "predictions"},
    {"TOPIC_ALERTS": "monitor-dlq"},
    {"TOPIC_PREDICTIONS": "x", "TOPIC_DLQ": "x"},
])
def test_duplicate_topic_names_are_rejected(env):
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    message = str(caught.value)
    assert message.startswith("TOPIC_PREDICTIONS/TOPIC_GROUND_TRUTH/TOPIC_ALERTS/TOPIC_DLQ=")
    assert message.endswith("is not valid: expected four different topic names")


def test_input_topics_pair():
    assert load_settings({"TOPIC_PREDICTIONS": "p", "TOPIC_GROUND_TRUTH": "g"}).input_topics == ("p", "g")


def test_operational_knobs_have_local_defaults_and_are_validated():
    settings = load_settings({"MONITOR_WEB_PORT": "6100", "MONITOR_DATA_DIR": "state"})
    assert (settings.web_port, settings.data_dir, settings.app_id) == (6100, "state", "model-monitor")
    with pytest.raises(SettingsError, match=r"^MONITOR_WEB_PORT='70000' is not valid: expected an integer between 1 and 65535$"):
        load_settings({"MONITOR_WEB_PORT": "70000"})


def test_relative_reference_path_is_resolved_against_the_working_directory(tmp_path, monkeypatch):
    Path(tmp_path, "ref.jsonl").write_text('{"score": 0.5}\n')
    monkeypatch.chdir(tmp_path)
    assert load_settings({"REFERENCE_PATH": "ref.jsonl"}).reference_path == "ref.jsonl"
