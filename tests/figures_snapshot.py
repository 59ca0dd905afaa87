"""What two runs of the worker over the same input must agree on, read from its store."""

from __future__ import annotations

from tests.worker_harness import WorkerRun

FIGURES = ("SELECT model, toUnixTimestamp64Milli(window_start), predictions, labeled, correct, accuracy, precision, "
           "recall, f1, positive_rate, mean_confidence, final FROM monitoring.window_metrics FINAL ORDER BY 1, 2")
DRIFT = ("SELECT model, toUnixTimestamp64Milli(window_start), feature, psi, n, drifted "
         "FROM monitoring.feature_drift FINAL ORDER BY 1, 2, 3")
OUTCOMES = "SELECT count(), uniqExact(request_id), sum(correct) FROM (SELECT * FROM monitoring.outcomes FINAL)"
# ADWIN follows join order, which depends on how partitions interleave; every other alert is deterministic.
ALERTS = "SELECT alert_id FROM monitoring.alerts FINAL WHERE type != 'error_rate_drift' ORDER BY 1"
QUERIES = {"figures": FIGURES, "drift": DRIFT, "outcomes": OUTCOMES, "alerts": ALERTS}


def snapshot(run: WorkerRun) -> dict[str, list[tuple]]:
    """The figures, drift rows, distinct outcomes and alert ids of a stopped worker's store."""
    return {name: run.query(sql) for name, sql in QUERIES.items()}
