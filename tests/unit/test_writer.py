"""The background writer: order kept, bounded queue (backpressure), failures isolated."""

from __future__ import annotations

import asyncio

from sinks.writer import OrderedWriter


def test_jobs_run_in_order_and_submit_waits_when_depth_is_reached():
    async def scenario() -> tuple[list[str], list[int]]:
        writer = OrderedWriter(depth=2)
        gate = asyncio.Event()
        log: list[str] = []
        waiting_seen: list[int] = []

        def job(name: str, block: bool = False):
            async def run() -> None:
                if block:
                    await gate.wait()
                log.append(name)
            return run

        await writer.submit(job("a", block=True))
        await asyncio.sleep(0)  # the writer takes "a" and blocks on the gate
        await writer.submit(job("b"))
        await writer.submit(job("c"))
        fourth = asyncio.create_task(writer.submit(job("d")))
        await asyncio.sleep(0.05)
        waiting_seen.append(writer.waiting)
        assert not fourth.done()  # two jobs queued behind a running one: submit waits
        gate.set()
        await fourth
        await writer.drain()
        waiting_seen.append(writer.waiting)
        await writer.close()
        return log, waiting_seen

    log, waiting = asyncio.run(scenario())
    assert log == ["a", "b", "c", "d"]
    assert waiting == [3, 0]


def test_a_failed_job_is_counted_and_the_next_ones_still_run():
    async def scenario() -> tuple[list[int], int]:
        writer = OrderedWriter(depth=1)
        done: list[int] = []

        async def fails() -> None:
            raise RuntimeError("boom")

        async def works() -> None:
            done.append(1)

        await writer.submit(fails)
        await writer.submit(works)
        await writer.drain()
        await writer.close()
        return done, writer.failed_jobs

    assert asyncio.run(scenario()) == ([1], 1)
