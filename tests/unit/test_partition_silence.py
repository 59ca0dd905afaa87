"""A partition's silence counts from when its memory is back, not from its assignment.

After a restart a partition that has delivered nothing yet counts as caught up when its
committed offset reaches the broker's high watermark, which the local broker reports too
low (STACK-NOTES: the base offset of the last batch + 1). Rebuilding the partitions' memory
from the store can take seconds, during which nothing can be processed; had that time
counted as silence, such a partition would be drained before delivering the rest of its
last batch, and the watermark would pass outcomes not read yet.
"""

from __future__ import annotations

import time

from streams.partitions import InputPartitions
from streams.settings import load_settings

SOURCE = ("predictions", 0)


class _NoOutage:
    outage_since = None
    recovered_at = 0.0


def _partitions() -> InputPartitions:
    partitions = InputPartitions(load_settings({}), _NoOutage())  # type: ignore[arg-type]
    partitions.assign({SOURCE}, set(), [])
    partitions.assigned_at[SOURCE] = 0.0  # assigned long ago
    partitions.partition_end = lambda source: (100, 99)  # committed offset at the (reported) end
    return partitions


def test_a_quiet_caught_up_partition_is_drained_seconds_after_its_assignment() -> None:
    assert _partitions().drained(SOURCE)


def test_its_silence_starts_again_when_its_memory_is_rebuilt() -> None:
    partitions = _partitions()
    partitions.recovered({SOURCE}, now=time.monotonic())
    assert not partitions.drained(SOURCE)
    partitions.recovered({SOURCE}, now=time.monotonic() - 3.0)  # rebuilt 3 s ago, nothing since
    assert partitions.drained(SOURCE)
