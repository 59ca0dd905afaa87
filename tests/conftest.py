"""Shared fixtures: one real Tansu broker per test session, and fresh topics per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from streams.settings import Settings, load_settings
from tests.kafka_helpers import unique_topics
from tools.broker import Broker, start_broker, stop_broker
from tools.topics import create_topics


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A real Kafka-protocol broker on a free port; memory only, so it starts empty."""
    running = start_broker(None, data_dir=tmp_path_factory.mktemp("broker"), detached=False)
    try:
        yield running
    finally:
        stop_broker(running)


@pytest.fixture
def topic_settings(broker: Broker) -> Settings:
    """Settings naming four topics no other test uses, created on the session broker."""
    settings = load_settings({"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, **unique_topics()})
    create_topics(settings)
    return settings


@pytest.fixture(scope="session")
def demo_results(broker: Broker, tmp_path_factory: pytest.TempPathFactory):
    """The demo's scenarios (degradation, feature-drift) through the real broker and worker,
    stopped with SIGTERM: a finished embedded store for tests of views over the results
    (dashboard panels, cookbook queries, the HTML report). Query it with ``.query(sql)``."""
    from producers.replay import replay
    from producers.scenarios import generate
    from tests.worker_harness import WorkerRun, worker_env

    workdir = tmp_path_factory.mktemp("demo-results")
    env = worker_env(broker.bootstrap, unique_topics("demo-results"), workdir, LABEL_GRACE_SECONDS=21_600,
                     MONITOR_IDLE_SECONDS=2)
    settings = load_settings(env)
    create_topics(settings)
    total = 0
    for name in ("degradation", "feature-drift"):
        result = replay(enumerate(generate(name).rows, start=1), settings)
        assert result.ok and result.skipped == 0
        total += result.events
    run = WorkerRun(env, workdir).start()
    run.wait_until_settled(total)
    assert run.stop() == 0, run.log_tail()
    return run


# The ClickHouse HTTP front (sinks/http_front.py): several processes on one real engine.
from collections.abc import Callable  # noqa: E402 - appended with these fixtures
from pathlib import Path  # noqa: E402

from sinks.http_front import FrontProcess, start_front  # noqa: E402


@pytest.fixture
def start_clickhouse_front() -> Iterator[Callable[..., FrontProcess]]:
    """``start(path, port=0)`` runs ``python -m sinks.http_front`` on a store directory and
    returns once it accepts connections (``.url``, ``.port``, ``.stop()``). Stop it for an
    outage (connections are refused) and start it again on the same path and port. Every
    front started is stopped at teardown."""
    started: list[FrontProcess] = []

    def start(path: Path, port: int = 0) -> FrontProcess:
        front = start_front(path, port=port)
        started.append(front)
        return front

    yield start
    for front in started:
        front.stop()


@pytest.fixture
def clickhouse_front(start_clickhouse_front: Callable[..., FrontProcess], tmp_path: Path) -> FrontProcess:
    """A ClickHouse HTTP front over a fresh embedded store, on a free port of 127.0.0.1."""
    return start_clickhouse_front(tmp_path / "clickhouse")
