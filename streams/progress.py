"""Progress of the input partitions other workers read, for this worker's watermarks.

Several workers share one app's partitions. Windows and alerts are about all of
them, so each worker writes, at every refresh, the largest event time and the
drained flag of each partition it reads (overall and per model version) to the
``partition_progress`` table, and reads the rows of the partitions it does not
read. A partition nobody has reported yet holds the watermarks back.

>>> p = ForeignProgress.from_rows([("p", 1, "", "", 9_000, 1), ("p", 1, "m", "v1", 8_000, 1),
...                                ("p", 2, "", "", 4_000, 0), ("p", 0, "", "", 1, 0)], {("p", 1), ("p", 2), ("p", 3)})
>>> sorted(p.clock())
[(-1, False), (4000, False), (9000, True)]
>>> sorted(p.clock(("m", "v1")))  # partition 2 has not seen m/v1 (yet), 3 has not reported at all
[(-1, False), (-1, False), (8000, True)]
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

Source = tuple[str, int]
Version = tuple[str, str]
PARTITION_CLOCK: Version = ("", "")


@dataclass(frozen=True)
class ForeignProgress:
    """What other workers last reported about the partitions this worker does not read."""

    sources: frozenset[Source] = frozenset()
    reported: dict[Source, dict[Version, tuple[int, bool]]] = field(default_factory=dict)

    @classmethod
    def from_rows(cls, rows: Iterable[tuple], sources: Iterable[Source]) -> ForeignProgress:
        """Rows (topic, partition, model, model_version, max_event_ms, drained) of the progress table."""
        wanted = frozenset(sources)
        reported: dict[Source, dict[Version, tuple[int, bool]]] = {}
        for topic, partition, model, version, ts, drained in rows:
            source = (topic, int(partition))
            if source in wanted:
                reported.setdefault(source, {})[(model, version)] = (int(ts), bool(drained))
        return cls(wanted, reported)

    def clock(self, version: Version = PARTITION_CLOCK) -> list[tuple[int, bool]]:
        """(largest event time, drained) per foreign partition for one clock, as Watermark.value takes them.

        A partition is drained by its own clock's flag; one without a row for the version
        counts as not having seen it (-1), like a partition this worker reads."""
        out = []
        for source in self.sources:
            rows = self.reported.get(source, {})
            drained = rows.get(PARTITION_CLOCK, (-1, False))[1]
            out.append((rows.get(version, (-1, drained))[0], drained))
        return out
