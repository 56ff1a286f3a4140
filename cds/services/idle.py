"""How the steps of a background answer yield the event loop (docs/decisions.md §P, "ACKs first")."""

from __future__ import annotations

import asyncio

_AFTER_IO_S = 1e-6      # a timer: the loop runs it after the callbacks of the sockets that became ready


async def after_io() -> None:
    """Yield once, and resume behind the callbacks of the sockets that became ready meanwhile (a request that
    arrived during the last step is read first). asyncio.sleep(0) resumes ahead of them, in the very next turn.
    Holding a step back further, until the loop is idle, was tried: the answers then lost more than the ACKs
    gained (docs/decisions.md §P)."""
    await asyncio.sleep(_AFTER_IO_S)
