"""Waiting that a stop wakes: the ingest worker's sleeps and waits (`indexer.ingest.worker`,
`indexer.ingest.worker_process`) end early when it is told to stop."""

from __future__ import annotations

import asyncio


async def wait_any(stop: asyncio.Event | None, event: asyncio.Event | None, timeout: float) -> None:
    """Wait until `event` or `stop` is set, or `timeout` passes. (asyncio.wait, not wait_for: on 3.11
    wait_for can swallow a cancellation that races with the event, and shutdown then hangs.)"""
    if any(e is not None and e.is_set() for e in (stop, event)):
        return
    waits = [asyncio.ensure_future(e.wait()) for e in (stop, event) if e is not None]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


def consume_outcome(task: asyncio.Future) -> None:
    """Consume the outcome of an abandoned task (no "exception was never retrieved" noise)."""
    if not task.cancelled():
        task.exception()


async def pause(stop: asyncio.Event | None, seconds: float) -> None:
    """Sleep, waking early when `stop` is set (shared with indexer.ingest.worker_process)."""
    if stop is None:
        await asyncio.sleep(seconds)
        return
    await wait_any(stop, None, seconds)
