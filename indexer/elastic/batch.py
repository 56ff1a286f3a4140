"""Group commit: concurrent writers share one write.

Each caller submits one job and waits for its own outcome. One flush runs at a time and takes every job
queued when it starts (up to `max_weight`, at least one job); whatever arrives meanwhile waits for the next
flush. So an idle writer pays one flush, and under load the batches grow by themselves until a flush
carries a time slice's worth of work: the per-write costs (a refresh, a generations flip) are paid per
batch, not per catalog. `min_interval_s` spaces the flushes' starts: jobs arriving within it of the
previous start wait for the next, together (a flush after a quiet spell starts at once). The flush returns one outcome per job (None, or the exception for that job
alone): a failed job does not fail its batch-mates.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from typing import Awaitable, Callable, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

Flush = Callable[[list[T]], Awaitable[list[BaseException | None]]]


class GroupCommit(Generic[T]):
    def __init__(self, flush: Flush, *, weight: Callable[[T], int], max_weight: int,
                 min_interval_s: float = 0.0) -> None:
        self._flush = flush
        self._weight = weight
        self._max_weight = max_weight
        self._min_interval_s = min_interval_s
        self._started = -math.inf         # when the last flush started (loop time)
        self._queue: deque[tuple[T, asyncio.Future]] = deque()
        self._runner: asyncio.Task | None = None

    async def submit(self, job: T) -> None:
        """Queue `job`; return once it is written, or raise its own error."""
        fut = asyncio.get_running_loop().create_future()
        fut.add_done_callback(_retrieve)
        self._queue.append((job, fut))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.get_running_loop().create_task(self._run())
        # shield: a caller that gives up does not cancel a flush carrying other callers' jobs
        await asyncio.shield(fut)

    async def _run(self) -> None:
        await asyncio.sleep(0)      # let the callers woken together with this one queue their jobs too
        loop = asyncio.get_running_loop()
        while self._queue:
            pause = self._started + self._min_interval_s - loop.time()
            if pause > 0:
                await asyncio.sleep(pause)
            self._started = loop.time()
            batch = self._take()
            jobs = [job for job, _ in batch]
            try:
                outcomes = await self._flush(jobs)
            except BaseException as e:  # noqa: BLE001 - handed to every caller of the batch
                outcomes = [e] * len(batch)
                if isinstance(e, asyncio.CancelledError):
                    self._fail_all(batch + list(self._queue), e)
                    self._queue.clear()
                    raise
            for (_, fut), outcome in zip(batch, outcomes):
                if fut.done():
                    continue
                if outcome is None:
                    fut.set_result(None)
                else:
                    self._fail_all([(None, fut)], outcome)

    def _take(self) -> list[tuple[T, asyncio.Future]]:
        batch = [self._queue.popleft()]
        weight = self._weight(batch[0][0])
        while self._queue and weight + self._weight(self._queue[0][0]) <= self._max_weight:
            job = self._queue.popleft()
            weight += self._weight(job[0])
            batch.append(job)
        return batch

    @staticmethod
    def _fail_all(batch: list[tuple[T | None, asyncio.Future]], e: BaseException) -> None:
        for _, fut in batch:
            if fut.done():
                continue
            if isinstance(e, asyncio.CancelledError):
                fut.cancel()
            else:
                fut.set_exception(e)

    async def close(self) -> None:
        """Stop flushing; queued jobs fail with CancelledError."""
        if self._runner is not None and not self._runner.done():
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        self._fail_all(list(self._queue), asyncio.CancelledError())
        self._queue.clear()


def _retrieve(fut: asyncio.Future) -> None:
    """A caller that gave up no longer awaits its job's outcome: consume it (no "never retrieved" noise)."""
    if not fut.cancelled():
        fut.exception()
