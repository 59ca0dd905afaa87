"""The ingest stage: one batch of raw messages in, its facts and its rejections out.

Each message is parsed (:mod:`streams.parsing`; a bad one is returned with its reason for
the DLQ), moves the event-time clocks, and is joined (:mod:`streams.join`). A prediction
registers its window with its model version; a joined outcome updates the version's
classes and rolling accuracy and goes to the version's event-time outcome stream
(:mod:`streams.outcome_stream`), or, if the stream has already been released past it,
is counted as behind the watermark. Nothing here is written or sent: the facts go back
to the coordinator, which releases the streams and queues the facts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from streams.facts import PendingFacts, features_text, label_row, outcome_row, prediction_row
from streams.join import DUPLICATE, JoinState, Outcome
from streams.outcome_stream import TimedOutcome
from streams.parsing import FUTURE_SKEW_MS, parse_ground_truth, parse_prediction
from streams.partitions import InputPartitions
from streams.progress import Source
from streams.records import Prediction, RawMessage, Rejection
from streams.settings import Settings
from streams.versions import VersionRegistry, VersionState
from streams.watermark import Watermark
from streams.windows import is_final, window_start_ms

YIELD_EVERY = 500  # messages parsed between two chances for the event loop to run other tasks


@dataclass
class Counters:
    """What the monitor has seen; logged and exposed for operators."""

    messages: int = 0
    predictions: int = 0
    labels: int = 0
    outcomes: int = 0
    duplicates: int = 0
    rejected: int = 0
    replay_skipped: int = 0
    expired_predictions: int = 0
    unmatched_labels: int = 0
    alerts: int = 0
    late_outcomes: int = 0  # joined behind the released event-time watermark: not fed to ADWIN


@dataclass
class IngestedBatch:
    """A batch after parsing and joining: the facts to write and the messages for the DLQ."""

    facts: PendingFacts
    rejected: list[tuple[RawMessage, Rejection]] = field(default_factory=list)


class Ingest:
    """Parse and join, message by message, into the shared join state and version registry."""

    def __init__(self, settings: Settings, join: JoinState, versions: VersionRegistry, counters: Counters,
                 event_time: Watermark, partitions: InputPartitions) -> None:
        self.s = settings
        self.join = join
        self.versions = versions
        self.counters = counters
        self.event_time = event_time
        self.partitions = partitions
        # Offsets already processed before a restart, per partition: replayed messages up to them are skipped.
        self.resume_after: dict[Source, int] = {}
        self.per_model_labels = settings.model_config is not None  # positive labels per model version

    def _positive_label(self, model: str, model_version: str) -> str:
        """The version's own POSITIVE_LABEL (MONITOR_CONFIG), else the default."""
        return self.versions.get_or_create(model, model_version).config.positive_label

    async def run(self, batch: Sequence[RawMessage], started: float, now_ms: int, streams: bool) -> IngestedBatch:
        """Parse and join ``batch`` (read at monotonic ``started``, epoch ``now_ms``); with ``streams``,
        joined outcomes go to the outcome streams."""
        s, partitions, counters = self.s, self.partitions, self.counters
        prediction_rows: list[list[Any]] = []
        label_rows: list[list[Any]] = []
        outcome_rows: list[list[Any]] = []
        rejected: list[tuple[RawMessage, Rejection]] = []
        # The features text of this batch's predictions by request_id, for their outcomes in this
        # batch: the pending prediction of a request_id is the one last added (a second is a duplicate).
        texts: dict[str, Any] = {}
        wall = time.time()
        max_ts = now_ms + FUTURE_SKEW_MS
        label_of = self._positive_label if self.per_model_labels else s.positive_label
        for i, message in enumerate(batch):
            if i % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)  # let Faust go on fetching and buffering meanwhile
            counters.messages += 1
            source = (message.topic, message.partition)
            partitions.last_offset[source] = message.offset
            partitions.last_seen[source] = started
            if self.resume_after.get(source, -1) >= message.offset:
                counters.replay_skipped += 1
                continue
            value = message.value if message.value is not None else b""
            if message.topic == s.topic_predictions:
                event = parse_prediction(value, key=message.key, positive_label=label_of, max_ts_ms=max_ts)
            else:
                event = parse_ground_truth(value, key=message.key, max_ts_ms=max_ts)
            if isinstance(event, Rejection):
                rejected.append((message, event))
                continue
            now = time.monotonic()
            self.event_time.observe(source, event.ts_ms, now)
            if isinstance(event, Prediction):
                result = self.join.add_prediction(event)
                if result is DUPLICATE:
                    counters.duplicates += 1
                    continue
                counters.predictions += 1
                text = texts[event.request_id] = features_text(event)
                prediction_rows.append(prediction_row(event, message.partition, message.offset, wall,
                                                      s.window_seconds, text))
                state = self.versions.get_or_create(event.model, event.model_version)
                state.event_time.observe(source, event.ts_ms, now)
                state.classes.add(event.prediction)
                window = window_start_ms(event.ts_ms, s.window_seconds)
                state.windows.add(window)
                state.dirty.add(window)
            else:
                result = self.join.add_label(event)
                if result is DUPLICATE:
                    counters.duplicates += 1
                    continue
                counters.labels += 1
                label_rows.append(label_row(event, message.partition, message.offset, wall))
            if isinstance(result, Outcome):
                # Partitions align by key: the label came from the same partition of the other topic.
                self.versions.get_or_create(result.prediction.model, result.prediction.model_version).event_time.observe(
                    (s.topic_ground_truth, message.partition), result.label.ts_ms, now)
                state = self._learn(result)
                timed = self._timed(result)
                behind = streams and not state.stream.add(timed)
                if behind:
                    counters.late_outcomes += 1
                outcome_rows.append(outcome_row(result, message.partition, wall, self._is_late(timed), behind,
                                                s.window_seconds, texts.pop(result.prediction.request_id, None)))
        facts = PendingFacts(outcome_rows, label_rows, prediction_rows, messages=len(batch))
        return IngestedBatch(facts, rejected)

    def _is_late(self, outcome: TimedOutcome) -> bool:
        """Joined after its window became final: it still counts, and the window's late_labels says so.

        Decided in event time, as the outcome stream decides it (the join time past the window's
        end + LABEL_GRACE_SECONDS), not by whether this worker had marked the window final yet:
        that depends on when refreshes ran, so the flag would differ between runs of one log."""
        return is_final(outcome.window_ms, outcome.join_ms, self.s.window_seconds, self.s.label_grace_seconds)

    def _learn(self, outcome: Outcome) -> VersionState:
        """Classes, touched window and rolling accuracy (in join order) of a joined outcome."""
        p = outcome.prediction
        self.counters.outcomes += 1
        state = self.versions.get_or_create(p.model, p.model_version)
        state.classes.add(outcome.label.label)
        state.dirty.add(window_start_ms(p.ts_ms, self.s.window_seconds))
        state.rolling.update(outcome.label.label, p.prediction)
        return state

    def _timed(self, outcome: Outcome) -> TimedOutcome:
        p = outcome.prediction
        return TimedOutcome(max(p.ts_ms, outcome.label.ts_ms), p.request_id,
                            window_start_ms(p.ts_ms, self.s.window_seconds), outcome.correct)
