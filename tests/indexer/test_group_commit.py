"""GroupCommit (indexer/elastic/batch.py): how jobs are gathered into flushes, each keeping its own outcome."""

from __future__ import annotations

import asyncio

import pytest

from indexer.elastic.batch import GroupCommit


class Recorder:
    def __init__(self) -> None:
        self.flushes: list[list[str]] = []

    async def flush(self, jobs: list[str]) -> list[BaseException | None]:
        self.flushes.append(list(jobs))
        await asyncio.sleep(0)
        return [ValueError(j) if j.startswith("bad") else None for j in jobs]


async def _ticks(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_jobs_arriving_soon_after_a_flush_started_wait_and_go_together():
    rec = Recorder()
    gc = GroupCommit(rec.flush, weight=lambda j: 1, max_weight=100, min_interval_s=1.0)
    await gc.submit("a")                        # after a quiet spell: flushed at once
    b = asyncio.ensure_future(gc.submit("b"))
    await _ticks(5)                             # b's flush would have started by now without the interval
    c = asyncio.ensure_future(gc.submit("c"))
    bad = asyncio.ensure_future(gc.submit("bad-d"))
    await asyncio.gather(b, c)
    with pytest.raises(ValueError):             # its own outcome; its batch-mates went through
        await bad
    assert rec.flushes == [["a"], ["b", "c", "bad-d"]]
    await gc.close()


async def test_without_an_interval_a_flush_starts_as_soon_as_the_previous_one_ends():
    rec = Recorder()
    gc = GroupCommit(rec.flush, weight=lambda j: 1, max_weight=100)
    await gc.submit("a")
    b = asyncio.ensure_future(gc.submit("b"))
    await _ticks(5)
    c = asyncio.ensure_future(gc.submit("c"))
    await asyncio.gather(b, c)
    assert rec.flushes == [["a"], ["b"], ["c"]]
    await gc.close()


async def test_close_fails_jobs_waiting_for_the_next_flush():
    rec = Recorder()
    gc = GroupCommit(rec.flush, weight=lambda j: 1, max_weight=100, min_interval_s=60.0)
    await gc.submit("a")
    waiting = asyncio.ensure_future(gc.submit("b"))
    await _ticks(5)
    await gc.close()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert rec.flushes == [["a"]]
