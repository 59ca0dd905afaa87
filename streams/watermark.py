"""The event-time watermark: how far event time has surely progressed.

Kafka orders messages only within a partition, and a worker fetches the
partitions of both input topics at different paces, so the largest timestamp
seen says little. The watermark is the smallest of the per-partition maxima,
ignoring partitions that have been silent for ``idle_after_s`` seconds of wall
clock while others moved (so an idle partition cannot hold finality back
forever). It never goes backwards.

>>> w = Watermark(idle_after_s=60)
>>> w.observe(("p", 0), 5_000, now=0.0); w.observe(("p", 1), 2_000, now=0.0); w.value(now=1.0)
2000
>>> w.observe(("p", 1), 9_000, now=2.0); w.value(now=2.0)
5000
>>> w.value(now=200.0)  # both idle: the largest maximum stands
9000
>>> w.register(("g", 0), now=200.0); w.observe(("p", 0), 20_000, now=201.0); w.value(now=201.0)
9000
"""

from __future__ import annotations

from collections.abc import Hashable


class Watermark:
    def __init__(self, idle_after_s: float = 30.0) -> None:
        self.idle_after_s = idle_after_s
        self.max_ts: dict[Hashable, int] = {}
        self.last_seen: dict[Hashable, float] = {}
        self._value = 0

    def observe(self, source: Hashable, ts_ms: int, now: float) -> None:
        if ts_ms > self.max_ts.get(source, -1):
            self.max_ts[source] = ts_ms
        self.last_seen[source] = now

    def register(self, source: Hashable, now: float) -> None:
        """A source that exists (an assigned partition) but may not have spoken yet: it holds the
        watermark back until it delivers data or stays silent for ``idle_after_s``."""
        self.max_ts.setdefault(source, -1)
        self.last_seen.setdefault(source, now)

    def forget(self, source: Hashable) -> None:
        self.max_ts.pop(source, None)
        self.last_seen.pop(source, None)

    def seed(self, source: Hashable, ts_ms: int) -> None:
        """Recovered maxima of a restart (treated as idle until the source speaks again)."""
        self.max_ts[source] = max(ts_ms, self.max_ts.get(source, ts_ms))
        self.last_seen.setdefault(source, float("-inf"))

    def maximum(self) -> int:
        """The largest event time seen on any source."""
        return max(self.max_ts.values(), default=0)

    def value(self, now: float) -> int:
        if self.max_ts:
            active = [ts for s, ts in self.max_ts.items() if now - self.last_seen[s] <= self.idle_after_s]
            candidate = min(active) if active else max(self.max_ts.values())
            self._value = max(self._value, candidate)
        return self._value
