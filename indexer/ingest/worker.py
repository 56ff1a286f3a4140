"""The ingest worker (`cds indexer`): consumes the publish stream (`indexer.ingest.stream`), indexes, sends
`on_catalog_publish`, and only then acknowledges each entry.

Ordering. Entries are spread over partition streams by publisher (`indexer.ingest.stream`), and a worker
reads a partition only while it holds that partition's lease (`indexer.ingest.leases`): any number of replicas
share the work, each taking about `partitions / live workers` partitions, and all of one publisher's
entries pass through one worker at a time. That worker runs each entry as soon as every earlier entry
writing one of the same catalogs is done (a chain per (publisher, catalog), a publish with several
catalogs joins several chains): per-catalog order, MERGE publishes included, while a publisher's other
catalogs - and other publishers - go ahead concurrently (`CDS_INGEST_CONCURRENCY` at once). No batch
barrier: a slow catalog holds up nothing but its own later versions. Why not per-publisher order: a write
takes one index round trip (with Elasticsearch a bulk, a refresh and a flip), and one CPO publishing its
stations one catalog at a time would be indexed one round trip at a time. The entries in flight share
those round trips: Elasticsearch group-commits concurrent writes (indexer/elastic/batch.py), each entry
keeping its own outcome.

Crash safety (docs/decisions.md §S Publish "never lost", §21).
- An entry is acknowledged (XACK + XDEL) only after its callback went out. A worker that dies leaves
  its entries pending in the consumer group; whoever takes the partition next reclaims them with
  XAUTOCLAIM once idle for `CDS_INGEST_CLAIM_IDLE_S` and processes them before anything newer.
- Once indexed, an entry's results are stored (`done` key) before the next entry of its catalogs is
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
import os
import socket
import time
import uuid
from typing import TYPE_CHECKING

import msgspec
from redis.exceptions import ResponseError

from cds import gcpolicy
from cds.core.errors import BecknError
from cds.core.models import CatalogResult, PublishRequest
from cds.redisstate import REDIS_ERRORS
from indexer.ingest.apply import CatalogIndexer
from indexer.ingest.batching import RedisBatch
from indexer.ingest.delivery import Delivery, decode_delivery, partition_of
from indexer.ingest.entry import IngestEntry, discard_spool, parse_entry, rejected_all
from indexer.ingest.leases import PartitionLeases
from indexer.ingest.stream import DONE_TTL_S, GROUP, IngestStream, as_int, as_str
from indexer.ingest.waiting import consume_outcome, pause, wait_any

if TYPE_CHECKING:
    from cds.config import Settings
    from cds.metrics import Metrics
    from indexer.storage import Storage

log = logging.getLogger("cds.indexer")

BLOCK_MS = 1000                  # XREADGROUP wait (below the client's socket timeout)
READY_TIMEOUT_S = 5.0
MAX_BACKOFF_S = 5.0
STALE_CONSUMER_FACTOR = 20       # consumers idle 20 x claim_idle with nothing pending are removed
DEFAULT_CONCURRENCY = 16         # entries indexed at once when neither the settings nor the index say

_results_enc = msgspec.msgpack.Encoder()
_results_dec = msgspec.msgpack.Decoder(list[CatalogResult])


class _Abandon(Exception):
    """Stop working on a partition (lease lost, shutting down); its entries stay pending."""


def ingest_concurrency(settings: "Settings", storage: "Storage") -> int:
    """CDS_INGEST_CONCURRENCY, else the index's own default: with Elasticsearch an entry's slot mostly waits
    for a group-committed write it shares, so the slots bound the batch (BENCHMARKS.md, Elasticsearch ingest)."""
    return settings.ingest_concurrency or getattr(storage, "ingest_concurrency", DEFAULT_CONCURRENCY)


def worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class StreamWorker:
    def __init__(self, stream: IngestStream, service: CatalogIndexer, storage: "Storage", settings: "Settings",
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
        self.batch = RedisBatch(stream, DONE_TTL_S)    # done records and acks, one round trip per batch
        self.leases = PartitionLeases(self.redis, stream, self.name, self.lease_ms, on_lost=self._lost)
        self._recovered: set[int] = set()      # held partitions whose pending entries are dealt with
        self._busy: dict[int, int] = {}        # partition -> entries delivered and not yet acked/abandoned
        self._inflight: set[tuple[int, str]] = set()
        self._callbacks: set[asyncio.Task] = set()
        self._queued: dict[int, int] = {}      # partition -> entries dispatched, not yet handed to a callback
        self._failed: set[int] = set()         # an entry of it failed: recover before queueing more
        self._tails: dict[tuple[int, str], asyncio.Future] = {}   # catalog -> its last queued entry's outcome
        self._tasks: set[asyncio.Task] = set()
        self._room = asyncio.Event()
        concurrency = ingest_concurrency(settings, storage)
        # Entries read and not yet acknowledged, at most: bounds memory and the work a crash hands over.
        self.max_inflight = max(settings.ingest_batch, settings.ingest_batch * 4)
        self._sem = asyncio.Semaphore(concurrency)
        self._cb_sem = asyncio.Semaphore(max(16, concurrency * 8))
        self._stop: asyncio.Event | None = None
        self._done = asyncio.Event()
        self._index_down_logged = 0.0
        self._settle_pending = False

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
                    await pause(stop, backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_S)
                except Exception:  # noqa: BLE001 - a bug must not stop ingestion; pending entries are retried
                    log.exception("indexer %s: unexpected error; retrying in %.1f s", self.name, backoff)
                    self._recovered.clear()
                    await pause(stop, backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_S)
        finally:
            await self._finish()        # the leases are still renewed meanwhile: nobody takes over yet
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
                await pause(stop, delay)
                delay = min(delay * 2, MAX_BACKOFF_S)

    async def _finish(self) -> None:
        """Finish what was read (an index outage abandons it instead) and the callbacks in flight."""
        budget = self.settings.callback_timeout_s * (self.settings.callback_retries + 1) + 5
        for group in (self._tasks, self._callbacks):
            if group:
                await asyncio.wait(list(group), timeout=budget)
            for t in list(group):
                t.cancel()

    async def _shutdown(self) -> None:
        """Hand the partitions back at once and leave no empty consumer behind."""
        with contextlib.suppress(*REDIS_ERRORS):
            await self.leases.release_all()
            for name in self.stream.keys.all_streams():
                pend = await self.redis.xpending_range(name, GROUP, min="-", max="+", count=1,
                                                       consumername=self.name)
                if not pend:
                    await self.redis.xgroup_delconsumer(name, GROUP, self.name)
        self.leases.held.clear()
        self.metrics.ingest_partitions_held.set(0)

    # ---- leases ----------------------------------------------------------------------------------

    async def _lease_loop(self, stop: asyncio.Event) -> None:
        while True:                     # until cancelled: leases are renewed while shutdown finishes work
            try:
                await self.leases.balance(busy=lambda i: bool(self._busy.get(i)), acquire=not stop.is_set())
                gcpolicy.full_sweep()       # hourly at most (the API does it from its purge loop)
                self.metrics.ingest_partitions_held.set(len(self.held))
            except REDIS_ERRORS as e:
                log.debug("indexer %s: lease round failed: %s", self.name, e)
            await asyncio.sleep(self.lease_ms / 3000)

    @property
    def held(self) -> set[int]:
        return self.leases.held

    def _lost(self, i: int) -> None:
        self._recovered.discard(i)

    def _stopping(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    def _holds(self, i: int) -> bool:
        return i in self.leases.held

    # ---- reading ---------------------------------------------------------------------------------

    async def _step(self, stop: asyncio.Event) -> None:
        """Read what there is room for and start it (chained per catalog, see `_dispatch`); no batch
        barrier, so a slow catalog holds up nothing but its own later versions."""
        active = sorted(self.held - self.leases.releasing)
        for i in active:
            if i not in self._recovered and not self._queued.get(i) and await self._recover(i):
                self._recovered.add(i)
        readable = [i for i in active if i in self._recovered and i in self.held]
        self._room.clear()          # (before counting: a release from now on wakes the wait below)
        room = self.max_inflight - len(self._inflight)
        if not readable or room <= 0:
            await wait_any(stop, self._room, timeout=0.2)
            return
        keys = self.stream.keys
        read = asyncio.ensure_future(self.redis.xreadgroup(
            GROUP, self.name, {keys.stream(i): ">" for i in readable},
            count=max(1, min(self.settings.ingest_batch, room // len(readable))),   # COUNT is per stream
            block=BLOCK_MS))
        halt = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait([read, halt], return_when=asyncio.FIRST_COMPLETED)
        finally:
            halt.cancel()
            if not read.done():     # shutting down: do not sit out the blocking read
                read.cancel()
                read.add_done_callback(consume_outcome)
        if not read.done() or read.cancelled():
            return
        self._dispatch([Delivery(partition=partition_of(stream_name), id=as_str(entry_id), fields=fields or {},
                                 fresh=True)
                        for stream_name, entries in read.result() or [] for entry_id, fields in entries])

    async def _recover(self, i: int) -> bool:
        """Before reading new entries of a partition: take over the entries its previous holder left
        (once idle long enough) and queue our own pending ones, oldest first. False = not yet."""
        name = self.stream.keys.stream(i)
        self._failed.discard(i)
        start = "0-0"
        while True:
            # Not JUSTID: that form would not count the delivery, and the count is how a worker-killing
            # entry is recognised. The claimed entries are queued below, in order, with the rest.
            res = await self.redis.xautoclaim(name, GROUP, self.name, self.claim_idle_ms, start,
                                              count=self.settings.ingest_batch)
            cursor, claimed = res[0], res[1]
            if claimed:
                self.metrics.ingest_reclaimed.inc(len(claimed))
                log.info("indexer %s reclaimed %d entries of partition %d", self.name, len(claimed), i)
            if as_str(cursor) in ("0-0", "0"):
                break
            start = as_str(cursor)
        summary = await self.redis.xpending(name, GROUP)
        for c in summary.get("consumers") or []:
            if as_str(c["name"]) != self.name and int(c["pending"]) > 0:
                return False            # not idle long enough yet: its holder may still be at work
        await self._forget_stale_consumers(name)
        # Our pending entries, oldest first: ids and delivery counts from XPENDING, contents by XRANGE
        # (a history XREADGROUP would count as one more delivery). Queued before anything newer is read.
        start = "-"
        while self._holds(i):
            while len(self._inflight) >= self.max_inflight and self._holds(i) and not self._stopping():
                self._room.clear()
                await wait_any(self._stop, self._room, timeout=0.2)
            info = await self.redis.xpending_range(name, GROUP, min=start, max="+", count=self.settings.ingest_batch,
                                                   consumername=self.name)
            if i in self._failed:
                return False        # a lane failed meanwhile: start over
            if not info:
                return True
            start = "(" + as_str(info[-1]["message_id"])
            pipe = self.redis.pipeline(transaction=False)
            for p in info:
                pipe.xrange(name, p["message_id"], p["message_id"])
            found = await pipe.execute()
            self._dispatch([Delivery(partition=i, id=as_str(p["message_id"]), fields=rows[0][1] if rows else {},
                                     deliveries=int(p["times_delivered"]))
                            for p, rows in zip(info, found) if (i, as_str(p["message_id"])) not in self._inflight])
        return False

    async def _forget_stale_consumers(self, name: str) -> None:
        with contextlib.suppress(*REDIS_ERRORS):
            for c in await self.redis.xinfo_consumers(name, GROUP):
                cname = as_str(c.get("name"))
                if (cname != self.name and int(c.get("pending", 0)) == 0
                        and int(c.get("idle", 0)) > self.claim_idle_ms * STALE_CONSUMER_FACTOR):
                    await self.redis.xgroup_delconsumer(name, GROUP, cname)

    # ---- processing ------------------------------------------------------------------------------

    def _dispatch(self, items: list[Delivery]) -> None:
        """Start one task per entry, chained behind the last earlier entry that writes any of the same
        catalogs (per-catalog order; everything else runs concurrently, up to CDS_INGEST_CONCURRENCY)."""
        for it in items:
            if it.partition in self._failed or not self._holds(it.partition):
                continue            # left pending: the partition's recovery takes it, in order
            self._inflight.add((it.partition, it.id))
            self._busy[it.partition] = self._busy.get(it.partition, 0) + 1
            self._queued[it.partition] = self._queued.get(it.partition, 0) + 1
            decode_delivery(it)
            keys = [(it.partition, k) for k in it.keys]
            deps = {id(f): f for f in (self._tails.get(k) for k in keys) if f is not None}
            done = asyncio.get_running_loop().create_future()
            for k in keys:
                self._tails[k] = done
            done.add_done_callback(lambda _f, keys=keys, done=done: self._untail(keys, done))
            task = asyncio.ensure_future(self._run_item(it, list(deps.values()), done))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _untail(self, keys: list[tuple[int, str]], done: asyncio.Future) -> None:
        for k in keys:
            if self._tails.get(k) is done:
                del self._tails[k]

    async def _run_item(self, it: Delivery, deps: list[asyncio.Future], done: asyncio.Future) -> None:
        """Wait for the entries this one must follow; process it; tell its followers whether it went
        through (an entry whose predecessor was abandoned is abandoned too: it may not overtake it)."""
        i = it.partition
        ok = False
        try:
            for d in deps:
                if not await d:
                    raise _Abandon()
            if not self._holds(i):
                raise _Abandon()
            async with self._sem:
                await self._handle(it)
            ok = True
        except BaseException as e:
            if not isinstance(e, (_Abandon, asyncio.CancelledError)):
                (log.warning if isinstance(e, REDIS_ERRORS) else log.exception)(
                    "indexer %s: entry %s of partition %d left pending: %r", self.name, it.id, i, e)
            self._recovered.discard(i)
            self._failed.add(i)     # what is read of it from now on stays pending until recovery
            self._release_item(it)
            if isinstance(e, asyncio.CancelledError):
                raise
        finally:
            self._queued[i] -= 1
            if not done.done():
                done.set_result(ok)

    def _release_item(self, it: Delivery) -> None:
        if (it.partition, it.id) in self._inflight:
            self._inflight.discard((it.partition, it.id))
            self._busy[it.partition] = max(0, self._busy.get(it.partition, 0) - 1)
            self._room.set()

    async def _handle(self, it: Delivery) -> None:
        if not it.fields:                       # deleted under us (acknowledged elsewhere): nothing owed
            await self.batch.ack(it.partition, it.id, 0)
            self._release_item(it)
            return
        entry = it.entry
        if entry is None:
            await self._dead(it, None, "undecodable", it.error or "undecodable entry")
            return
        if it.deliveries > self.settings.ingest_max_deliveries and await self.index_ready():
            await self._dead(it, entry, "redelivered",
                             f"delivered {it.deliveries} times without completing (it may crash the indexer)")
            return
        done_key = self.stream.keys.done(it.partition, it.id)
        # (a results key exists only for an entry delivered before: one Redis round trip saved per new entry)
        stored = None if it.fresh else await self.redis.get(done_key)
        if stored is not None:                  # indexed before a crash: only the callback is owed
            results = _results_dec.decode(stored)
            req = parse_entry(entry, clock_skew_s=self.settings.clock_skew_s)
        else:
            outcome = await self._index(it, entry)
            if isinstance(outcome, str):
                await self._dead(it, entry, "unparsable" if outcome.startswith("unparsable") else "failing", outcome)
                return
            req, results = outcome
            if getattr(self.storage, "holds_documents", True):
                self._settle_soon()
            await self.batch.record(done_key, _results_enc.encode(results))
        self._spawn_callback(it, entry, req, results)

    async def _index(self, it: Delivery, entry: IngestEntry) -> tuple[PublishRequest, list[CatalogResult]] | str:
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
                if await self.index_ready():
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
            await pause(self._stop, delay)
            delay = min(delay * 2, MAX_BACKOFF_S)

    def _settle_soon(self) -> None:
        """The new index objects are long-lived (see cds.gcpolicy): settle once for every entry finishing
        in this turn of the loop. A batched index write completes many entries at once, and one collection
        each would hold the loop long enough to let partition leases lapse."""
        if not self._settle_pending:
            self._settle_pending = True
            asyncio.get_running_loop().call_soon(self._settle)

    def _settle(self) -> None:
        self._settle_pending = False
        gcpolicy.settle()

    async def index_ready(self) -> bool:
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                return bool(await self.storage.ready())
        except Exception:  # noqa: BLE001 - an unreachable index is simply not ready
            return False

    def _spawn_callback(self, it: Delivery, entry: IngestEntry, req: PublishRequest, results: list[CatalogResult]) -> None:
        task = asyncio.ensure_future(self._callback(it, entry, req, results))
        self._callbacks.add(task)
        task.add_done_callback(self._callbacks.discard)

    async def _callback(self, it: Delivery, entry: IngestEntry, req: PublishRequest | None,
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
                        await self.batch.ack(it.partition, it.id, as_int(it.fields.get(b"n")))
                        discard_spool(entry.spool)
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

    async def _dead(self, it: Delivery, entry: IngestEntry | None, kind: str, reason: str) -> None:
        """Set an entry aside; tell the publisher when we can (REJECTED with the reason)."""
        log.error("dead-lettering entry %s of partition %d: %s", it.id, it.partition, reason)
        await self.stream.dead_letter(it.partition, it.id, it.fields, reason, it.deliveries)
        self.metrics.ingest_dead_lettered.labels(kind).inc()
        req = None
        results: list[CatalogResult] = []
        if entry is not None:
            try:
                req = parse_entry(entry, clock_skew_s=self.settings.clock_skew_s)
            except BecknError:
                req = None
            if req is not None:
                results = rejected_all(req, f"the publish could not be processed: {reason}")
        if req is None:
            self._release_item(it)
            return
        # The entry is already acknowledged (moved); only the courtesy callback remains.
        task = asyncio.ensure_future(self._report_only(it, entry, req, results))
        self._callbacks.add(task)
        task.add_done_callback(self._callbacks.discard)

    async def _report_only(self, it: Delivery, entry: IngestEntry, req: PublishRequest,
                           results: list[CatalogResult]) -> None:
        try:
            async with self._cb_sem:
                await self.service.report(entry, req, results)
        except Exception:  # noqa: BLE001
            log.exception("on_catalog_publish for a dead-lettered entry failed")
        finally:
            self._release_item(it)
