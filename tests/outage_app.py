"""The worker's app with one test-only page: `/test/outage?seconds=N` makes every ClickHouse
call fail for N seconds, as if the server were down (the embedded engine cannot be stopped
from outside). Run as `faust -A tests.outage_app worker`."""

from __future__ import annotations

import time

from streams.app import app, store

__all__ = ["app"]


@app.page("/test/outage")
async def outage(web, request):  # type: ignore[no-untyped-def]
    seconds = float(request.query["seconds"])
    store.unavailable_until = time.monotonic() + seconds
    return web.json({"seconds": seconds})
