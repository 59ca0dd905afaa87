"""Window figures and PSI bin counts, computed by ClickHouse from the deduplicated facts.

Recomputing a window from ``predictions FINAL`` and ``outcomes FINAL`` instead of
incrementing counters in memory is what makes the figures exact after crashes,
replays and duplicates: a request is counted once however often it was written.
This module builds the SQL and turns result rows into plain structures.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np

from streams.psi import CategoricalReference, FeatureReference, NumericReference


def quote(text: str) -> str:
    """A ClickHouse string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _windows_filter(windows: Iterable[int]) -> str:
    items = ", ".join(f"fromUnixTimestamp64Milli(toInt64({int(w)}), 'UTC')" for w in sorted(set(windows)))
    return f"window_start IN ({items})"


def _version_filter(model: str, version: str) -> str:
    return f"model = {quote(model)} AND model_version = {quote(version)}"


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


def prediction_counts_sql(db: str, model: str, version: str, windows: Iterable[int], positive_label: str) -> str:
    return (
        "SELECT toUnixTimestamp64Milli(window_start) AS w, count(), countIf(prediction = "
        f"{quote(positive_label)}), sum(toDecimal128(ifNull(confidence, 0), 15)), count(confidence) "
        f"FROM `{db}`.predictions FINAL WHERE {_version_filter(model, version)} AND {_windows_filter(windows)} "
        "GROUP BY w"
    )


def confusion_sql(db: str, model: str, version: str, windows: Iterable[int]) -> str:
    return (
        "SELECT toUnixTimestamp64Milli(window_start) AS w, prediction, label, count(), sum(late) "
        f"FROM `{db}`.outcomes FINAL WHERE {_version_filter(model, version)} AND {_windows_filter(windows)} "
        "GROUP BY w, prediction, label"
    )


def window_counts(prediction_rows: Sequence[tuple], confusion_rows: Sequence[tuple]) -> dict[int, WindowCounts]:
    counts: dict[int, WindowCounts] = {}
    for w, n, positives, conf_sum, conf_n in prediction_rows:
        counts[int(w)] = WindowCounts(int(n), int(positives), Decimal(conf_sum), int(conf_n))
    for w, prediction, label, n, late in confusion_rows:
        window = counts.setdefault(int(w), WindowCounts())
        window.confusion[(prediction, label)] = int(n)
        window.late_labels += int(late)
    return counts


def _array(values: np.ndarray) -> str:
    return "[" + ", ".join(repr(float(v)) for v in values) + "]"


def numeric_bins_sql(db: str, model: str, version: str, windows: Iterable[int],
                     subjects: dict[str, NumericReference]) -> str | None:
    """Per window, feature and bin: count of values (bin = number of edges strictly below x)."""
    features = {k: v for k, v in subjects.items() if not k.startswith("__")}
    if not features:
        return None
    edges = "map(" + ", ".join(f"{quote(k)}, CAST({_array(v.edges)} AS Array(Float64))" for k, v in features.items()) + ")"
    names = "[" + ", ".join(quote(k) for k in features) + "]"
    return (
        f"SELECT toUnixTimestamp64Milli(window_start) AS w, k, arrayCount(e -> e < v, {edges}[k]) AS bin, count() "
        f"FROM `{db}`.predictions FINAL ARRAY JOIN mapKeys(num_features) AS k, mapValues(num_features) AS v "
        f"WHERE {_version_filter(model, version)} AND {_windows_filter(windows)} AND has({names}, k) "
        "GROUP BY w, k, bin"
    )


def categorical_values_sql(db: str, model: str, version: str, windows: Iterable[int],
                           subjects: dict[str, CategoricalReference]) -> str | None:
    features = [k for k in subjects if not k.startswith("__")]
    if not features:
        return None
    names = "[" + ", ".join(quote(k) for k in features) + "]"
    return (
        "SELECT toUnixTimestamp64Milli(window_start) AS w, k, v, count() "
        f"FROM `{db}`.predictions FINAL ARRAY JOIN mapKeys(cat_features) AS k, mapValues(cat_features) AS v "
        f"WHERE {_version_filter(model, version)} AND {_windows_filter(windows)} AND has({names}, k) "
        "GROUP BY w, k, v"
    )


def score_bins_sql(db: str, model: str, version: str, windows: Iterable[int], edges: np.ndarray) -> str:
    return (
        f"SELECT toUnixTimestamp64Milli(window_start) AS w, '__score__', "
        f"arrayCount(e -> e < assumeNotNull(score), CAST({_array(edges)} AS Array(Float64))) AS bin, count() "
        f"FROM `{db}`.predictions FINAL WHERE {_version_filter(model, version)} AND {_windows_filter(windows)} "
        "AND score IS NOT NULL GROUP BY w, bin"
    )


def predicted_class_sql(db: str, model: str, version: str, windows: Iterable[int]) -> str:
    return (
        "SELECT toUnixTimestamp64Milli(window_start) AS w, '__prediction__', prediction, count() "
        f"FROM `{db}`.predictions FINAL WHERE {_version_filter(model, version)} AND {_windows_filter(windows)} "
        "GROUP BY w, prediction"
    )


def bin_counts(
    subjects: dict[str, FeatureReference],
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
