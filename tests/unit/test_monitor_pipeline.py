"""The order of work in a real Monitor on chdb://memory, with the fact writer held busy.

- facts of batches that wait for the writer are merged into one write, and every batch is
  acknowledged only once it is stored;
- a refresh computes the figures of exactly the input before it, although the batches after
  it are joined (and their ADWIN alerts sent) before its rows are computed;
- an ADWIN alert is sent as soon as its batch is joined, and stored with the batch's facts.

The Monitor runs in a subprocess (this file run as a script): one embedded chDB per process.
"""

from __future__ import annotations

import asyncio
import json
import sys

import orjson
import pytest

from tests.own_process import run_script

T0 = 1_700_000_040  # seconds, a multiple of WINDOW
WINDOW = 60
ENV = {"CLICKHOUSE_URL": "chdb://memory", "WINDOW_SECONDS": str(WINDOW), "JOIN_TTL_SECONDS": "100",
       "MIN_LABELED": "2", "ADWIN_DELTA": "0.002"}


def _prediction(rid: str, t: float) -> tuple[str, bytes, bytes]:
    event = {"request_id": rid, "model": "m", "model_version": "v1", "timestamp": int((T0 + t) * 1000),
             "prediction": 1, "features": {"x": 1.0}}
    return "predictions", rid.encode(), orjson.dumps(event)


def _label(rid: str, t: float, label: int) -> tuple[str, bytes, bytes]:
    return "ground-truth", rid.encode(), orjson.dumps({"request_id": rid, "label": label,
                                                        "timestamp": int((T0 + t) * 1000)})


def _requests(first: int, count: int, label: int) -> list[tuple[str, bytes, bytes]]:
    """``count`` requests of window 0, each prediction followed by its label (1 = correct)."""
    out = []
    for i in range(first, first + count):
        t = i * 0.01
        out += [_prediction(f"r{i}", t), _label(f"r{i}", t + 0.001, label)]
    return out


class MemoryOutbox:
    def __init__(self, store) -> None:  # type: ignore[no-untyped-def]
        self.store = store
        self.sent: list[tuple[str, str, int]] = []  # (type, status, alert rows stored when it was sent)

    async def send_dlq(self, message, rejection) -> None:  # type: ignore[no-untyped-def]
        raise AssertionError(f"unexpected rejection: {rejection}")

    async def send_alert(self, alert) -> None:  # type: ignore[no-untyped-def]
        [(stored,)] = await self.store.query("SELECT count() FROM monitoring.alerts")
        self.sent.append((alert.type, alert.status, int(stored)))


async def _scenario() -> dict:
    from sinks.clickhouse import ClickHouseStore, parse_target
    from sinks.writer import OrderedWriter
    from streams.monitor import Monitor, RawMessage
    from streams.settings import load_settings

    settings = load_settings(ENV)
    store = ClickHouseStore(parse_target(settings.clickhouse_url))
    outbox = MemoryOutbox(store)
    monitor = Monitor(settings, store, outbox)
    monitor.writer = OrderedWriter(depth=3)  # the gate, a's and b's facts, the refresh: c's facts still get in
    await monitor.start()
    monitor.assign({("predictions", 0), ("ground-truth", 0)})
    monitor.partition_end = lambda source: (monitor.last_offset.get(source, -1) + 1, None)
    offsets: dict[str, int] = {}
    acknowledged: list[str] = []

    async def process(name: str, messages: list[tuple[str, bytes, bytes]]) -> None:
        batch = []
        for topic, key, value in messages:
            offsets[topic] = offsets.get(topic, -1) + 1
            batch.append(RawMessage(topic, 0, offsets[topic], key, value))
        await monitor.process_batch(batch, on_written=lambda: acknowledged.append(name))

    async def count(sql: str) -> int:
        [(n,)] = await store.query(sql)
        return int(n)

    await monitor.refresh()  # the first refresh is due at once: out of the way
    out: dict = {}
    gate = asyncio.Event()
    await monitor.writer.submit(gate.wait)  # the writer is busy until the gate opens
    await process("a", _requests(0, 100, 1))  # 100 right
    await process("b", _requests(100, 100, 1))  # 100 right: waits with a's facts
    out["merged_messages"] = monitor.facts.open.messages
    await monitor.refresh(wait=False)  # decided now: 200 labeled; computed after a's and b's facts
    await process("c", _requests(200, 300, 0))  # 300 wrong: ADWIN fires, the facts wait behind the refresh
    out["own_write_messages"] = monitor.facts.open.messages
    out["sent_while_held"] = list(outbox.sent)
    out["outcomes_while_held"] = await count("SELECT count() FROM monitoring.outcomes")
    out["acknowledged_while_held"] = list(acknowledged)
    gate.set()
    await monitor.writer.drain()
    out["acknowledged"] = list(acknowledged)
    out["rows"] = [list(r) for r in await store.query(
        "SELECT labeled, correct FROM monitoring.window_metrics ORDER BY updated_at")]
    out["alert_rows"] = [list(r) for r in await store.query("SELECT type, status FROM monitoring.alerts")]
    await monitor.refresh()
    out["final_row"] = [list(r) for r in await store.query(
        "SELECT labeled, correct FROM monitoring.window_metrics FINAL")]
    await monitor.writer.close()
    await store.close()
    return out


@pytest.fixture(scope="module")
def run() -> dict:
    return json.loads(run_script(__file__, timeout=120))


def test_batches_waiting_for_the_writer_share_one_write_and_are_acknowledged_once_stored(run):
    assert run["merged_messages"] == 400  # a and b: 2 x 200 messages
    assert run["acknowledged_while_held"] == []
    assert run["outcomes_while_held"] == 0
    assert run["acknowledged"] == ["a", "b", "c"]


def test_a_batch_after_a_refresh_is_not_merged_into_the_facts_before_it(run):
    assert run["own_write_messages"] == 600  # c alone


def test_the_refresh_computes_exactly_the_input_before_it(run):
    # Rows in the order written: the queued refresh saw a and b (200 right), not c.
    assert [200, 200] in run["rows"]
    assert run["rows"][0] in ([0, 0], [200, 200])  # the first refresh, before any fact, may have written a row
    assert run["final_row"] == [[500, 200]]


def test_adwin_alert_is_sent_before_its_batch_is_stored_and_stored_with_it(run):
    assert run["sent_while_held"] == [["error_rate_drift", "firing", 0]]
    assert run["alert_rows"] == [["error_rate_drift", "firing"]]


if __name__ == "__main__":
    sys.stdout.write(json.dumps(asyncio.run(_scenario())))
