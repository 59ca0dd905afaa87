from decimal import Decimal

import numpy as np

from streams.figures import (
    WindowCounts,
    by_version,
    numeric_bins_sql,
    predicted_class_sql,
    score_bins_sql,
    window_counts,
)
from streams.psi import CategoricalReference, NumericReference


def test_window_counts_sum_late_labels_over_the_confusion_cells_per_version():
    counts = window_counts(
        [("m", "v1", 1000, 10, 4, Decimal('7.5'), 9), ("m", "v1", 2000, 3, 0, Decimal(0), 0),
         ("m", "v2", 1000, 1, 1, Decimal('0.5'), 1)],
        [("m", "v1", 1000, "1", "1", 3, 1), ("m", "v1", 1000, "1", "0", 1, 0), ("m", "v1", 1000, "0", "0", 4, 2),
         ("m", "v1", 3000, "a", "b", 2, 2), ("m", "v2", 1000, "1", "0", 1, 0)],
    )
    v1 = counts[("m", "v1")]
    assert v1[1000] == WindowCounts(10, 4, Decimal('7.5'), 9, {("1", "1"): 3, ("1", "0"): 1, ("0", "0"): 4}, 3)
    assert v1[2000] == WindowCounts(3, 0, Decimal(0), 0, {}, 0)
    assert v1[3000] == WindowCounts(0, 0, Decimal(0), 0, {("a", "b"): 2}, 2)  # labels of a window with no prediction row
    assert counts[("m", "v2")] == {1000: WindowCounts(1, 1, Decimal('0.5'), 1, {("1", "0"): 1}, 0)}


def test_by_version_splits_rows_and_drops_the_version_columns():
    assert by_version([("m", "v1", 1, "a"), ("m", "v2", 1, "b"), ("m", "v1", 2, "c")]) == {
        ("m", "v1"): [(1, "a"), (2, "c")], ("m", "v2"): [(1, "b")]}


def _numeric(*edges: float) -> NumericReference:
    return NumericReference(edges=np.array(edges), shares=np.full(len(edges) + 1, 1 / (len(edges) + 1)), n=10)


def test_per_version_queries_read_each_version_against_its_own_reference():
    subjects = {("m", "v1"): {"x": _numeric(1.0, 2.0), "c": CategoricalReference(("a",), np.array([0.5, 0.5]), 4),
                              "__score__": _numeric(0.5)},
                ("m", "v'2"): {"x": _numeric(10.0)}, ("m", "v3"): {"x": _numeric(5.0)}}
    groups = {("m", "v1"): [0, 1000], ("m", "v'2"): [0]}
    sql = numeric_bins_sql("db", groups, subjects)
    assert sql is not None
    # v3 has a reference but nothing to compute; the score and categorical subjects are not numeric features
    assert "'v3'" not in sql and "'__score__'" not in sql and "'c'" not in sql
    assert ("ARRAY JOIN [('m', 'v\\'2', 'x', CAST([10.0] AS Array(Float64))), "
            "('m', 'v1', 'x', CAST([1.0, 2.0] AS Array(Float64)))] AS ref") in sql
    assert ("(model, model_version, window_start) IN (('m', 'v\\'2', fromUnixTimestamp64Milli(toInt64(0), 'UTC')), "
            "('m', 'v1', fromUnixTimestamp64Milli(toInt64(0), 'UTC')), "
            "('m', 'v1', fromUnixTimestamp64Milli(toInt64(1000), 'UTC')))") in sql
    assert numeric_bins_sql("db", {("m", "v3"): [0]}, {("m", "v3"): {"c": subjects[("m", "v1")]["c"]}}) is None
    assert score_bins_sql("db", groups, {("m", "v3"): np.array([0.5])}) is None
    assert predicted_class_sql("db", {}) is None
