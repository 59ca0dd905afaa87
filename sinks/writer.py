"""Write jobs in the background, in order, with a bounded queue.

The worker hands each batch's facts to this writer and goes on parsing the next
batch while ClickHouse stores the previous one (the embedded engine releases the
GIL, so the two overlap on a second core). Order is kept (one job at a time), and
the queue is bounded: when ClickHouse is slow or down, ``submit`` waits, which
pauses consumption instead of growing memory.

>>> import asyncio
>>> async def demo():
...     done = []
...     writer = OrderedWriter(depth=2)
...     for i in range(3):
...         async def job(i=i): done.append(i)
...         await writer.submit(job)
...     await writer.drain()
...     await writer.close()
...     return done
>>> asyncio.run(demo())
[0, 1, 2]
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)
Job = Callable[[], Awaitable[None]]


class OrderedWriter:
    """Runs jobs one after another on a task of its own; at most ``depth`` jobs wait."""

    def __init__(self, depth: int = 2) -> None:
        self.depth = depth
        self._queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=depth)
        self._task: asyncio.Task[None] | None = None
        self.failed_jobs = 0

    @property
    def waiting(self) -> int:
        """Jobs submitted and not yet finished (including the one running)."""
        return self._queue._unfinished_tasks  # type: ignore[attr-defined]

    async def submit(self, job: Job) -> None:
        """Queue a job; waits while ``depth`` jobs are already waiting (backpressure)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ordered-writer")
        await self._queue.put(job)

    async def drain(self) -> None:
        """Until every submitted job has finished."""
        if self._task is not None:
            await self._queue.join()

    async def close(self) -> None:
        await self.drain()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - one failed job must not stop the ones after it
                # Its batch is then never acknowledged, so Kafka delivers it again after a restart.
                self.failed_jobs += 1
                log.exception("A background write failed; its input will be read again after a restart")
            finally:
                self._queue.task_done()
