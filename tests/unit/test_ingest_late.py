"""An outcome's ``late`` flag is decided in event time, not by what the worker marked final yet.

``late`` says a label joined after its window became final (README "Late labels"); the
outcome stream leaves such labels out of the window's final decision by the same rule:
join time (the later of the two timestamps) past window end + LABEL_GRACE_SECONDS. The flag
must not depend on whether a refresh had already marked the window final when the batch was
joined, which depends on timing: the same log read twice would store different rows.
"""

from __future__ import annotations

import asyncio

import orjson

from streams.ingest import Counters, Ingest
from streams.join import JoinState
from streams.partitions import InputPartitions
from streams.records import RawMessage
from streams.settings import load_settings
from streams.versions import VersionRegistry
from streams.watermark import Watermark

WINDOW, GRACE = 600, 60
T0 = 1_767_225_600_000  # the start of a window
FINAL_AT = T0 + (WINDOW + GRACE) * 1000  # the window is final once the watermark passes this
LATE = -2  # streams.facts.outcome_row: ..., late, behind_watermark


class _NoOutage:
    outage_since = None
    recovered_at = 0.0


def _ingest(marked_final: bool) -> Ingest:
    settings = load_settings({"WINDOW_SECONDS": str(WINDOW), "LABEL_GRACE_SECONDS": str(GRACE)})
    partitions = InputPartitions(settings, _NoOutage())  # type: ignore[arg-type]
    versions = VersionRegistry(settings, {}, lambda: partitions.assigned)
    if marked_final:  # as if a refresh had run before the batch: the window is final in memory
        versions.get_or_create("m", "v1").final.add(T0)
    return Ingest(settings, JoinState(ttl_ms=86_400_000), versions, Counters(), Watermark(), partitions)


def _late_flags(ingest: Ingest, label_ts: dict[str, int]) -> dict[str, int]:
    batch = []
    for offset, (rid, ts) in enumerate(label_ts.items()):
        prediction = {"request_id": rid, "model": "m", "model_version": "v1", "timestamp": T0 + offset,
                      "prediction": 1, "features": {"x": 1}}
        batch.append(RawMessage("predictions", 0, offset, rid.encode(), orjson.dumps(prediction)))
        batch.append(RawMessage("ground-truth", 0, offset, rid.encode(),
                                orjson.dumps({"request_id": rid, "label": 1, "timestamp": ts})))
    done = asyncio.run(ingest.run(batch, started=0.0, now_ms=FINAL_AT + 10**9, streams=False))
    return {row[0]: row[LATE] for row in done.facts.outcomes}


LABELS = {"on-time": FINAL_AT - 1, "at-the-edge": FINAL_AT, "after": FINAL_AT + 1, "much-later": FINAL_AT + 3_600_000}
WANT = {"on-time": 0, "at-the-edge": 0, "after": 1, "much-later": 1}


def test_late_is_the_join_time_past_the_window_end_plus_grace() -> None:
    assert _late_flags(_ingest(marked_final=False), LABELS) == WANT


def test_late_does_not_depend_on_whether_the_window_was_marked_final_in_memory() -> None:
    assert _late_flags(_ingest(marked_final=True), LABELS) == WANT
