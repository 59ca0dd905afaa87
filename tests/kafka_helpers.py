"""Produce to and read back from a real broker in tests, without trusting watermarks.

The local Tansu broker reports wrong high watermarks, so "everything read" means
"as many messages as we expect, and nothing more arrives within a short grace".
Partitions are assigned directly: a consumer-group join would cost seconds.
"""

from __future__ import annotations

import logging
import time
import uuid

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from tools.topics import topic_env

EXTRA_POLL_S = 0.5

_QUIET = logging.getLogger("tests.kafka_helpers.librdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False

Headers = list[tuple[str, bytes]] | dict[str, bytes] | None


def produce(bootstrap: str, topic: str, items: list[tuple[bytes | None, bytes]], headers: Headers = None) -> int:
    """Send (key, value) pairs and wait until the broker acknowledged each; raise on any failure.

    Keys are partitioned with murmur2 like Java clients and Faust, so one key lands in the
    same partition number on every topic of the same partition count.
    """
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                         "partitioner": "murmur2_random", "logger": _QUIET})
    failures: list[str] = []
    delivered = 0

    def on_delivery(err, _msg) -> None:
        nonlocal delivered
        if err is not None:
            failures.append(str(err))
        else:
            delivered += 1

    for key, value in items:
        _produce_one(producer, topic, key, value, headers, on_delivery)
    remaining = producer.flush(30.0)
    if remaining or failures or delivered != len(items):
        raise RuntimeError(f"produce to {topic}: {delivered}/{len(items)} delivered, {remaining} pending, "
                           f"errors: {failures[:3]}")
    return delivered


def _produce_one(producer: Producer, topic: str, key: bytes | None, value: bytes, headers: Headers,
                 on_delivery) -> None:
    while True:
        try:
            producer.produce(topic, key=key, value=value, headers=headers, on_delivery=on_delivery)
            return
        except BufferError:  # local queue full: let deliveries drain
            producer.poll(0.1)


def consume_all(bootstrap: str, topic: str, expected: int, timeout: float = 30.0,
                group: str | None = None) -> list[Message]:
    """Every message of `topic` from the beginning: stop ~0.5 s after `expected` arrived, or at `timeout`.

    The extra polling after `expected` catches messages that should not be there.
    """
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group or f"test-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False, "logger": _QUIET})
    try:
        _assign_all(consumer, topic)
        return _poll_until(consumer, expected, timeout)
    finally:
        consumer.close()


def _assign_all(consumer: Consumer, topic: str) -> None:
    metadata = consumer.list_topics(topic, timeout=10)
    meta = metadata.topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        raise KafkaException(f"topic {topic!r} does not exist: {meta.error if meta else 'no metadata'}")
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])


def _poll_until(consumer: Consumer, expected: int, timeout: float) -> list[Message]:
    messages: list[Message] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(messages) >= expected:
            deadline = min(deadline, time.monotonic() + EXTRA_POLL_S)
        msg = consumer.poll(0.1)
        if msg is None:
            continue
        if msg.error() is not None:
            raise KafkaException(msg.error())
        messages.append(msg)
    return messages


def unique_topics(tag: str = "t") -> dict[str, str]:
    """Topic settings no other test uses."""
    return topic_env(f"{tag}-{uuid.uuid4().hex[:10]}")
