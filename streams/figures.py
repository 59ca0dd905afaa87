"""Window figures and PSI bin counts, computed by ClickHouse from the deduplicated facts.

Recomputing a window from ``predictions FINAL`` and ``outcomes FINAL`` instead of
incrementing counters in memory is what makes the figures exact after crashes,
replays and duplicates: a request is counted once however often it was written.
This module builds the SQL and turns result rows into plain structures.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np

from streams.canonical import canonical_class
from streams.psi import CategoricalReference, FeatureReference, NumericReference


def quote(text: str) -> str:
    """A ClickHouse string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


Version = tuple[str, str]  # (model, model_version)
Groups = Mapping[Version, Iterable[int]]  # windows (start ms) to compute, per model version


def _ms(w: int) -> str:
    return f"fromUnixTimestamp64Milli(toInt64({int(w)}), 'UTC')"


def _windows_filter(windows: Iterable[int]) -> str:
    return f"window_start IN ({', '.join(_ms(w) for w in sorted(set(windows)))})"


def _version_filter(model: str, version: str) -> str:
    return f"model = {quote(model)} AND model_version = {quote(version)}"


def _groups_filter(groups: Groups) -> str:
    """The rows of these windows of these versions (one condition on the tables' sort key)."""
    items = ", ".join(f"({quote(m)}, {quote(v)}, {_ms(w)})"
                      for (m, v), windows in sorted(groups.items()) for w in sorted(set(windows)))
    return f"(model, model_version, window_start) IN ({items})"


def _per_version(values: Mapping[Version, str]) -> str:
    """A literal Map(model, Map(version, value)), read in SQL as ``m[model][model_version]``."""
    models: dict[str, list[str]] = {}
    for (model, version), value in sorted(values.items()):
        models.setdefault(model, []).append(f"{quote(version)}, {value}")
    return "map(" + ", ".join(f"{quote(m)}, map({', '.join(items)})" for m, items in models.items()) + ")"


@dataclass
class WindowCounts:
    """Everything the window_metrics row of one window is computed from."""

    predictions: int = 0
    positives: int = 0
    # Exact (Decimal, 15 places per value): a float sum depends on the order the engine adds
    # in, so two computations of one window could differ in the last bit.
    confidence_sum: Decimal = Decimal(0)
    confidence_n: int = 0
    confusion: dict[tuple[str, str], int] = field(default_factory=dict)
    late_labels: int = 0  # outcomes joined after the window was final (they still count)


def prediction_counts_sql(db: str, groups: Groups, positive_label: str,
                          labels: Mapping[Version, str] | None = None) -> str:
    """Predictions, positives, confidence per window; ``labels`` gives versions their own positive
    label (MONITOR_CONFIG), others count ``positive_label``.

    >>> sql = prediction_counts_sql("m", {("a", "v1"): [0], ("b", "v1"): [0]}, "1", {("b", "v1"): "fraud"})
    >>> sql[sql.index("countIf"):sql.index("), sum")]
    "countIf((model, model_version, prediction) IN (('a', 'v1', '1'), ('b', 'v1', 'fraud'))"
    """
    per_version = {version: (labels or {}).get(version, positive_label) for version in groups}
    if set(per_version.values()) <= {positive_label}:
        positive = f"prediction = {quote(positive_label)}"
    else:
        items = ", ".join(f"({quote(m)}, {quote(v)}, {quote(label)})" for (m, v), label in sorted(per_version.items()))
        positive = f"(model, model_version, prediction) IN ({items})"
    return (
        "SELECT model, model_version, toUnixTimestamp64Milli(window_start) AS w, count(), countIf("
        f"{positive}), sum(toDecimal128(ifNull(confidence, 0), 15)), count(confidence) "
        f"FROM `{db}`.predictions FINAL WHERE {_groups_filter(groups)} GROUP BY model, model_version, w"
    )


def confusion_sql(db: str, groups: Groups) -> str:
    return (
        "SELECT model, model_version, toUnixTimestamp64Milli(window_start) AS w, prediction, label, count(), sum(late) "
        f"FROM `{db}`.outcomes FINAL WHERE {_groups_filter(groups)} GROUP BY model, model_version, w, prediction, label"
    )


def label_delay_sql(db: str, groups: Groups) -> str:
    """p50 and p90 of the label delays (labeled_at - predicted_at, seconds) of each window's joined
    outcomes: numpy's default linear interpolation (``quantileExactInclusive``), exact whatever order
    the engine reads in."""
    return (
        "SELECT model, model_version, toUnixTimestamp64Milli(window_start) AS w, quantilesExactInclusive(0.5, 0.9)("
        "(toUnixTimestamp64Milli(labeled_at) - toUnixTimestamp64Milli(predicted_at)) / 1000) "
        f"FROM `{db}`.outcomes FINAL WHERE {_groups_filter(groups)} GROUP BY model, model_version, w"
    )


def label_delays(rows: Iterable[tuple]) -> dict[Version, dict[int, tuple[float, float]]]:
    """(p50, p90) label delay in seconds per version and window, from :func:`label_delay_sql`'s rows."""
    out: dict[Version, dict[int, tuple[float, float]]] = {}
    for model, version, w, (p50, p90) in rows:
        out.setdefault((model, version), {})[int(w)] = (float(p50), float(p90))
    return out


def window_counts(prediction_rows: Sequence[tuple],
                  confusion_rows: Sequence[tuple]) -> dict[Version, dict[int, WindowCounts]]:
    counts: dict[Version, dict[int, WindowCounts]] = {}
    for model, version, w, n, positives, conf_sum, conf_n in prediction_rows:
        counts.setdefault((model, version), {})[int(w)] = WindowCounts(int(n), int(positives), Decimal(conf_sum),
                                                                       int(conf_n))
    for model, version, w, prediction, label, n, late in confusion_rows:
        window = counts.setdefault((model, version), {}).setdefault(int(w), WindowCounts())
        window.confusion[(prediction, label)] = int(n)
        window.late_labels += int(late)
    return counts


def _array(values: np.ndarray) -> str:
    return "[" + ", ".join(repr(float(v)) for v in values) + "]"


def _edges(values: np.ndarray) -> str:
    return f"CAST({_array(values)} AS Array(Float64))"


def numeric_bins_sql(db: str, groups: Groups, subjects: Mapping[Version, Mapping[str, FeatureReference]]) -> str | None:
    """Per version, window, numeric feature and bin: count of values (bin = number of edges
    strictly below x), each version against its own reference's edges.

    The edges are a small table of (model, model_version, feature, edges) joined by key to
    the features' values: looked up in one literal map instead, the engine copies the whole
    map for every value it reads (at 100 features, 5 s and 2 GB for 4,000 predictions)."""
    features = {version: {k: v for k, v in refs.items() if isinstance(v, NumericReference) and not k.startswith("__")}
                for version, refs in subjects.items()}
    features = {version: refs for version, refs in features.items() if refs and version in groups}
    if not features:
        return None
    edges = ", ".join(f"({quote(model)}, {quote(version)}, {quote(k)}, {_edges(ref.edges)})"
                      for (model, version), refs in sorted(features.items()) for k, ref in refs.items())
    return (
        "SELECT p.model, p.model_version, p.w, p.k, arrayCount(e -> e < p.v, r.edges) AS bin, count() "
        "FROM (SELECT model, model_version, toUnixTimestamp64Milli(window_start) AS w, k, v "
        f"FROM `{db}`.predictions FINAL ARRAY JOIN mapKeys(num_features) AS k, mapValues(num_features) AS v "
        f"WHERE {_groups_filter({version: groups[version] for version in features})}) AS p "
        "INNER JOIN (SELECT ref.1 AS model, ref.2 AS model_version, ref.3 AS k, ref.4 AS edges "
        f"FROM system.one ARRAY JOIN [{edges}] AS ref) AS r "
        "ON p.model = r.model AND p.model_version = r.model_version AND p.k = r.k "
        "GROUP BY p.model, p.model_version, p.w, p.k, bin"
    )


def _categorical_features(groups: Groups, subjects: Mapping[Version, Mapping[str, FeatureReference]]
                          ) -> tuple[str, str] | None:
    """(filter on the versions' windows, per-version array of their categorical features) for
    the versions of ``groups`` that have any; None: no categorical feature to read."""
    features = {version: [k for k, v in refs.items() if isinstance(v, CategoricalReference) and not k.startswith("__")]
                for version, refs in subjects.items()}
    features = {version: names for version, names in features.items() if names and version in groups}
    if not features:
        return None
    names = _per_version({version: "[" + ", ".join(quote(k) for k in names) + "]" for version, names in features.items()})
    return _groups_filter({version: groups[version] for version in features}), f"{names}[model][model_version]"


def categorical_values_sql(db: str, groups: Groups,
                           subjects: Mapping[Version, Mapping[str, FeatureReference]]) -> str | None:
    """Per version, window, categorical feature and stored text (``cat_features``): count."""
    selected = _categorical_features(groups, subjects)
    if selected is None:
        return None
    where, names = selected
    return (
        "SELECT model, model_version, toUnixTimestamp64Milli(window_start) AS w, k, v, count() "
        f"FROM `{db}`.predictions FINAL ARRAY JOIN mapKeys(cat_features) AS k, mapValues(cat_features) AS v "
        f"WHERE {where} AND has({names}, k) GROUP BY model, model_version, w, k, v"
    )


def categorical_numbers_sql(db: str, groups: Groups,
                            subjects: Mapping[Version, Mapping[str, FeatureReference]]) -> str | None:
    """The numbers sent for features that are categorical by their reference, per distinct
    value: a number is stored once, in ``num_features`` (its canonical text is made here, in
    :func:`categorical_number_rows`, exactly as the parser's). Values kept as text in
    ``cat_features`` (integers not exact as floats, and every value of rows stored before
    numbers were stored once) are read there, so none is counted twice."""
    selected = _categorical_features(groups, subjects)
    if selected is None:
        return None
    where, names = selected
    return (
        "SELECT model, model_version, toUnixTimestamp64Milli(window_start) AS w, k, x, count() "
        f"FROM `{db}`.predictions FINAL ARRAY JOIN mapKeys(num_features) AS k, mapValues(num_features) AS x "
        f"WHERE {where} AND has({names}, k) AND NOT mapContains(cat_features, k) GROUP BY model, model_version, w, k, x"
    )


def categorical_number_rows(rows: Iterable[tuple]) -> list[tuple]:
    """Rows of :func:`categorical_numbers_sql` with each number as its canonical text, the
    form categories are compared in (``3`` and ``3.0`` are the category ``"3"``).

    >>> categorical_number_rows([("m", "v1", 0, "zip", 75001.0, 2), ("m", "v1", 0, "x", 1e-05, 1)])
    [('m', 'v1', 0, 'zip', '75001', 2), ('m', 'v1', 0, 'x', '1e-05', 1)]
    """
    return [(model, version, w, k, canonical_class(x), n) for model, version, w, k, x, n in rows]


def score_bins_sql(db: str, groups: Groups, edges: Mapping[Version, np.ndarray]) -> str | None:
    edges = {version: e for version, e in edges.items() if version in groups}
    if not edges:
        return None
    by_version = _per_version({version: _edges(e) for version, e in edges.items()})
    return (
        f"SELECT model, model_version, toUnixTimestamp64Milli(window_start) AS w, '__score__', "
        f"arrayCount(e -> e < assumeNotNull(score), {by_version}[model][model_version]) AS bin, count() "
        f"FROM `{db}`.predictions FINAL WHERE {_groups_filter({version: groups[version] for version in edges})} "
        "AND score IS NOT NULL GROUP BY model, model_version, w, bin"
    )


def predicted_class_sql(db: str, groups: Groups) -> str | None:
    if not groups:
        return None
    return (
        "SELECT model, model_version, toUnixTimestamp64Milli(window_start) AS w, '__prediction__', prediction, count() "
        f"FROM `{db}`.predictions FINAL WHERE {_groups_filter(groups)} GROUP BY model, model_version, w, prediction"
    )


def by_version(rows: Iterable[tuple]) -> dict[Version, list[tuple]]:
    """Rows that start with (model, model_version), split by version, without those two columns."""
    out: dict[Version, list[tuple]] = {}
    for row in rows:
        out.setdefault((row[0], row[1]), []).append(tuple(row[2:]))
    return out


def bin_counts(
    subjects: Mapping[str, FeatureReference],
    numeric_rows: Iterable[tuple],
    categorical_rows: Iterable[tuple],
) -> dict[int, dict[str, np.ndarray]]:
    """Bin counts per window and subject, from the rows of the queries above."""
    out: dict[int, dict[str, np.ndarray]] = {}

    def slot(w: int, subject: str) -> np.ndarray | None:
        ref = subjects.get(subject)
        if ref is None:
            return None
        per_window = out.setdefault(int(w), {})
        if subject not in per_window:
            size = len(ref.edges) + 1 if isinstance(ref, NumericReference) else len(ref.categories) + 1
            per_window[subject] = np.zeros(size, dtype=np.int64)
        return per_window[subject]

    for w, subject, bin_index, n in numeric_rows:
        counts = slot(w, subject)
        if counts is not None and isinstance(subjects[subject], NumericReference):
            counts[int(bin_index)] += int(n)
    for w, subject, value, n in categorical_rows:
        counts = slot(w, subject)
        ref = subjects.get(subject)
        if counts is not None and isinstance(ref, CategoricalReference):
            counts[ref.bin_of(value)] += int(n)
    return out


def window_rows_sql(db: str, model: str, version: str, window_start_ms: int) -> str:
    """The raw features, score and prediction of one window (to build a reference from it)."""
    return (
        "SELECT features, score, prediction "
        f"FROM `{db}`.predictions FINAL WHERE {_version_filter(model, version)} AND {_windows_filter([window_start_ms])}"
    )


def predictions_per_window_sql(db: str, model: str, version: str) -> str:
    return (
        "SELECT toUnixTimestamp64Milli(window_start) AS w, count() "
        f"FROM `{db}`.predictions FINAL WHERE {_version_filter(model, version)} GROUP BY w ORDER BY w"
    )


def confidence_segments_sql(db: str, groups: Groups, knots: Mapping[Version, np.ndarray]) -> str | None:
    """Per version, window and calibration segment (number of knots strictly below the
    confidence): count, sum and sum of squares of the confidences, as exact decimals so that
    every computation of a window gives the same estimate (:mod:`streams.estimate`)."""
    knots = {version: k for version, k in knots.items() if version in groups}
    if not knots:
        return None
    by_version = _per_version({version: _edges(k) for version, k in knots.items()})
    c = "assumeNotNull(confidence)"
    return (
        f"SELECT model, model_version, toUnixTimestamp64Milli(window_start) AS w, "
        f"arrayCount(e -> e < {c}, {by_version}[model][model_version]) AS segment, count(), "
        f"sum(toDecimal128({c}, 15)), sum(toDecimal128({c} * {c}, 15)) "
        f"FROM `{db}`.predictions FINAL WHERE {_groups_filter({version: groups[version] for version in knots})} "
        "AND confidence IS NOT NULL GROUP BY model, model_version, w, segment"
    )


def labeled_by_window_end_sql(db: str, groups: Groups, window_seconds: int) -> str | None:
    """Per version and window: outcomes whose label came before the window ended, in event time
    (what was known of the window when the watermark closed it, whatever the arrival order)."""
    if not groups:
        return None
    return (
        "SELECT model, model_version, toUnixTimestamp64Milli(window_start) AS w, "
        f"countIf(toUnixTimestamp64Milli(labeled_at) < w + {int(window_seconds) * 1000}) "
        f"FROM `{db}`.outcomes FINAL WHERE {_groups_filter(groups)} GROUP BY model, model_version, w"
    )
