"""The facts stage: rows of the deduplicated facts, written in the background in input order.

A batch's predictions, labels and outcomes (and the alerts and stream checkpoints decided
with it) become rows of ReplacingMergeTree tables keyed by request_id, so a message read
twice lands on the same key. :class:`FactQueue` hands them to the ordered writer; while
it is busy, the facts of the next batches join the waiting write (few, large inserts),
and a batch's offsets are acknowledged only once its facts are stored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import orjson

from sinks.clickhouse import ClickHouseStore
from sinks.writer import OrderedWriter
from streams.join import Outcome
from streams.parsing import categorical_features_json
from streams.records import GroundTruth, Prediction
from streams.versions import seconds
from streams.windows import window_start_ms


@dataclass
class PendingFacts:
    """Facts of consecutive batches waiting for one background write.

    While the writer is busy (a refresh, a slow insert), the next batches' facts join
    the waiting ones instead of queueing behind them one by one: a light stream is
    processed batch by batch without waiting, and still makes few, large inserts."""

    outcomes: list[list[Any]] = field(default_factory=list)
    labels: list[list[Any]] = field(default_factory=list)
    predictions: list[list[Any]] = field(default_factory=list)
    alerts: list[list[Any]] = field(default_factory=list)
    references: list[list[Any]] = field(default_factory=list)
    checkpoints: list[list[Any]] = field(default_factory=list)  # stream_checkpoints, written last
    messages: int = 0
    on_written: list[Callable[[], None]] = field(default_factory=list)
    started: bool = False

    def absorb(self, other: PendingFacts) -> None:
        """Take another batch's facts into this write."""
        self.outcomes += other.outcomes
        self.labels += other.labels
        self.predictions += other.predictions
        self.alerts += other.alerts
        self.references += other.references
        self.checkpoints += other.checkpoints
        self.on_written += other.on_written
        self.messages += other.messages


def features_text(p: Prediction) -> orjson.Fragment:
    """The ``features`` column: the features' JSON text as a fragment of the row, which the
    insert stores as that text (no escaping into a JSON string, no decode)."""
    return orjson.Fragment(orjson.dumps(p.features))


def prediction_row(p: Prediction, partition: int, offset: int, now: float, window_seconds: int,
                   features: orjson.Fragment | None = None) -> list[Any]:
    """The predictions row without ``num_features``, which the engine derives from ``features``
    (sinks/schema.py). ``features``: :func:`features_text` of ``p`` when already made."""
    return [
        p.request_id, p.model, p.model_version, seconds(window_start_ms(p.ts_ms, window_seconds)),
        seconds(p.ts_ms), p.prediction, p.score, p.confidence, p.latency_ms,
        orjson.Fragment(categorical_features_json(p.features)), features if features is not None else features_text(p),
        partition, offset, now,
    ]


def label_row(g: GroundTruth, partition: int, offset: int, now: float) -> list[Any]:
    return [g.request_id, g.label, seconds(g.ts_ms), g.model, g.model_version, partition, offset, now]


def outcome_row(o: Outcome, partition: int, now: float, late: bool, behind: bool, window_seconds: int,
                features: orjson.Fragment | None = None) -> list[Any]:
    """``features``: :func:`features_text` of the outcome's prediction when already made."""
    p, g = o.prediction, o.label
    return [
        p.request_id, p.model, p.model_version, seconds(window_start_ms(p.ts_ms, window_seconds)),
        seconds(p.ts_ms), seconds(g.ts_ms), p.prediction, g.label, int(o.correct), p.score, p.confidence,
        p.latency_ms, features if features is not None else features_text(p), partition, now, int(late), int(behind),
    ]


class FactQueue:
    """Batches' facts on their way to the store, in input order."""

    def __init__(self, store: ClickHouseStore, writer: OrderedWriter, most_messages: int) -> None:
        self.store = store
        self.writer = writer
        self.most_messages = most_messages
        self.open: PendingFacts | None = None  # queued, not yet being written: later batches join it

    def close_open(self) -> None:
        """Facts of later batches go into a write of their own (after a job queued now)."""
        self.open = None

    async def queue(self, facts: PendingFacts) -> None:
        """Hand a batch's facts to the writer: joined to those still waiting if there is room
        (at most ``most_messages`` messages per write), else as a write of their own."""
        waiting = self.open
        if waiting is not None and not waiting.started and waiting.messages + facts.messages <= self.most_messages:
            waiting.absorb(facts)
            return
        self.open = facts
        await self.writer.submit(partial(self.write, facts))

    async def write(self, facts: PendingFacts) -> None:
        """Facts of one or more batches, in the background; their input is acknowledged once stored."""
        facts.started = True
        # Outcomes first, then the halves: a half's row marks its offset as done (see Recovery).
        await self.store.insert("outcomes", facts.outcomes)
        await self.store.insert("labels", facts.labels)
        await self.store.insert("predictions", facts.predictions)
        await self.store.insert("alerts", facts.alerts)
        await self.store.insert("references", facts.references)
        await self.store.insert("stream_checkpoints", facts.checkpoints)  # after what it vouches for
        for done in facts.on_written:
            done()
