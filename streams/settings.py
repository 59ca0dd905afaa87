"""Every setting of the monitor, read once from the environment and validated.

One frozen object carries the contract's variables; a bad value raises
:class:`SettingsError` whose message is one line naming the variable, the value
and what is allowed, so start-up stops with something a person can act on.

>>> s = load_settings({"WINDOW_SECONDS": "600"})
>>> s.window_seconds, s.topic_predictions, s.accuracy_threshold
(600, 'predictions', 0.85)
>>> load_settings({"PSI_BINS": "one"})
Traceback (most recent call last):
...
streams.settings.SettingsError: PSI_BINS='one' is not valid: expected an integer between 2 and 1000
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from streams.model_config import ModelConfig, ModelSettings


class SettingsError(ValueError):
    """A setting has a value the monitor cannot run with."""


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    clickhouse_url: str = ""
    topic_predictions: str = "predictions"
    topic_ground_truth: str = "ground-truth"
    topic_alerts: str = "alerts"
    topic_dlq: str = "monitor-dlq"
    topic_partitions: int = 4
    window_seconds: int = 3600
    label_grace_seconds: int = 86400
    join_ttl_seconds: int = 604800
    accuracy_threshold: float = 0.85
    degradation_threshold: float = 0.05
    min_labeled: int = 50
    psi_warn: float = 0.1
    psi_alert: float = 0.2
    psi_bins: int = 10
    adwin_delta: float = 0.002
    rolling_size: int = 1000
    reference_path: str = ""
    positive_label: str = "1"
    # Alert rules (beyond the contract's table; the contract states the rules, these their rates).
    drift_false_alarm_rate: float = 0.001  # per closed window, across all drift subjects of a version
    accuracy_confidence: float = 0.99  # one-sided, of an early accuracy decision, across its looks
    # Beyond the contract: operational knobs with local-stack defaults.
    app_id: str = "model-monitor"
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    broker_rebalance_timeout: float = 4.0
    broker_session_timeout: float = 6.0
    data_dir: str = ".data"
    idle_partition_seconds: float = 30.0
    # Kafka security for real clusters (streams/kafka_config.py turns these into client configs).
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = field(default="", repr=False)
    kafka_ssl_cafile: str = ""
    kafka_ssl_certfile: str = ""
    kafka_ssl_keyfile: str = ""
    # Per-model settings (streams/model_config.py): the file, and its checked content.
    monitor_config: str = ""
    model_config: ModelConfig | None = field(default=None, repr=False, compare=False)

    def for_model(self, model: str, version: str | None = None) -> ModelSettings:
        """A model version's SLO, bands, positive label, reference and ignored features:
        MONITOR_CONFIG's most specific level, else the environment's values."""
        if self.model_config is not None:
            return self.model_config.settings_for(model, version)
        return self.model_defaults()

    def model_defaults(self) -> ModelSettings:
        """The per-model settings as the environment (or the built-in defaults) gives them."""
        from streams.model_config import ModelSettings

        return ModelSettings(self.accuracy_threshold, self.degradation_threshold, self.min_labeled,
                             self.psi_warn, self.psi_alert, self.positive_label, self.reference_path)

    @property
    def input_topics(self) -> tuple[str, str]:
        return (self.topic_predictions, self.topic_ground_truth)

    def clickhouse_dsn(self, cwd: Path | None = None) -> str:
        """The URL the sink opens: the embedded store under `.data/clickhouse` by default."""
        if self.clickhouse_url:
            return self.clickhouse_url
        root = (cwd or Path.cwd()) / self.data_dir / "clickhouse"
        return "chdb://" + str(root.resolve())


# --- value parsers: each returns the typed value or raises ValueError(allowed) ---

def _integer(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise ValueError(f"expected an integer between {low} and {high}")
        return value

    return parse


def _number(low: float, high: float, *, low_open: bool = False) -> Callable[[str], float]:
    bracket = "(" if low_open else "["

    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            value = float("nan")
        ok = value == value and value <= high and (value > low if low_open else value >= low)
        if not ok:
            raise ValueError(f"expected a number in {bracket}{low:g}, {high:g}]")
        return value

    return parse


_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def _topic(raw: str) -> str:
    value = raw.strip()
    if not _TOPIC_RE.match(value) or value in {".", ".."}:
        raise ValueError("expected a Kafka topic name: 1-249 of letters, digits, '.', '_', '-'")
    return value


def _bootstrap(raw: str) -> str:
    hosts = [h.strip() for h in raw.split(",") if h.strip()]
    pattern = re.compile(r"^(?:[A-Za-z]+://)?[^\s:/]+:\d{1,5}$|^(?:[A-Za-z]+://)?\[[0-9A-Fa-f:]+\]:\d{1,5}$")
    if not hosts or not all(pattern.match(h) and 1 <= int(h.rsplit(":", 1)[1]) <= 65535 for h in hosts):
        raise ValueError("expected a comma-separated list of host:port (port 1-65535)")
    return ",".join(hosts)


def _clickhouse_url(raw: str) -> str:
    value = raw.strip()
    if not value:
        return ""
    parts = urlsplit(value)
    if parts.scheme == "chdb":
        if value == "chdb://memory" or (value.startswith("chdb:///") and len(value) > len("chdb:///")):
            return value
        raise ValueError("expected chdb:///absolute/path, chdb://memory or http(s)://user:pass@host:port/database")
    if parts.scheme in {"http", "https"} and parts.hostname:
        try:
            parts.port  # noqa: B018 - raises on a non-numeric port
        except ValueError:
            raise ValueError("expected a numeric port in the http(s) URL") from None
        return value
    raise ValueError("expected chdb:///absolute/path, chdb://memory or http(s)://user:pass@host:port/database")


def _reference_path(raw: str) -> str:
    value = raw.strip()
    if not value:
        return ""
    path = Path(value)
    if path.suffix.lower() not in {".csv", ".parquet", ".jsonl", ".json", ".ndjson"}:
        raise ValueError("expected a .csv, .parquet or .jsonl file")
    if not path.is_file():
        raise ValueError("expected an existing file")
    return value


def _positive_label(raw: str) -> str:
    from streams.canonical import canonical_class

    value = raw.strip()
    if not value:
        raise ValueError("expected a class label such as 1 or 'fraud'")
    lowered = value.lower()
    if lowered in {"true", "false"}:
        return "1" if lowered == "true" else "0"
    try:
        number = float(value)
    except ValueError:
        return value
    # "nan"/"inf" parse as floats but are not numbers a class can be: keep them as strings.
    return canonical_class(number) if math.isfinite(number) else value


def _non_empty(raw: str) -> str:
    value = raw.strip()
    if not value:
        raise ValueError("expected a non-empty string")
    return value


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().upper()
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return value

    return parse


def _secret(raw: str) -> str:
    """A password as given: never stripped, never rejected, so never echoed in an error."""
    return raw


def _existing_file(raw: str) -> str:
    value = raw.strip()
    if not Path(value).is_file():
        raise ValueError("expected an existing file")
    return value


def _config_file(raw: str) -> str:
    value = raw.strip()
    if not value:
        return ""
    if Path(value).suffix.lower() != ".toml":
        raise ValueError("expected a .toml file")
    if not Path(value).is_file():
        raise ValueError("expected an existing file")
    return value


def _host(raw: str) -> str:
    value = raw.strip()
    if not value or any(c.isspace() for c in value):
        raise ValueError("expected a host name or IP address")
    return value


_PARSERS: dict[str, Callable[[str], Any]] = {
    "KAFKA_BOOTSTRAP_SERVERS": _bootstrap,
    "CLICKHOUSE_URL": _clickhouse_url,
    "TOPIC_PREDICTIONS": _topic,
    "TOPIC_GROUND_TRUTH": _topic,
    "TOPIC_ALERTS": _topic,
    "TOPIC_DLQ": _topic,
    "TOPIC_PARTITIONS": _integer(1, 1024),
    "WINDOW_SECONDS": _integer(1, 366 * 86400),
    "LABEL_GRACE_SECONDS": _integer(0, 366 * 86400),
    "JOIN_TTL_SECONDS": _integer(1, 366 * 86400),
    "ACCURACY_THRESHOLD": _number(0.0, 1.0),
    "DEGRADATION_THRESHOLD": _number(0.0, 1.0, low_open=True),
    "MIN_LABELED": _integer(1, 10**9),
    "PSI_WARN": _number(0.0, 100.0, low_open=True),
    "PSI_ALERT": _number(0.0, 100.0, low_open=True),
    "PSI_BINS": _integer(2, 1000),
    "ADWIN_DELTA": _number(0.0, 1.0, low_open=True),
    "DRIFT_FALSE_ALARM_RATE": _number(0.0, 0.5, low_open=True),
    "ACCURACY_CONFIDENCE": _number(0.5, 0.999999),
    "ROLLING_SIZE": _integer(1, 10**8),
    "REFERENCE_PATH": _reference_path,
    "POSITIVE_LABEL": _positive_label,
    "MONITOR_APP_ID": _non_empty,
    "MONITOR_WEB_HOST": _host,
    "MONITOR_WEB_PORT": _integer(1, 65535),
    "MONITOR_REBALANCE_TIMEOUT": _number(0.5, 3600.0),
    "MONITOR_SESSION_TIMEOUT": _number(1.0, 3600.0),
    "MONITOR_DATA_DIR": _non_empty,
    "MONITOR_IDLE_SECONDS": _number(0.1, 86400.0),
    "KAFKA_SECURITY_PROTOCOL": _choice("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
    "KAFKA_SASL_MECHANISM": _choice("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
    "KAFKA_SASL_USERNAME": _non_empty,
    "KAFKA_SASL_PASSWORD": _secret,
    "KAFKA_SSL_CAFILE": _existing_file,
    "KAFKA_SSL_CERTFILE": _existing_file,
    "KAFKA_SSL_KEYFILE": _existing_file,
    "MONITOR_CONFIG": _config_file,
}

_FIELD_OF = {
    "MONITOR_APP_ID": "app_id",
    "MONITOR_WEB_HOST": "web_host",
    "MONITOR_WEB_PORT": "web_port",
    "MONITOR_REBALANCE_TIMEOUT": "broker_rebalance_timeout",
    "MONITOR_SESSION_TIMEOUT": "broker_session_timeout",
    "MONITOR_DATA_DIR": "data_dir",
    "MONITOR_IDLE_SECONDS": "idle_partition_seconds",
}


def variable_names() -> list[str]:
    """Every environment variable the monitor reads (the README table and compose file use it)."""
    return list(_PARSERS)


def field_for(variable: str) -> str:
    return _FIELD_OF.get(variable, variable.lower())


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every variable; unset or empty ones keep their defaults."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for variable, parse in _PARSERS.items():
        raw = env.get(variable)
        if raw is None or (raw.strip() == "" and variable not in {"CLICKHOUSE_URL", "REFERENCE_PATH", "MONITOR_CONFIG"}):
            continue
        try:
            values[field_for(variable)] = parse(raw)
        except ValueError as err:
            raise SettingsError(f"{variable}={raw!r} is not valid: {err}") from None
    settings = Settings(**values)
    _check_consistency(settings, env)
    _check_kafka_security(settings, env)
    return with_model_config(settings)


def with_model_config(settings: Settings) -> Settings:
    """The settings with MONITOR_CONFIG read and checked (ModelConfigError, one line, when bad)."""
    if not settings.monitor_config:
        return settings
    from dataclasses import replace

    from streams.model_config import load_model_config

    return replace(settings, model_config=load_model_config(settings.monitor_config, settings.model_defaults()))


def _check_consistency(s: Settings, env: Mapping[str, str]) -> None:
    if s.psi_alert < s.psi_warn:
        raise SettingsError(
            f"PSI_ALERT={env.get('PSI_ALERT', s.psi_alert)!r} is not valid: "
            f"expected a number >= PSI_WARN ({s.psi_warn:g})"
        )
    names = [s.topic_predictions, s.topic_ground_truth, s.topic_alerts, s.topic_dlq]
    if len(set(names)) != len(names):
        raise SettingsError(
            "TOPIC_PREDICTIONS/TOPIC_GROUND_TRUTH/TOPIC_ALERTS/TOPIC_DLQ="
            f"{','.join(names)!r} is not valid: expected four different topic names"
        )


def _check_kafka_security(s: Settings, env: Mapping[str, str]) -> None:
    """SASL needs a user and password, TLS files need a TLS protocol, a client cert needs its key."""
    protocol = s.kafka_security_protocol
    sasl, tls = protocol.startswith("SASL_"), protocol in {"SSL", "SASL_SSL"}
    if sasl:
        for variable, value in (("KAFKA_SASL_USERNAME", s.kafka_sasl_username),
                                ("KAFKA_SASL_PASSWORD", s.kafka_sasl_password)):
            if not value:
                raise SettingsError(f"{variable}={env.get(variable, '')!r} is not valid: expected a non-empty "
                                    f"value when KAFKA_SECURITY_PROTOCOL is {protocol}")
    elif s.kafka_sasl_username or s.kafka_sasl_password:
        raise SettingsError(f"KAFKA_SECURITY_PROTOCOL={protocol!r} is not valid: expected SASL_PLAINTEXT or "
                            "SASL_SSL when KAFKA_SASL_USERNAME or KAFKA_SASL_PASSWORD is set")
    files = [v for v in ("KAFKA_SSL_CAFILE", "KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE") if getattr(s, field_for(v))]
    if files and not tls:
        raise SettingsError(f"KAFKA_SECURITY_PROTOCOL={protocol!r} is not valid: expected SSL or SASL_SSL "
                            f"when {files[0]} is set")
    if bool(s.kafka_ssl_certfile) != bool(s.kafka_ssl_keyfile):
        missing, given = (("KAFKA_SSL_KEYFILE", "KAFKA_SSL_CERTFILE") if s.kafka_ssl_certfile
                          else ("KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE"))
        raise SettingsError(f"{missing}={env.get(missing, '')!r} is not valid: expected an existing file "
                            f"when {given} is set (a client certificate and its key go together)")
    if tls:
        from streams.kafka_config import ssl_context

        ssl_context(s)  # reads the PEM files now: a bad one stops start-up with one line


def defaults() -> dict[str, Any]:
    """The default of every field, for docs and tests."""
    return {f.name: f.default for f in fields(Settings)}
