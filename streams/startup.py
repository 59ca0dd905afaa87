"""Start-up checks of the worker: refuse to run, with one clear line, on a setup that cannot work.

Faust does not create source topics, and a request's two halves meet only when
both input topics have the same partition count. Missing alert or DLQ topics are
not fatal (the producer would create them), only reported.
"""

from __future__ import annotations

import logging
import sys

from streams.kafka_admin import TopicError, admin_client, partition_counts, partition_problems
from streams.settings import Settings

log = logging.getLogger(__name__)


def input_topic_problem(counts: dict[str, int | None], settings: Settings) -> str | None:
    """The first thing wrong with the input topics, if any.

    >>> from streams.settings import Settings
    >>> input_topic_problem({"predictions": 4, "ground-truth": 8}, Settings())
    'predictions has 4 partitions but ground-truth has 8: both input topics need the same count so both halves of a request meet in one partition'
    """
    problems = partition_problems(counts, settings.input_topics, ())
    return problems[0] if problems else None


def check_input_topics(settings: Settings) -> int:
    """Exit with one line when Kafka is unreachable or the input topics cannot be joined;
    otherwise the partition count of the input topics."""
    bootstrap = settings.kafka_bootstrap_servers
    topics = [*settings.input_topics, settings.topic_alerts, settings.topic_dlq]
    try:
        counts = partition_counts(admin_client(bootstrap, settings), bootstrap, topics)
    except TopicError as err:
        print(f"model-monitor: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    problem = input_topic_problem(counts, settings)
    if problem:
        print(f"model-monitor: {problem}", file=sys.stderr)
        raise SystemExit(1)
    for topic in (settings.topic_alerts, settings.topic_dlq):
        if counts.get(topic) is None:
            log.warning("topic '%s' does not exist; run `python -m tools.topics create`", topic)
    return counts[settings.topic_predictions] or 0
