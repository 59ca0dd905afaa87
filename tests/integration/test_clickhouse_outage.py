"""ClickHouse unavailable for 30 s in the middle of a backlog: nothing lost, memory bounded.

Two ways down: a ClickHouse server (sinks/http_front.py over a real engine) is stopped, so
connections are refused, and started again on the same data 30 s later; and the embedded
engine, which cannot be stopped from outside, is made to fail every call for 30 s through a
test-only page of the worker (tests/outage_app.py). Either way the worker must keep its rows
and retry, stop taking input once its bounded buffer is full (backpressure: Kafka keeps the
rest), warn once when the outage starts and once when it ends, and finish with exactly the
figures of an uninterrupted run.
"""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest

from streams.monitor import BATCH_MAX, WRITE_DEPTH
from tests.figures_snapshot import comparison_env, replay_scenarios, snapshot, uninterrupted
from tests.worker_harness import WorkerRun

pytestmark = pytest.mark.integration

OUTAGE_S = 30
REPO = Path(__file__).resolve().parents[2]
# Parsed batches a worker may hold beyond what is stored: one being written, WRITE_DEPTH queued,
# one waiting to be queued (the intake batch and Faust's buffer are not parsed yet, not counted).
HELD_BATCHES = WRITE_DEPTH + 2


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def calm(broker, tmp_path_factory):
    """A backlog far larger than the worker's buffer, and the figures of an uninterrupted run."""
    topics, total = replay_scenarios(broker.bootstrap, "outage", {"degradation": 40_000})
    return topics, total, uninterrupted(broker.bootstrap, topics, total, tmp_path_factory)


@pytest.mark.parametrize("down", ["server stopped", "embedded engine failing"])
def test_thirty_seconds_without_clickhouse_lose_nothing(broker, calm, down, start_clickhouse_front, tmp_path):
    topics, total, want = calm
    if down == "server stopped":
        front = start_clickhouse_front(tmp_path / "clickhouse")
        run = WorkerRun(comparison_env(broker.bootstrap, topics, tmp_path, CLICKHOUSE_URL=front.url), tmp_path)
    else:
        env = comparison_env(broker.bootstrap, topics, tmp_path, PYTHONPATH=str(REPO))
        run = WorkerRun(env, tmp_path, app_module="tests.outage_app")
    run.start()
    try:
        before = run.wait_for_messages(1, settle=0)
        if down == "server stopped":
            assert front.stop() == 0
        else:
            port = run.env["MONITOR_WEB_PORT"]
            urllib.request.urlopen(f"http://127.0.0.1:{port}/test/outage?seconds={OUTAGE_S}", timeout=5).read()
        started, rss_start = time.monotonic(), _rss_kb(run.process.pid)
        samples: list[tuple[float, int, int]] = []  # (seconds into the outage, messages parsed, RSS kB)
        while time.monotonic() - started < OUTAGE_S - 1:
            status = run.status()
            samples.append((time.monotonic() - started, status["counters"]["messages"], _rss_kb(run.process.pid)))
            time.sleep(1)
        if down == "server stopped":
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - started)))
            start_clickhouse_front(tmp_path / "clickhouse", port=front.port)  # the same data, the same URL
        run.wait_until_settled(total)
    finally:
        assert run.stop() == 0, run.log_tail()
    got = snapshot(run)

    # Backpressure: after a few seconds the worker stops parsing input, far short of the backlog.
    plateau = [m for t, m, _ in samples if t >= 5]
    assert plateau and max(plateau) == min(plateau), samples
    assert plateau[0] <= before["counters"]["messages"] + HELD_BATCHES * BATCH_MAX < total
    # Memory stays bounded while Kafka keeps the rest.
    assert max(r for *_, r in samples) - rss_start < 300_000, samples
    # One warning when it starts, one line when it ends.
    log = run.log_path.read_text(errors="replace")
    assert log.count("ClickHouse unavailable during") == 1, run.log_tail(200)
    assert log.count("ClickHouse is back after") == 1, run.log_tail(200)
    # Nothing lost, nothing counted twice.
    assert got == want
