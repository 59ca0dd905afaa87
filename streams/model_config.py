"""Per-model settings: a TOML file (MONITOR_CONFIG) of defaults and per-model / per-version overrides.

One global SLO does not fit two models of different quality: one model's normal accuracy is
another's incident. The file gives each model (and each version) its own thresholds, bands,
positive label, reference file and features to leave out of drift. Precedence, first set wins:
``[models.M.versions.V]`` > ``[models.M]`` > ``[defaults]`` > the environment > built-in
defaults; models (and versions) the file does not name get the level above. Everything is
checked when the file is read, so a bad file stops start-up with one line naming the file, the
key (its full dotted path), the value and what is allowed, like a bad environment variable.

>>> cfg = parse_model_config('''
... [defaults]
... accuracy_threshold = 0.8
... [models.fraud]
... min_labeled = 100
... [models.fraud.versions.v2]
... accuracy_threshold = 0.9
... ''', path="monitor.toml", base=ModelSettings())
>>> s = cfg.settings_for("fraud", "v2")
>>> s.accuracy_threshold, s.min_labeled, cfg.settings_for("fraud", "v1").accuracy_threshold
(0.9, 100, 0.8)
>>> cfg.settings_for("other", "v1").min_labeled
50
>>> parse_model_config("[models.fraud]\\npsi_warn = 0.3", path="monitor.toml", base=ModelSettings())
Traceback (most recent call last):
...
streams.model_config.ModelConfigError: MONITOR_CONFIG=monitor.toml: models.fraud.psi_warn=0.3 is not valid: expected a number <= psi_alert (0.2)
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from streams.canonical import canonical_class
from streams.settings import Settings, SettingsError

REFERENCE_SUFFIXES = frozenset({".csv", ".parquet", ".jsonl", ".json", ".ndjson"})


class ModelConfigError(SettingsError):
    """The MONITOR_CONFIG file cannot be used (one line: file, key, value, what is allowed)."""


@dataclass(frozen=True)
class ModelSettings:
    """The settings of one model version, resolved once when the version is first seen
    (built-in defaults: the environment settings' own)."""

    accuracy_threshold: float = Settings.accuracy_threshold
    degradation_threshold: float = Settings.degradation_threshold
    min_labeled: int = Settings.min_labeled
    psi_warn: float = Settings.psi_warn
    psi_alert: float = Settings.psi_alert
    positive_label: str = Settings.positive_label
    reference_path: str = Settings.reference_path
    ignore_features: frozenset[str] = frozenset()


# --- value checks: each returns the typed value or raises ValueError(what is allowed) ---

def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _number(low: float, high: float, *, low_open: bool = False) -> Callable[[Any], float]:
    bracket = "(" if low_open else "["

    def check(value: Any) -> float:
        if not _is_number(value) or value > high or (value <= low if low_open else value < low):
            raise ValueError(f"expected a number in {bracket}{low:g}, {high:g}]")
        return float(value)

    return check


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10**9:
        raise ValueError("expected an integer between 1 and 1000000000")
    return value


def _label(value: Any) -> str:
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, bool) or _is_number(value):
        return canonical_class(value)
    raise ValueError("expected a class label: a non-empty string, an integer or a boolean")


def _features(value: Any) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError("expected a list of feature names (strings)")
    return frozenset(value)


def _reference(base_dir: Path) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ValueError("expected the path of a .csv, .parquet or .jsonl file")
        path = Path(value.strip())
        path = path if path.is_absolute() else base_dir / path
        if path.suffix.lower() not in REFERENCE_SUFFIXES:
            raise ValueError("expected a .csv, .parquet or .jsonl file")
        if not path.is_file():
            raise ValueError(f"expected an existing file (relative paths are read beside the config file: {path})")
        return str(path)

    return check


def _checks(base_dir: Path) -> dict[str, Callable[[Any], Any]]:
    return {
        "accuracy_threshold": _number(0.0, 1.0),
        "degradation_threshold": _number(0.0, 1.0, low_open=True),
        "min_labeled": _integer,
        "psi_warn": _number(0.0, 100.0, low_open=True),
        "psi_alert": _number(0.0, 100.0, low_open=True),
        "positive_label": _label,
        "reference_path": _reference(base_dir),
        "ignore_features": _features,
    }


KEYS = tuple(_checks(Path(".")))


@dataclass(frozen=True)
class ModelConfig:
    """Resolved settings per level: defaults, per model, per (model, version)."""

    defaults: ModelSettings = field(default_factory=ModelSettings)
    models: Mapping[str, ModelSettings] = field(default_factory=dict)
    versions: Mapping[tuple[str, str], ModelSettings] = field(default_factory=dict)
    path: str = ""

    def settings_for(self, model: str, version: str | None = None) -> ModelSettings:
        """The most specific level the file names for this version (unknown models: the defaults;
        no version: the model's own level)."""
        found = None if version is None else self.versions.get((model, version))
        if found is not None:
            return found
        return self.models.get(model, self.defaults)

    def all_settings(self) -> list[ModelSettings]:
        """Every resolved level (e.g. to load every reference file at start-up)."""
        return [self.defaults, *self.models.values(), *self.versions.values()]


def settings_row(model: str, version: str, s: ModelSettings, source: str, now: float) -> list[Any]:
    """The ``model_settings`` row of a model version: what its figures and alerts were decided with.

    >>> settings_row("m", "v1", ModelSettings(ignore_features=frozenset({"b", "a"})), "environment", 0.0)
    ['m', 'v1', 0.85, 0.05, 50, 0.1, 0.2, '1', '', ['a', 'b'], 'environment', 0.0]
    """
    return [model, version, s.accuracy_threshold, s.degradation_threshold, s.min_labeled, s.psi_warn, s.psi_alert,
            s.positive_label, s.reference_path, sorted(s.ignore_features), source, now]


class _Reader:
    """Checks one file's tables; every error names the file and the full dotted key."""

    def __init__(self, path: str, base_dir: Path) -> None:
        self.path = path
        self.checks = _checks(base_dir)

    def fail(self, key: str, value: Any, allowed: str) -> ModelConfigError:
        return ModelConfigError(f"MONITOR_CONFIG={self.path}: {key}={_show(value)} is not valid: {allowed}")

    def table(self, key: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, value, "expected a table")
        return value

    def level(self, prefix: str, table: dict[str, Any], above: ModelSettings,
              extra: frozenset[str] = frozenset()) -> ModelSettings:
        """The settings of one table over those of the level above it."""
        values: dict[str, Any] = {}
        for key, value in table.items():
            if key in extra:
                continue
            check = self.checks.get(key)
            if check is None:
                allowed = ", ".join([*KEYS, *sorted(extra)])
                raise self.fail(f"{prefix}{key}", value, f"unknown key, expected one of {allowed}")
            try:
                values[key] = check(value)
            except ValueError as err:
                raise self.fail(f"{prefix}{key}", value, str(err)) from None
        resolved = replace(above, **values)
        if resolved.psi_warn > resolved.psi_alert:
            if "psi_warn" in values:
                raise self.fail(f"{prefix}psi_warn", table["psi_warn"],
                                f"expected a number <= psi_alert ({resolved.psi_alert:g})")
            raise self.fail(f"{prefix}psi_alert", table.get("psi_alert", resolved.psi_alert),
                            f"expected a number >= psi_warn ({resolved.psi_warn:g})")
        return resolved


def _show(value: Any) -> str:
    """A value as the file wrote it, on one line and not too long."""
    if isinstance(value, dict):
        return "{...}"
    text = repr(value) if not isinstance(value, bool) else str(value).lower()
    return text if len(text) <= 80 else text[:77] + "..."


def parse_model_config(text: str, *, path: str, base: ModelSettings, base_dir: Path | None = None) -> ModelConfig:
    """Check and resolve a config file's text over ``base`` (the environment's settings)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ModelConfigError(f"MONITOR_CONFIG={path} is not valid TOML: {err}") from None
    reader = _Reader(path, base_dir if base_dir is not None else Path(path).parent)
    for key, value in data.items():
        if key not in {"defaults", "models"}:
            raise reader.fail(key, value, "unknown key, expected [defaults] or [models.<model>]")
    defaults = reader.level("defaults.", reader.table("defaults", data.get("defaults", {})), base)
    models: dict[str, ModelSettings] = {}
    versions: dict[tuple[str, str], ModelSettings] = {}
    for model, table in reader.table("models", data.get("models", {})).items():
        prefix = f"models.{_dotted(model)}"
        table = reader.table(prefix, table)
        models[model] = reader.level(prefix + ".", table, defaults, frozenset({"versions"}))
        for version, vtable in reader.table(prefix + ".versions", table.get("versions", {})).items():
            vprefix = f"{prefix}.versions.{_dotted(version)}"
            versions[(model, version)] = reader.level(vprefix + ".", reader.table(vprefix, vtable), models[model])
    return ModelConfig(defaults, models, versions, path)


def _dotted(name: str) -> str:
    """A key as TOML writes it: bare when it can be, quoted otherwise."""
    bare = name and all(c.isalnum() and c.isascii() or c in "-_" for c in name)
    return name if bare else '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def load_model_config(path: str, base: ModelSettings) -> ModelConfig:
    """Read and check MONITOR_CONFIG (relative reference paths are read beside the file)."""
    file = Path(path)
    try:
        raw = file.read_bytes()
    except OSError as err:
        raise ModelConfigError(f"MONITOR_CONFIG={path} is not valid: expected a readable TOML file "
                               f"({err.strerror or err})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ModelConfigError(f"MONITOR_CONFIG={path} is not valid TOML: expected UTF-8 text") from None
    return parse_model_config(text, path=path, base=base, base_dir=file.resolve().parent)
