"""ClickHouse tables of the monitor: the contract's four plus the facts they are computed from.

Facts (`predictions`, `labels`, `outcomes`) are keyed so that a replayed event
lands on the same key: ``SELECT ... FINAL`` sees each request once however often
it was written. Derived tables (`window_metrics`, `feature_drift`) are
ReplacingMergeTree on ``updated_at``: the newest computation of a window wins.
"""

from __future__ import annotations

DT3 = "DateTime64(3, 'UTC')"
DT6 = "DateTime64(6, 'UTC')"

# ``num_features`` made by the engine from the ``features`` text as the row is inserted: every
# JSON number (integers too) as its Float64, keys in feature order. Building and writing the
# map in Python was the worker's largest cost per wide prediction; the engine parses the text
# without the GIL. A raw JSON value is a number exactly when it starts with '-' or a digit, and
# ``toFloat64`` of its text is Python's ``float`` of the value (tests/integration/test_num_features.py).
NUM_FEATURES_SQL = (
    "mapFromArrays(arrayMap(kv -> kv.1, arrayFilter(kv -> position('-0123456789', substring(kv.2, 1, 1)) > 0, "
    "JSONExtractKeysAndValuesRaw(features)) AS numbers), arrayMap(kv -> toFloat64(kv.2), numbers))"
)

TABLES: dict[str, str] = {
    "predictions": f"""
        request_id String,
        model LowCardinality(String),
        model_version LowCardinality(String),
        window_start {DT3},
        predicted_at {DT3},
        prediction String,
        score Nullable(Float64),
        confidence Nullable(Float64),
        latency_ms Nullable(Float64),
        num_features Map(String, Float64) DEFAULT {NUM_FEATURES_SQL},
        cat_features Map(String, String),
        features String,
        kafka_partition UInt32,
        kafka_offset Int64,
        ingested_at {DT6}
    """,
    "labels": f"""
        request_id String,
        label String,
        labeled_at {DT3},
        model Nullable(String),
        model_version Nullable(String),
        kafka_partition UInt32,
        kafka_offset Int64,
        ingested_at {DT6}
    """,
    "outcomes": f"""
        request_id String,
        model LowCardinality(String),
        model_version LowCardinality(String),
        window_start {DT3},
        predicted_at {DT3},
        labeled_at {DT3},
        prediction String,
        label String,
        correct UInt8,
        score Nullable(Float64),
        confidence Nullable(Float64),
        latency_ms Nullable(Float64),
        features String,
        kafka_partition UInt32,
        joined_at {DT6},
        late UInt8,
        behind_watermark UInt8
    """,
    "window_metrics": f"""
        model LowCardinality(String),
        model_version LowCardinality(String),
        window_start {DT3},
        window_end {DT3},
        predictions UInt64,
        labeled UInt64,
        correct UInt64,
        accuracy Nullable(Float64),
        precision Nullable(Float64),
        recall Nullable(Float64),
        f1 Nullable(Float64),
        positive_rate Nullable(Float64),
        mean_confidence Nullable(Float64),
        rolling_accuracy Nullable(Float64),
        label_coverage Nullable(Float64),
        final UInt8,
        updated_at {DT6},
        late_labels UInt64,
        estimated_accuracy Nullable(Float64),
        estimated_accuracy_low Nullable(Float64),
        estimated_accuracy_high Nullable(Float64),
        estimation_error Nullable(Float64),
        label_delay_p50_s Nullable(Float64),
        label_delay_p90_s Nullable(Float64)
    """,
    "feature_drift": f"""
        model LowCardinality(String),
        model_version LowCardinality(String),
        window_start {DT3},
        window_end {DT3},
        feature String,
        kind LowCardinality(String),
        psi Nullable(Float64),
        n UInt64,
        drifted UInt8,
        band LowCardinality(String),
        reference_source LowCardinality(String),
        updated_at {DT6},
        test LowCardinality(String),
        statistic Nullable(Float64),
        dof UInt32,
        p_value Nullable(Float64)
    """,
    "alerts": f"""
        alert_id String,
        status LowCardinality(String),
        type LowCardinality(String),
        severity LowCardinality(String),
        model String,
        model_version String,
        subject String,
        window_start Nullable({DT3}),
        window_end Nullable({DT3}),
        value Nullable(Float64),
        threshold Nullable(Float64),
        baseline Nullable(Float64),
        detected_at {DT3},
        message String,
        recommended_action LowCardinality(String),
        evidence String
    """,
    "references": f"""
        model String,
        model_version String,
        source LowCardinality(String),
        window_start Nullable({DT3}),
        baseline_accuracy Nullable(Float64),
        baseline_window_start Nullable({DT3}),
        chosen_at {DT6}
    """,
    "checkpoints": f"""
        app_id String,
        model String,
        model_version String,
        evaluated_watermark Int64,
        updated_at {DT6}
    """,
    # How far each model version's event-time outcome stream was released (streams/outcome_stream.py).
    "stream_checkpoints": f"""
        app_id String,
        model String,
        model_version String,
        released_ms Int64,
        updated_at {DT6}
    """,
    # Each worker's view of the input partitions it reads, for the others' watermarks:
    # model = model_version = '' is the partition's own clock, other rows a model version's.
    "partition_progress": f"""
        app_id String,
        topic String,
        partition UInt32,
        model String,
        model_version String,
        max_event_ms Int64,
        drained UInt8,
        updated_at {DT6}
    """,
    # Each model version's own settings as the worker resolved them (MONITOR_CONFIG, else the environment).
    "model_settings": f"""
        model String,
        model_version String,
        accuracy_threshold Float64,
        degradation_threshold Float64,
        min_labeled UInt32,
        psi_warn Float64,
        psi_alert Float64,
        positive_label String,
        reference_path String,
        ignore_features Array(String),
        source String,
        updated_at {DT6}
    """,
    # Two versions of one model in one window (streams/version_compare.py), as of an event-time point.
    "version_comparison": f"""
        model String,
        window_start {DT3},
        window_end {DT3},
        baseline_version String,
        candidate_version String,
        baseline_n UInt64,
        baseline_correct UInt64,
        baseline_accuracy Float64,
        candidate_n UInt64,
        candidate_correct UInt64,
        candidate_accuracy Float64,
        diff Float64,
        diff_low Float64,
        diff_high Float64,
        p_value Float64,
        worse UInt8,
        as_of {DT3},
        updated_at {DT6}
    """,
}

ENGINES: dict[str, str] = {
    "predictions": "ReplacingMergeTree ORDER BY (model, model_version, window_start, request_id)",
    "labels": "ReplacingMergeTree ORDER BY request_id",
    "outcomes": "ReplacingMergeTree ORDER BY (model, model_version, window_start, request_id)",
    "window_metrics": "ReplacingMergeTree(updated_at) ORDER BY (model, model_version, window_start)",
    "feature_drift": "ReplacingMergeTree(updated_at) ORDER BY (model, model_version, window_start, feature)",
    "alerts": "ReplacingMergeTree ORDER BY alert_id",
    "references": "ReplacingMergeTree(chosen_at) ORDER BY (model, model_version)",
    "checkpoints": "ReplacingMergeTree(updated_at) ORDER BY (app_id, model, model_version)",
    "stream_checkpoints": "ReplacingMergeTree(released_ms) ORDER BY (app_id, model, model_version)",
    "partition_progress": "ReplacingMergeTree(updated_at) ORDER BY (app_id, topic, partition, model, model_version)",
    "model_settings": "ReplacingMergeTree(updated_at) ORDER BY (model, model_version)",
    "version_comparison": "ReplacingMergeTree(as_of) ORDER BY (model, window_start, baseline_version, candidate_version)",
}


def columns(table: str) -> list[str]:
    """Column names of a table, in DDL order."""
    return [line.split()[0] for line in TABLES[table].strip().splitlines() if line.strip()]


# Columns the engine derives at insert from the row's other columns (their DEFAULT): rows leave them out.
DERIVED_COLUMNS: dict[str, dict[str, str]] = {"predictions": {"num_features": NUM_FEATURES_SQL}}


def insert_columns(table: str) -> list[str]:
    """The columns a row of the table carries, in DDL order (the order rows are built in)."""
    derived = DERIVED_COLUMNS.get(table, {})
    return [name for name in columns(table) if name not in derived]


# Columns added after a release: stores created before get them on start (ALTER ... IF NOT EXISTS).
ADDED_COLUMNS: dict[str, list[str]] = {
    "outcomes": ["late UInt8", "behind_watermark UInt8"],
    "window_metrics": ["late_labels UInt64", "estimated_accuracy Nullable(Float64)",
                       "estimated_accuracy_low Nullable(Float64)", "estimated_accuracy_high Nullable(Float64)",
                       "estimation_error Nullable(Float64)", "label_delay_p50_s Nullable(Float64)",
                       "label_delay_p90_s Nullable(Float64)"],
    "feature_drift": ["test LowCardinality(String)", "statistic Nullable(Float64)", "dof UInt32",
                      "p_value Nullable(Float64)"],
}


def create_statements(database: str) -> list[str]:
    """Create what is missing and add the columns newer releases write: a store of any age upgrades in place."""
    statements = [f"CREATE DATABASE IF NOT EXISTS `{database}`"]
    for table, body in TABLES.items():
        statements.append(
            f"CREATE TABLE IF NOT EXISTS `{database}`.`{table}` ({body.strip().rstrip(',')}) ENGINE = {ENGINES[table]}"
        )
    for table, added in ADDED_COLUMNS.items():
        statements.append(f"ALTER TABLE `{database}`.`{table}` "
                          + ", ".join(f"ADD COLUMN IF NOT EXISTS {column}" for column in added))
    for table, derived in DERIVED_COLUMNS.items():  # stores created before the engine derived them
        statements.append(f"ALTER TABLE `{database}`.`{table}` "
                          + ", ".join(f"MODIFY COLUMN {name} DEFAULT {sql}" for name, sql in derived.items()))
    return statements
