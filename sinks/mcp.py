"""The monitor as tools for an agent: `python -m sinks.mcp`, a Model Context Protocol server on stdio.

Tools (all read-only, JSON results computed from the contract's tables, each read with FINAL):
``get_model_accuracy``, ``detect_data_drift``, ``compare_model_versions``,
``get_feature_distribution``, ``list_alerts`` and ``query_inference_logs`` (one read-only SQL
statement, the same guard as ``/query``, a row limit).

The server reaches the store exactly as ``python -m sinks.query`` does
(:func:`sinks.query.run_read`): a ClickHouse server directly; the embedded store through
the running worker's ``/query`` page, or, with no worker, by opening it for the one query
and closing it again, so a worker can start at any time. Settings come from the same
environment variables as the worker's (CLICKHOUSE_URL, MONITOR_WEB_PORT, ACCURACY_THRESHOLD,
PSI_WARN, PSI_ALERT, MIN_LABELED ..., and MONITOR_CONFIG for per-model SLOs and PSI bands).

Times in and out are ISO-8601 in UTC (``2026-01-05T10:00:00Z``); a time without an offset
is read as UTC. Time ranges are half-open, ``[since, until)``, on event time: a window's
``window_start``, a prediction's ``predicted_at``.
"""

from __future__ import annotations

import math
import sys
import threading
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import Field

from sinks.clickhouse import ReadAnswer, parse_target
from sinks.query import QueryError, run_read
from streams.alert_rules import ALERT_TYPES
from streams.canonical import canonical_class
from streams.settings import Settings, SettingsError, load_settings

MAX_ROWS = 1000  # the most rows query_inference_logs returns
MAX_WINDOWS = 1000  # the most windows per version an accuracy or drift answer lists
PREDICTION_SUBJECTS = ("__score__", "__prediction__")
# The tool schema an agent reads lists the types; a unit test keeps it equal to the worker's.
AlertType = Literal["accuracy_below_threshold", "accuracy_drop", "error_rate_drift", "feature_drift",
                    "prediction_drift", "estimated_accuracy_below_threshold", "labels_missing", "version_worse"]
Model = Annotated[str, Field(description="Model name, as in the events' `model` field (e.g. 'banking-campaign').")]
OptionalVersion = Annotated[str | None, Field(
    description="Model version (e.g. 'v1'); omit for every version of the model.")]
Since = Annotated[str | None, Field(
    description="Start of the event-time range, inclusive, ISO-8601 (e.g. '2026-01-05T00:00:00Z'); "
                "omit for no lower bound.")]
Until = Annotated[str | None, Field(
    description="End of the event-time range, exclusive, ISO-8601; omit for no upper bound.")]


class ToolInputError(ValueError):
    """A tool argument the agent should correct; the message says how."""


# --- small pure helpers --------------------------------------------------------------------------

def literal(value: str) -> str:
    """A ClickHouse string literal (the ``/query`` page takes plain SQL, so no bound parameters).

    >>> literal("it's \\\\ x")
    "'it\\\\'s \\\\\\\\ x'"
    """
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def identifier(name: str) -> str:
    """A ClickHouse identifier in back quotes.

    >>> identifier("monitoring")
    '`monitoring`'
    """
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def instant_ms(name: str, value: str) -> int:
    """An ISO-8601 time as epoch milliseconds (UTC when it has no offset).

    >>> instant_ms("since", "2026-01-05T01:00:00Z")
    1767574800000
    >>> instant_ms("since", "2026-01-05T03:00:00+02:00")
    1767574800000
    >>> instant_ms("until", "yesterday")
    Traceback (most recent call last):
    ...
    sinks.mcp.ToolInputError: until: 'yesterday' is not an ISO-8601 time such as 2026-01-05T10:00:00Z
    """
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ToolInputError(f"{name}: {value[:60]!r} is not an ISO-8601 time such as 2026-01-05T10:00:00Z") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return round(parsed.timestamp() * 1000)


def iso(ms: int | None) -> str | None:
    """Epoch milliseconds as ISO-8601 UTC text.

    >>> iso(1767574800000)
    '2026-01-05T01:00:00Z'
    >>> iso(1767574800123)
    '2026-01-05T01:00:00.123Z'
    """
    if ms is None:
        return None
    text = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return text.replace(".000Z", "Z")


def time_filter(column: str, since: str | None, until: str | None) -> tuple[str, dict[str, str | None]]:
    """SQL conditions for ``since <= column < until`` and the range as given back to the agent.

    >>> time_filter("window_start", "2026-01-05T01:00:00Z", None)[0]
    " AND window_start >= fromUnixTimestamp64Milli(toInt64(1767574800000), 'UTC')"
    """
    sql = ""
    lo = hi = None
    if since is not None:
        lo = instant_ms("since", since)
        sql += f" AND {column} >= fromUnixTimestamp64Milli(toInt64({lo}), 'UTC')"
    if until is not None:
        hi = instant_ms("until", until)
        sql += f" AND {column} < fromUnixTimestamp64Milli(toInt64({hi}), 'UTC')"
    if lo is not None and hi is not None and hi <= lo:
        raise ToolInputError(f"until ({until}) must be later than since ({since})")
    return sql, {"since": iso(lo), "until": iso(hi)}


def bounded(name: str, value: int, low: int, high: int) -> int:
    """``value`` if ``low <= value <= high``, else :class:`ToolInputError`.

    >>> bounded("last_windows", 0, 1, 1000)
    Traceback (most recent call last):
    ...
    sinks.mcp.ToolInputError: last_windows must be between 1 and 1000, got 0
    """
    if not low <= value <= high:
        raise ToolInputError(f"{name} must be between {low} and {high}, got {value}")
    return value


def ratio(numerator: float, denominator: float) -> float | None:
    """``numerator / denominator``, None when the denominator is 0.

    >>> ratio(3, 4), ratio(1, 0)
    (0.75, None)
    """
    return numerator / denominator if denominator else None


def two_proportion_test(correct_a: int, labeled_a: int, correct_b: int, labeled_b: int,
                        confidence: float) -> dict[str, float | bool | None]:
    """Two-sided z-test of accuracy A = accuracy B, and the interval of A - B.

    z uses the pooled standard error (the null hypothesis says both are one proportion);
    the interval is the Wald interval with the unpooled standard error at ``confidence``,
    as ClickHouse's ``proportionsZTest`` computes them (its p-value loses precision below
    1e-15, this one does not).

    >>> r = two_proportion_test(850, 1000, 700, 1000, 0.95)
    >>> round(r["z"], 6), r["p_value"] < 1e-14, [round(x, 6) for x in r["interval"]]
    (8.032193, True, [0.113993, 0.186007])
    >>> two_proportion_test(5, 5, 3, 3, 0.95)["z"] is None  # both perfect: no variance, no test
    True
    """
    from scipy.stats import norm

    p_a, p_b = correct_a / labeled_a, correct_b / labeled_b
    difference = p_a - p_b
    pooled = (correct_a + correct_b) / (labeled_a + labeled_b)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / labeled_a + 1 / labeled_b))
    se = math.sqrt(p_a * (1 - p_a) / labeled_a + p_b * (1 - p_b) / labeled_b)
    quantile = float(norm.ppf(1 - (1 - confidence) / 2))
    z = difference / se_pooled if se_pooled > 0 else None
    p_value = float(2 * norm.sf(abs(z))) if z is not None else None
    return {
        "difference": difference,
        "interval": [difference - quantile * se, difference + quantile * se],
        "z": z,
        "p_value": p_value,
        "significant": None if p_value is None else p_value < 1 - confidence,
    }


TOP_VALUES_READ = 10_000  # distinct values per version read to rank a feature's top values


def top_values(rows: Sequence[Sequence[Any]], top: int) -> list[tuple[str, str, int]]:
    """(version, value, count) of each version's ``top`` most frequent values, from rows of
    (version, stored as text?, text, number, count): numbers take their canonical text, the
    form categories are compared in, so ``2`` and ``2.0`` are one value.

    >>> top_values([("v1", 0, "", 2.0, 3), ("v1", 1, "2", 0.0, 1), ("v1", 1, "x", 0.0, 2)], 5)
    [('v1', '2', 4), ('v1', 'x', 2)]
    """
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for version, as_text, text, number, n in rows:
        counts[version][text if as_text else canonical_class(float(number))] += int(n)
    return [(version, value, n) for version in sorted(counts)
            for value, n in sorted(counts[version].items(), key=lambda item: (-item[1], item[0]))[:top]]


def jsonable(answer: ReadAnswer) -> list[list[Any]]:
    """Rows as plain JSON values, the same whether they came from the worker's ``/query`` (JSON)
    or from ClickHouse itself (Python values): times as ISO text, NaN as null."""
    return orjson.loads(orjson.dumps([list(r) for r in answer.rows],
                                     option=orjson.OPT_NAIVE_UTC | orjson.OPT_SERIALIZE_NUMPY, default=str))


# --- the tools -----------------------------------------------------------------------------------

class MonitorTools:
    """The tools' logic over one store; each method is one tool (see :func:`build_server`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = identifier(parse_target(settings.clickhouse_dsn()).database)
        self._lock = threading.Lock()  # one query at a time: the embedded store opens in one place

    def read(self, sql: str, max_rows: int | None = None) -> ReadAnswer:
        with self._lock:
            try:
                answer = run_read(self.settings, sql, max_rows=max_rows)
            except QueryError as err:
                raise ToolInputError(str(err)) from None
        return ReadAnswer(answer.columns, jsonable(answer), answer.truncated)

    def _versions_note(self, model: str, version: str | None) -> str:
        known = self.read(f"SELECT DISTINCT model, model_version FROM {self.db}.window_metrics FINAL "
                          "ORDER BY model, model_version").rows
        which = f"model {model!r}" + (f" version {version!r}" if version else "")
        names = ", ".join(f"{m}/{v}" for m, v in known) or "none yet"
        return f"no figures for {which} in this range; model versions in the store: {names}"

    @staticmethod
    def _where(model: str, version: str | None) -> str:
        where = f"model = {literal(model)}"
        if version is not None:
            where += f" AND model_version = {literal(version)}"
        return where

    # get_model_accuracy ------------------------------------------------------------------------
    def get_model_accuracy(self, model: str, version: str | None = None, since: str | None = None,
                           until: str | None = None, last_windows: int = 24) -> dict[str, Any]:
        bounded("last_windows", last_windows, 1, MAX_WINDOWS)
        when, span = time_filter("window_start", since, until)
        rows = self.read(
            "SELECT model_version, toUnixTimestamp64Milli(window_start), toUnixTimestamp64Milli(window_end), "
            "predictions, labeled, correct, accuracy, precision, recall, f1, rolling_accuracy, final FROM ("
            "SELECT *, row_number() OVER (PARTITION BY model_version ORDER BY window_start DESC) AS recency "
            f"FROM {self.db}.window_metrics FINAL WHERE {self._where(model, version)}{when}) "
            f"WHERE recency <= {last_windows} ORDER BY model_version, window_start").rows
        by_version: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            by_version[r[0]].append({
                "window_start": iso(r[1]), "window_end": iso(r[2]), "predictions": r[3], "labeled": r[4],
                "correct": r[5], "accuracy": r[6], "precision": r[7], "recall": r[8], "f1": r[9],
                "rolling_accuracy": r[10], "final": bool(r[11])})
        own = self.settings.for_model(model)  # the model's SLO (MONITOR_CONFIG), versions may have their own
        threshold, min_labeled = own.accuracy_threshold, own.min_labeled
        versions = []
        for name, windows in by_version.items():
            labeled = sum(w["labeled"] for w in windows)
            correct = sum(w["correct"] for w in windows)
            slo = self.settings.for_model(model, name)
            below = [w["window_start"] for w in windows if w["labeled"] >= slo.min_labeled
                     and w["accuracy"] is not None and w["accuracy"] < slo.accuracy_threshold]
            versions.append({
                "model_version": name,
                "accuracy_threshold": slo.accuracy_threshold,
                "min_labeled": slo.min_labeled,
                "windows_listed": len(windows),
                "predictions": sum(w["predictions"] for w in windows),
                "labeled": labeled,
                "correct": correct,
                "accuracy": ratio(correct, labeled),
                "latest_window": windows[-1],
                "windows_below_threshold": below,
                "windows": windows,
            })
        answer: dict[str, Any] = {"model": model, **span, "accuracy_threshold": threshold,
                                  "min_labeled": min_labeled, "versions": versions}
        if not versions:
            answer["note"] = self._versions_note(model, version)
        return answer

    # detect_data_drift -------------------------------------------------------------------------
    def detect_data_drift(self, model: str, version: str | None = None, threshold: float | None = None,
                          last_windows: int = 6) -> dict[str, Any]:
        bounded("last_windows", last_windows, 1, MAX_WINDOWS)
        if threshold is not None and not (threshold > 0 and math.isfinite(threshold)):
            raise ToolInputError(f"threshold must be a positive PSI, got {threshold}")
        rows = self.read(
            "SELECT model_version, toUnixTimestamp64Milli(window_start), feature, kind, psi, n, drifted, band, "
            "p_value FROM (SELECT *, dense_rank() OVER (PARTITION BY model_version ORDER BY window_start DESC) "
            f"AS recency FROM {self.db}.feature_drift FINAL WHERE {self._where(model, version)}) "
            f"WHERE recency <= {last_windows} ORDER BY model_version, feature, window_start").rows
        grouped: dict[str, dict[str, list[list[Any]]]] = defaultdict(lambda: defaultdict(list))
        for r in rows:
            grouped[r[0]][r[2]].append(r)

        def is_drift(r: list[Any]) -> bool:
            return bool(r[6]) if threshold is None else (r[4] is not None and r[4] >= threshold)

        versions = []
        for name, subjects in grouped.items():
            windows = sorted({r[1] for rs in subjects.values() for r in rs})
            latest_window = windows[-1]
            summary = []
            for subject, rs in subjects.items():
                last = rs[-1]
                psis = [r[4] for r in rs if r[4] is not None]
                summary.append({
                    "subject": subject,
                    "of": "prediction" if subject in PREDICTION_SUBJECTS else "feature",
                    "kind": last[3],
                    "latest_window_start": iso(last[1]),
                    "latest_psi": last[4],
                    "latest_band": last[7],
                    "latest_n": last[5],
                    "latest_p_value": last[8],
                    "drifting": last[1] == latest_window and is_drift(last),
                    "max_psi": max(psis) if psis else None,
                    "drifted_windows": sum(is_drift(r) for r in rs),
                    "psi_by_window": [[iso(r[1]), r[4]] for r in rs],
                })
            summary.sort(key=lambda s: (s["latest_psi"] is None, -(s["latest_psi"] or 0.0), s["subject"]))
            drifting = [s["subject"] for s in summary if s["drifting"]]
            bands = self.settings.for_model(model, name)
            versions.append({
                "model_version": name,
                "psi_warn": bands.psi_warn,
                "psi_alert": bands.psi_alert,
                "windows": [iso(w) for w in windows],
                "latest_window_start": iso(latest_window),
                "drift_detected": bool(drifting),
                "drifting_features": [s for s in drifting if s not in PREDICTION_SUBJECTS],
                "prediction_drift": [s for s in drifting if s in PREDICTION_SUBJECTS],
                "subjects": summary,
            })
        own = self.settings.for_model(model)  # the model's PSI bands (MONITOR_CONFIG), versions may have their own
        rule = (f"PSI >= {threshold}" if threshold is not None else
                f"the monitor's verdict: PSI >= PSI_WARN ({own.psi_warn}) and a chi-square test significant "
                f"at DRIFT_FALSE_ALARM_RATE ({self.settings.drift_false_alarm_rate}) per version and window")
        answer: dict[str, Any] = {"model": model, "last_windows": last_windows, "drift_rule": rule,
                                  "psi_warn": own.psi_warn, "psi_alert": own.psi_alert,
                                  "versions": versions}
        if not versions:
            answer["note"] = self._versions_note(model, version)
        return answer

    # query_inference_logs ----------------------------------------------------------------------
    def query_inference_logs(self, sql: str, max_rows: int = 100) -> dict[str, Any]:
        bounded("max_rows", max_rows, 1, MAX_ROWS)
        answer = self.read(sql, max_rows=max_rows)
        return {"columns": answer.columns, "rows": answer.rows, "row_count": len(answer.rows),
                "truncated": answer.truncated}

    # compare_model_versions --------------------------------------------------------------------
    def compare_model_versions(self, model: str, version_a: str, version_b: str, since: str | None = None,
                               until: str | None = None, confidence: float = 0.95) -> dict[str, Any]:
        if version_a == version_b:
            raise ToolInputError("version_a and version_b must differ")
        if not 0.5 <= confidence < 1:
            raise ToolInputError(f"confidence must be at least 0.5 and below 1, got {confidence}")
        when, span = time_filter("window_start", since, until)
        rows = self.read(
            "SELECT model_version, count(), sum(predictions), sum(labeled), sum(correct), "
            "toUnixTimestamp64Milli(min(window_start)), toUnixTimestamp64Milli(max(window_end)) "
            f"FROM {self.db}.window_metrics FINAL WHERE model = {literal(model)} "
            f"AND model_version IN ({literal(version_a)}, {literal(version_b)}){when} GROUP BY model_version").rows
        found = {r[0]: r for r in rows}

        def side(version: str) -> dict[str, Any]:
            r = found.get(version)
            if r is None:
                return {"model_version": version, "windows": 0, "predictions": 0, "labeled": 0, "correct": 0,
                        "accuracy": None, "first_window_start": None, "last_window_end": None}
            return {"model_version": version, "windows": r[1], "predictions": r[2], "labeled": r[3],
                    "correct": r[4], "accuracy": ratio(r[4], r[3]), "first_window_start": iso(r[5]),
                    "last_window_end": iso(r[6])}

        a, b = side(version_a), side(version_b)
        answer: dict[str, Any] = {"model": model, **span, "confidence": confidence, "a": a, "b": b,
                                  "test": "two-proportion z-test (pooled) on labeled predictions; "
                                          "Wald interval (unpooled) of accuracy(a) - accuracy(b)"}
        if not (a["labeled"] and b["labeled"]):
            missing = [s["model_version"] for s in (a, b) if not s["labeled"]]
            answer.update(difference=None, interval=None, z=None, p_value=None, significant=None,
                          summary=f"no labeled predictions for {', '.join(missing)} in this range: nothing to "
                                  f"compare; {self._versions_note(model, None)}")
            return answer
        result = two_proportion_test(a["correct"], a["labeled"], b["correct"], b["labeled"], confidence)
        answer.update(result)
        lo, hi = result["interval"]  # type: ignore[misc]
        if result["significant"]:
            better, worse = (a, b) if result["difference"] > 0 else (b, a)  # type: ignore[operator]
            verdict = (f"{better['model_version']} is more accurate than {worse['model_version']} "
                       f"({better['accuracy']:.4f} vs {worse['accuracy']:.4f}, p = {result['p_value']:.3g})")
        else:
            verdict = ("no significant difference in accuracy"
                       + (f" (p = {result['p_value']:.3g})" if result["p_value"] is not None else ""))
        answer["summary"] = (f"{verdict}; accuracy({version_a}) - accuracy({version_b}) = "
                             f"{result['difference']:+.4f}, {confidence:.0%} interval [{lo:+.4f}, {hi:+.4f}]")
        return answer

    # get_feature_distribution ------------------------------------------------------------------
    def get_feature_distribution(self, feature: str, model: str, version: str | None = None,
                                 since: str | None = None, until: str | None = None,
                                 top: int = 10) -> dict[str, Any]:
        bounded("top", top, 1, 100)
        when, span = time_filter("predicted_at", since, until)
        f = literal(feature)
        where = f"{self._where(model, version)}{when}"
        # A number is stored once, in num_features (texts of strings and bools in cat_features).
        present = f"(mapContains(cat_features, {f}) OR mapContains(num_features, {f}))"
        stats = self.read(
            f"SELECT model_version, count(), countIf({present}), "
            f"countIf(mapContains(num_features, {f})), "
            f"avgIf(num_features[{f}], mapContains(num_features, {f})), "
            f"stddevPopIf(num_features[{f}], mapContains(num_features, {f})), "
            f"minIf(num_features[{f}], mapContains(num_features, {f})), "
            f"maxIf(num_features[{f}], mapContains(num_features, {f})), "
            f"quantilesExactInclusiveIf(0.05, 0.25, 0.5, 0.75, 0.95)(num_features[{f}], "
            f"mapContains(num_features, {f})), uniqExactIf(if(mapContains(cat_features, {f}), cat_features[{f}], "
            f"toString(num_features[{f}])), {present}) "
            f"FROM {self.db}.predictions FINAL WHERE {where} GROUP BY model_version ORDER BY model_version").rows
        values = self.read(
            f"SELECT model_version, mapContains(cat_features, {f}) AS text, cat_features[{f}], num_features[{f}], "
            f"count() AS n FROM {self.db}.predictions FINAL WHERE {where} AND {present} "
            f"GROUP BY model_version, text, cat_features[{f}], num_features[{f}] "
            f"ORDER BY model_version, n DESC LIMIT {TOP_VALUES_READ} BY model_version").rows
        categories = top_values(values, top)
        drift = self.read(
            "SELECT model_version, toUnixTimestamp64Milli(window_start), psi, band, drifted, n "
            f"FROM {self.db}.feature_drift FINAL WHERE {self._where(model, version)} AND feature = {f}"
            f"{time_filter('window_start', since, until)[0]} ORDER BY model_version, window_start").rows
        top_by_version: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
        for r in categories:
            top_by_version[r[0]].append(r)
        psi_by_version: dict[str, list[list[Any]]] = defaultdict(list)
        for r in drift:
            psi_by_version[r[0]].append(r)
        versions = []
        for r in stats:
            name, predictions, present, numeric = r[0], r[1], r[2], r[3]
            if present == 0:
                continue
            kind = "numeric" if numeric == present else "categorical" if numeric == 0 else "mixed"
            entry: dict[str, Any] = {
                "model_version": name, "kind": kind, "predictions": predictions, "present": present,
                "missing": predictions - present, "distinct_values": r[9]}
            if numeric:
                p05, p25, p50, p75, p95 = r[8]
                entry["numeric"] = {"count": numeric, "mean": r[4], "std": r[5], "min": r[6], "max": r[7],
                                    "p05": p05, "p25": p25, "median": p50, "p75": p75, "p95": p95}
            if kind != "numeric":
                entry["top_values"] = [{"value": v, "count": n, "share": n / present}
                                       for _, v, n in top_by_version[name]]
            entry["psi_by_window"] = [{"window_start": iso(w), "psi": psi, "band": band, "drifted": bool(d), "n": n}
                                      for _, w, psi, band, d, n in psi_by_version[name]]
            versions.append(entry)
        answer: dict[str, Any] = {"feature": feature, "model": model, **span, "versions": versions}
        if not versions:
            names = self.read(
                f"SELECT DISTINCT k FROM {self.db}.predictions FINAL "
                "ARRAY JOIN arrayConcat(mapKeys(cat_features), mapKeys(num_features)) AS k "
                f"WHERE {self._where(model, version)} ORDER BY k LIMIT 200").rows
            answer["note"] = (f"no values of {feature!r} for model {model!r} in this range; features of the model: "
                              + (", ".join(n for (n,) in names) or "none"))
        return answer

    # list_alerts -------------------------------------------------------------------------------
    ALERT_COLUMNS = ("alert_id, status, type, severity, model, model_version, subject, "
                     "toUnixTimestamp64Milli(window_start), toUnixTimestamp64Milli(window_end), value, threshold, "
                     "baseline, toUnixTimestamp64Milli(detected_at), message, recommended_action, evidence")

    def list_alerts(self, model: str | None = None, version: str | None = None,
                    status: Literal["firing", "resolved"] | None = None, alert_type: AlertType | None = None,
                    firing_now: bool = False, since: str | None = None, until: str | None = None,
                    limit: int = 50) -> dict[str, Any]:
        bounded("limit", limit, 1, MAX_ROWS)
        conditions = ["1"]
        if model is not None:
            conditions.append(f"model = {literal(model)}")
        if version is not None:
            conditions.append(f"model_version = {literal(version)}")
        if alert_type is not None:
            if alert_type not in ALERT_TYPES:
                raise ToolInputError(f"alert_type must be one of {', '.join(ALERT_TYPES)}, got {alert_type!r}")
            conditions.append(f"type = {literal(alert_type)}")
        when, span = time_filter("window_start", since, until)
        where = " AND ".join(conditions) + when
        if firing_now:
            if status == "resolved":
                raise ToolInputError("firing_now lists conditions whose latest event is 'firing': omit status")
            sql = (f"SELECT {self.ALERT_COLUMNS} FROM (SELECT *, row_number() OVER (PARTITION BY model, "
                   "model_version, type, subject ORDER BY window_start DESC, detected_at DESC, status ASC) AS latest "
                   f"FROM {self.db}.alerts FINAL WHERE {where}) WHERE latest = 1 AND status = 'firing' "
                   "ORDER BY detected_at DESC, window_start DESC, alert_id")
        else:
            if status is not None:
                where += f" AND status = {literal(status)}"
            sql = (f"SELECT {self.ALERT_COLUMNS} FROM {self.db}.alerts FINAL WHERE {where} "
                   "ORDER BY detected_at DESC, window_start DESC, alert_id")
        answer = self.read(sql, max_rows=limit)
        alerts = []
        for r in answer.rows:
            try:
                evidence = orjson.loads(r[15]) if r[15] else None
            except orjson.JSONDecodeError:
                evidence = r[15]
            alerts.append({
                "alert_id": r[0], "status": r[1], "type": r[2], "severity": r[3], "model": r[4],
                "model_version": r[5], "subject": r[6], "window_start": iso(r[7]), "window_end": iso(r[8]),
                "value": r[9], "threshold": r[10], "baseline": r[11], "detected_at": iso(r[12]),
                "message": r[13], "recommended_action": r[14], "evidence": evidence})
        return {**span, "firing_now": firing_now, "count": len(alerts), "truncated": answer.truncated,
                "alerts": alerts}


# --- the server ----------------------------------------------------------------------------------

INSTRUCTIONS = """\
Tools over a streaming ML model monitor: Kafka predictions joined with their late labels,
measured per event-time window (accuracy, PSI drift of features and predictions, alerts).
A diagnosis usually goes: list_alerts(firing_now=true) -> get_model_accuracy(model) ->
detect_data_drift(model) -> get_feature_distribution(feature, model, since, until) for the
drifted features -> compare_model_versions(model, a, b) when another version is deployed
-> query_inference_logs(sql) for example errors. Times are ISO-8601 UTC; ranges are
[since, until) in event time. Every tool only reads."""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kafka-model-monitor")
    except PackageNotFoundError:
        return "0"


def build_server(settings: Settings):  # noqa: ANN201 - mcp.server.mcpserver.MCPServer
    """The MCP server with the monitor's tools over the store named by ``settings``."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp_types import ToolAnnotations

    tools = MonitorTools(settings)
    server = MCPServer(name="model-monitor", title="Streaming model monitor", version=_version(),
                       instructions=INSTRUCTIONS, log_level="WARNING")
    read_only = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)

    def call(fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            return fn(*args, **kwargs)
        except ToolInputError as err:
            raise ToolError(str(err)) from None

    @server.tool(annotations=read_only)
    def get_model_accuracy(
        model: Model,
        version: OptionalVersion = None,
        since: Since = None,
        until: Until = None,
        last_windows: Annotated[int, Field(description="Per version, list at most this many of the latest "
                                                       "windows in the range (1-1000).")] = 24,
    ) -> dict[str, Any]:
        """Accuracy of a model per event-time window (window_metrics FINAL), per model version.

        For each version: the latest `last_windows` windows in [since, until) with predictions,
        labeled, correct, accuracy (= correct / labeled, null without labels), precision, recall,
        f1, rolling_accuracy and whether the window is final (all its labels in); totals and
        accuracy over the listed windows; the latest window; and the listed windows whose
        accuracy is below the SLO (accuracy_threshold) with at least min_labeled labels.
        Recent windows may still be waiting for labels: check `final` and `labeled`.
        """
        return call(tools.get_model_accuracy, model, version, since, until, last_windows)

    @server.tool(annotations=read_only)
    def detect_data_drift(
        model: Model,
        version: OptionalVersion = None,
        threshold: Annotated[float | None, Field(description="PSI from which a subject counts as drifted; omit "
                                                             "to use the monitor's own verdict (PSI and a "
                                                             "chi-square test sized to the window).")] = None,
        last_windows: Annotated[int, Field(description="How many of each version's latest windows to "
                                                       "examine (1-1000).")] = 6,
    ) -> dict[str, Any]:
        """Current drift status of a model's inputs and predictions (feature_drift FINAL).

        PSI of every feature against the version's reference, plus prediction drift
        (`__score__`: the score, `__prediction__`: the predicted class), in each version's
        latest `last_windows` windows. Per subject: latest PSI, band (none < psi_warn <= small <
        psi_alert <= drift), p-value, whether it drifts in the latest window, its highest PSI,
        in how many windows it drifted, and the PSI per window. Subjects are sorted by latest
        PSI, highest first; `drifting_features` names the drifted inputs of the latest window.
        """
        return call(tools.detect_data_drift, model, version, threshold, last_windows)

    @server.tool(annotations=read_only)
    def query_inference_logs(
        sql: Annotated[str, Field(description="One read-only ClickHouse SELECT (or WITH/SHOW/DESCRIBE/EXPLAIN) "
                                              "statement; a trailing ';' is fine, a second statement is "
                                              "refused.")],
        max_rows: Annotated[int, Field(description="Return at most this many rows (1-1000); `truncated` says "
                                                   "whether there were more.")] = 100,
    ) -> dict[str, Any]:
        """Run one read-only SQL statement on the monitor's ClickHouse store (e.g. sample errors).

        Refused before it runs: more than one statement, anything but a read, file()/url()/
        remote sources, INTO OUTFILE. Read the tables with FINAL (each row once), database
        `monitoring` (unless CLICKHOUSE_URL names another):
        - outcomes: one row per prediction joined with its label: request_id, model,
          model_version, window_start, predicted_at, labeled_at, prediction, label, correct (0/1),
          score, confidence, latency_ms, features (JSON text), late, behind_watermark.
        - predictions: every prediction, labeled or not: request_id, model, model_version,
          window_start, predicted_at, prediction, score, confidence, latency_ms,
          num_features Map(String, Float64), cat_features Map(String, String), features (JSON).
        - window_metrics: per model, model_version, window_start: predictions, labeled, correct,
          accuracy, precision, recall, f1, positive_rate, mean_confidence, rolling_accuracy,
          label_coverage, final, late_labels, label_delay_p50_s, label_delay_p90_s.
        - feature_drift: per window and feature: kind, psi, n, drifted, band, test, statistic,
          dof, p_value (feature `__score__` / `__prediction__` for prediction drift).
        - alerts: alert_id, status, type, severity, model, model_version, subject,
          window_start, window_end, value, threshold, baseline, detected_at, message,
          recommended_action, evidence (JSON text).
        - version_comparison: per model, window_start and (baseline_version, candidate_version):
          baseline_n, baseline_correct, baseline_accuracy, candidate_n, candidate_correct,
          candidate_accuracy, diff, diff_low, diff_high, p_value, worse, as_of.
        Example: SELECT request_id, predicted_at, prediction, label, score, features FROM
        monitoring.outcomes FINAL WHERE model = 'banking-campaign' AND correct = 0
        ORDER BY predicted_at DESC LIMIT 20
        """
        return call(tools.query_inference_logs, sql, max_rows)

    @server.tool(annotations=read_only)
    def compare_model_versions(
        model: Model,
        version_a: Annotated[str, Field(description="First model version, e.g. the candidate 'v2'.")],
        version_b: Annotated[str, Field(description="Second model version, e.g. the baseline 'v1'.")],
        since: Since = None,
        until: Until = None,
        confidence: Annotated[float, Field(description="Confidence of the interval and the significance "
                                                       "level 1 - confidence of the test (0.5 to < 1).")] = 0.95,
    ) -> dict[str, Any]:
        """Accuracy of two versions of one model over windows starting in [since, until), and whether they differ.

        Counts come from window_metrics FINAL (labeled and correct predictions summed over the
        windows). `difference` = accuracy(a) - accuracy(b) with its Wald `interval` at
        `confidence`; `z` and two-sided `p_value` of a pooled two-proportion z-test;
        `significant` when p_value < 1 - confidence; `summary` says which is more accurate.
        For a fair comparison give a range both versions served (e.g. during a rollout).
        """
        return call(tools.compare_model_versions, model, version_a, version_b, since, until, confidence)

    @server.tool(annotations=read_only)
    def get_feature_distribution(
        feature: Annotated[str, Field(description="Feature name as sent in the predictions' `features`.")],
        model: Model,
        version: OptionalVersion = None,
        since: Annotated[str | None, Field(description="Start (inclusive, ISO-8601) of the prediction times "
                                                       "to summarise; omit for no lower bound.")] = None,
        until: Annotated[str | None, Field(description="End (exclusive, ISO-8601) of the prediction times; "
                                                       "omit for no upper bound.")] = None,
        top: Annotated[int, Field(description="Most frequent values listed for a categorical feature "
                                              "(1-100).")] = 10,
    ) -> dict[str, Any]:
        """Statistical summary of one feature over the predictions made in [since, until), per model version.

        From predictions FINAL: how many predictions carried the feature (`present`) or not
        (`missing`: absent or null), distinct values; for numbers count, mean, population std,
        min, max and the 5/25/50/75/95th percentiles (linear interpolation, as numpy); for
        categories the `top` values with counts and shares; and the feature's PSI per window
        in the range (feature_drift FINAL). Compare two ranges (before/after a drift alert) by
        calling it twice.
        """
        return call(tools.get_feature_distribution, feature, model, version, since, until, top)

    @server.tool(annotations=read_only)
    def list_alerts(
        model: Annotated[str | None, Field(description="Only this model's alerts; omit for all.")] = None,
        version: OptionalVersion = None,
        status: Annotated[Literal["firing", "resolved"] | None, Field(
            description="Only events with this status; omit for both.")] = None,
        alert_type: Annotated[AlertType | None, Field(description="Only alerts of this type.")] = None,
        firing_now: Annotated[bool, Field(description="Only conditions still firing (their latest event is "
                                                      "'firing'), one event each.")] = False,
        since: Annotated[str | None, Field(description="Only alerts about windows starting at or after this "
                                                       "time (ISO-8601).")] = None,
        until: Annotated[str | None, Field(description="Only alerts about windows starting before this time "
                                                       "(ISO-8601).")] = None,
        limit: Annotated[int, Field(description="Most alerts returned, newest first (1-1000).")] = 50,
    ) -> dict[str, Any]:
        """Alert events of the monitor (alerts FINAL), newest first.

        Each alert: alert_id, status (firing | resolved), type (accuracy_below_threshold,
        accuracy_drop, error_rate_drift, feature_drift, prediction_drift), severity (warning |
        critical), model, model_version, subject (metric or feature), window_start/window_end,
        value, threshold, baseline, detected_at, message, recommended_action (investigate |
        retrain) and evidence (e.g. the top drifted features when accuracy dropped, how the
        decision was made). `firing_now=true` answers "what is wrong right now".
        """
        return call(tools.list_alerts, model, version, status, alert_type, firing_now, since, until, limit)

    return server


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in {"-h", "--help"}:
        print("python -m sinks.mcp: the monitor's MCP server on stdio (tools: get_model_accuracy, "
              "detect_data_drift, query_inference_logs, compare_model_versions, get_feature_distribution, "
              "list_alerts). Settings from the environment, as for the worker (CLICKHOUSE_URL, MONITOR_WEB_PORT, ...).")
        return 0
    if args:
        print(f"sinks.mcp: no arguments expected, got {' '.join(args)} (try --help)", file=sys.stderr)
        return 2
    try:
        settings = load_settings()
    except SettingsError as err:
        print(f"sinks.mcp: {err}", file=sys.stderr)
        return 2
    build_server(settings).run("stdio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
