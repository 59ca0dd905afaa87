"""The store's retry loop: nothing dropped, one warning per outage however many calls wait on it."""

from __future__ import annotations

import asyncio
import logging

from sinks.clickhouse import ClickHouseStore, parse_target


def test_concurrent_calls_in_one_outage_warn_once_and_all_get_through(caplog):
    store = ClickHouseStore(parse_target("http://127.0.0.1:9"), retry_initial=0.01, retry_max=0.02)
    events: list[tuple[bool, str]] = []
    store.on_outage = lambda down, message: events.append((down, message))
    down_for = [8]  # the server refuses the first 8 attempts, whoever makes them

    def call(name: str):
        def fn() -> str:
            if down_for[0]:
                down_for[0] -= 1
                raise ConnectionError("Connection refused")
            return name
        return fn

    async def main() -> list[str]:
        results = await asyncio.gather(store._with_retry("insert into outcomes", call("insert")),
                                       store._with_retry("query", call("query")))
        await store.close()
        return results

    with caplog.at_level(logging.WARNING, logger="sinks.clickhouse"):
        assert asyncio.run(main()) == ["insert", "query"]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("ClickHouse unavailable during" in m for m in messages) == 1
    assert sum("ClickHouse is back after" in m for m in messages) == 1
    assert [down for down, _ in events] == [True, False]
    assert store.failures == 8 and store.outage_since is None and store.recovered_at > 0
