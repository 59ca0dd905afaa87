"""What two runs of the worker over the same input must agree on, read from its store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.kafka_helpers import unique_topics
from tests.worker_harness import WorkerRun, worker_env

FIGURES = ("SELECT model, model_version, toUnixTimestamp64Milli(window_start), predictions, labeled, correct, accuracy, precision, "
           "recall, f1, positive_rate, mean_confidence, final FROM monitoring.window_metrics FINAL ORDER BY 1, 2, 3")
DRIFT = ("SELECT model, model_version, toUnixTimestamp64Milli(window_start), feature, psi, n, drifted "
         "FROM monitoring.feature_drift FINAL ORDER BY 1, 2, 3, 4")
OUTCOMES = "SELECT count(), uniqExact(request_id), sum(correct) FROM (SELECT * FROM monitoring.outcomes FINAL)"
# Every alert, ADWIN's included: the error stream is fed in event time, whatever the partitions or restarts.
ALERTS = "SELECT alert_id FROM monitoring.alerts FINAL ORDER BY 1"
QUERIES = {"figures": FIGURES, "drift": DRIFT, "outcomes": OUTCOMES, "alerts": ALERTS}


def snapshot(run: WorkerRun) -> dict[str, list[tuple]]:
    """The figures, drift rows, distinct outcomes and alert ids of a stopped worker's store."""
    return {name: run.query(sql) for name, sql in QUERIES.items()}


def replay_scenarios(bootstrap: str, tag: str, rows: dict[str, int],
                     partitions: int | None = None, topics: dict[str, str] | None = None) -> tuple[dict[str, str], int]:
    """Built-in scenarios (name -> rows) through the replay producer into fresh topics (of
    ``partitions`` partitions, else the default), or after what ``topics`` already hold:
    (topics, events)."""
    from producers.replay import replay
    from producers.scenarios import generate
    from streams.settings import load_settings

    topics = topics or unique_topics(tag)
    if partitions is not None:
        topics["TOPIC_PARTITIONS"] = str(partitions)
    settings = load_settings({**topics, "KAFKA_BOOTSTRAP_SERVERS": bootstrap})
    total = 0
    for name, count in rows.items():
        result = replay(enumerate(generate(name, rows=count).rows, start=1), settings)
        assert result.ok
        total += result.events
    return topics, total


def comparison_env(bootstrap: str, topics: dict[str, str], workdir: Path, **extra: Any) -> dict[str, str]:
    """Worker settings for these comparisons: windows of a replayed day become final, idle
    partitions stop holding the watermark quickly."""
    return worker_env(bootstrap, topics, workdir, LABEL_GRACE_SECONDS=43_200, MONITOR_IDLE_SECONDS=2, **extra)


def uninterrupted(bootstrap: str, topics: dict[str, str], total: int,
                  tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple]]:
    """The snapshot of one worker reading all ``total`` events without trouble: the reference."""
    run = WorkerRun(comparison_env(bootstrap, topics, tmp_path_factory.mktemp("calm")),
                    tmp_path_factory.mktemp("calm-log"))
    run.start().wait_until_settled(total)
    assert run.stop() == 0, run.log_tail()
    return snapshot(run)
