"""After a crash, a final window's row catches up with facts stored after its last refresh.

A late label of a final window is joined, its facts are stored and its offset committed;
the worker dies before the next refresh. A restarted worker does not read that message
again, so unless recovery recomputes final windows too, the row keeps the old counts for
ever (found by ``make bench-determinism`` on a log with labels after the grace: one window
5 labels short in the run with kills). A real Monitor on chdb://memory, in a subprocess
(this file run as a script): one embedded chDB per process.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import orjson
import pytest

from tests.own_process import run_script

T0 = 1_700_000_040  # seconds, a multiple of WINDOW
WINDOW, GRACE = 60, 10
ENV = {"CLICKHOUSE_URL": "chdb://memory", "WINDOW_SECONDS": str(WINDOW), "LABEL_GRACE_SECONDS": str(GRACE),
       "JOIN_TTL_SECONDS": "3600", "MIN_LABELED": "2", "MONITOR_IDLE_SECONDS": "0.2"}
ON_TIME, LATE = 10, 4


def _prediction(rid: str, t: float) -> tuple[str, bytes, bytes]:
    event = {"request_id": rid, "model": "m", "model_version": "v1", "timestamp": int((T0 + t) * 1000),
             "prediction": 1, "features": {"x": 1.0}}
    return "predictions", rid.encode(), orjson.dumps(event)


def _label(rid: str, t: float) -> tuple[str, bytes, bytes]:
    return "ground-truth", rid.encode(), orjson.dumps({"request_id": rid, "label": 1,
                                                        "timestamp": int((T0 + t) * 1000)})


async def _scenario() -> dict:
    from sinks.clickhouse import ClickHouseStore, parse_target
    from streams.monitor import Monitor, RawMessage
    from streams.settings import load_settings

    settings = load_settings(ENV)
    store = ClickHouseStore(parse_target(settings.clickhouse_url))
    offsets: dict[str, int] = {}

    class Outbox:
        async def send_dlq(self, message, rejection) -> None:  # type: ignore[no-untyped-def]
            raise AssertionError(f"unexpected rejection: {rejection}")

        async def send_alert(self, alert) -> None:  # type: ignore[no-untyped-def]
            pass

    async def worker() -> Monitor:
        monitor = Monitor(settings, store, Outbox())
        await monitor.start()
        monitor.take_partitions({("predictions", 0), ("ground-truth", 0)})
        monitor.partition_end = lambda source: (offsets.get(source[0], -1) + 1, offsets.get(source[0], -1) + 1)
        return monitor

    async def process(monitor: Monitor, messages: list[tuple[str, bytes, bytes]]) -> None:
        batch = []
        for topic, key, value in messages:
            offsets[topic] = offsets.get(topic, -1) + 1
            batch.append(RawMessage(topic, 0, offsets[topic], key, value))
        await monitor.process_batch(batch)
        await monitor.writer.drain()

    async def row() -> list:
        return [list(r) for r in await store.query(
            f"SELECT labeled, final FROM monitoring.window_metrics FINAL WHERE toUnixTimestamp64Milli(window_start) = "
            f"{T0 * 1000}")]

    first = await worker()
    window0 = [_prediction(f"r{i}", i) for i in range(ON_TIME + LATE)] + [_label(f"r{i}", i + 1) for i in range(ON_TIME)]
    await process(first, window0)
    later = [m for i in range(5) for m in (_prediction(f"x{i}", 3 * WINDOW + i), _label(f"x{i}", 3 * WINDOW + i))]
    await process(first, later)  # the watermark passes window 0's end + grace once the partitions are quiet
    time.sleep(0.5)
    await first.refresh()
    out: dict = {"before": await row()}
    await process(first, [_label(f"r{i}", 3 * WINDOW + 10 + i) for i in range(ON_TIME, ON_TIME + LATE)])
    out["stored_late"] = [list(r) for r in await store.query(
        "SELECT count(), sum(late) FROM monitoring.outcomes FINAL WHERE request_id LIKE 'r%'")]
    out["row_at_crash"] = await row()  # no refresh since: the worker dies here (its memory is dropped)

    second = await worker()
    await second.refresh()
    out["after_restart"] = await row()
    await second.writer.close()
    await store.close()
    return out


@pytest.fixture(scope="module")
def run() -> dict:
    return json.loads(run_script(__file__, timeout=120))


def test_the_window_was_final_before_its_late_labels(run):
    assert run["before"] == [[ON_TIME, 1]]
    assert run["stored_late"] == [[ON_TIME + LATE, LATE]]
    assert run["row_at_crash"] == [[ON_TIME, 1]]


def test_a_restart_recomputes_the_final_windows_row_from_the_facts(run):
    assert run["after_restart"] == [[ON_TIME + LATE, 1]]


if __name__ == "__main__":
    sys.stdout.write(json.dumps(asyncio.run(_scenario())))
