"""Replay / idempotency store (docs/decisions.md §11): the same (signer, action, message_id) seen again
within its signature's validity is ACKed again but processed once."""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Callable, Protocol

from cds.redisstate import REDIS_ERRORS, Degraded

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from cds.trust.auth import Inbound

MAX_REPLAY_WINDOW_S = 3600


def replay_key(signer: str, action: str, message_id: str) -> str:
    return f"{signer}|{action}|{message_id}"


def replay_ttl(expires: float, now: float) -> float:
    """Remember a message for as long as its signature could be replayed, at most an hour."""
    return max(1.0, min(expires - now, MAX_REPLAY_WINDOW_S))


class ReplayStore(Protocol):
    async def first_seen(self, key: str, ttl_s: float) -> bool:
        """Atomically record `key`; True if it was not already recorded (i.e. process it)."""

    async def forget(self, key: str) -> None:
        """Un-record `key`: the request was refused after the check, so its retry must be processed."""


def inbound_key(inbound: "Inbound") -> str:
    return replay_key(inbound.caller.subscriber_id, inbound.context.action, inbound.context.message_id or "")


async def first_time(store: ReplayStore, inbound: "Inbound") -> bool:
    """True if this (signer, action, message_id) has not been processed within its validity."""
    return await store.first_seen(inbound_key(inbound), replay_ttl(inbound.caller.signature.expires,
                                                                    inbound.received_at))


async def not_processed(store: ReplayStore, inbound: "Inbound") -> None:
    """Undo `first_time` for a request that was refused after all (e.g. 503 from the ingest queue),
    so that its retry is processed rather than ACKed as a replay."""
    await store.forget(inbound_key(inbound))


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

    async def forget(self, key: str) -> None:
        """Un-record `key` (its request was refused after all, e.g. the ingest queue was full)."""
        self._seen.pop(key, None)


class RedisReplayStore:
    """Shared by every API replica: `SET NX PX` records a key atomically, so a replay sent to another
    replica is recognised too. Keys are hashed (bounded size whatever the message id). While Redis is
    unreachable each replica falls back to its own memory store."""

    def __init__(self, redis: "Redis", *, prefix: str = "cds:replay:", fallback: MemoryReplayStore | None = None) -> None:
        self._redis = redis
        self.prefix = prefix
        self.fallback = fallback or MemoryReplayStore()
        self.degraded = Degraded("replay protection")

    def _key(self, key: str) -> str:
        return self.prefix + hashlib.blake2b(key.encode(), digest_size=16).hexdigest()

    async def first_seen(self, key: str, ttl_s: float) -> bool:
        try:
            return bool(await self._redis.set(self._key(key), b"1", nx=True, px=max(1, int(ttl_s * 1000))))
        except REDIS_ERRORS as e:
            self.degraded.note(e)
            return await self.fallback.first_seen(key, ttl_s)

    async def forget(self, key: str) -> None:
        await self.fallback.forget(key)
        try:
            await self._redis.delete(self._key(key))
        except REDIS_ERRORS as e:
            self.degraded.note(e)
