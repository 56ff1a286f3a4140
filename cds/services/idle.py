"""How the steps of a background answer yield the event loop (docs/decisions.md §P, "ACKs first")."""

from __future__ import annotations

import asyncio


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def after_io() -> None:
    """Yield once, and resume behind the callbacks of the sockets that became ready meanwhile (a request that
    arrived during the last step is read first). asyncio.sleep(0) resumes ahead of them, in the very next turn.
    A timer due now does it: the loop runs due timers after the sockets' callbacks and never sleeps for one
    (a timer even 1 µs ahead made an otherwise idle loop sleep 1 ms: epoll's resolution)."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    loop.call_later(0, _wake, fut)
    await fut
