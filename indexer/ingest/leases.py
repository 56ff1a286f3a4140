"""Partition leases of the ingest workers: which worker reads which partition stream.

A lease is a Redis key holding the worker's name with a TTL, renewed every third of it. Workers also
heartbeat into a sorted set (on Redis's clock, so host clocks do not matter); from the live count each
takes its fair share, `ceil(partitions / live workers)`: a newcomer gets partitions as the others hand
over their excess (after finishing what they read from it), and a dead worker's leases lapse and are
taken by the survivors. One holder per partition is what keeps a publisher's publishes in order.
"""

from __future__ import annotations

import logging
import math
import zlib
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from indexer.ingest.stream import IngestStream

log = logging.getLogger("cds.indexer")

# KEYS: workers zset. ARGV: name, stale ms. Heartbeat on Redis's clock; returns the live worker count.
_HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
return redis.call('ZCARD', KEYS[1])
"""
# KEYS: lease. ARGV: name, ttl ms. Renew our lease, or take it back if it lapsed and nobody took it.
_RENEW = """
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if not owner then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]); return 1 end
return 0
"""
# KEYS: lease. ARGV: name. Release only our own lease.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class PartitionLeases:
    def __init__(self, redis: "Redis", stream: "IngestStream", name: str, lease_ms: int,
                 on_lost: Callable[[int], None]) -> None:
        self.redis = redis
        self.stream = stream           # its keys (the partition count) are settled by stream.open()
        self.name = name
        self.lease_ms = lease_ms
        self.on_lost = on_lost                 # called for a partition no longer held
        self.held: set[int] = set()
        self.releasing: set[int] = set()       # over our share: finish, then hand over
        self._heartbeat = redis.register_script(_HEARTBEAT)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    async def balance(self, busy: Callable[[int], bool], acquire: bool = True) -> None:
        """One round: heartbeat, renew, hand over what is over our share and idle, take free partitions
        (not when `acquire` is False: shutting down)."""
        keys = self.stream.keys
        live = int(await self._heartbeat(keys=[keys.workers], args=[self.name, self.lease_ms * 3]))
        for i in sorted(self.held):
            if not await self._renew(keys=[keys.lease(i)], args=[self.name, self.lease_ms]):
                log.warning("indexer %s lost partition %d", self.name, i)
                self._drop(i)
        share = math.ceil(keys.partitions / max(1, live))
        for i in sorted(self.releasing):
            if not busy(i):
                await self._release(keys=[keys.lease(i)], args=[self.name])
                self._drop(i)
        excess = len(self.held) - len(self.releasing) - share
        for i in sorted(self.held - self.releasing, reverse=True)[:max(0, excess)]:
            self.releasing.add(i)
        if acquire and len(self.held) < share:
            start = zlib.crc32(self.name.encode()) % keys.partitions    # workers start looking at different places
            for k in range(keys.partitions):
                i = (start + k) % keys.partitions
                if len(self.held) >= share:
                    break
                if i not in self.held and await self.redis.set(keys.lease(i), self.name, nx=True, px=self.lease_ms):
                    self.held.add(i)

    async def release_all(self) -> None:
        for i in sorted(self.held):
            await self._release(keys=[self.stream.keys.lease(i)], args=[self.name])
        await self.redis.zrem(self.stream.keys.workers, self.name)
        self.held.clear()
        self.releasing.clear()

    def _drop(self, i: int) -> None:
        self.held.discard(i)
        self.releasing.discard(i)
        self.on_lost(i)
