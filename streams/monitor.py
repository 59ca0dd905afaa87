"""The coordinator: one batch of raw messages in, facts, figures and alerts out.

It wires the stages, each a module of its own (README, "How the worker is built"), and a
message goes down through them without coming back:

1. :mod:`streams.ingest` parses each message (bad ones to the DLQ, :mod:`streams.parsing`),
   moves the event-time clocks and joins prediction and label (:mod:`streams.join`); a joined
   outcome goes to its version's event-time stream (:mod:`streams.outcome_stream`).
2. :mod:`streams.release` advances the streams to the versions' watermarks, so that the
   alert-deciding stage (:mod:`streams.decisions`, rules in :mod:`streams.alert_rules`) turns
   ADWIN cuts and accuracy looks into alerts, sent at once.
3. :mod:`streams.facts` queues the batch's rows for the one ordered writer.
4. :mod:`streams.refresh`: at points of the input, :meth:`Monitor.refresh` plans which windows
   close or become final; its job, run by the writer after the facts before that point,
   recomputes the touched windows (:mod:`streams.window_figures`) and decides the drift of
   the windows that closed.

:mod:`streams.recovery` rebuilds the memory after a restart; :mod:`streams.partitions` keeps
the input partitions' progress; :mod:`streams.versions` the per-version state. Kafka and
ClickHouse stay outside: the monitor gets a store and an outbox, so the Faust wiring in
:mod:`streams.app` stays thin.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Protocol

from sinks.clickhouse import ClickHouseStore
from sinks.writer import OrderedWriter
from streams.alert_rules import Alert, AlertBook
from streams.decisions import AlertDecisions, alert_rows
from streams.facts import FactQueue, PendingFacts
from streams.ingest import Counters, Ingest
from streams.join import JoinState
from streams.outcome_stream import OutcomeStream
from streams.partitions import InputPartitions
from streams.progress import PARTITION_CLOCK, Source
from streams.records import RawMessage, Rejection
from streams.recovery import Recovery
from streams.reference import load_reference_files
from streams.refresh import (
    REFRESH_INTERVAL_S,
    REFRESH_SHARE,
    RefreshJob,
    RefreshPlan,
    RefreshSchedule,
    advance_windows,
)
from streams.release import OutcomeRelease
from streams.settings import Settings
from streams.versions import VersionRefresh, VersionRegistry, VersionState
from streams.watermark import Watermark
from streams.window_figures import WindowFigures

__all__ = ["BATCH_MAX", "REFRESH_INTERVAL_S", "REFRESH_SHARE", "WRITE_DEPTH", "Counters", "Monitor", "Outbox",
           "RawMessage"]

log = logging.getLogger(__name__)
WRITE_DEPTH = 2  # batches waiting for ClickHouse before consumption pauses
BATCH_MAX = 5000  # messages per batch handed to process_batch


class Outbox(Protocol):
    async def send_dlq(self, message: RawMessage, rejection: Rejection) -> None: ...
    async def send_alert(self, alert: Alert) -> None: ...


class Monitor:
    def __init__(self, settings: Settings, store: ClickHouseStore, outbox: Outbox,
                 *, clock: Any = time.time) -> None:
        self.s = settings
        self.store = store
        self.db = store.database
        self.outbox = outbox
        self.clock = clock
        self.join = JoinState(ttl_ms=settings.join_ttl_seconds * 1000)
        self.partitions = InputPartitions(settings, store)
        reference_files = load_reference_files(
            [settings.reference_path, *(c.reference_path for c in
                                        (settings.model_config.all_settings() if settings.model_config else []))],
            bins=settings.psi_bins)
        self.versions = VersionRegistry(settings, reference_files, lambda: self.partitions.assigned)
        self.decisions = AlertDecisions(settings)
        self.window_figures = WindowFigures(settings, store)
        self.counters = Counters()
        self.watermark_ms = 0
        self.event_time = Watermark()
        self.ingest = Ingest(settings, self.join, self.versions, self.counters, self.event_time, self.partitions)
        self.release = OutcomeRelease(settings, self.versions, self.partitions, self.decisions, store)
        self.refresh_job = RefreshJob(settings, store, self.partitions, self.window_figures, self.decisions,
                                      self.release, self._publish, clock)
        self.schedule = RefreshSchedule(BATCH_MAX)
        self.refreshed_messages = 0  # messages processed before the last rows written
        self.refreshed_watermark_ms = 0
        self.first_message_at: float | None = None  # wall clock, for throughput measurements
        self.last_message_at: float | None = None
        self.facts = FactQueue(store, OrderedWriter(depth=WRITE_DEPTH), BATCH_MAX)
        self._evaluation_adopted = True  # False when this worker just became the one that evaluates alerts
        self.started = False
        self.lock = asyncio.Lock()

    # The stages' state, as the app, recovery and the tests see it.
    @property
    def resume_after(self) -> dict[Source, int]:
        return self.ingest.resume_after

    @property
    def input_partitions(self) -> set[Source]:
        return self.partitions.input_partitions

    @input_partitions.setter
    def input_partitions(self, sources: set[Source]) -> None:
        self.partitions.input_partitions = sources

    @property
    def partition_end(self) -> Callable[[Source], tuple[int | None, int | None]]:
        return self.partitions.partition_end

    @partition_end.setter
    def partition_end(self, end: Callable[[Source], tuple[int | None, int | None]]) -> None:
        self.partitions.partition_end = end

    @property
    def assigned(self) -> set[Source]:
        return self.partitions.assigned

    @property
    def last_offset(self) -> dict[Source, int]:
        return self.partitions.last_offset

    def drained(self, source: Source) -> bool:
        return self.partitions.drained(source)

    @property
    def writer(self) -> OrderedWriter:
        """The one ordered background writer: facts, then refresh jobs, in input order."""
        return self.facts.writer

    @writer.setter
    def writer(self, writer: OrderedWriter) -> None:
        self.facts.writer = writer

    @property
    def book(self) -> AlertBook:
        return self.decisions.book

    @book.setter
    def book(self, book: AlertBook) -> None:
        self.decisions.book = book

    def version(self, model: str, version: str) -> VersionState:
        return self.versions.get_or_create(model, version)

    def _new_stream(self) -> OutcomeStream:
        return self.versions.new_stream()

    async def start(self) -> None:
        """Create the tables if missing and rebuild memory from what they hold."""
        await self.store.start()
        await Recovery(self).run()
        self.started = True

    @property
    def evaluates_alerts(self) -> bool:
        return self.partitions.evaluates_alerts

    def take_partitions(self, partitions: set[tuple[str, int]]) -> None:
        """A rebalance gave this worker these partitions: their memory is rebuilt from the
        store before the first of their messages is processed (see recover_partitions)."""
        self.partitions.take(partitions)
        self.assign(partitions)

    async def recover_partitions(self) -> None:
        """Rebuild the memory of newly assigned partitions.

        Done lazily, inside the monitor's own sequence of batches and refreshes, so no
        message of a partition can be processed before its offsets and pending halves are
        back, whatever order Faust runs its rebalance callbacks and fetches in. All at
        once: a label's partition and its prediction's must be back together, or a label
        read first would wait beside a prediction restored after it without joining."""
        if self.partitions.unrecovered:
            todo, self.partitions.unrecovered = self.partitions.unrecovered, set()
            await Recovery(self).partitions(todo)
            self.partitions.recovered(todo)

    async def close(self) -> None:
        """Write everything held: the last facts, figures and alerts."""
        await self.refresh()
        await self.writer.close()

    async def refresh_if_due(self) -> None:
        """Refresh when the schedule says so (:class:`streams.refresh.RefreshSchedule`)."""
        if self.schedule.due():
            await self.refresh(wait=False)

    def assign(self, partitions: set[Source], revoked: set[Source] = frozenset()) -> None:
        """Partitions this worker reads: each holds every watermark back until it has spoken."""
        evaluated = self.evaluates_alerts
        self.partitions.assign(partitions, revoked, [self.event_time, *(v.event_time for v in self.versions.values())])
        if self.evaluates_alerts and not evaluated:
            self._evaluation_adopted = False

    @property
    def releases_per_batch(self) -> bool:
        """The alert-deciding worker reads every partition: it releases its outcome streams after
        each batch. With other workers, their outcomes come from the store, at refreshes."""
        return self.evaluates_alerts and self.partitions.reads_everything

    # -- a batch: ingest, release, facts ---------------------------------------------
    async def process_batch(self, batch: Sequence[RawMessage],
                            on_written: Callable[[], None] | None = None) -> None:
        """Parse and join one batch (:mod:`streams.ingest`), release the outcome streams
        (:mod:`streams.release`), send the DLQ messages and alerts, and hand the facts to the
        background writer.

        ADWIN alerts are sent at once, before the batch's facts are written: an alert's id
        is deterministic, so if the worker dies before the facts are stored, the batch read
        again raises and sends the same alert again, never another one. ``on_written`` runs
        once the batch's facts (and the rows of its alerts) are in ClickHouse: only then may
        its offsets be committed. Waits while the writer holds WRITE_DEPTH jobs
        (backpressure during a ClickHouse outage).
        """
        started = time.monotonic()
        if self.first_message_at is None:
            self.first_message_at = time.time()
        await self.recover_partitions()
        await self._adopt_evaluation()
        now_ms = int(self.clock() * 1000)
        ingested = await self.ingest.run(batch, started, now_ms, streams=self.evaluates_alerts)
        for message, rejection in ingested.rejected:
            self.counters.rejected += 1
            log.warning("DLQ %s[%d]@%d: %s", message.topic, message.partition, message.offset, rejection)
            await self.outbox.send_dlq(message, rejection)
        facts = ingested.facts
        if on_written:
            facts.on_written.append(on_written)
        if self.releases_per_batch:
            await self._announce(self.release.release(facts, self.release.watermarks(), now_ms))
        await self.facts.queue(facts)
        self.last_message_at = time.time()
        self.partitions.last_input = time.monotonic()
        self.schedule.batch_done(len(batch), time.monotonic() - started)
        await self.refresh_if_due()

    # -- figures ----------------------------------------------------------------
    async def refresh(self, wait: bool = True) -> None:
        """Plan a refresh at this point of the input and hand it to the writer (:mod:`streams.refresh`).

        Decided here, in memory: the watermarks, the windows that close or become final, the
        windows touched since the last refresh. Computed by the fact writer after the facts of
        every batch processed before this point and before those of any batch after it: the
        figures are exactly those of the input up to the point, while the next batches are
        already being joined and their ADWIN alerts sent. One refresh at a time; ``wait`` for
        its rows.
        """
        if self.schedule.queued:
            if not wait:
                return
            await self.writer.drain()
        await self.recover_partitions()
        await self._adopt_evaluation()
        evaluates = self.evaluates_alerts
        foreign = self.partitions.foreign_progress()
        self.watermark_ms = max(self.watermark_ms, self.event_time.value(self.drained, foreign.clock()))
        self._expire()
        versions = []
        for state in list(self.versions.values()):
            clock = foreign.clock((state.model, state.version))
            state.watermark_ms = max(state.watermark_ms, state.event_time.value(self.drained, clock))
            newly_closed = advance_windows(state, self.s.window_seconds, self.s.label_grace_seconds)
            touched, state.dirty = frozenset(state.dirty), set()
            versions.append(VersionRefresh(state, touched, newly_closed, state.watermark_ms,
                                           state.binary, state.rolling_accuracy()))
        if self.releases_per_batch:  # the watermarks may have moved since the last batch
            released = PendingFacts()
            await self._announce(self.release.release(released, [(v.state, v.watermark_ms) for v in versions],
                                                      int(self.clock() * 1000)))
            if released.alerts or released.checkpoints or released.references:
                await self.facts.queue(released)
        clocks = [(PARTITION_CLOCK, self.event_time), *(((v.model, v.version), v.event_time)
                                                          for v in self.versions.values())]
        plan = RefreshPlan(versions, self.partitions.progress_rows(clocks), evaluates, self.counters.messages,
                           self.watermark_ms, releases_from_store=evaluates and not self.releases_per_batch)
        self.facts.close_open()  # facts of later batches are written after this refresh
        self.schedule.queued = True
        await self.writer.submit(partial(self._refresh_job, plan))
        if wait:
            await self.writer.drain()

    def _expire(self) -> None:
        """Pending halves the watermark has left behind by more than JOIN_TTL_SECONDS."""
        expired_p, expired_g = self.join.expire(self.watermark_ms)
        self.counters.expired_predictions += len(expired_p)
        self.counters.unmatched_labels += len(expired_g)
        if expired_g:
            log.info("%d labels expired without a prediction (JOIN_TTL_SECONDS=%d)", len(expired_g),
                     self.s.join_ttl_seconds)

    async def _refresh_job(self, plan: RefreshPlan) -> None:
        started = time.monotonic()
        try:
            await self.refresh_job.run(plan)
            self.refreshed_watermark_ms = plan.watermark_ms
            self.refreshed_messages = plan.messages
        finally:
            self.schedule.job_ended(started)

    async def _adopt_evaluation(self) -> None:
        """This worker just became the one deciding alerts: continue where the previous one stopped."""
        if self.evaluates_alerts and not self._evaluation_adopted:
            await self.writer.drain()  # this worker's own facts and alerts stored first
            await Recovery(self).evaluations()
            self._evaluation_adopted = True

    # -- alerts out -------------------------------------------------------------
    async def _publish(self, alerts_out: list[Alert]) -> None:
        """Store the alerts, then send them."""
        await self.store.insert("alerts", alert_rows(alerts_out))
        await self._announce(alerts_out)

    async def _announce(self, alerts_out: list[Alert]) -> None:
        """Log and send alerts (to the alerts topic)."""
        for a in alerts_out:
            self.counters.alerts += 1
            log.warning("ALERT %s %s %s %s/%s: %s", a.status, a.severity, a.type, a.model, a.model_version,
                        a.message)
            await self.outbox.send_alert(a)
