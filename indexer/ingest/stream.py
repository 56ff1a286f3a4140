"""Durable ingest on Redis Streams (production mode, `CDS_REDIS_URL` set).

The API appends each verified publish here and ACKs once Redis has it; `cds indexer` workers
(`indexer.ingest.worker`) index it, send `on_catalog_publish`, and only then acknowledge it.

Layout. Every key carries the hash tag `{cds-ingest}` so a Redis Cluster keeps them in one slot (the
scripts touch several at once):

    {cds-ingest}:p<i>          partition stream i; a publisher always maps to the same one (crc32), and
                               one worker at a time holds a partition, so a publisher's catalogs are
                               indexed in the order they were published
    {cds-ingest}:bytes         bytes of all queued entries (the memory bound)
    {cds-ingest}:dedup:<hash>  stream id of an appended publish, for an hour: a publish whose append
                               outcome the API never learned (timeout) and that the BPP retries is not
                               queued twice
    {cds-ingest}:done:<i>:<id> results of an entry that is indexed but whose callback is not yet
                               acknowledged (a redelivery then re-sends the same results, §8.21, and
                               never re-indexes an older version over a newer one)
    {cds-ingest}:dead          dead-letter stream: entry, reason, source partition/id, deliveries (capped)
    {cds-ingest}:lease:<i>     the worker holding partition i;  {cds-ingest}:workers  worker heartbeats
    {cds-ingest}:partitions    the partition count, fixed by the first process that starts

Entries carry `e` (msgpack IngestEntry), `p` (publisher id) and `n` (size). An acknowledged entry is
deleted in the same script (XACK + XDEL), so the summed XLEN of the partitions is the backlog, which
the append script checks atomically: beyond `CDS_INGEST_MAX_BACKLOG` entries or
`CDS_INGEST_MAX_BACKLOG_BYTES` a publish is a 503 `NET_OVERLOADED` instead of growing Redis without
bound. Redis unreachable: 503 `NET_DOWNSTREAM_UNAVAILABLE`, nothing is ACKed that is not stored.

Durability of an ACK is Redis's: run it with `appendonly yes` (`appendfsync always` for zero loss on
a power cut; `everysec` risks the last second).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import zlib
from typing import TYPE_CHECKING, Any

import msgspec
from redis.exceptions import ResponseError

from cds.core import errors as E
from cds.core.errors import BecknError
from cds.redisstate import REDIS_ERRORS
from indexer.ingest.entry import IngestEntry, encode_entry
if TYPE_CHECKING:
    from redis.asyncio import Redis

    from cds.config import Settings
    from cds.metrics import Metrics

log = logging.getLogger("cds.ingest.stream")

GROUP = "indexers"
TAG = "cds-ingest"
DEDUP_TTL_S = 3600                 # the replay window (docs/decisions.md §11)
DONE_TTL_S = 7 * 24 * 3600         # results kept for a pending callback; gone with the ack anyway
DEAD_MAXLEN = 10_000               # dead letters kept (oldest dropped first)
APPEND_TIMEOUT_S = 5.0             # the publish request never waits longer on Redis than this
MAX_REASON_CHARS = 1000


class Backlog(msgspec.Struct, kw_only=True):
    entries: int = 0        # queued: not yet acknowledged (includes `pending`)
    bytes: int = 0
    pending: int = 0        # delivered to a worker, not yet acknowledged
    dead: int = 0           # in the dead-letter stream

    @property
    def lag(self) -> int:   # queued and not yet delivered
        return max(0, self.entries - self.pending)


class StreamKeys:
    def __init__(self, partitions: int, tag: str = TAG) -> None:
        self.partitions = partitions
        self.base = "{" + tag + "}"
        self.bytes = f"{self.base}:bytes"
        self.dead = f"{self.base}:dead"
        self.workers = f"{self.base}:workers"
        self.meta = f"{self.base}:partitions"

    def stream(self, i: int) -> str:
        return f"{self.base}:p{i}"

    def all_streams(self) -> list[str]:
        return [self.stream(i) for i in range(self.partitions)]

    def lease(self, i: int) -> str:
        return f"{self.base}:lease:{i}"

    def done(self, i: int, entry_id: str) -> str:
        return f"{self.base}:done:{i}:{entry_id}"

    def dedup(self, entry: IngestEntry) -> str:
        # a spooled body is named by its file, unique per request (an append retried for it is still one)
        body = entry.body if entry.spool is None else entry.spool.encode()
        h = hashlib.blake2b(entry.publisher_id.encode() + b"\0" + body, digest_size=16).hexdigest()
        return f"{self.base}:dedup:{h}"

    def partition_of(self, publisher_id: str) -> int:
        return zlib.crc32(publisher_id.encode()) % self.partitions


# KEYS: target stream, bytes counter, dedup key, then every partition stream.
# ARGV: entry, publisher, size, max entries, max bytes, dedup ttl ms.
# Returns {2, id} appended | {1, id} already appended | {0, entries, bytes} full.
_APPEND = """
local dup = redis.call('GET', KEYS[3])
if dup then return {1, dup} end
local n = 0
for i = 4, #KEYS do n = n + redis.call('XLEN', KEYS[i]) end
local b = tonumber(redis.call('GET', KEYS[2]) or '0')
if n == 0 and b ~= 0 then b = 0; redis.call('SET', KEYS[2], 0) end
local size = tonumber(ARGV[3])
if n >= tonumber(ARGV[4]) or (n > 0 and b + size > tonumber(ARGV[5])) then return {0, n, b} end
local id = redis.call('XADD', KEYS[1], '*', 'e', ARGV[1], 'p', ARGV[2], 'n', ARGV[3])
redis.call('INCRBY', KEYS[2], size)
redis.call('SET', KEYS[3], id, 'PX', ARGV[6])
return {2, id}
"""

# KEYS: stream, bytes counter, done key. ARGV: group, id, size. Idempotent (a second ack changes nothing).
_ACK = """
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
local d = redis.call('XDEL', KEYS[1], ARGV[2])
if d > 0 then
  local b = redis.call('DECRBY', KEYS[2], ARGV[3])
  if b < 0 then redis.call('SET', KEYS[2], 0) end
end
redis.call('DEL', KEYS[3])
return d
"""

# KEYS: bytes counter, then per entry its stream and done key. ARGV: group, then per entry id and size.
# The same as _ACK for many entries at once (one round trip per batch, indexer/ingest/batching.py).
_ACK_MANY = """
local freed = 0
for j = 2, #KEYS, 2 do
  local id = ARGV[j]
  redis.call('XACK', KEYS[j], ARGV[1], id)
  if redis.call('XDEL', KEYS[j], id) > 0 then freed = freed + tonumber(ARGV[j + 1]) end
  redis.call('DEL', KEYS[j + 1])
end
if freed > 0 then
  local b = redis.call('DECRBY', KEYS[1], freed)
  if b < 0 then redis.call('SET', KEYS[1], 0) end
end
return freed
"""

# KEYS: stream, bytes counter, done key, dead stream.
# ARGV: group, id, size, entry, publisher, reason, deliveries, partition, dead maxlen.
_DEAD = """
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[9], '*', 'e', ARGV[4], 'p', ARGV[5], 'reason', ARGV[6],
           'source', ARGV[2], 'partition', ARGV[8], 'deliveries', ARGV[7])
""" + _ACK


class IngestStream:
    """Appending (API) and the entry lifecycle (workers) over one Redis client."""

    def __init__(self, redis: "Redis", *, partitions: int = 16, max_backlog: int = 10_000,
                 max_backlog_bytes: int = 512 << 20, tag: str = TAG) -> None:
        self.redis = redis
        self.keys = StreamKeys(partitions, tag)
        self.max_backlog = max_backlog
        self.max_backlog_bytes = max_backlog_bytes
        self._append = redis.register_script(_APPEND)
        self._ack = redis.register_script(_ACK)
        self._dead = redis.register_script(_DEAD)
        self._ack_many = redis.register_script(_ACK_MANY)

    @classmethod
    def from_settings(cls, redis: "Redis", settings: "Settings") -> "IngestStream":
        return cls(redis, partitions=settings.ingest_partitions, max_backlog=settings.ingest_max_backlog,
                   max_backlog_bytes=settings.ingest_max_backlog_bytes)

    async def open(self) -> None:
        """Agree on the partition count (the first process fixes it: moving a publisher to another
        partition while entries are queued would break its order) and create the consumer groups."""
        await self.redis.set(self.keys.meta, self.keys.partitions, nx=True)
        stored = int(await self.redis.get(self.keys.meta))
        if stored != self.keys.partitions:
            log.warning("CDS_INGEST_PARTITIONS=%d but the stream has %d partitions; using %d",
                        self.keys.partitions, stored, stored)
            self.keys = StreamKeys(stored, self.keys.base.strip("{}"))
        await self.ensure_groups()

    async def ensure_groups(self) -> None:
        """Create missing consumer groups (at id 0: entries appended before the group existed count)."""
        for name in self.keys.all_streams():
            try:
                await self.redis.xgroup_create(name, GROUP, id="0", mkstream=True)
            except ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise

    # ---- producer ------------------------------------------------------------------------------

    async def append(self, entry: IngestEntry) -> str:
        """Queue one publish durably; its stream id. BecknError 503 when full or unreachable."""
        data = encode_entry(entry)
        i = self.keys.partition_of(entry.publisher_id)
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation (shutdown hangs).
            # a big catalog takes Redis a while to copy and fsync: the bound grows with it (~10 MB/s)
            async with asyncio.timeout(APPEND_TIMEOUT_S + len(data) / (10 << 20)):
                res = await self._append(
                    keys=[self.keys.stream(i), self.keys.bytes, self.keys.dedup(entry), *self.keys.all_streams()],
                    args=[data, entry.publisher_id, len(data), self.max_backlog, self.max_backlog_bytes,
                          DEDUP_TTL_S * 1000])
        except REDIS_ERRORS as e:
            raise Unavailable(f"the ingest queue is unreachable ({type(e).__name__}); the publish was not "
                              "accepted, send it again later") from e
        if res[0] == 0:
            raise Overloaded(int(res[1]), int(res[2]))
        return as_str(res[1])

    # ---- consumer side -------------------------------------------------------------------------

    async def ack(self, i: int, entry_id: str, size: int) -> None:
        await self._ack(keys=[self.keys.stream(i), self.keys.bytes, self.keys.done(i, entry_id)],
                        args=[GROUP, entry_id, size])

    async def ack_many(self, entries: list[tuple[int, str, int]]) -> None:
        """Acknowledge (partition, id, size) entries in one script call, each as by `ack` (idempotent too)."""
        keys, args = self._ack_many_args(entries)
        await self._ack_many(keys=keys, args=args)

    def queue_ack_many(self, pipe: Any, entries: list[tuple[int, str, int]]) -> None:
        """`ack_many` queued on a pipeline, by the script's hash only: a registered script makes the pipeline
        ask Redis whether it knows it first, one more round trip per batch. Its reply is a NoScriptError
        when Redis does not know it (restarted): then `ack_many` loads it."""
        keys, args = self._ack_many_args(entries)
        pipe.evalsha(self._ack_many.sha, len(keys), *keys, *args)

    def _ack_many_args(self, entries: list[tuple[int, str, int]]) -> tuple[list, list]:
        keys, args = [self.keys.bytes], [GROUP]
        for i, entry_id, size in entries:
            keys += (self.keys.stream(i), self.keys.done(i, entry_id))
            args += (entry_id, size)
        return keys, args

    async def dead_letter(self, i: int, entry_id: str, fields: dict[bytes, bytes], reason: str,
                          deliveries: int) -> None:
        size = as_int(fields.get(b"n"))
        await self._dead(keys=[self.keys.stream(i), self.keys.bytes, self.keys.done(i, entry_id), self.keys.dead],
                         args=[GROUP, entry_id, size, fields.get(b"e", b""), fields.get(b"p", b""),
                               reason[:MAX_REASON_CHARS], deliveries, i, DEAD_MAXLEN])

    async def backlog(self) -> Backlog:
        pipe = self.redis.pipeline(transaction=False)
        for name in self.keys.all_streams():
            pipe.xlen(name)
        pipe.get(self.keys.bytes)
        pipe.xlen(self.keys.dead)
        res = await pipe.execute()
        p = self.keys.partitions
        pending = 0
        pipe = self.redis.pipeline(transaction=False)
        for name in self.keys.all_streams():
            pipe.xpending(name, GROUP)
        for r in await pipe.execute(raise_on_error=False):
            if isinstance(r, dict):
                pending += int(r.get("pending") or 0)
        return Backlog(entries=sum(res[:p]), bytes=as_int(res[p]), pending=pending, dead=int(res[p + 1]))

    async def dead_letters(self, count: int = 100) -> list[dict[str, Any]]:
        """The newest dead letters (operators, tests): id, reason, publisher, source, deliveries, entry."""
        out = []
        for entry_id, f in await self.redis.xrevrange(self.keys.dead, count=count):
            out.append({"id": as_str(entry_id), "reason": as_str(f.get(b"reason", b"")), "publisher": as_str(f.get(b"p", b"")),
                        "source": as_str(f.get(b"source", b"")), "partition": as_int(f.get(b"partition")),
                        "deliveries": as_int(f.get(b"deliveries")), "entry": f.get(b"e", b"")})
        return out


class Overloaded(BecknError):
    def __init__(self, entries: int, size: int) -> None:
        super().__init__(E.NET_OVERLOADED, f"the ingest queue is full ({entries} publishes, {size} bytes waiting "
                                           "to be indexed); the publish was not accepted, send it again later", 503)


class Unavailable(BecknError):
    def __init__(self, message: str) -> None:
        super().__init__(E.NET_DOWNSTREAM_UNAVAILABLE, message, 503)


def as_str(v: Any) -> str:
    """Redis replies are bytes (or str with decode_responses): text either way."""
    return v.decode() if isinstance(v, bytes) else str(v)


def as_int(v: Any) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0


class StreamIngest:
    """The API's ingest in stream mode (same face as `indexer.ingest.local.IngestPipeline`): `submit`
    appends; `run` keeps the backlog metrics fresh and, when this process also indexes (the embedded
    index cannot be shared with a separate `cds indexer`), runs a worker in-process."""

    def __init__(self, stream: IngestStream, metrics: "Metrics", worker: Any | None = None,
                 refresh_s: float = 2.0) -> None:
        self.stream = stream
        self.metrics = metrics
        self.worker = worker
        self.refresh_s = refresh_s
        self._last = Backlog()
        self._stop = asyncio.Event()

    async def open(self) -> None:
        try:
            await self.stream.open()
        except REDIS_ERRORS as e:   # Redis down at start: publish NACKs until it is back; the worker retries
            log.warning("ingest stream not reachable at start (%s); retrying in the background", e)

    async def submit(self, entry: IngestEntry) -> str:
        try:
            entry_id = await self.stream.append(entry)
        except Overloaded:
            self.metrics.ingest_overloaded.labels("overloaded").inc()
            raise
        except Unavailable:
            self.metrics.ingest_overloaded.labels("unavailable").inc()
            raise
        return entry_id

    def pending_count(self) -> int:
        return self._last.entries

    async def refresh(self) -> Backlog:
        b = await self.stream.backlog()
        self._last = b
        m = self.metrics
        m.ingest_pending.set(b.entries)
        m.ingest_backlog_bytes.set(b.bytes)
        m.ingest_stream_pending.set(b.pending)
        m.ingest_consumer_lag.set(b.lag)
        m.ingest_dead_letters.set(b.dead)
        return b

    async def run(self) -> None:
        refresh = asyncio.ensure_future(self._refresh_loop())
        work = asyncio.ensure_future(self.worker.run(self._stop)) if self.worker is not None else None
        tasks = [t for t in (refresh, work) if t is not None]
        try:
            await asyncio.wait(tasks)           # (not gather: a cancelled gather cancels the worker at once)
        finally:
            self._stop.set()
            refresh.cancel()
            if work is not None:                # graceful: finish what was read, hand the partitions back
                await asyncio.wait([work], timeout=30)
                work.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _refresh_loop(self) -> None:
        while True:             # until cancelled by `run`
            try:
                await self.refresh()
            except REDIS_ERRORS:
                pass        # metrics keep their last values while Redis is away
            await asyncio.sleep(self.refresh_s)

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until the queue is empty and no callback is in flight (tests, shutdown)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if (await self.stream.backlog()).entries == 0 and (self.worker is None or self.worker.idle()):
                return
            await asyncio.sleep(0.02)
        raise TimeoutError("ingest stream did not drain")

    async def close(self) -> None:
        self._stop.set()
        if self.worker is not None:
            await self.worker.stopped()
