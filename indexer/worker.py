"""The ingest worker (`cds indexer`): consumes the publish stream (`indexer.stream`), indexes, sends
`on_catalog_publish`, and only then acknowledges each entry.

Ordering. Entries are spread over partition streams by publisher, and a worker processes a partition
only while it holds that partition's lease (a Redis key with a TTL, renewed every third of it). So
any number of replicas share the work - each takes about `partitions / live workers` partitions - and
a publisher's publishes are indexed in the order they were ACKed (per-catalog order follows; it is a
little stronger than needed, but holds for MERGE publishes and needs no catalog ids before parsing).
Within a batch, different publishers are indexed concurrently, one publisher's entries in order.

Crash safety (§4 "never lost", §8.21).
- An entry is acknowledged (XACK + XDEL) only after its callback went out. A worker that dies leaves
  its entries pending in the consumer group; whoever takes the partition next reclaims them with
  XAUTOCLAIM once idle for `CDS_INGEST_CLAIM_IDLE_S` and processes them before anything newer.
- Once indexed, an entry's results are stored (`done` key) before the next entry of that publisher is
  indexed: a redelivery re-sends the same results and never re-indexes an old version over a newer
  one. Only a callback in flight at a crash is sent twice.
- Index unavailable: the entry is retried with backoff for as long as the index is down (never
  dead-lettered for that); publishes keep being ACKed and queued up to the backlog bound.
- Poison: an entry that cannot be decoded or parsed, that fails `CDS_INGEST_MAX_ATTEMPTS` times while
  the index is up, or that was delivered more than `CDS_INGEST_MAX_DELIVERIES` times (it keeps killing
  workers) goes to the dead-letter stream with the reason; the publisher gets a REJECTED result when
  the publish can be parsed.
- Redis unreachable: the worker backs off and resumes by itself (partitions it loses are recovered
  from the pending list by their next holder).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import socket
import time
import uuid
from typing import TYPE_CHECKING, Any

import msgspec
from redis.exceptions import ResponseError

from cds import errors as E
from cds.errors import BecknError
from cds.models import CatalogResult, PublishRequest
from cds.protocol import PUBLISH_ACTIONS, parse_context, parse_json, parse_publish
from cds.redisstate import REDIS_ERRORS
from cds.services.publish import IngestEntry, PublishService, decode_entry
from indexer.stream import DONE_TTL_S, GROUP, IngestStream

if TYPE_CHECKING:
    from cds.config import Settings
    from cds.metrics import Metrics
    from indexer.storage import Storage

log = logging.getLogger("cds.indexer")

BLOCK_MS = 1000                  # XREADGROUP wait (below the client's socket timeout)
READY_TIMEOUT_S = 5.0
MAX_BACKOFF_S = 5.0
STALE_CONSUMER_FACTOR = 20       # consumers idle 20 x claim_idle with nothing pending are removed

_results_enc = msgspec.msgpack.Encoder()
_results_dec = msgspec.msgpack.Decoder(list[CatalogResult])

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


class _Item(msgspec.Struct):
    """One delivered stream entry."""
    partition: int
    id: str
    fields: dict
    deliveries: int = 1


class _Abandon(Exception):
    """Stop working on a partition (lease lost, shutting down); its entries stay pending."""


def worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def parse_entry(entry: IngestEntry, settings: "Settings") -> PublishRequest:
    doc = parse_json(entry.body)
    ctx = parse_context(doc, expected_actions=PUBLISH_ACTIONS, now=entry.received_at,
                        clock_skew_s=settings.clock_skew_s)
    return parse_publish(doc, ctx)


class StreamWorker:
    def __init__(self, stream: IngestStream, service: PublishService, storage: "Storage", settings: "Settings",
                 metrics: "Metrics", *, name: str | None = None) -> None:
        self.stream = stream
        self.redis = stream.redis
        self.service = service
        self.storage = storage
        self.settings = settings
        self.metrics = metrics
        self.name = name or worker_name()
        self.lease_ms = max(300, int(settings.ingest_lease_s * 1000))
        self.claim_idle_ms = max(100, int(settings.ingest_claim_idle_s * 1000))
        self.held: set[int] = set()            # partitions whose lease we hold
        self._recovered: set[int] = set()      # held partitions whose pending entries are dealt with
        self._releasing: set[int] = set()      # over our share: finish, then release
        self._busy: dict[int, int] = {}        # partition -> entries delivered and not yet acked/abandoned
        self._inflight: set[tuple[int, str]] = set()
        self._callbacks: set[asyncio.Task] = set()
        self._sem = asyncio.Semaphore(settings.ingest_concurrency)
        self._cb_sem = asyncio.Semaphore(max(16, settings.ingest_concurrency * 8))
        self._heartbeat = self.redis.register_script(_HEARTBEAT)
        self._renew = self.redis.register_script(_RENEW)
        self._release = self.redis.register_script(_RELEASE)
        self._stop: asyncio.Event | None = None
        self._done = asyncio.Event()
        self._index_down_logged = 0.0

    # ---- lifecycle -------------------------------------------------------------------------------

    def idle(self) -> bool:
        return not self._inflight and not self._callbacks

    async def stopped(self) -> None:
        """Wait for `run` to finish its shutdown (if it was started)."""
        if self._stop is not None:
            self._stop.set()
            await self._done.wait()

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set, then finish in-flight callbacks and hand the partitions back."""
        self._stop = stop
        self._done.clear()
        leases = asyncio.ensure_future(self._lease_loop(stop))
        backoff = 0.1
        try:
            await self._open(stop)
            while not stop.is_set():
                try:
                    await self._step(stop)
                    backoff = 0.1
                except REDIS_ERRORS as e:
                    log.warning("indexer %s: Redis error (%s: %s); retrying in %.1f s",
                                self.name, type(e).__name__, e, backoff)
                    self._recovered.clear()          # re-read our pending entries once Redis is back
                    if isinstance(e, ResponseError) and "NOGROUP" in str(e):
                        with contextlib.suppress(*REDIS_ERRORS):
                            await self.stream.ensure_groups()
                    await _sleep(stop, backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_S)
                except Exception:  # noqa: BLE001 - a bug must not stop ingestion; pending entries are retried
                    log.exception("indexer %s: unexpected error; retrying in %.1f s", self.name, backoff)
                    self._recovered.clear()
                    await _sleep(stop, backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_S)
        finally:
            leases.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await leases
            await self._shutdown()
            self._done.set()

    async def _open(self, stop: asyncio.Event) -> None:
        delay = 0.1
        while not stop.is_set():
            try:
                await self.stream.open()
                return
            except REDIS_ERRORS as e:
                log.warning("indexer %s: cannot reach Redis (%s); retrying", self.name, e)
                await _sleep(stop, delay)
                delay = min(delay * 2, MAX_BACKOFF_S)

    async def _shutdown(self) -> None:
        budget = self.settings.callback_timeout_s * (self.settings.callback_retries + 1) + 5
        if self._callbacks:
            await asyncio.wait(list(self._callbacks), timeout=budget)
        for t in list(self._callbacks):
            t.cancel()
        with contextlib.suppress(*REDIS_ERRORS):
            for i in list(self.held):
                await self._release(keys=[self.stream.keys.lease(i)], args=[self.name])
            await self.redis.zrem(self.stream.keys.workers, self.name)
            for name in self.stream.keys.all_streams():   # leave no empty consumer behind
                pend = await self.redis.xpending_range(name, GROUP, min="-", max="+", count=1,
                                                       consumername=self.name)
                if not pend:
                    await self.redis.xgroup_delconsumer(name, GROUP, self.name)
        self.held.clear()
        self.metrics.ingest_partitions_held.set(0)

    # ---- leases ----------------------------------------------------------------------------------

    async def _lease_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._balance()
            except REDIS_ERRORS as e:
                log.debug("indexer %s: lease round failed: %s", self.name, e)
            await _sleep(stop, self.lease_ms / 3000)

    async def _balance(self) -> None:
        keys = self.stream.keys
        live = int(await self._heartbeat(keys=[keys.workers], args=[self.name, self.lease_ms * 3]))
        for i in sorted(self.held):
            if not await self._renew(keys=[keys.lease(i)], args=[self.name, self.lease_ms]):
                log.warning("indexer %s lost partition %d", self.name, i)
                self._drop(i)
        share = math.ceil(keys.partitions / max(1, live))
        for i in sorted(self._releasing):
            if not self._busy.get(i):
                await self._release(keys=[keys.lease(i)], args=[self.name])
                self._drop(i)
        excess = len(self.held) - len(self._releasing) - share
        for i in sorted(self.held - self._releasing, reverse=True)[:max(0, excess)]:
            self._releasing.add(i)          # finish what was read, then let a newcomer have it
        if len(self.held) < share:
            start = hash(self.name) % keys.partitions
            for k in range(keys.partitions):
                i = (start + k) % keys.partitions
                if len(self.held) >= share:
                    break
                if i not in self.held and await self.redis.set(keys.lease(i), self.name, nx=True, px=self.lease_ms):
                    self.held.add(i)
        self.metrics.ingest_partitions_held.set(len(self.held))

    def _stopping(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    def _drop(self, i: int) -> None:
        self.held.discard(i)
        self._recovered.discard(i)
        self._releasing.discard(i)

    def _holds(self, i: int) -> bool:
        return i in self.held

    # ---- reading ---------------------------------------------------------------------------------

    async def _step(self, stop: asyncio.Event) -> None:
        active = sorted(self.held - self._releasing)
        if not active:
            await _sleep(stop, min(0.5, self.lease_ms / 3000))
            return
        for i in active:
            if i not in self._recovered and await self._recover(i):
                self._recovered.add(i)
        readable = [i for i in active if i in self._recovered and i in self.held]
        if not readable:
            await _sleep(stop, 0.2)
            return
        keys = self.stream.keys
        read = asyncio.ensure_future(self.redis.xreadgroup(
            GROUP, self.name, {keys.stream(i): ">" for i in readable}, count=self.settings.ingest_batch, block=BLOCK_MS))
        halt = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait([read, halt], return_when=asyncio.FIRST_COMPLETED)
        finally:
            halt.cancel()
            if not read.done():     # shutting down: do not sit out the blocking read
                read.cancel()
                read.add_done_callback(_retrieve)
        if not read.done() or read.cancelled():
            return
        resp = read.result()
        items = [_Item(partition=_partition_of(stream_name), id=_s(entry_id), fields=fields or {})
                 for stream_name, entries in resp or [] for entry_id, fields in entries]
        if items:
            await self._process(items)

    async def _recover(self, i: int) -> bool:
        """Before reading new entries of a partition: take over the entries its previous holder left
        (once idle long enough) and finish our own pending ones, oldest first. False = not yet."""
        name = self.stream.keys.stream(i)
        start = "0-0"
        while True:
            # Not JUSTID: that form would not count the delivery, and the count is how a worker-killing
            # entry is recognised. The claimed entries are read again below, in order, with the rest.
            res = await self.redis.xautoclaim(name, GROUP, self.name, self.claim_idle_ms, start,
                                              count=self.settings.ingest_batch)
            cursor, claimed = res[0], res[1]
            if claimed:
                self.metrics.ingest_reclaimed.inc(len(claimed))
                log.info("indexer %s reclaimed %d entries of partition %d", self.name, len(claimed), i)
            if _s(cursor) in ("0-0", "0"):
                break
            start = _s(cursor)
        summary = await self.redis.xpending(name, GROUP)
        for c in summary.get("consumers") or []:
            if _s(c["name"]) != self.name and int(c["pending"]) > 0:
                return False            # not idle long enough yet: its holder may still be at work
        await self._forget_stale_consumers(name)
        # Our pending entries, oldest first: ids and delivery counts from XPENDING, contents by XRANGE
        # (a history XREADGROUP would count as one more delivery).
        start = "-"
        while self._holds(i):
            info = await self.redis.xpending_range(name, GROUP, min=start, max="+", count=self.settings.ingest_batch,
                                                   consumername=self.name)
            if not info:
                return True
            start = "(" + _s(info[-1]["message_id"])
            pipe = self.redis.pipeline(transaction=False)
            for p in info:
                pipe.xrange(name, p["message_id"], p["message_id"])
            found = await pipe.execute()
            items = []
            for p, rows in zip(info, found):
                eid = _s(p["message_id"])
                if (i, eid) not in self._inflight:
                    items.append(_Item(partition=i, id=eid, fields=rows[0][1] if rows else {},
                                       deliveries=int(p["times_delivered"])))
            if items:
                await self._process(items)
        return False

    async def _forget_stale_consumers(self, name: str) -> None:
        with contextlib.suppress(*REDIS_ERRORS):
            for c in await self.redis.xinfo_consumers(name, GROUP):
                cname = _s(c.get("name"))
                if (cname != self.name and int(c.get("pending", 0)) == 0
                        and int(c.get("idle", 0)) > self.claim_idle_ms * STALE_CONSUMER_FACTOR):
                    await self.redis.xgroup_delconsumer(name, GROUP, cname)

    # ---- processing ------------------------------------------------------------------------------

    async def _process(self, items: list[_Item]) -> None:
        """Index a batch: publishers concurrently, each publisher's entries in stream order."""
        groups: dict[tuple[int, bytes], list[_Item]] = {}
        for it in items:
            groups.setdefault((it.partition, it.fields.get(b"p", b"")), []).append(it)
            self._busy[it.partition] = self._busy.get(it.partition, 0) + 1
            self._inflight.add((it.partition, it.id))
        results = await asyncio.gather(*(self._run_group(g) for g in groups.values()), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]

    async def _run_group(self, group: list[_Item]) -> None:
        async with self._sem:
            for k, it in enumerate(group):
                try:
                    if not self._holds(it.partition):
                        raise _Abandon()
                    await self._handle(it)
                except BaseException as e:
                    for rest in group[k:]:             # not handed to a callback task: release them
                        self._release_item(rest)
                    if isinstance(e, REDIS_ERRORS):
                        self._recovered.discard(it.partition)
                    if isinstance(e, _Abandon):
                        return
                    raise

    def _release_item(self, it: _Item) -> None:
        if (it.partition, it.id) in self._inflight:
            self._inflight.discard((it.partition, it.id))
            self._busy[it.partition] = max(0, self._busy.get(it.partition, 0) - 1)

    async def _handle(self, it: _Item) -> None:
        raw = it.fields.get(b"e")
        if raw is None:                         # deleted under us (acknowledged elsewhere): nothing owed
            await self.stream.ack(it.partition, it.id, 0)
            self._release_item(it)
            return
        try:
            entry = decode_entry(raw)
        except Exception as e:  # noqa: BLE001 - whatever the bytes are, they must not block the partition
            await self._dead(it, None, "undecodable", f"undecodable entry: {e}")
            return
        if it.deliveries > self.settings.ingest_max_deliveries and await self._index_ready():
            await self._dead(it, entry, "redelivered",
                             f"delivered {it.deliveries} times without completing (it may crash the indexer)")
            return
        done_key = self.stream.keys.done(it.partition, it.id)
        stored = await self.redis.get(done_key)
        if stored is not None:                  # indexed before a crash: only the callback is owed
            results = _results_dec.decode(stored)
            req = parse_entry(entry, self.settings)
        else:
            outcome = await self._index(it, entry)
            if isinstance(outcome, str):
                await self._dead(it, entry, "unparsable" if outcome.startswith("unparsable") else "failing", outcome)
                return
            req, results = outcome
            await self.redis.set(done_key, _results_enc.encode(results), ex=DONE_TTL_S)
        self._spawn_callback(it, entry, req, results)

    async def _index(self, it: _Item, entry: IngestEntry) -> tuple[PublishRequest, list[CatalogResult]] | str:
        """Index with retries: (request, results), or the reason to dead-letter it."""
        attempts, delay, retry = 0, 0.2, False
        while True:
            if not self._holds(it.partition) or (retry and self._stopping()):
                raise _Abandon()        # a batch in progress is finished on shutdown, a retry loop is not
            retry = True
            try:
                return await self.service.index(entry)
            except BecknError as e:
                return f"unparsable publish: {e.code}: {e.message}"
            except Exception as e:  # noqa: BLE001 - an index outage or a poison entry; tell them apart below
                if await self._index_ready():
                    attempts += 1
                    log.warning("indexing entry %s (publisher %s) failed (attempt %d): %r",
                                it.id, entry.publisher_id, attempts, e)
                    if attempts >= self.settings.ingest_max_attempts:
                        return f"indexing failed {attempts} times while the index was up: {e!r}"
                else:
                    self.metrics.ingest_index_waits.inc()
                    now = time.monotonic()
                    if now - self._index_down_logged > 30:
                        self._index_down_logged = now
                        log.warning("index unavailable (%r); publishes stay queued until it is back", e)
            await _sleep(self._stop, delay)
            delay = min(delay * 2, MAX_BACKOFF_S)

    async def _index_ready(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self.storage.ready(), READY_TIMEOUT_S))
        except Exception:  # noqa: BLE001 - an unreachable index is simply not ready
            return False

    def _spawn_callback(self, it: _Item, entry: IngestEntry, req: PublishRequest, results: list[CatalogResult]) -> None:
        task = asyncio.ensure_future(self._callback(it, entry, req, results))
        self._callbacks.add(task)
        task.add_done_callback(self._callbacks.discard)

    async def _callback(self, it: _Item, entry: IngestEntry, req: PublishRequest | None,
                        results: list[CatalogResult]) -> None:
        try:
            async with self._cb_sem:
                if req is not None:
                    try:
                        await self.service.report(entry, req, results)
                    except Exception:  # noqa: BLE001 - an undeliverable callback must not block the queue
                        log.exception("on_catalog_publish to %s failed", entry.callback_url)
                delay = 0.1
                while True:     # the entry is done: acknowledge it, waiting out a Redis outage
                    try:
                        await self.stream.ack(it.partition, it.id, _int(it.fields.get(b"n")))
                        break
                    except REDIS_ERRORS as e:
                        if self._stop is not None and self._stop.is_set():
                            log.warning("could not acknowledge %s before shutdown (%s); it will be redelivered",
                                        it.id, e)
                            break
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, MAX_BACKOFF_S)
        finally:
            self._release_item(it)

    async def _dead(self, it: _Item, entry: IngestEntry | None, kind: str, reason: str) -> None:
        """Set an entry aside; tell the publisher when we can (REJECTED with the reason)."""
        log.error("dead-lettering entry %s of partition %d: %s", it.id, it.partition, reason)
        await self.stream.dead_letter(it.partition, it.id, it.fields, reason, it.deliveries)
        self.metrics.ingest_dead_lettered.labels(kind).inc()
        req = None
        results: list[CatalogResult] = []
        if entry is not None:
            try:
                req = parse_entry(entry, self.settings)
            except BecknError:
                req = None
            if req is not None:
                results = [CatalogResult(catalog_id=_catalog_id(c, k), status="REJECTED", error={
                    "code": E.NET_INTERNAL_ERROR, "message": f"the publish could not be processed: {reason}"[:500]})
                    for k, c in enumerate(req.catalogs)]
        if req is None:
            self._release_item(it)
            return
        # The entry is already acknowledged (moved); only the courtesy callback remains.
        task = asyncio.ensure_future(self._report_only(it, entry, req, results))
        self._callbacks.add(task)
        task.add_done_callback(self._callbacks.discard)

    async def _report_only(self, it: _Item, entry: IngestEntry, req: PublishRequest,
                           results: list[CatalogResult]) -> None:
        try:
            async with self._cb_sem:
                await self.service.report(entry, req, results)
        except Exception:  # noqa: BLE001
            log.exception("on_catalog_publish for a dead-lettered entry failed")
        finally:
            self._release_item(it)


def _retrieve(task: asyncio.Future) -> None:
    """Consume the outcome of an abandoned task (no "exception was never retrieved" noise)."""
    if not task.cancelled():
        task.exception()


def _catalog_id(catalog: Any, k: int) -> str:
    cid = catalog.get("beckn:id", catalog.get("id")) if isinstance(catalog, dict) else None
    return cid if isinstance(cid, str) else f"catalogs[{k}]"


def _partition_of(stream_name: Any) -> int:
    return int(_s(stream_name).rsplit(":p", 1)[1])


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _int(v: Any) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0


async def _sleep(stop: asyncio.Event | None, seconds: float) -> None:
    """Sleep, waking early when `stop` is set."""
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


# ---- the `cds indexer` process --------------------------------------------------------------------

async def run_indexer(settings: "Settings", stop: asyncio.Event | None = None) -> int:
    """Run one worker until SIGTERM/SIGINT (or `stop`); 0 on a clean stop, 2 on a startup error."""
    from aiohttp import ClientSession

    from cds.metrics import new_metrics
    from cds.outbound import Outbound, Signer, make_session
    from cds.redisconn import connect
    from cds.storage_factory import build_storage

    redis = connect(settings)
    if redis is None:
        log.error("cds indexer needs CDS_REDIS_URL")
        return 2
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    storage = build_storage(settings)
    try:
        await storage.open()
    except RuntimeError as e:       # e.g. the embedded index is locked by `cds serve`
        log.error("cannot open the index: %s (with the embedded index, `cds serve` indexes the stream itself; "
                  "a separate `cds indexer` needs CDS_ES_URL or a data directory of its own)", e)
        await redis.aclose()
        return 2
    init = asyncio.ensure_future(_init_indices(storage, stop))
    metrics = new_metrics()
    session: ClientSession = make_session(settings)
    service = PublishService(storage, settings, metrics, Outbound(session, Signer(settings), settings))
    worker = StreamWorker(IngestStream.from_settings(redis, settings), service, storage, settings, metrics)
    runner = await _serve_probes(settings, worker, storage, metrics) if settings.indexer_port else None
    log.info("indexer %s started (storage: %s)", worker.name, storage.name)
    try:
        await worker.run(stop)
    finally:
        init.cancel()
        if runner is not None:
            await runner.cleanup()
        await session.close()
        await storage.close()
        await redis.aclose()
    log.info("indexer %s stopped", worker.name)
    return 0


async def _init_indices(storage: "Storage", stop: asyncio.Event) -> None:
    """The indexer owns the index: create/migrate it (Elasticsearch) at start, retrying while unreachable."""
    init = getattr(storage, "init_indices", None)
    delay = 0.5
    while init is not None and not stop.is_set():
        try:
            log.info("index: %s", await init())
            return
        except Exception as e:  # noqa: BLE001 - the index may come up after us
            log.warning("cannot initialise the index yet (%s); retrying", e)
            await _sleep(stop, delay)
            delay = min(delay * 2, 30.0)


async def _serve_probes(settings: "Settings", worker: StreamWorker, storage: "Storage", metrics: "Metrics"):
    """/metrics, /health/live and /health/ready (index and Redis reachable) for the worker's pod."""
    from aiohttp import web

    async def live(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "worker": worker.name})

    async def ready(_: web.Request) -> web.Response:
        checks = {"storage": await worker._index_ready(), "redis": False}
        with contextlib.suppress(*REDIS_ERRORS):
            checks["redis"] = bool(await asyncio.wait_for(worker.redis.ping(), READY_TIMEOUT_S))
        ok = all(checks.values())
        return web.json_response({"status": "ready" if ok else "unavailable", "checks": checks},
                                 status=200 if ok else 503)

    async def metrics_view(_: web.Request) -> web.Response:
        with contextlib.suppress(*REDIS_ERRORS):
            b = await worker.stream.backlog()
            metrics.ingest_pending.set(b.entries)
            metrics.ingest_backlog_bytes.set(b.bytes)
            metrics.ingest_stream_pending.set(b.pending)
            metrics.ingest_consumer_lag.set(b.lag)
            metrics.ingest_dead_letters.set(b.dead)
        body, ctype = metrics.render()
        return web.Response(body=body, headers={"Content-Type": ctype})

    app = web.Application()
    app.router.add_get("/health/live", live)
    app.router.add_get("/health/ready", ready)
    app.router.add_get("/metrics", metrics_view)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.indexer_host, settings.indexer_port).start()
    return runner
