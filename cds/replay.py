"""Replay / idempotency store (DESIGN §8.11): the same (signer, action, message_id) seen again
within its signature's validity is ACKed again but processed once."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Callable, Protocol

MAX_REPLAY_WINDOW_S = 3600


def replay_key(signer: str, action: str, message_id: str) -> str:
    return f"{signer}|{action}|{message_id}"


def replay_ttl(expires: float, now: float) -> float:
    """Remember a message for as long as its signature could be replayed, at most an hour."""
    return max(1.0, min(expires - now, MAX_REPLAY_WINDOW_S))


class ReplayStore(Protocol):
    async def first_seen(self, key: str, ttl_s: float) -> bool:
        """Atomically record `key`; True if it was not already recorded (i.e. process it)."""


class MemoryReplayStore:
    """Single-process store; bounded so a flood of unique ids cannot exhaust memory."""

    def __init__(self, max_entries: int = 200_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._max = max_entries
        self._clock = clock

    async def first_seen(self, key: str, ttl_s: float) -> bool:
        now = self._clock()
        exp = self._seen.get(key)
        if exp is not None and exp > now:
            return False
        self._seen[key] = now + ttl_s
        self._seen.move_to_end(key)
        while len(self._seen) > self._max:
            self._seen.popitem(last=False)
        # Drop a few expired entries from the old end on every call (amortised cleanup).
        for _ in range(4):
            if not self._seen:
                break
            k, e = next(iter(self._seen.items()))
            if e > now:
                break
            self._seen.popitem(last=False)
        return True
