"""Two workers of one app on the same partitions, sharing one ClickHouse: the figures of one worker.

The workers (own web ports and data directories) split the four partitions of each input
topic and write to one real ClickHouse engine served over HTTP (sinks/http_front.py, as a
server would). Windows and alerts are about all partitions: each worker reports the
progress of its partitions to the store and reads the others', and one of them (the reader
of predictions partition 0) decides window alerts. Killed with `kill -9`, the survivor takes
the partitions over after the rebalance, and the result is still exact.
"""

from __future__ import annotations

import time

import pytest

from tests.figures_snapshot import (
    QUERIES,
    comparison_env,
    replay_scenarios,
    snapshot,
    uninterrupted,
)
from tests.worker_harness import WorkerRun

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def replayed(broker, tmp_path_factory):
    """The input, and the figures one worker alone computes from it."""
    topics, total = replay_scenarios(broker.bootstrap, "two-workers", {"degradation": 8000, "sudden-drift": 8000})
    return topics, total, uninterrupted(broker.bootstrap, topics, total, tmp_path_factory)


def _pair(broker, topics, front, tmp_path) -> list[WorkerRun]:
    runs = []
    for name in ("a", "b"):
        workdir = tmp_path / name
        workdir.mkdir()
        env = comparison_env(broker.bootstrap, topics, workdir, CLICKHOUSE_URL=front.url,
                             MONITOR_APP_ID=f"monitor-pair-{tmp_path.name}")
        runs.append(WorkerRun(env, workdir))
    return runs


def _wait_for(run: WorkerRun, want: dict[str, list[tuple]], alive: list[WorkerRun], timeout: float = 180) -> None:
    """Until the shared store holds the expected figures and every live worker has drained its input."""
    deadline = time.monotonic() + timeout
    got: dict[str, list[tuple]] = {}
    while time.monotonic() < deadline:
        for worker in alive:
            assert worker.process.poll() is None, worker.log_tail()
        statuses = [worker.status() for worker in alive]
        if all(s and s["drained"] for s in statuses):
            got = snapshot(run)
            if got == want:
                return
        time.sleep(1)
    diff = {name: (got.get(name), want[name]) for name in QUERIES if got.get(name) != want[name]}
    raise AssertionError(f"shared store never reached one worker's figures: {str(diff)[:3000]}\n"
                         + "\n".join(w.log_tail(40) for w in alive))


def test_two_workers_give_the_figures_of_one(broker, replayed, start_clickhouse_front, tmp_path):
    topics, total, want = replayed
    front = start_clickhouse_front(tmp_path / "clickhouse")
    a, b = _pair(broker, topics, front, tmp_path)
    a.start(), b.start()
    try:
        _wait_for(a, want, [a, b])
        statuses = [a.status(), b.status()]
    finally:
        assert a.stop() == 0, a.log_tail()
        assert b.stop() == 0, b.log_tail()
    assert snapshot(a) == want
    # Both took part: each read some partitions, exactly one decided the window alerts.
    assert all(s["counters"]["messages"] > 0 and s["assigned"] for s in statuses), statuses
    assert sorted(s["evaluates_alerts"] for s in statuses) == [False, True]


def test_the_survivor_of_a_kill_takes_over_exactly(broker, replayed, start_clickhouse_front, tmp_path):
    topics, total, want = replayed
    front = start_clickhouse_front(tmp_path / "clickhouse")
    a, b = _pair(broker, topics, front, tmp_path)
    a.start(), b.start()
    survivor = a
    try:
        deadline = time.monotonic() + 120
        while True:  # both at work, a third of the input read
            statuses = [a.status(), b.status()]
            if all(statuses) and all(s["assigned"] for s in statuses) and \
                    sum(s["counters"]["messages"] for s in statuses) >= total // 3:
                break
            assert time.monotonic() < deadline, a.log_tail() + b.log_tail()
            time.sleep(0.2)
        # Kill the one deciding alerts: the survivor must continue its evaluation too.
        victim, survivor = (a, b) if statuses[0]["evaluates_alerts"] else (b, a)
        victim.kill()
        _wait_for(survivor, want, [survivor])
        taken = survivor.status()
    finally:
        for run in (a, b):
            if run.process.poll() is None:
                assert run.stop() == 0, run.log_tail()
    assert snapshot(survivor) == want
    assert taken["evaluates_alerts"] and len(taken["assigned"]) == 8, taken
