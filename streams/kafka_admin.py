"""Topic metadata for the worker's start-up check: partition counts and what is wrong with them.

Faust does not create source topics, and a producer that auto-creates one gets the broker's
default partition count. The two input topics must have the same count so that both halves
of a request (keyed by request_id) meet in one partition. Creating the topics is a tool's
job (:mod:`tools.topics`); the worker only checks them, with these primitives. Watermarks are
never read (the local broker reports wrong ones).

>>> partition_problems({"p": 4, "g": 8, "a": 1, "d": None}, ("p", "g"), ("a", "d"))[0]
'p has 4 partitions but g has 8: both input topics need the same count so both halves of a request meet in one partition'
>>> partition_problems({"p": 4, "g": 8, "a": 1, "d": None}, ("p", "g"), ("a", "d"))[1]
"topic 'd' does not exist: run `python -m tools.topics create`"
"""

from __future__ import annotations

import logging

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from streams.kafka_config import confluent_config
from streams.settings import Settings

ADMIN_TIMEOUT_S = 10.0
CREATE_HINT = "run `python -m tools.topics create`"

# librdkafka would print every refused connection to stderr; the caller gets one clear error instead.
_QUIET = logging.getLogger("streams.kafka_admin.librdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


class TopicError(Exception):
    """The topics cannot be made usable; `problems` holds one line per problem."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class KafkaUnreachable(TopicError):
    """No metadata from the brokers within the timeout."""


def admin_client(bootstrap: str, settings: Settings | None = None) -> AdminClient:
    """An AdminClient that does not spam stderr while a broker is down (PLAINTEXT without settings)."""
    try:
        return AdminClient({**confluent_config(settings or Settings(), bootstrap=bootstrap), "logger": _QUIET})
    except KafkaException as err:
        raise KafkaUnreachable(f"cannot use Kafka at {bootstrap!r}: {err}") from None


def partition_counts(admin: AdminClient, bootstrap: str, topics: list[str],
                     timeout: float = ADMIN_TIMEOUT_S) -> dict[str, int | None]:
    """Partition count of each topic (None = missing), from one metadata request."""
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as err:
        raise KafkaUnreachable(f"cannot reach Kafka at {bootstrap} within {timeout:g} s: "
                               f"{err.args[0].str() if err.args else err}") from None
    counts: dict[str, int | None] = {}
    for topic in topics:
        meta = metadata.topics.get(topic)
        counts[topic] = None if meta is None or meta.error is not None else len(meta.partitions)
    return counts


def partition_problems(counts: dict[str, int | None], inputs: tuple[str, str],
                       outputs: tuple[str, ...]) -> list[str]:
    """One line per problem: missing topics, input topics with different partition counts."""
    problems = [f"topic '{t}' does not exist: {CREATE_HINT}" for t in inputs if counts.get(t) is None]
    a, b = inputs
    if not problems and counts[a] != counts[b]:
        problems.append(f"{a} has {counts[a]} partitions but {b} has {counts[b]}: both input topics need "
                        "the same count so both halves of a request meet in one partition")
    problems += [f"topic '{t}' does not exist: {CREATE_HINT}" for t in outputs if counts.get(t) is None]
    return problems
