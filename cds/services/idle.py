"""The turns of background answers (docs/decisions.md §P, "ACKs first"): a step of work done after an ACK
starts only when the event loop has nothing else to run, so that requests never queue behind it."""

from __future__ import annotations

import asyncio
import time
from collections import deque

BACKGROUND_DEFER_S = 0.005   # loop CPU a background step lets other work use first (a busy loop cannot starve it)
_AFTER_IO_S = 1e-6           # a timer fires after the loop queued the callbacks of the sockets that became ready


class IdleGate:
    """Background steps wait here in arrival order. A timer looks once per loop turn, after the loop read the
    sockets that became ready: when nothing else is queued to run (or the loop spent `defer_s` of CPU time on
    other work since the oldest step became the oldest), the oldest step goes, and the next one waits for the loop
    to be idle again. CPU time, not wall time: a process waiting for a core has not served anybody meanwhile.
    asyncio.sleep(0) would instead resume a step ahead of the sockets' callbacks, in every loop turn, whoever
    waits."""

    def __init__(self, defer_s: float = BACKGROUND_DEFER_S) -> None:
        self.defer_s = defer_s
        self._waiting: deque[tuple[asyncio.Future[None], float]] = deque()
        self._armed = False

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._waiting.append((fut, time.thread_time()))
        self._arm(loop)
        await fut

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._armed:
            self._armed = True
            loop.call_later(_AFTER_IO_S, self._turn, loop)

    def _turn(self, loop: asyncio.AbstractEventLoop) -> None:
        self._armed = False
        while self._waiting and self._waiting[0][0].done():       # cancelled meanwhile
            self._waiting.popleft()
        if not self._waiting:
            return
        # The selector loop's run queue (other loops have none: a step then goes once per loop turn).
        queued = getattr(loop, "_ready", None)
        fut, since = self._waiting[0]
        now = time.thread_time()
        if not queued or now - since >= self.defer_s:
            self._waiting.popleft()
            fut.set_result(None)
            if self._waiting:       # the next one's allowance starts now
                self._waiting[0] = (self._waiting[0][0], now)
        if self._waiting:
            self._arm(loop)
