"""The coordinator: one batch of raw messages in, facts, figures and alerts out.

A batch goes down through the stages, each a module of its own (README, "How the worker
is built"): ``process_batch`` parses each message (bad ones to the DLQ,
:mod:`streams.parsing`), joins prediction and label (:mod:`streams.join`), hands each
outcome to its version's event-time stream (:mod:`streams.outcome_stream`), releases the
streams up to the watermarks (:mod:`streams.partitions`) so that the alert-deciding stage
(:mod:`streams.decisions`) turns ADWIN cuts and accuracy looks into alerts, and queues the
facts (:mod:`streams.facts`). ``refresh`` plans, at one point of the input, which windows
close or become final; its job, run by the fact writer after the facts before that point,
recomputes the touched windows (:mod:`streams.window_figures`) and decides the drift of the
windows that closed. :mod:`streams.recovery` rebuilds all of it after a restart.

Kafka and ClickHouse stay outside: the monitor gets a store and an outbox, so
the Faust wiring in :mod:`streams.app` stays thin.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from river import metrics, utils

from sinks.clickhouse import ClickHouseStore
from sinks.writer import OrderedWriter
from streams.alert_rules import Alert, AlertBook
from streams.decisions import AlertDecisions, alert_rows
from streams.facts import FactQueue, PendingFacts, label_row, outcome_row, prediction_row
from streams.join import DUPLICATE, JoinState, Outcome
from streams.outcome_stream import (
    OutcomeStream,
    TimedOutcome,
)
from streams.parsing import FUTURE_SKEW_MS, parse_ground_truth, parse_prediction
from streams.partitions import InputPartitions
from streams.progress import PARTITION_CLOCK, Source
from streams.records import Prediction, RawMessage, Rejection
from streams.recovery import Recovery
from streams.reference import ReferenceFile, load_reference_file
from streams.settings import Settings
from streams.versions import VersionRefresh, VersionState
from streams.watermark import Watermark
from streams.window_figures import WindowFigures
from streams.windows import is_closed, is_final, window_start_ms

log = logging.getLogger(__name__)
REFRESH_INTERVAL_S = 1.0
REFRESH_SHARE = 0.1  # of the time, at most, spent refreshing figures while the worker is loaded
LOADED = 0.5  # share of the time spent processing batches from which the worker counts as loaded
YIELD_EVERY = 500  # messages parsed between two chances for the event loop to run other tasks
WRITE_DEPTH = 2  # batches waiting for ClickHouse before consumption pauses
BATCH_MAX = 5000  # messages per batch handed to process_batch


class Outbox(Protocol):
    async def send_dlq(self, message: RawMessage, rejection: Rejection) -> None: ...
    async def send_alert(self, alert: Alert) -> None: ...


@dataclass(frozen=True)
class RefreshPlan:
    versions: list[VersionRefresh]
    progress_rows: list[list[Any]]
    evaluates_alerts: bool
    messages: int  # messages processed at that point
    watermark_ms: int
    releases_from_store: bool = False  # other workers read partitions: their outcomes come from the store


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


class Monitor:
    def __init__(self, settings: Settings, store: ClickHouseStore, outbox: Outbox,
                 *, clock: Any = time.time) -> None:
        self.s = settings
        self.store = store
        self.db = store.database
        self.outbox = outbox
        self.clock = clock
        self.join = JoinState(ttl_ms=settings.join_ttl_seconds * 1000)
        self.versions: dict[tuple[str, str], VersionState] = {}
        self.decisions = AlertDecisions(settings)
        self.window_figures = WindowFigures(settings, store)
        self.counters = Counters()
        self.watermark_ms = 0
        self.event_time = Watermark()
        self.partitions = InputPartitions(settings, store)
        self.refreshed_messages = 0  # messages processed before the last rows written
        self.refreshed_watermark_ms = 0
        self.first_message_at: float | None = None  # wall clock, for throughput measurements
        self.last_message_at: float | None = None
        self._processing_s = 0.0  # spent in process_batch since the last refresh
        self._last_batch_size = 0
        self.resume_after: dict[tuple[str, int], int] = {}
        self.reference_file: ReferenceFile | None = (
            load_reference_file(settings.reference_path, bins=settings.psi_bins) if settings.reference_path else None
        )
        self._last_refresh = 0.0
        self._refresh_cost = 0.0
        self.facts = FactQueue(store, OrderedWriter(depth=WRITE_DEPTH), BATCH_MAX)
        self._refresh_queued = False
        self._evaluation_adopted = True  # False when this worker just became the one that evaluates alerts
        self.started = False
        self.lock = asyncio.Lock()

    # The partitions' state, as the app and the tests see it.
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

    async def close(self) -> None:
        """Write everything held: the last facts, figures and alerts."""
        await self.refresh()
        await self.writer.close()

    async def refresh_if_due(self) -> None:
        """Refresh REFRESH_INTERVAL_S after the last one ended; but while the worker is loaded
        (a backlog: the last batch was full; or traffic near its capacity: processing batches
        LOADED of the time or more) spend at most REFRESH_SHARE of the time on refreshes: input
        is read faster, joins and ADWIN alerts keep up, and rows catch up when the load falls."""
        if self._refresh_queued:
            return
        elapsed = time.monotonic() - self._last_refresh
        loaded = self._last_batch_size >= BATCH_MAX or self._processing_s >= LOADED * elapsed
        if elapsed >= REFRESH_INTERVAL_S and (not loaded or elapsed >= self._refresh_cost / REFRESH_SHARE):
            await self.refresh(wait=False)

    def assign(self, partitions: set[Source], revoked: set[Source] = frozenset()) -> None:
        """Partitions this worker reads: each holds every watermark back until it has spoken."""
        evaluated = self.evaluates_alerts
        self.partitions.assign(partitions, revoked, [self.event_time, *(v.event_time for v in self.versions.values())])
        if self.evaluates_alerts and not evaluated:
            self._evaluation_adopted = False

    # -- per-version state ---------------------------------------------------
    def _new_stream(self) -> OutcomeStream:
        return OutcomeStream(self.s.adwin_delta, self.s.window_seconds, self.s.label_grace_seconds,
                             self.s.min_labeled)

    @property
    def releases_per_batch(self) -> bool:
        """The alert-deciding worker reads every partition: it releases its outcome streams after
        each batch. With other workers, their outcomes come from the store, at refreshes."""
        return self.evaluates_alerts and self.partitions.reads_everything

    def version(self, model: str, version: str) -> VersionState:
        key = (model, version)
        state = self.versions.get(key)
        if state is None:
            state = VersionState(
                model, version,
                stream=self._new_stream(),
                rolling=utils.Rolling(metrics.Accuracy(), window_size=self.s.rolling_size),
                event_time=Watermark(),
            )
            now = time.monotonic()
            for source in self.assigned:
                state.event_time.register(source, now)
            if self.reference_file is not None:
                ref = self.reference_file.for_version(model, version)
                if ref is not None:
                    state.reference = ref
                    state.baseline_accuracy = ref.baseline_accuracy
            self.versions[key] = state
        return state

    # -- ingest ----------------------------------------------------------------
    async def process_batch(self, batch: Sequence[RawMessage],
                            on_written: Callable[[], None] | None = None) -> None:
        """Parse and join one batch and hand its facts to the background writer.

        ADWIN alerts are sent at once, before the batch's facts are written: an alert's id
        is deterministic, so if the worker dies before the facts are stored, the batch read
        again raises and sends the same alert again, never another one. ``on_written`` runs
        once the batch's facts (and the rows of its alerts) are in ClickHouse: only then may
        its offsets be committed. Waits while the writer holds WRITE_DEPTH jobs
        (backpressure during a ClickHouse outage).
        """
        started = time.monotonic()
        partitions = self.partitions
        if self.first_message_at is None:
            self.first_message_at = time.time()
        await self.recover_partitions()
        await self._adopt_evaluation()
        streams = self.evaluates_alerts
        prediction_rows: list[list[Any]] = []
        label_rows: list[list[Any]] = []
        outcome_rows: list[list[Any]] = []
        rejected: list[tuple[RawMessage, Rejection]] = []
        wall = time.time()
        now_ms = int(self.clock() * 1000)
        max_ts = now_ms + FUTURE_SKEW_MS
        for i, message in enumerate(batch):
            if i % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)  # let Faust go on fetching and buffering meanwhile
            self.counters.messages += 1
            source = (message.topic, message.partition)
            partitions.last_offset[source] = message.offset
            partitions.last_seen[source] = started
            if self.resume_after.get(source, -1) >= message.offset:
                self.counters.replay_skipped += 1
                continue
            value = message.value if message.value is not None else b""
            if message.topic == self.s.topic_predictions:
                event = parse_prediction(value, key=message.key, positive_label=self.s.positive_label, max_ts_ms=max_ts)
            else:
                event = parse_ground_truth(value, key=message.key, max_ts_ms=max_ts)
            if isinstance(event, Rejection):
                rejected.append((message, event))
                continue
            now = time.monotonic()
            self.event_time.observe((message.topic, message.partition), event.ts_ms, now)
            if isinstance(event, Prediction):
                result = self.join.add_prediction(event)
                if result is DUPLICATE:
                    self.counters.duplicates += 1
                    continue
                self.counters.predictions += 1
                prediction_rows.append(prediction_row(event, message.partition, message.offset, wall, self.s.window_seconds))
                state = self.version(event.model, event.model_version)
                state.event_time.observe((message.topic, message.partition), event.ts_ms, now)
                state.classes.add(event.prediction)
                window = window_start_ms(event.ts_ms, self.s.window_seconds)
                state.windows.add(window)
                state.dirty.add(window)
            else:
                result = self.join.add_label(event)
                if result is DUPLICATE:
                    self.counters.duplicates += 1
                    continue
                self.counters.labels += 1
                label_rows.append(label_row(event, message.partition, message.offset, wall))
            if isinstance(result, Outcome):
                # Partitions align by key: the label came from the same partition of the other topic.
                self.version(result.prediction.model, result.prediction.model_version).event_time.observe(
                    (self.s.topic_ground_truth, message.partition), result.label.ts_ms, now)
                state = self._learn(result)
                behind = streams and not state.stream.add(self._timed(result))
                if behind:
                    self.counters.late_outcomes += 1
                outcome_rows.append(outcome_row(result, message.partition, wall, self._is_late(result), behind,
                                                self.s.window_seconds))
        for message, rejection in rejected:
            self.counters.rejected += 1
            log.warning("DLQ %s[%d]@%d: %s", message.topic, message.partition, message.offset, rejection)
            await self.outbox.send_dlq(message, rejection)
        facts = PendingFacts(outcome_rows, label_rows, prediction_rows, messages=len(batch),
                             on_written=[on_written] if on_written else [])
        if self.releases_per_batch:
            # Sent at once, before the facts are written: an alert's id is deterministic, so a batch
            # read again after a crash sends the same alert again, never another one.
            await self._announce(self._release(facts, self._stream_watermarks(), now_ms))
        await self.facts.queue(facts)
        self.last_message_at = time.time()
        partitions.last_input = time.monotonic()
        self._processing_s += time.monotonic() - started
        self._last_batch_size = len(batch)
        await self.refresh_if_due()

    def _is_late(self, outcome: Outcome) -> bool:
        """Joined after its window became final: it still counts, and the window's late_labels says so."""
        p = outcome.prediction
        state = self.versions.get((p.model, p.model_version))
        return state is not None and window_start_ms(p.ts_ms, self.s.window_seconds) in state.final

    def _learn(self, outcome: Outcome) -> VersionState:
        """Classes, touched window and rolling accuracy (in join order) of a joined outcome."""
        p = outcome.prediction
        self.counters.outcomes += 1
        state = self.version(p.model, p.model_version)
        state.classes.add(outcome.label.label)
        state.dirty.add(window_start_ms(p.ts_ms, self.s.window_seconds))
        state.rolling.update(outcome.label.label, p.prediction)
        return state

    def _timed(self, outcome: Outcome) -> TimedOutcome:
        p = outcome.prediction
        return TimedOutcome(max(p.ts_ms, outcome.label.ts_ms), p.request_id,
                            window_start_ms(p.ts_ms, self.s.window_seconds), outcome.correct)

    # -- the event-time outcome streams ------------------------------------------
    def _stream_watermarks(self) -> list[tuple[VersionState, int]]:
        foreign = self.partitions.foreign_progress()
        return [(state, max(state.watermark_ms, state.event_time.value(
            self.drained, foreign.clock((state.model, state.version))))) for state in self.versions.values()]

    def _release(self, facts: PendingFacts, watermarks: list[tuple[VersionState, int]], now_ms: int) -> list[Alert]:
        """Advance each version's outcome stream to its watermark. The alerts it decides (returned),
        a new baseline and the stream checkpoints go with ``facts`` (checkpoints written last)."""
        decided: list[Alert] = []
        for state, watermark in watermarks:
            released_before = state.stream.released_ms
            for event in state.stream.advance(watermark):
                alerts, baseline_set = self.decisions.on_stream_event(state, event, now_ms)
                decided += alerts
                if baseline_set:
                    facts.references.append(self.window_figures.reference_row(state))
            if state.stream.released_ms != released_before:
                facts.checkpoints.append([self.s.app_id, state.model, state.version, state.stream.released_ms,
                                          time.time()])
        facts.alerts += alert_rows(decided)
        return decided

    # -- figures ----------------------------------------------------------------
    async def refresh(self, wait: bool = True) -> None:
        """Recompute touched windows, write their rows, evaluate windows that closed or became final.

        Decided here, in memory, at one point of the input: the watermarks, the windows
        that close or become final, the windows touched since the last refresh. Computed
        by the fact writer (:meth:`_refresh_job`), after the facts of every batch processed
        before that point and before those of any batch after it: the figures are exactly
        those of the input up to the point, while the next batches are already being
        joined and their ADWIN alerts sent. One refresh at a time; ``wait`` for its rows.
        """
        if self._refresh_queued:
            if not wait:
                return
            await self.writer.drain()
        await self.recover_partitions()
        await self._adopt_evaluation()
        evaluates = self.evaluates_alerts
        foreign = self.partitions.foreign_progress()
        self.watermark_ms = max(self.watermark_ms, self.event_time.value(self.drained, foreign.clock()))
        expired_p, expired_g = self.join.expire(self.watermark_ms)
        self.counters.expired_predictions += len(expired_p)
        self.counters.unmatched_labels += len(expired_g)
        if expired_g:
            log.info("%d labels expired without a prediction (JOIN_TTL_SECONDS=%d)", len(expired_g),
                     self.s.join_ttl_seconds)
        versions = []
        for state in list(self.versions.values()):
            clock = foreign.clock((state.model, state.version))
            state.watermark_ms = max(state.watermark_ms, state.event_time.value(self.drained, clock))
            newly_closed = self._advance(state)
            touched, state.dirty = frozenset(state.dirty), set()
            versions.append(VersionRefresh(state, touched, newly_closed, state.watermark_ms,
                                           state.binary, state.rolling_accuracy()))
        if self.releases_per_batch:  # the watermarks may have moved since the last batch
            released = PendingFacts()
            await self._announce(self._release(released, [(v.state, v.watermark_ms) for v in versions],
                                               int(self.clock() * 1000)))
            if released.alerts or released.checkpoints or released.references:
                await self.facts.queue(released)
        clocks = [(PARTITION_CLOCK, self.event_time), *(((v.model, v.version), v.event_time)
                                                          for v in self.versions.values())]
        plan = RefreshPlan(versions, self.partitions.progress_rows(clocks), evaluates, self.counters.messages, self.watermark_ms,
                           releases_from_store=evaluates and not self.releases_per_batch)
        self.facts.close_open()  # facts of later batches are written after this refresh
        self._refresh_queued = True
        await self.writer.submit(partial(self._refresh_job, plan))
        if wait:
            await self.writer.drain()

    async def _adopt_evaluation(self) -> None:
        """This worker just became the one deciding alerts: continue where the previous one stopped."""
        if self.evaluates_alerts and not self._evaluation_adopted:
            await self.writer.drain()  # this worker's own facts and alerts stored first
            await Recovery(self).evaluations()
            self._evaluation_adopted = True

    async def _refresh_job(self, plan: RefreshPlan) -> None:
        """The writer's part of a refresh: rows and alerts from the facts stored up to the plan."""
        started = time.monotonic()
        rows_written = False
        try:
            await self.store.insert("partition_progress", plan.progress_rows)
            await self.partitions.read_foreign_progress()
            targets: list[tuple[VersionRefresh, list[int]]] = []  # windows to compute, per version
            for v in plan.versions:
                windows = set(v.windows)
                if await self.window_figures.ensure_reference(v.state):
                    windows |= v.state.windows  # drift rows for every window, against the new reference
                if windows:
                    targets.append((v, sorted(windows)))
            metrics_rows, drift_rows = await self.window_figures.compute(targets)
            await self.store.insert("window_metrics", metrics_rows)
            await self.store.insert("feature_drift", drift_rows)
            rows_written = True
            if plan.evaluates_alerts:
                now_ms = int(self.clock() * 1000)
                if plan.releases_from_store:
                    await self._release_from_store(plan, now_ms)
                await self._publish([a for v in plan.versions
                                     for a in self.decisions.on_closed_windows(v.state, v.newly_closed, now_ms)])
                checkpoints = [[self.s.app_id, v.state.model, v.state.version, v.watermark_ms, time.time()]
                               for v in plan.versions if v.watermark_ms != v.state.evaluated_watermark]
                await self.store.insert("checkpoints", checkpoints)
                for v in plan.versions:
                    v.state.evaluated_watermark = v.watermark_ms
            for v in plan.versions:
                v.state.refreshed_watermark_ms = v.watermark_ms
            self.refreshed_watermark_ms = plan.watermark_ms
            self.refreshed_messages = plan.messages
        except BaseException:
            if not rows_written:  # computed by the next refresh
                for v in plan.versions:
                    v.state.dirty |= v.windows
            self.partitions.forget_progress_written()  # reported again by the next refresh
            raise
        finally:
            self._refresh_queued = False
            self._processing_s = 0.0
            self._last_refresh = time.monotonic()
            self._refresh_cost = self._last_refresh - started

    def _advance(self, state: VersionState) -> list[int]:
        """Windows that close (returned: their drift is decided) or become final (their rows say so)
        as the version's watermark moves."""
        newly_closed = []
        for w in sorted(state.windows - state.final):
            if w not in state.closed and is_closed(w, state.watermark_ms, self.s.window_seconds):
                state.closed.add(w)
                newly_closed.append(w)
                state.dirty.add(w)
            if is_final(w, state.watermark_ms, self.s.window_seconds, self.s.label_grace_seconds):
                state.final.add(w)
                state.dirty.add(w)
        return newly_closed

    async def _release_from_store(self, plan: RefreshPlan, now_ms: int) -> None:
        """Several workers: the outcomes the others joined (stored before they reported the progress
        this plan's watermarks rest on) join this worker's streams, which are released to the plan."""
        foreign = sorted({p for _, p in self.partitions.input_partitions - self.partitions.assigned})
        streams = {(v.state.model, v.state.version): v.state.stream for v in plan.versions}
        if foreign and streams:
            since = min(s.released_ms for s in streams.values())
            rows = await self.store.query(
                "SELECT model, model_version, greatest(toUnixTimestamp64Milli(predicted_at), "
                "toUnixTimestamp64Milli(labeled_at)) AS j, request_id, toUnixTimestamp64Milli(window_start), correct "
                f"FROM `{self.db}`.outcomes FINAL WHERE kafka_partition IN ({', '.join(map(str, foreign))}) "
                f"AND behind_watermark = 0 AND j >= {since} AND j < {plan.watermark_ms + 1}")
            for model, version, j, rid, w, correct in rows:
                stream = streams.get((model, version))
                if stream is not None:
                    stream.add(TimedOutcome(int(j), rid, int(w), bool(correct)))
        facts = PendingFacts()
        decided = self._release(facts, [(v.state, v.watermark_ms) for v in plan.versions], now_ms)
        await self.store.insert("references", facts.references)
        await self._publish(decided)
        await self.store.insert("stream_checkpoints", facts.checkpoints)

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
