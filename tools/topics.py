"""Create and check the monitor's four topics.

Faust does not create source topics, and a producer that auto-creates one gets the
broker's default partition count. The two input topics must have the same count so
that both halves of a request (keyed by request_id) meet in one partition; this module
creates them that way and says exactly what is wrong when they are not.

`python -m tools.topics create|check [--bootstrap host:port]`: exit 0 when all is
well, 1 when a topic is missing or wrong, 2 when Kafka cannot be reached or a
setting is bad. Watermarks are never read (the local broker reports wrong ones).
"""

from __future__ import annotations

import argparse
import sys
import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from streams.kafka_admin import (
    ADMIN_TIMEOUT_S,
    KafkaUnreachable,
    TopicError,
    admin_client,
    partition_counts,
    partition_problems,
)
from streams.settings import Settings, SettingsError, load_settings


def topic_env(prefix: str) -> dict[str, str]:
    """Settings naming a set of four topics of their own, e.g. for a demo run or a test.

    >>> topic_env("demo-1")["TOPIC_GROUND_TRUTH"]
    'demo-1-ground-truth'
    """
    return {"TOPIC_PREDICTIONS": f"{prefix}-predictions", "TOPIC_GROUND_TRUTH": f"{prefix}-ground-truth",
            "TOPIC_ALERTS": f"{prefix}-alerts", "TOPIC_DLQ": f"{prefix}-dlq"}


def _all_topics(settings: Settings) -> list[str]:
    return [settings.topic_predictions, settings.topic_ground_truth, settings.topic_alerts, settings.topic_dlq]


def check_topics(settings: Settings, *, bootstrap: str | None = None,
                 timeout: float = ADMIN_TIMEOUT_S) -> list[str]:
    """Problems with the monitor's topics, one line each; empty when all is well.

    Raises KafkaUnreachable when no metadata arrives within `timeout` seconds.
    """
    bootstrap = bootstrap or settings.kafka_bootstrap_servers
    counts = partition_counts(admin_client(bootstrap, settings), bootstrap, _all_topics(settings), timeout)
    return partition_problems(counts, settings.input_topics, (settings.topic_alerts, settings.topic_dlq))


def _partitions_for(topic: str, settings: Settings, counts: dict[str, int | None]) -> int:
    """TOPIC_PARTITIONS, except that a missing input topic matches its existing partner."""
    if topic in settings.input_topics:
        partner = [t for t in settings.input_topics if t != topic][0]
        if counts.get(partner) is not None:
            return int(counts[partner])  # type: ignore[arg-type]
    return settings.topic_partitions


def create_topics(settings: Settings, *, bootstrap: str | None = None, replication_factor: int = 1,
                  timeout: float = ADMIN_TIMEOUT_S) -> list[str]:
    """Create whichever of the four topics are missing and return their names (idempotent).

    New topics get TOPIC_PARTITIONS partitions, except a missing input topic whose
    partner exists: it gets the partner's count, so the pair can always be joined.
    Raises TopicError when a creation fails or the topics still have problems after it.
    """
    bootstrap = bootstrap or settings.kafka_bootstrap_servers
    admin = admin_client(bootstrap, settings)
    counts = partition_counts(admin, bootstrap, _all_topics(settings), timeout)
    missing = [t for t, n in counts.items() if n is None]
    new = [NewTopic(t, num_partitions=_partitions_for(t, settings, counts),
                    replication_factor=replication_factor) for t in missing]
    created = _create(admin, new, timeout) if new else []
    _verify(settings, bootstrap, timeout)
    return created


def _create(admin: AdminClient, new: list[NewTopic], timeout: float) -> list[str]:
    """Create the topics; the names this call created (one created meanwhile by others is fine)."""
    futures = admin.create_topics(new, request_timeout=timeout, operation_timeout=timeout)
    created, failures = [], []
    for topic, future in futures.items():
        try:
            future.result(timeout=timeout + 1)
            created.append(topic)
        except KafkaException as err:
            error: KafkaError = err.args[0]
            if error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                failures.append(f"cannot create topic '{topic}': {error.str()}")
        except TimeoutError:
            failures.append(f"cannot create topic '{topic}': no answer within {timeout:g} s")
    if failures:
        raise TopicError("; ".join(failures), failures)
    return created


def _verify(settings: Settings, bootstrap: str, timeout: float) -> None:
    """Check after creating; metadata may take a moment to show new topics on a real cluster."""
    deadline = time.monotonic() + timeout
    while True:
        problems = check_topics(settings, bootstrap=bootstrap, timeout=timeout)
        if not problems:
            return
        if time.monotonic() >= deadline or not any("does not exist" in p for p in problems):
            raise TopicError("; ".join(problems), problems)
        time.sleep(0.2)


# --- command line ---

def _describe(settings: Settings, bootstrap: str, timeout: float) -> dict[str, int | None]:
    return partition_counts(admin_client(bootstrap, settings), bootstrap, _all_topics(settings), timeout)


def cmd_create(settings: Settings, bootstrap: str, timeout: float, replication_factor: int = 1) -> int:
    try:
        created = create_topics(settings, bootstrap=bootstrap, timeout=timeout,
                                replication_factor=replication_factor)
        counts = _describe(settings, bootstrap, timeout)
    except KafkaUnreachable as err:
        print(f"topics: {err}", file=sys.stderr)
        return 2
    except TopicError as err:
        for problem in err.problems:
            print(f"topics: {problem}", file=sys.stderr)
        return 1
    for topic, count in counts.items():
        verb = "created" if topic in created else "exists "
        print(f"{verb} {topic} ({count} partitions)")
    return 0


def cmd_check(settings: Settings, bootstrap: str, timeout: float) -> int:
    try:
        problems = check_topics(settings, bootstrap=bootstrap, timeout=timeout)
    except KafkaUnreachable as err:
        print(f"topics: {err}", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"topics: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"OK: {', '.join(_all_topics(settings))} on {bootstrap}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.topics",
                                     description="Create or check the monitor's topics.")
    parser.add_argument("command", choices=["create", "check"])
    parser.add_argument("--bootstrap", help="brokers (default: KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--timeout", type=float, default=ADMIN_TIMEOUT_S,
                        help="seconds to wait for Kafka (default: %(default)s)")
    parser.add_argument("--replication-factor", type=int, default=1,
                        help="replicas of each new topic (create only; default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as err:
        print(f"topics: {err}", file=sys.stderr)
        return 2
    bootstrap = args.bootstrap or settings.kafka_bootstrap_servers
    if args.command == "create":
        return cmd_create(settings, bootstrap, args.timeout, args.replication_factor)
    return cmd_check(settings, bootstrap, args.timeout)


if __name__ == "__main__":
    raise SystemExit(main())
