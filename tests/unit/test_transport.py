"""The eager hand-off of streams.transport: a coroutine started by hand, finished like a Task."""

from __future__ import annotations

import asyncio

import pytest

from streams.transport import SCHEME, finish, register


def test_finish_resumes_a_coroutine_suspended_on_a_future_and_on_a_bare_yield():
    async def scenario() -> tuple[list[str], int]:
        steps: list[str] = []
        gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def callback() -> int:
            steps.append("start")
            await asyncio.sleep(0)  # a bare yield
            steps.append("after yield")
            value = await gate
            steps.append("after future")
            return value + 1

        coro = callback()
        awaiting = coro.send(None)  # run by hand up to its first wait, as the consumer does
        assert awaiting is None and steps == ["start"]
        task = asyncio.ensure_future(finish(coro, awaiting))
        await asyncio.sleep(0.01)
        assert steps == ["start", "after yield"] and not task.done()
        gate.set_result(41)
        return steps, await task

    steps, result = asyncio.run(scenario())
    assert steps == ["start", "after yield", "after future"] and result == 42


def test_finish_passes_the_awaited_exception_into_the_coroutine():
    async def scenario() -> None:
        gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def callback() -> int:
            return await gate

        coro = callback()
        awaiting = coro.send(None)
        gate.set_exception(ValueError("bad"))
        await finish(coro, awaiting)

    with pytest.raises(ValueError, match="bad"):
        asyncio.run(scenario())


def test_broker_urls_with_the_scheme_use_the_monitor_transport():
    from faust.transport.drivers import by_url

    from streams.transport import Transport

    register()
    assert by_url(f"{SCHEME}://127.0.0.1:9092") is Transport


def test_the_worker_consumer_asks_for_fuller_fetches_than_faust_does():
    """Faust fixes fetch_max_wait_ms at 1500 with fetch_min_bytes 1; the worker's consumer waits for
    FETCH_MIN_BYTES or FETCH_MAX_WAIT_MS (a broker that does not answer early stalls live input)."""
    import faust

    from streams.transport import FETCH_MAX_WAIT_MS, FETCH_MIN_BYTES

    register()

    async def created() -> tuple[int, int]:
        app = faust.App("fetch-settings-test", broker=f"{SCHEME}://127.0.0.1:9")
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        return consumer._fetch_min_bytes, consumer._fetch_max_wait_ms

    assert asyncio.run(created()) == (FETCH_MIN_BYTES, FETCH_MAX_WAIT_MS) == (64 * 1024, 100)
