"""The event-time watermark: how far event time has surely progressed.

Kafka orders messages only within a partition, and a worker fetches the
partitions of both input topics at different paces, so the largest timestamp
seen says little. The watermark is the smallest of the per-partition maxima
over the partitions that still have messages to deliver; a partition that is
*drained* (everything up to its high watermark processed) cannot hold it back.
When every partition is drained the largest maximum stands. It never goes back.

>>> w = Watermark()
>>> w.register("a", now=0.0); w.register("b", now=0.0)
>>> w.observe("a", 5_000, now=0.0); w.value(drained=lambda s: False)  # b has not spoken yet
0
>>> w.observe("b", 2_000, now=1.0); w.value(drained=lambda s: False)
2000
>>> w.value(drained=lambda s: s == "b")  # b has nothing more to deliver
5000
>>> w.value(drained=lambda s: True, others=[(4_000, False)])  # another worker's partition is behind
5000
>>> Watermark().value(drained=lambda s: True, others=[(7_000, False), (9_000, True)])
7000
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable


class Watermark:
    def __init__(self) -> None:
        self.max_ts: dict[Hashable, int] = {}
        self._value = 0

    def register(self, source: Hashable, now: float = 0.0) -> None:
        """A source that exists (an assigned partition) but may not have spoken yet."""
        self.max_ts.setdefault(source, -1)

    def forget(self, source: Hashable) -> None:
        self.max_ts.pop(source, None)

    def observe(self, source: Hashable, ts_ms: int, now: float = 0.0) -> None:
        if ts_ms > self.max_ts.get(source, -1):
            self.max_ts[source] = ts_ms

    def seed(self, source: Hashable, ts_ms: int) -> None:
        """A maximum recovered after a restart."""
        self.observe(source, ts_ms)

    def maximum(self) -> int:
        """The largest event time seen on any source."""
        return max(self.max_ts.values(), default=0)

    def value(self, drained: Callable[[Hashable], bool], others: Iterable[tuple[int, bool]] = ()) -> int:
        """The watermark over this worker's sources and ``others``: (largest event time,
        drained) of partitions other workers read, as they last reported them."""
        maxima = list(self.max_ts.values())
        holding = [ts for source, ts in self.max_ts.items() if not drained(source)]
        for ts, is_drained in others:
            maxima.append(ts)
            if not is_drained:
                holding.append(ts)
        if maxima:
            candidate = min(holding) if holding else max(maxima)
            self._value = max(self._value, candidate)
        return self._value
