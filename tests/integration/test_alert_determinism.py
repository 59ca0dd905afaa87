"""One log, two partition counts: the same alerts, ADWIN's included.

The same scenarios are replayed into topics of 1 partition and of 8 partitions and read by
one worker each. Partitions interleave differently (8 of them are fetched at their own
paces), yet every decision is made at a point of event time from outcomes released in
event-time order, so both stores hold the same alert ids and the same figures
(tests/integration/test_crash_recovery.py does the same for kill -9 on 4 partitions).
"""

from __future__ import annotations

import pytest

from tests.figures_snapshot import comparison_env, replay_scenarios, snapshot
from tests.worker_harness import WorkerRun

pytestmark = pytest.mark.integration

ROWS = {"degradation": 6000, "feature-drift": 6000}


def _run(bootstrap: str, partitions: int, workdir) -> dict[str, list[tuple]]:
    topics, total = replay_scenarios(bootstrap, f"determinism-{partitions}", ROWS, partitions)
    run = WorkerRun(comparison_env(bootstrap, topics, workdir), workdir)
    run.start().wait_until_settled(total)
    assert run.stop() == 0, run.log_tail()
    got = snapshot(run)
    got["alert_rows"] = run.query("SELECT type, subject, status, toUnixTimestamp64Milli(window_start) "
                                  "FROM monitoring.alerts FINAL ORDER BY 1, 2, 4, 3")
    return got


def test_one_and_eight_partitions_give_the_same_alerts(broker, tmp_path_factory):
    one = _run(broker.bootstrap, 1, tmp_path_factory.mktemp("one-partition"))
    eight = _run(broker.bootstrap, 8, tmp_path_factory.mktemp("eight-partitions"))
    kinds = {row[0] for row in one["alert_rows"]}
    assert {"error_rate_drift", "accuracy_drop", "feature_drift"} <= kinds, one["alert_rows"]
    assert eight["alert_rows"] == one["alert_rows"]
    assert eight["alerts"] == one["alerts"]
    assert eight["figures"] == one["figures"] and eight["drift"] == one["drift"]
