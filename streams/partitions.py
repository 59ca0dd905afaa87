"""The input partitions a worker reads, and when each may stop holding the watermark back.

Windows close, outcomes are released to ADWIN and the accuracy looks, and finality comes,
all by event-time watermarks: the smallest, over the input partitions, of the largest event
time seen on each. This module keeps what those watermarks rest on: which partitions this
worker reads (Faust's assignment), how far it read each, when each last delivered, and what
the other workers of the app reported of theirs (the ``partition_progress`` table).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from sinks.clickhouse import ClickHouseStore
from streams import figures
from streams.progress import PARTITION_CLOCK, ForeignProgress, Source
from streams.settings import Settings
from streams.watermark import Watermark

END_OF_INPUT_S = 2.0  # no input at all for this long, every partition read to its end: the input ended
Clock = tuple[str, str]  # (model, model_version), or PARTITION_CLOCK for the partition's own


class InputPartitions:
    def __init__(self, settings: Settings, store: ClickHouseStore) -> None:
        self.s = settings
        self.store = store
        self.assigned: set[Source] = set()
        self.assigned_at: dict[Source, float] = {}
        self.last_offset: dict[Source, int] = {}
        self.last_seen: dict[Source, float] = {}  # monotonic time of each partition's last message
        self.last_input: float | None = None  # monotonic time the last batch was processed
        # Every partition of the input topics (set by the app from Kafka's metadata). Those this
        # worker does not read are read by others: their progress comes from the store.
        self.input_partitions: set[Source] = set()
        self.unrecovered: set[Source] = set()  # assigned, memory not yet rebuilt from the store
        self.partition_end: Callable[[Source], tuple[int | None, int | None]] = lambda source: (None, None)
        self._progress_written: dict[tuple[Source, Clock], tuple[int, bool]] = {}
        self._foreign: ForeignProgress | None = None  # what other workers reported, as of the last read

    @property
    def evaluates_alerts(self) -> bool:
        """One worker of an app decides alerts: the one reading partition 0 of the predictions
        topic (every worker's figures are the same; one voice avoids repeats)."""
        return not self.input_partitions or (self.s.topic_predictions, 0) in self.assigned

    @property
    def reads_everything(self) -> bool:
        return not (self.input_partitions - self.assigned)

    def take(self, partitions: Iterable[Source]) -> None:
        """A rebalance gave this worker these partitions: their memory must be rebuilt."""
        self.unrecovered |= {s for s in partitions if s[0] in self.s.input_topics and s not in self.assigned}

    def recovered(self, sources: Iterable[Source], now: float | None = None) -> None:
        """The memory of these partitions is back: only from now can their messages be processed,
        so their silence counts from now. Rebuilding can take seconds, and a partition whose
        committed offset merely looks like its end (a broker reporting a low high watermark)
        must not count as drained before it had a chance to deliver the rest."""
        now = time.monotonic() if now is None else now
        for source in sources:
            if source in self.assigned:
                self.assigned_at[source] = now

    def assign(self, partitions: Iterable[Source], revoked: Iterable[Source], clocks: list[Watermark]) -> None:
        """Partitions this worker reads: each holds the watermark back until it has spoken."""
        now = time.monotonic()
        revoked = set(revoked)
        self.unrecovered -= revoked
        for source in revoked:
            self.assigned.discard(source)
            for clock in clocks:
                clock.forget(source)
        self._progress_written = {k: v for k, v in self._progress_written.items() if k[0] not in revoked}
        for source in partitions:
            if source[0] in self.s.input_topics:
                self.assigned.add(source)
                self.assigned_at[source] = now
                for clock in clocks:
                    clock.register(source, now)

    def drained(self, source: Source) -> bool:
        """May this partition stop holding the watermark back?

        Only once it is caught up (everything up to its high watermark processed) *and* quiet:
        it delivered nothing while the other partitions went on delivering for
        MONITOR_IDLE_SECONDS, or no input came at all for END_OF_INPUT_S (every partition is
        read to its end and silent: the input ended or paused, and live messages that come
        after a pause are newer than those before it). A partition that merely
        caught up keeps holding the watermark at its latest event: its next message may be
        older than another partition's latest, and an outcome released before it arrives
        would make the event-time order (and so ADWIN's alerts) depend on timing. Time
        ClickHouse was down does not count (input was paused).
        """
        highwater, committed = self.partition_end(source)
        last = self.last_offset.get(source)
        if last is not None:
            caught_up = highwater is not None and last + 1 >= highwater
        else:
            caught_up = highwater is not None and (highwater == 0 or (committed is not None
                                                                     and committed >= highwater - 1))
        now, patience = time.monotonic(), self.s.idle_partition_seconds
        if self.store.outage_since is not None:
            return False
        spoke = max(self.last_seen.get(source, 0.0), self.assigned_at.get(source, 0.0), self.store.recovered_at)
        latest_input = self.last_input or 0.0
        if caught_up:
            return (latest_input - spoke >= patience
                    or now - max(spoke, latest_input) > min(patience, END_OF_INPUT_S))
        if last is not None:
            return False
        # Nothing delivered yet although the partition may hold messages: hold back, but not for ever
        # (a partition whose records were all deleted by retention never delivers anything).
        return now - max(spoke, latest_input) > patience or (highwater is not None and now - spoke > 10 * patience)

    def all_drained(self) -> bool:
        return bool(self.assigned) and all(self.drained(s) for s in self.assigned)

    def foreign_progress(self) -> ForeignProgress:
        """The progress other workers last reported of the partitions this worker does not read
        (one nobody reported holds the watermarks back)."""
        others = self.input_partitions - self.assigned
        if not others:
            return ForeignProgress()
        reported = self._foreign.reported if self._foreign is not None else {}
        return ForeignProgress(frozenset(others), reported)

    def progress_rows(self, clocks: list[tuple[Clock, Watermark]]) -> list[list[Any]]:
        """Rows reporting the partitions this worker reads, where they changed. Written by the
        refresh job after the facts they vouch for, so that another worker's watermark computed
        from them never runs ahead of what the store holds."""
        now = time.time()
        rows = []
        for source in sorted(self.assigned):
            drained = self.drained(source)
            for clock, watermark in clocks:
                if clock != PARTITION_CLOCK and source not in watermark.max_ts:
                    continue
                ts = watermark.max_ts.get(source, -1)
                if self._progress_written.get((source, clock)) != (ts, drained):
                    self._progress_written[(source, clock)] = (ts, drained)
                    rows.append([self.s.app_id, source[0], source[1], clock[0], clock[1], ts, int(drained), now])
        return rows

    def forget_progress_written(self) -> None:
        """Report every partition again (a refresh that wrote its rows failed)."""
        self._progress_written.clear()

    async def read_foreign_progress(self) -> None:
        """What the other workers of this app report of their partitions, for the next refresh."""
        if self.reads_everything:
            return
        reported = await self.store.query(
            "SELECT topic, partition, model, model_version, max_event_ms, drained "
            f"FROM `{self.store.database}`.partition_progress FINAL WHERE app_id = {figures.quote(self.s.app_id)}")
        self._foreign = ForeignProgress.from_rows(reported, self.input_partitions)
