"""Shared fixtures: one real Tansu broker per test session, and fresh topics per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from streams.broker import Broker, start_broker, stop_broker
from streams.settings import Settings, load_settings
from streams.topics import create_topics
from tests.kafka_helpers import unique_topics


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
