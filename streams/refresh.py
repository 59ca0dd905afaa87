"""The refresh stage: window figures and the drift of closed windows, at points of the input.

A refresh is planned by the coordinator at one point of the input (:class:`RefreshPlan`:
the watermarks, the windows that close or become final, the windows touched since the last
refresh) and run by the ordered fact writer after the facts of every batch before that
point (:class:`RefreshJob`): it writes the partitions' progress, recomputes the touched
windows (:mod:`streams.window_figures`), decides the drift of the windows that closed and,
with several workers, releases the outcome streams from the store. :class:`RefreshSchedule`
decides when the next refresh is due, so that a loaded worker spends little time on it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sinks.clickhouse import ClickHouseStore
from streams.alert_rules import Alert
from streams.decisions import AlertDecisions
from streams.event_checks import EventChecks
from streams.model_config import settings_row
from streams.partitions import InputPartitions
from streams.release import OutcomeRelease
from streams.settings import Settings
from streams.versions import VersionRefresh, VersionState
from streams.window_figures import WindowFigures
from streams.windows import is_closed, is_final

REFRESH_INTERVAL_S = 1.0
REFRESH_SHARE = 0.1  # of the time, at most, spent refreshing figures while the worker is loaded
LOADED = 0.5  # share of the time spent processing batches from which the worker counts as loaded


@dataclass(frozen=True)
class RefreshPlan:
    versions: list[VersionRefresh]
    progress_rows: list[list[Any]]
    evaluates_alerts: bool
    messages: int  # messages processed at that point
    watermark_ms: int
    releases_from_store: bool = False  # other workers read partitions: their outcomes come from the store


def advance_windows(state: VersionState, window_seconds: int, grace_seconds: int) -> list[int]:
    """Windows that close (returned: their drift is decided) or become final (their rows say so)
    as the version's watermark moves; both are marked dirty so that their rows are rewritten."""
    newly_closed = []
    for w in sorted(state.windows - state.final):
        if w not in state.closed and is_closed(w, state.watermark_ms, window_seconds):
            state.closed.add(w)
            newly_closed.append(w)
            state.dirty.add(w)
        if is_final(w, state.watermark_ms, window_seconds, grace_seconds):
            state.final.add(w)
            state.dirty.add(w)
    return newly_closed


class RefreshSchedule:
    """When the next refresh is due: REFRESH_INTERVAL_S after the last one ended; but while the
    worker is loaded (a backlog: the last batch was full; or traffic near its capacity: processing
    batches LOADED of the time or more) at most REFRESH_SHARE of the time goes to refreshes, so
    input is read faster, joins and ADWIN alerts keep up, and rows catch up when the load falls."""

    def __init__(self, full_batch: int) -> None:
        self.full_batch = full_batch
        self.queued = False  # a refresh is planned and not yet run by the writer
        self.processing_s = 0.0  # spent processing batches since the last refresh
        self.last_batch_size = 0
        self.last_end = 0.0
        self.cost = 0.0  # seconds the last refresh job took

    def batch_done(self, size: int, seconds: float) -> None:
        self.processing_s += seconds
        self.last_batch_size = size

    def due(self) -> bool:
        if self.queued:
            return False
        elapsed = time.monotonic() - self.last_end
        loaded = self.last_batch_size >= self.full_batch or self.processing_s >= LOADED * elapsed
        return elapsed >= REFRESH_INTERVAL_S and (not loaded or elapsed >= self.cost / REFRESH_SHARE)

    def job_ended(self, started: float) -> None:
        self.queued = False
        self.processing_s = 0.0
        self.last_end = time.monotonic()
        self.cost = self.last_end - started


class RefreshJob:
    """The writer's part of a refresh: rows and alerts from the facts stored up to the plan."""

    def __init__(self, settings: Settings, store: ClickHouseStore, partitions: InputPartitions,
                 figures: WindowFigures, decisions: AlertDecisions, release: OutcomeRelease,
                 publish: Callable[[list[Alert]], Awaitable[None]], clock: Callable[[], float]) -> None:
        self.s = settings
        self.store = store
        self.partitions = partitions
        self.figures = figures
        self.decisions = decisions
        self.release = release
        self.publish = publish
        self.clock = clock
        self.event_checks = EventChecks(settings, store)

    async def run(self, plan: RefreshPlan) -> None:
        rows_written = False
        try:
            await self.store.insert("partition_progress", plan.progress_rows)
            await self.partitions.read_foreign_progress()
            targets: list[tuple[VersionRefresh, list[int]]] = []  # windows to compute, per version
            for v in plan.versions:
                windows = set(v.windows)
                if await self.figures.ensure_reference(v.state):
                    windows |= v.state.windows  # drift rows for every window, against the new reference
                if windows:
                    targets.append((v, sorted(windows)))
            metrics_rows, drift_rows = await self.figures.compute(targets)
            await self.store.insert("window_metrics", metrics_rows)
            await self.store.insert("feature_drift", drift_rows)
            await self._store_settings(plan)
            rows_written = True
            if plan.evaluates_alerts:
                await self._evaluate(plan)
            for v in plan.versions:
                v.state.refreshed_watermark_ms = v.watermark_ms
        except BaseException:
            if not rows_written:  # computed by the next refresh
                for v in plan.versions:
                    v.state.dirty |= v.windows
            self.partitions.forget_progress_written()  # reported again by the next refresh
            raise

    async def _store_settings(self, plan: RefreshPlan) -> None:
        """Each version's own settings (MONITOR_CONFIG), once per worker run, for the dashboard and readers."""
        new = [v.state for v in plan.versions if not v.state.config_stored]
        source = self.s.monitor_config or "environment"
        await self.store.insert("model_settings", [settings_row(s.model, s.version, s.config, source, time.time())
                                                   for s in new])
        for state in new:
            state.config_stored = True

    async def _evaluate(self, plan: RefreshPlan) -> None:
        """The alert-deciding worker: streams released from the store (several workers), the drift
        of the windows that closed, then the versions' evaluated watermarks."""
        now_ms = int(self.clock() * 1000)
        if plan.releases_from_store:
            await self.release.from_store([(v.state, v.watermark_ms) for v in plan.versions], plan.watermark_ms,
                                          now_ms, self.publish)
        await self.publish([a for v in plan.versions
                            for a in self.decisions.on_closed_windows(v.state, v.newly_closed, now_ms)])
        await self.publish([a for v in plan.versions
                            for a in self.decisions.on_closed_estimates(v.state, v.newly_closed, now_ms)])
        # Label health and version comparison at the window boundaries the watermarks passed.
        await self.publish(await self.event_checks.run(self.decisions.book,
                                                       [(v.state, v.watermark_ms) for v in plan.versions], now_ms))
        checkpoints = [[self.s.app_id, v.state.model, v.state.version, v.watermark_ms, time.time()]
                       for v in plan.versions if v.watermark_ms != v.state.evaluated_watermark]
        await self.store.insert("checkpoints", checkpoints)
        for v in plan.versions:
            v.state.evaluated_watermark = v.watermark_ms
