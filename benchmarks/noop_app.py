"""The framework floor: a Faust agent on both input topics that does nothing with its events.

Stock Faust: its own Kafka transport, default sensors, one event at a time;
`/status` reports how many events it saw and when the first and last arrived.
"""

from __future__ import annotations

import os
import time

import faust

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


@app.agent(source)
async def do_nothing(stream: faust.StreamT) -> None:
    async for _ in stream:
        if seen["first"] is None:
            seen["first"] = time.time()
        seen["messages"] += 1
        seen["last"] = time.time()


@app.page("/status")
async def status(web, request):  # type: ignore[no-untyped-def]
    return web.json({"counters": {"messages": seen["messages"]}, "first_message_at": seen["first"],
                     "last_message_at": seen["last"]})
