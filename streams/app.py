"""The Faust app: `faust -A streams.app worker -l info`.

Thin wiring only. One agent reads both input topics as raw bytes in batches and
hands them to :class:`streams.monitor.Monitor`; a timer refreshes figures when the
input is idle; a shutdown hook writes what the monitor holds. Offsets of a batch
are acknowledged only after its facts are in ClickHouse (at-least-once in,
idempotent out).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import faust
from aiohttp.web import Response
from faust.types import TP
from prometheus_client import CONTENT_TYPE_LATEST

from sinks.clickhouse import ClickHouseStore, parse_target
from sinks.writer import OrderedWriter
from streams import transport
from streams.alert_rules import Alert
from streams.kafka_config import faust_credentials
from streams.monitor import BATCH_MAX, Monitor, RawMessage
from streams.observability import MonitorMetrics
from streams.records import Rejection
from streams.settings import SettingsError, load_settings
from streams.startup import check_input_topics

log = logging.getLogger(__name__)
# After a batch's first event, how long to wait for more: none. The monitor merges the facts of
# batches that wait for the writer, so a light stream is best taken as it comes.
BATCH_LINGER_S = 0.0
INTAKE_DEPTH = 1  # batches waiting for the monitor while the agent collects the next

try:
    settings = load_settings()
except SettingsError as err:
    print(f"model-monitor: {err}", file=sys.stderr)
    raise SystemExit(2) from None

input_partition_count = 0
if "worker" in sys.argv[1:]:
    input_partition_count = check_input_topics(settings)
    Path(settings.data_dir, "faust").mkdir(parents=True, exist_ok=True)

transport.register()
app = faust.App(
    settings.app_id,
    broker=[f"{transport.SCHEME}://{h}" for h in settings.kafka_bootstrap_servers.split(",")],
    broker_credentials=faust_credentials(settings),
    topic_partitions=settings.topic_partitions,
    web_host=settings.web_host,
    web_port=settings.web_port,
    web_tables_enabled=False,
    broker_rebalance_timeout=settings.broker_rebalance_timeout,
    broker_session_timeout=settings.broker_session_timeout,
    broker_heartbeat_interval=min(3.0, settings.broker_session_timeout / 3),
    consumer_auto_offset_reset="earliest",
    stream_buffer_maxsize=20_000,
    broker_max_poll_records=5_000,
    producer_linger=0.01,
    producer_max_batch_size=512 * 1024,
    store="memory://",
    Monitor="streams.sensor:LeanMonitor",
    datadir=str((Path(settings.data_dir) / "faust").resolve()),
)

input_topic = app.topic(
    settings.topic_predictions, settings.topic_ground_truth,
    key_serializer="raw", value_serializer="raw",
)
alerts_topic = app.topic(settings.topic_alerts, key_serializer="raw", value_serializer="raw")
dlq_topic = app.topic(settings.topic_dlq, key_serializer="raw", value_serializer="raw")


class KafkaOutbox:
    """DLQ and alert events through the app's producer (flushed before offsets are committed)."""

    async def send_dlq(self, message: RawMessage, rejection: Rejection) -> None:
        headers = [
            ("dlq.reason", rejection.reason.encode()),
            ("dlq.error", str(rejection).encode("utf-8", "replace")),
            ("dlq.source.topic", message.topic.encode()),
            ("dlq.source.partition", str(message.partition).encode()),
            ("dlq.source.offset", str(message.offset).encode()),
        ]
        await dlq_topic.send(key=message.key, value=message.value or b"", headers=headers)

    async def send_alert(self, alert: Alert) -> None:
        await alerts_topic.send(key=alert.model.encode(), value=alert.to_json())


store = ClickHouseStore(parse_target(settings.clickhouse_dsn()))
monitor = Monitor(settings, store, KafkaOutbox())
monitor.input_partitions = {(topic, p) for topic in settings.input_topics for p in range(input_partition_count)}


def partition_end(source: tuple[str, int]) -> tuple[int | None, int | None]:
    """(high watermark from the last fetch, committed offset) of an input partition."""
    tp = TP(*source)
    try:
        highwater = app.consumer.highwater(tp)
    except Exception:  # noqa: BLE001 - not fetched yet, or the consumer is restarting
        highwater = None
    committed = getattr(app.consumer, "_committed_offset", {}).get(tp)
    return highwater, committed


monitor.partition_end = partition_end
metrics = MonitorMetrics(monitor)
_started = False


async def _ensure_started() -> None:
    global _started
    async with monitor.lock:
        if not _started:
            await monitor.start()
            _started = True


# Batches wait here for the monitor while the agent collects the next one.
intake = OrderedWriter(depth=INTAKE_DEPTH)


@app.agent(input_topic, concurrency=1)
async def monitor_requests(stream: faust.StreamT) -> None:
    """Hand the input to the monitor in batches: join, measure and alert.

    The agent reads its channel's queue in bulk instead of event by event through
    the stream: the stream's per-event machinery (processors, sensors, acks) cost
    more than the whole monitor. Offsets are acknowledged by :func:`acknowledge`.
    """
    await _ensure_started()
    channel = aiter(stream.channel)  # subscribes, as iterating the stream would
    async for events in batches(channel, BATCH_MAX, BATCH_LINGER_S):
        await intake.submit(partial(process, events))


async def batches(channel: faust.ChannelT, most: int, linger: float) -> AsyncIterator[list[faust.EventT]]:
    """Everything queued, up to ``most`` events; after the first event, wait at most
    ``linger`` seconds for more (fewer, larger ClickHouse inserts)."""
    queue = channel.queue
    while True:
        try:
            events = [await channel.__anext__()]
        except StopAsyncIteration:  # the channel closed: the worker is stopping
            return
        deadline = time.monotonic() + linger
        ended = False
        while len(events) < most and not ended:
            while len(events) < most and not queue.empty():
                events.append(queue.get_nowait())
            remaining = deadline - time.monotonic()
            if len(events) >= most or remaining <= 0:
                break
            try:
                events.append(await asyncio.wait_for(channel.__anext__(), remaining))
            except TimeoutError:
                break
            except StopAsyncIteration:
                ended = True
        yield events
        if ended:
            return


async def process(events: list[faust.EventT]) -> None:
    batch = [RawMessage(e.message.topic, e.message.partition, e.message.offset, e.message.key, e.message.value)
             for e in events]
    async with monitor.lock:
        started = time.perf_counter()
        await monitor.process_batch(batch, on_written=partial(acknowledge, events))
        metrics.observe_batch(events, started)


def acknowledge(events: list[faust.EventT]) -> None:
    """The batch's facts are in ClickHouse: its offsets may be committed."""
    for e in events:
        e.message.ack(app.consumer)


@app.timer(1.0)
async def refresh_when_idle() -> None:
    """Windows close and become final as the watermark moves; keep rows current when input pauses."""
    if not _started:
        return
    async with monitor.lock:
        await monitor.refresh_if_due()


@app.on_before_shutdown.connect
async def flush_on_shutdown(sender: faust.App, **kwargs: object) -> None:
    """SIGTERM: write the figures and alerts the monitor still holds."""
    if _started:
        await intake.close()
        async with monitor.lock:
            await monitor.close()
            log.info("Monitor stopped: %s", monitor.counters)


@app.on_partitions_assigned.connect
async def track_assignment(sender: faust.App, assigned: set, **kwargs: object) -> None:
    """Every assigned input partition takes part in the event-time watermark; after a
    rebalance, the memory of newly assigned partitions is rebuilt before they are read."""
    monitor.take_partitions({(tp.topic, tp.partition) for tp in assigned})


@app.on_partitions_revoked.connect
async def track_revocation(sender: faust.App, revoked: set, **kwargs: object) -> None:
    """Store (and so acknowledge) what was read from the partitions before they go to another worker."""
    await intake.drain()
    await monitor.writer.drain()
    monitor.assign(set(), {(tp.topic, tp.partition) for tp in revoked})


@app.page("/query")
class QueryView(faust.web.View):
    """Read-only SQL for `python -m sinks.query` and `python -m sinks.mcp` while the worker
    holds the embedded store: one read statement per request (``sql`` parameter or the POST
    body), optionally at most ``max_rows`` rows; answers ``{"columns", "rows", "truncated"}``
    or 400 with ``{"error"}``."""

    async def get(self, request: faust.web.Request) -> faust.web.Response:
        return await self._answer(request.query.get("sql", ""), request.query.get("max_rows"))

    async def post(self, request: faust.web.Request) -> faust.web.Response:
        return await self._answer(await request.text(), request.query.get("max_rows"))

    async def _answer(self, sql: str, max_rows: str | None) -> faust.web.Response:
        if not sql.strip():
            return self.json({"error": "empty query"}, status=400)
        if max_rows is not None and not (max_rows.isdigit() and int(max_rows) >= 1):
            return self.json({"error": f"max_rows must be a whole number >= 1, got {max_rows[:40]!r}"}, status=400)
        try:
            answer = await store.read_async(sql, max_rows=None if max_rows is None else int(max_rows))
        except Exception as err:  # noqa: BLE001 - the error goes back to the caller
            return self.json({"error": str(err).splitlines()[0][:500]}, status=400)
        return Response(body=answer.to_json(), content_type="application/json")


@app.page("/status")
async def status_page(web, request):  # type: ignore[no-untyped-def]
    """Counters and the watermark, so tools can wait until the worker caught up."""
    return web.json({
        "started": _started,
        "watermark_ms": monitor.refreshed_watermark_ms,  # that of the rows written
        "max_event_ms": monitor.event_time.maximum(),
        "versions": {f"{v.model}/{v.version}": {"watermark_ms": v.refreshed_watermark_ms,
                                                  "max_event_ms": v.event_time.maximum()}
                     for v in monitor.versions.values()},
        "refreshed_messages": monitor.refreshed_messages,
        "first_message_at": monitor.first_message_at,
        "last_message_at": monitor.last_message_at,
        "drained": bool(monitor.assigned) and all(monitor.drained(s) for s in monitor.assigned),
        "counters": monitor.counters.__dict__,
        "pending_predictions": len(monitor.join.pending_predictions),
        "pending_labels": len(monitor.join.pending_labels),
        "assigned": sorted(monitor.assigned),
        "evaluates_alerts": monitor.evaluates_alerts,
    })


@app.page("/metrics")
async def metrics_page(web, request):  # type: ignore[no-untyped-def]
    """Prometheus metrics in the text exposition format (see streams.observability)."""
    return web.bytes(metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})
