"""The release stage: each model version's outcome stream advanced to its watermark.

Released outcomes reach the alert-deciding stage (:mod:`streams.decisions`) in event
time: ADWIN cuts and accuracy looks become alerts, a baseline found on the way becomes a
``references`` row, and each stream that moved leaves a ``stream_checkpoints`` row so that
a restart knows which stored outcomes it had already released. With several workers, the
alert-deciding one first adds the outcomes the others joined, read from the store up to the
watermark their progress rows vouch for (:meth:`OutcomeRelease.from_store`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable

from sinks.clickhouse import ClickHouseStore
from streams.alert_rules import Alert
from streams.decisions import AlertDecisions, alert_rows
from streams.facts import PendingFacts
from streams.outcome_stream import TimedOutcome
from streams.partitions import InputPartitions
from streams.settings import Settings
from streams.versions import VersionRegistry, VersionState
from streams.window_figures import WindowFigures

Watermarks = list[tuple[VersionState, int]]


class OutcomeRelease:
    def __init__(self, settings: Settings, versions: VersionRegistry, partitions: InputPartitions,
                 decisions: AlertDecisions, store: ClickHouseStore) -> None:
        self.s = settings
        self.versions = versions
        self.partitions = partitions
        self.decisions = decisions
        self.store = store

    def watermarks(self) -> Watermarks:
        """Each version's watermark now: its clocks over this worker's partitions and the others' reports."""
        foreign = self.partitions.foreign_progress()
        drained = self.partitions.drained
        return [(state, max(state.watermark_ms, state.event_time.value(
            drained, foreign.clock((state.model, state.version))))) for state in self.versions.values()]

    def release(self, facts: PendingFacts, watermarks: Iterable[tuple[VersionState, int]],
                now_ms: int) -> list[Alert]:
        """Advance each version's outcome stream to its watermark. The alerts it decides (returned),
        a new baseline and the stream checkpoints go with ``facts`` (checkpoints written last)."""
        decided: list[Alert] = []
        for state, watermark in watermarks:
            released_before = state.stream.released_ms
            for event in state.stream.advance(watermark):
                alerts, baseline_set = self.decisions.on_stream_event(state, event, now_ms)
                decided += alerts
                if baseline_set:
                    facts.references.append(WindowFigures.reference_row(state))
            if state.stream.released_ms != released_before:
                facts.checkpoints.append([self.s.app_id, state.model, state.version, state.stream.released_ms,
                                          time.time()])
        facts.alerts += alert_rows(decided)
        return decided

    async def from_store(self, watermarks: list[tuple[VersionState, int]], watermark_ms: int, now_ms: int,
                         publish: Callable[[list[Alert]], Awaitable[None]]) -> None:
        """Several workers: the outcomes the others joined (stored before they reported the progress
        these watermarks rest on) join this worker's streams, which are released to them; the
        references, the alerts (through ``publish``) and then the checkpoints are written."""
        foreign = sorted({p for _, p in self.partitions.input_partitions - self.partitions.assigned})
        streams = {(state.model, state.version): state.stream for state, _ in watermarks}
        if foreign and streams:
            since = min(s.released_ms for s in streams.values())
            rows = await self.store.query(
                "SELECT model, model_version, greatest(toUnixTimestamp64Milli(predicted_at), "
                "toUnixTimestamp64Milli(labeled_at)) AS j, request_id, toUnixTimestamp64Milli(window_start), correct "
                f"FROM `{self.store.database}`.outcomes FINAL WHERE kafka_partition IN "
                f"({', '.join(map(str, foreign))}) AND behind_watermark = 0 AND j >= {since} AND j < {watermark_ms + 1}")
            for model, version, j, rid, w, correct in rows:
                stream = streams.get((model, version))
                if stream is not None:
                    stream.add(TimedOutcome(int(j), rid, int(w), bool(correct)))
        facts = PendingFacts()
        decided = self.release(facts, watermarks, now_ms)
        await self.store.insert("references", facts.references)
        await publish(decided)
        await self.store.insert("stream_checkpoints", facts.checkpoints)
