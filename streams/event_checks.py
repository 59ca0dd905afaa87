"""Label health and version comparison, decided at window boundaries of event time.

Run by the alert-deciding worker in each refresh, after the facts before the refresh are
stored: for every window boundary ``T`` a version's watermark passed since its last
evaluation (``VersionState.evaluated_watermark``, kept in the ``checkpoints`` table, so a
restart goes on from there), the rules of :mod:`streams.label_health` and
:mod:`streams.version_compare` read the facts with timestamps before ``T``. Those are the
same in a live run, a backlog, a replay, after kill -9 and on any number of partitions or
workers, so the alerts are too. A boundary evaluated twice (a crash before the checkpoint)
gives the same conditions, which the :class:`AlertBook` does not repeat.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from sinks.clickhouse import ClickHouseStore
from streams import label_health, version_compare
from streams.alert_rules import Alert, AlertBook, Condition, iso_ms
from streams.model_config import ModelSettings
from streams.settings import Settings
from streams.versions import VersionState, seconds
from streams.windows import window_end_ms

Watermarks = Iterable[tuple[VersionState, int]]
POOL_LOOKBACK_S = 7 * 86400  # windows pooled for version_worse: at most this far back


def unevaluated_from(state: VersionState) -> int:
    """The boundaries after this point are not yet evaluated for the version: its last evaluation,
    or its first window (a version never evaluated starts there, not at epoch 0)."""
    return max(state.evaluated_watermark, min(state.windows))


class EventChecks:
    def __init__(self, settings: Settings, store: ClickHouseStore) -> None:
        self.s = settings
        self.store = store
        self.db = store.database

    async def run(self, book: AlertBook, watermarks: Watermarks, now_ms: int) -> list[Alert]:
        """The alerts of the boundaries passed since the last evaluation; version_comparison rows written."""
        items = [(state, wm) for state, wm in watermarks if state.windows]
        alerts: list[Alert] = []
        for state, watermark in items:
            alerts += await self._labels(book, state, watermark, now_ms)
        by_model: dict[str, list[tuple[VersionState, int]]] = {}
        for state, watermark in items:
            by_model.setdefault(state.model, []).append((state, watermark))
        rows: dict[tuple[Any, ...], list[Any]] = {}
        for model, versions in sorted(by_model.items()):
            if len(versions) > 1:
                alerts += await self._versions(book, model, versions, rows, now_ms)
        await self.store.insert("version_comparison", list(rows.values()))
        return alerts

    def _observe(self, book: AlertBook, model: str, version: str, w: int, condition: Condition | None,
                 now_ms: int) -> list[Alert]:
        if condition is None:
            return []
        alert = book.observe(model, version, w, window_end_ms(w, self.s.window_seconds), condition, now_ms)
        return [alert] if alert else []

    async def _labels(self, book: AlertBook, state: VersionState, watermark: int, now_ms: int) -> list[Alert]:
        out: list[Alert] = []
        for at in label_health.boundaries(unevaluated_from(state), watermark, self.s.window_seconds):
            rows = await self.store.query(label_health.coverage_sql(self.db, state.model, state.version, at,
                                                                    self.s.window_seconds))
            age, windows = label_health.judged(rows)
            decision = label_health.decide(windows, state.config.min_labeled) if age is not None else None
            if decision is not None and age is not None:
                out += self._observe(book, state.model, state.version, decision.window_ms,
                                     label_health.condition(state.model, state.version, decision, age), now_ms)
        return out

    async def _versions(self, book: AlertBook, model: str, versions: list[tuple[VersionState, int]],
                        rows: dict[tuple[Any, ...], list[Any]], now_ms: int) -> list[Alert]:
        states = {state.version: (state, wm) for state, wm in versions}
        first_pending = min(unevaluated_from(s) for s, _ in versions)
        if not label_health.boundaries(first_pending, max(wm for _, wm in versions), self.s.window_seconds):
            return []  # no boundary passed since the last refresh (the common case, live)
        first = {v: int(ms) for v, ms in await self.store.query(version_compare.first_seen_sql(self.db, model))
                 if v in states}
        size = self.s.window_seconds * 1000
        final_ms = (self.s.window_seconds + self.s.label_grace_seconds) * 1000
        counts: dict[int, dict[tuple[str, int], tuple[int, int, int]]] = {}
        out: list[Alert] = []
        for a, b in version_compare.ordered_pairs(sorted(first.items()), self.s.window_seconds):
            (sa, wa), (sb, wb) = states[a], states[b]
            config = sb.config  # the newer version's own settings (MONITOR_CONFIG) judge it
            start = max(min(sa.evaluated_watermark, sb.evaluated_watermark), min(sa.windows), min(sb.windows))
            for at in label_health.boundaries(start, min(wa, wb), self.s.window_seconds):
                if at not in counts:
                    counts[at] = {(v, int(w)): (int(n), int(k), int(before)) for v, w, n, k, before in
                                  await self.store.query(version_compare.counts_sql(
                                      self.db, model, at, at - size, self.s.window_seconds,
                                      self.s.label_grace_seconds))}
                at_counts = counts[at]
                for w in sorted({w for v, w in at_counts if v == a} & {w for v, w in at_counts if v == b}):
                    n_a, k_a, before_a = at_counts[(a, w)]
                    n_b, k_b, before_b = at_counts[(b, w)]
                    if min(n_a, n_b) < config.min_labeled:
                        continue
                    c = version_compare.compare(n_a, k_a, n_b, k_b)
                    rows[(w, a, b)] = self._row(model, w, a, b, c, at, config.degradation_threshold)
                    look = version_compare.look_at(min(n_a, n_b), min(before_a, before_b), config.min_labeled,
                                                   final=at > w + final_ms)
                    if look is not None:
                        condition = version_compare.condition(model, a, b, c, look, config.degradation_threshold,
                                                              {"decided_at": iso_ms(at)})
                        out += self._observe(book, model, b, w, condition, now_ms)
                out += await self._pooled(book, model, a, b, max(min(sa.windows), min(sb.windows)), at, config,
                                          now_ms)
        return out

    async def _pooled(self, book: AlertBook, model: str, a: str, b: str, first_ms: int, at: int,
                      config: ModelSettings, now_ms: int) -> list[Alert]:
        """The windows of the pair pooled, for small windows no single one of which can prove a
        difference: from the pair's first window (or the condition's last resolve; at most
        POOL_LOOKBACK_S back) to the last closed one, looked at when the smaller pooled count
        doubles. It can only fire: resolving is the per-window looks' job."""
        key = (model, b, version_compare.ALERT_TYPE, a)
        if key in book.firing:
            return []
        size = self.s.window_seconds * 1000
        since = max(first_ms, book.changed_at.get(key, first_ms), at - POOL_LOOKBACK_S * 1000)
        rows = await self.store.query(version_compare.pooled_sql(
            self.db, model, (a, b), since, at, at - size, self.s.window_seconds, self.s.label_grace_seconds))
        counts = {(v, int(w)): (int(n), int(k), int(pn), int(pk)) for v, w, n, k, pn, pk in rows}
        p = version_compare.pooled(counts, a, b, config.min_labeled, at, at - size, self.s.window_seconds)
        look = version_compare.look_at(min(p.n_a, p.n_b), p.smaller_before, config.min_labeled, final=False)
        if look is None or p.windows < 2:
            return []  # one window is the per-window test's
        c = version_compare.compare(p.n_a, p.correct_a, p.n_b, p.correct_b)
        if not c.worse(config.degradation_threshold, look.level):
            return []
        condition = version_compare.condition(model, a, b, c, look, config.degradation_threshold,
                                              {"decided_at": iso_ms(at), "decided_by": "pooled_windows",
                                               "windows": p.windows, "since": iso_ms(since)})
        return self._observe(book, model, b, at - size, condition, now_ms)

    def _row(self, model: str, w: int, a: str, b: str, c: version_compare.Comparison, at: int,
             degradation: float) -> list[Any]:
        return [model, seconds(w), seconds(window_end_ms(w, self.s.window_seconds)), a, b,
                c.n_a, c.correct_a, c.accuracy_a, c.n_b, c.correct_b, c.accuracy_b, c.diff, c.diff_low,
                c.diff_high, c.p_value, int(c.worse(degradation, version_compare.ALPHA)),
                seconds(at), time.time()]

