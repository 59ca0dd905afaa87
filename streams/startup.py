"""Start-up checks of the worker: refuse to run, with one clear line, on a setup that cannot work.

Faust does not create source topics, and a request's two halves meet only when
both input topics have the same partition count.
"""

from __future__ import annotations

import sys

from confluent_kafka.admin import AdminClient

from streams.settings import Settings

METADATA_TIMEOUT_S = 10.0


def input_topic_problem(partitions: dict[str, int | None], settings: Settings) -> str | None:
    """The one thing wrong with the input topics (partition counts per topic, None = missing), if any.

    >>> from streams.settings import Settings
    >>> input_topic_problem({"predictions": 4, "ground-truth": 8}, Settings())
    "input topics 'predictions' (4 partitions) and 'ground-truth' (8 partitions) must have the same partition count"
    """
    for topic in settings.input_topics:
        if partitions.get(topic) is None:
            return (f"input topic '{topic}' does not exist on {settings.kafka_bootstrap_servers}: "
                    "create it with `python -m streams.topics create`")
    a, b = settings.input_topics
    if partitions[a] != partitions[b]:
        return (f"input topics '{a}' ({partitions[a]} partitions) and '{b}' ({partitions[b]} partitions) "
                "must have the same partition count")
    return None


def fetch_partition_counts(settings: Settings, topics: tuple[str, ...]) -> dict[str, int | None]:
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers, "socket.timeout.ms": 5000})
    metadata = admin.list_topics(timeout=METADATA_TIMEOUT_S)
    counts: dict[str, int | None] = {}
    for topic in topics:
        meta = metadata.topics.get(topic)
        counts[topic] = len(meta.partitions) if meta is not None and meta.error is None else None
    return counts


def check_input_topics(settings: Settings) -> None:
    """Exit with one line when Kafka is unreachable or the input topics cannot be joined."""
    try:
        counts = fetch_partition_counts(settings, settings.input_topics)
    except Exception as err:  # noqa: BLE001 - any failure here means the worker cannot start
        print(f"model-monitor: cannot reach Kafka at {settings.kafka_bootstrap_servers}: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    problem = input_topic_problem(counts, settings)
    if problem:
        print(f"model-monitor: {problem}", file=sys.stderr)
        raise SystemExit(1)
