"""The framework floor: a Faust agent on both input topics that does nothing with its events.

Stock Faust: its own Kafka transport, default sensors, one event at a time;
`/status` reports how many events it saw and when the first and last arrived.
With NOOP_LATENCY=1 it also reads each event's epoch-ms `timestamp` (set by
bench_latency's producer when it produces the event) and `/latency?since=T` gives
percentiles of receive time - timestamp over events produced at or after T.
"""

from __future__ import annotations

import os
import time
from array import array

import faust
import orjson

from benchmarks.stats import percentile
from streams import transport
from streams.settings import load_settings

transport.register()

settings = load_settings()
app = faust.App(
    settings.app_id + "-noop",
    # NOOP_TRANSPORT=monitor-kafka: the same agent on the monitor's transport (streams.transport).
    broker=[f"{os.environ.get('NOOP_TRANSPORT', 'kafka')}://{h}" for h in settings.kafka_bootstrap_servers.split(",")],
    topic_partitions=settings.topic_partitions,
    web_host=settings.web_host,
    web_port=settings.web_port,
    web_tables_enabled=False,
    broker_rebalance_timeout=settings.broker_rebalance_timeout,
    broker_session_timeout=settings.broker_session_timeout,
    broker_heartbeat_interval=min(3.0, settings.broker_session_timeout / 3),
    consumer_auto_offset_reset="earliest",
    store="memory://",
)
source = app.topic(settings.topic_predictions, settings.topic_ground_truth, key_serializer="raw",
                   value_serializer="raw")
seen = {"messages": 0, "first": None, "last": None}
LATENCY = bool(os.environ.get("NOOP_LATENCY"))
produced_at, latency = array("d"), array("d")  # seconds


@app.agent(source)
async def do_nothing(stream: faust.StreamT) -> None:
    async for value in stream:
        now = time.time()
        if seen["first"] is None:
            seen["first"] = now
        seen["messages"] += 1
        seen["last"] = now
        if LATENCY:
            at = orjson.loads(value)["timestamp"] / 1000
            produced_at.append(at)
            latency.append(now - at)


@app.page("/latency")
async def latency_page(web, request):  # type: ignore[no-untyped-def]
    since = float(request.query.get("since", 0))
    values = [v for t, v in zip(produced_at, latency, strict=True) if t >= since]
    return web.json({"n": len(values), **({f"p{p}": percentile(values, p) for p in (50, 95, 99)} if values else {}),
                     "max": max(values, default=None)})


@app.page("/status")
async def status(web, request):  # type: ignore[no-untyped-def]
    return web.json({"counters": {"messages": seen["messages"]}, "first_message_at": seen["first"],
                     "last_message_at": seen["last"]})
