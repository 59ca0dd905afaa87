"""ClickHouse unavailable for 30 s in the middle of a backlog: nothing lost, memory bounded.

Every call to the store fails for 30 s (the embedded engine cannot be stopped from outside,
so the worker runs with a test-only page that makes its store fail like a server that is
down). The worker must keep its rows and retry, stop taking input once its bounded buffer
is full (backpressure: Kafka keeps the rest), warn once when the outage starts and once
when it ends, and finish with exactly the figures of an uninterrupted run.
"""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest

from streams.monitor import BATCH_MAX, WRITE_DEPTH
from tests.figures_snapshot import snapshot
from tests.kafka_helpers import unique_topics
from tests.worker_harness import WorkerRun, worker_env

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
def replayed(broker):
    from producers.replay import replay
    from producers.scenarios import generate
    from streams.settings import load_settings

    topics = unique_topics("outage")
    settings = load_settings({**topics, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap})
    result = replay(enumerate(generate("degradation", rows=40_000).rows, start=1), settings)
    assert result.ok
    return topics, result.events


def _env(broker, topics, workdir):
    return worker_env(broker.bootstrap, topics, workdir, LABEL_GRACE_SECONDS=43_200, MONITOR_IDLE_SECONDS=2,
                      PYTHONPATH=str(REPO))


def test_thirty_seconds_without_clickhouse_lose_nothing(broker, replayed, tmp_path_factory):
    topics, total = replayed
    calm = WorkerRun(_env(broker, topics, tmp_path_factory.mktemp("calm")), tmp_path_factory.mktemp("calm-log"))
    calm.start().wait_until_settled(total)
    assert calm.stop() == 0
    want = snapshot(calm)

    workdir = tmp_path_factory.mktemp("outage")
    run = WorkerRun(_env(broker, topics, workdir), workdir, app_module="tests.outage_app").start()
    try:
        before = run.wait_for_messages(1, settle=0)
        port = run.env["MONITOR_WEB_PORT"]
        urllib.request.urlopen(f"http://127.0.0.1:{port}/test/outage?seconds={OUTAGE_S}", timeout=5).read()
        started, rss_start = time.monotonic(), _rss_kb(run.process.pid)
        samples: list[tuple[float, int, int]] = []  # (seconds into the outage, messages parsed, RSS kB)
        while time.monotonic() - started < OUTAGE_S - 1:
            status = run.status()
            samples.append((time.monotonic() - started, status["counters"]["messages"], _rss_kb(run.process.pid)))
            time.sleep(1)
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
