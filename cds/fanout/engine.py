"""Fan-out to non-caching BPPs (docs/decisions.md §S Fan-out, §3, §9, §13, §14, §17-§20, §22).

Owner side (the replica that received the discover):
  `start` picks the targets (registry BPPs of the request's domain family with no live published catalog,
  matching region, circuit not open, capped), opens a pending record, and sends every target the CDS's own
  signed discover concurrently (same transaction/message ids, the CDS as BAP, the BAP's message unchanged),
  each bounded by the deadline = min(CDS_FANOUT_TIMEOUT_MS, what context.ttl leaves after our reserve).
  `collect` waits until every target replied or failed, or the deadline, then closes the record and returns
  the live hits; `merge_hits` folds them into the cached hits (live overrides cached, one cap for the whole).
Any replica: `accept_reply` checks an `on_discover` (signature and signer were checked by the handler)
  against the pending record, normalises its catalogs as live data of the signer, keeps only what the same
  matcher accepts for the same planned query, and offers the hits to the pending store.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections import OrderedDict
from datetime import timezone
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import msgspec
import orjson
from cds.core import budget
from cds.core import errors as E
from cds.core.budget import WorkBudget
from cds.trust.auth import Caller, require_publisher
from cds.fanout.circuit import CLOSED, CircuitBreaker, MemoryCircuitBreaker, RedisCircuitBreaker
from cds.config import Settings
from cds.core.errors import BecknError
from cds.core.matching import distance, matches, select
from cds.metrics import Metrics
from cds.core.models import DIALECT_B, Context, DiscoverIntent, DiscoverRequest
from cds.trust.outbound import Delivery, Outbound
from cds.fanout.pending import (ACCEPTED, LATE, NOT_TARGETED, UNKNOWN, MemoryPendingStore, PendingRecord, PendingStore,
                         RedisPendingStore, Reply, pending_key)
from cds.core.planner import build_query
from cds.core.query import Query
from cds.redisstate import REDIS_ERRORS
from cds.trust.registry import Registry
from cds.trust.subscribers import Subscriber, domain_family
from cds.core.timeutil import parse_duration, parse_instant
from cds.core.documents import Hit
from cds.core.normalize import normalize_catalog
from cds.workpool import run_off_loop

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from indexer.storage import Storage

log = logging.getLogger("cds.fanout.engine")

LIVE_PUBLISHERS_TTL_S = 1.0     # "who publishes" changes rarely; asking the index on every discover is waste
MIN_BUDGET_S = 0.05             # less time than this left in context.ttl: answer from the cache only
MAX_REPLY_CATALOGS = 100
PLAN_CACHE_SIZE = 1024

_hits_enc = msgspec.msgpack.Encoder()
_hits_dec = msgspec.msgpack.Decoder(list[Hit])
_intent_dec = msgspec.msgpack.Decoder(DiscoverIntent)
OnReply = Callable[[str, list[Hit]], Awaitable[None]]


# ---- pure helpers ------------------------------------------------------------------------------------

def fanout_deadline(ctx: Context, received_at: float, settings: Settings) -> float | None:
    """Epoch deadline for replies: the configured cap, shortened to what `context.ttl` (counted from
    `context.timestamp`) leaves after our reserve for merging and delivering; None if too little is left."""
    deadline = received_at + settings.fanout_timeout_ms / 1000
    ttl = parse_duration(ctx.ttl) if ctx.ttl else None
    sent = parse_instant(ctx.timestamp, timezone.utc) if ctx.timestamp else None
    if ttl is not None and sent is not None:
        deadline = min(deadline, sent + ttl - max(0, settings.fanout_reserve_ms) / 1000)
    return deadline if deadline - received_at >= MIN_BUDGET_S else None


def region_hints(raw_ctx: dict[str, Any]) -> set[str]:
    """Lower-cased city/country codes and names the request's context names (v2 `location`, v1 city/country)."""
    out: set[str] = set()
    loc = raw_ctx.get("location")
    parts = [loc.get("city"), loc.get("country")] if isinstance(loc, dict) else []
    parts += [raw_ctx.get("city"), raw_ctx.get("country")]
    for p in parts:
        values = [p.get("code"), p.get("name")] if isinstance(p, dict) else [p]
        out.update(v.strip().lower() for v in values if isinstance(v, str) and v.strip())
    return out


def region_ok(record: Subscriber, hints: set[str]) -> bool:
    """A record with a region (comma-separated codes/names) serves a request naming one of them; no region
    on either side narrows nothing."""
    if not record.region or not hints:
        return True
    return not hints.isdisjoint(r.strip().lower() for r in record.region.split(","))


def _address(ctx: dict, a: str, b: str, value: str, dialect_b: bool) -> None:
    present = [k for k in (a, b) if k in ctx]
    for k in present:
        ctx[k] = value
    if not present:
        ctx[b if dialect_b else a] = value


def fanout_body(req: DiscoverRequest, target: Subscriber, settings: Settings) -> bytes:
    """The CDS's own discover for one target: only the context addressing changes (docs/decisions.md §14)."""
    ctx = dict(req.context.raw)
    b = req.context.dialect == DIALECT_B
    _address(ctx, "bap_id", "bapId", settings.subscriber_id, b)
    _address(ctx, "bap_uri", "bapUri", settings.subscriber_url, b)
    _address(ctx, "bpp_id", "bppId", target.subscriber_id, b)
    if target.url:
        _address(ctx, "bpp_uri", "bppUri", target.url, b)
    return orjson.dumps({"context": ctx, "message": req.message})


def classify(d: Delivery) -> str:
    """ack | nack | error | timeout for the answer to one fan-out discover."""
    if d.ok:
        try:
            doc = orjson.loads(d.response) if d.response else {}
        except orjson.JSONDecodeError:
            return "ack"   # a 2xx without a readable body: the BPP took the request
        status = doc.get("status") if isinstance(doc, dict) else None
        msg = doc.get("message") if isinstance(doc, dict) else None
        if isinstance(msg, dict) and isinstance(msg.get("ack"), dict):
            status = msg["ack"].get("status", status)
        return "nack" if status == "NACK" else "ack"
    if d.status is not None and d.status < 500 and d.status != 429:
        return "nack"
    return "timeout" if d.error and "Timeout" in d.error.split(":", 1)[0] else "error"


def reply_catalogs(doc: dict) -> list[dict]:
    """`message.catalogs` of an on_discover (absent or [] = no results)."""
    msg = doc.get("message")
    if msg is None:
        return []
    if not isinstance(msg, dict):
        raise E.schema_error("message must be an object", "message")
    cats = msg.get("catalogs", [])
    if cats is None:
        return []
    if not isinstance(cats, list):
        raise E.schema_error("message.catalogs must be a list", "message.catalogs")
    if len(cats) > MAX_REPLY_CATALOGS:
        raise E.schema_error(f"at most {MAX_REPLY_CATALOGS} catalogs per on_discover", "message.catalogs")
    for i, c in enumerate(cats):
        if not isinstance(c, dict):
            raise E.schema_error("each catalog must be an object", f"message.catalogs[{i}]")
    return cats


def live_hits(catalogs: list[dict], *, bpp_id: str, bpp_uri: str | None, dialect: str, query: Query,
              settings: Settings, now: float) -> list[Hit]:
    """The reply's items that `matches` the query, as live data of `bpp_id`, ordered and capped."""
    hits: list[Hit] = []
    seen: set[str] = set()
    for i, cat in enumerate(catalogs):
        budget.check()
        try:
            record, _warnings = normalize_catalog(cat, publisher_id=bpp_id, publisher_uri=bpp_uri, dialect=dialect,
                                                  settings=settings, now=now, index=i,
                                                  fallback_id=f"{bpp_id}#catalog-{i}")
        except BecknError as e:
            raise BecknError(e.code, e.message, e.status, f"message.{e.paths}" if e.paths else None) from None
        if record.meta.catalog_id in seen:
            raise E.schema_error(f"catalog id {record.meta.catalog_id[:80]!r} repeated", f"message.catalogs[{i}]")
        seen.add(record.meta.catalog_id)
        meta = msgspec.structs.replace(record.meta, live=True, raw=b"")  # raw is only for MERGE publishes
        for j, item in enumerate(record.items):
            if not j % 32:
                budget.check()          # the reply's work budget, when one is in force
            if matches(query, item, meta, now):
                hits.append(Hit(item=item, catalog=meta, distance=distance(query, item)))
    return select(hits, query.limit)


def merge_hits(cached: list[Hit], live: list[Hit], limit: int) -> tuple[list[Hit], int]:
    """Cached + live, live overriding cached on (bpp_id, catalog id, item id), ordered and capped as one
    reply (docs/decisions.md §13, §20). Also returns how many cached hits were overridden."""
    live_keys = {h.item.key for h in live}
    kept = [h for h in cached if h.item.key not in live_keys]
    return select(kept + live, limit), len(cached) - len(kept)


# ---- one fan-out on the owner replica ----------------------------------------------------------------

@dataclasses.dataclass(eq=False)
class FanoutRun:
    key: str
    targets: list[str]
    deadline: float                          # epoch
    started: float
    event: asyncio.Event
    sent_at: dict[str, float] = dataclasses.field(default_factory=dict)
    answered: set[str] = dataclasses.field(default_factory=set)
    failed: set[str] = dataclasses.field(default_factory=set)
    hits: list[Hit] = dataclasses.field(default_factory=list)
    seen: int = 0                            # replies read from the store so far (list position)
    settled: bool = False
    recording: int = 0           # failures being recorded in the circuit (the answer waits for them)

    def complete(self) -> bool:
        return not self.recording and len(self.answered) + len(self.failed) >= len(self.targets)


class Fanout:
    def __init__(self, *, settings: Settings, registry: Registry, storage: "Storage", outbound: Outbound,
                 pending: PendingStore, circuit: CircuitBreaker, metrics: Metrics,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.registry = registry
        self.storage = storage
        self.outbound = outbound
        self.pending = pending
        self.circuit = circuit
        self.metrics = metrics
        self.clock = clock                   # service clock: circuit cool-downs, item/offer validity
        self._plans: OrderedDict[str, Query] = OrderedDict()
        self._live: tuple[float, set[str]] | None = None
        self._rr = 0
        self._tasks: set[asyncio.Task] = set()

    async def start_stores(self) -> None:
        await self.pending.start()

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self.pending.close()

    # ---- target selection

    async def _live_publishers(self) -> set[str]:
        mono = time.monotonic()
        if self._live is None or self._live[0] <= mono:
            try:
                self._live = (mono + LIVE_PUBLISHERS_TTL_S, await self.storage.live_publishers(self.clock()))
            except Exception:  # noqa: BLE001 - without the list, fan out to all rather than to none
                log.exception("live_publishers failed")
                return set() if self._live is None else self._live[1]
        return self._live[1]

    async def targets(self, ctx: Context) -> list[Subscriber]:
        """Registry BPPs of the family (usable records only), minus publishers, region-narrowed, minus open
        circuits, capped; the start point rotates so a cap does not always starve the same BPPs."""
        s = self.settings
        records = await self.registry.list_bpps(ctx.domain or s.domain, ctx.version)
        live = await self._live_publishers()
        hints = region_hints(ctx.raw)
        cands = [r for r in records if r.url and r.subscriber_id != s.subscriber_id
                 and r.subscriber_id not in live and region_ok(r, hints)]
        if not cands:
            return []
        start = self._rr % len(cands)
        self._rr += 1
        cands = cands[start:] + cands[:start]
        adm = await self.circuit.admit([r.subscriber_id for r in cands], s.fanout_max_bpps, self.clock())
        for bpp, state in adm.states.items():
            self.metrics.fanout_circuit_open.labels(bpp).set(0 if state == CLOSED else 1)
        by_id = {r.subscriber_id: r for r in cands}
        return [by_id[b] for b in adm.admitted]

    def _skip(self, reason: str) -> None:
        self.metrics.fanout_skipped.labels(reason).inc()

    # ---- owner: send and collect

    async def start(self, req: DiscoverRequest, query: Query, received_at: float) -> FanoutRun | None:
        """Open the pending record and send the fan-out; None when this discover is answered from the cache
        only (fan-out disabled, another domain family, no time left, no target, or state unavailable)."""
        s, ctx = self.settings, req.context
        if s.fanout_max_bpps <= 0:
            return None
        if domain_family(ctx.domain or s.domain).casefold() != domain_family(s.domain).casefold():
            self._skip("other_domain")
            return None
        deadline = fanout_deadline(ctx, received_at, s)
        if deadline is None:
            self._skip("no_time")
            return None
        try:
            targets = await self.targets(ctx)
        except BecknError as e:  # the registry cannot list BPPs (503): answer from the cache
            log.warning("fan-out skipped for %s: %s", ctx.message_id, e.message)
            self._skip("registry_unavailable")
            return None
        except REDIS_ERRORS as e:
            log.warning("fan-out skipped for %s: circuit state unavailable: %s", ctx.message_id, e)
            self._skip("state_unavailable")
            return None
        if not targets:
            self._skip("no_targets")
            return None
        key = pending_key(ctx.transaction_id or "", ctx.message_id or "")
        rec = PendingRecord(transaction_id=ctx.transaction_id or "", message_id=ctx.message_id or "",
                            targets=[t.subscriber_id for t in targets], deadline=deadline,
                            owner=self.pending.owner, intent=msgspec.msgpack.encode(req.intent))
        try:
            opened = await self.pending.open(key, rec, deadline - time.time() + s.fanout_late_window_s)
        except REDIS_ERRORS as e:
            log.warning("fan-out skipped for %s: pending store unavailable: %s", ctx.message_id, e)
            self._skip("state_unavailable")
            return None
        if not opened:  # the same (transaction, message) is already fanned out, or the store is full
            self._skip("pending_refused")
            return None
        self._remember_plan(key, query)
        run = FanoutRun(key=key, targets=rec.targets, deadline=deadline, started=time.time(),
                        event=self.pending.watch(key))
        self.metrics.fanout_targets.observe(len(targets))
        for t in targets:
            self._background(self._send(run, t, fanout_body(req, t, s)))
        return run

    def _background(self, coro: Awaitable[None]) -> None:
        """Tracked (cancelled on close); exceptions are logged."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("fan-out background task failed", exc_info=task.exception())

    async def _send(self, run: FanoutRun, target: Subscriber, body: bytes) -> None:
        bpp = target.subscriber_id
        run.sent_at[bpp] = time.time()
        self.metrics.fanout_requests.labels(bpp).inc()
        d = await self.outbound.post(f"{(target.url or '').rstrip('/')}/discover", body, retries=0,
                                     timeout=max(0.001, run.deadline - run.sent_at[bpp]))
        result = classify(d)
        self.metrics.fanout_responses.labels(bpp, result).inc()
        if result != "ack" and not run.settled and bpp not in run.answered and bpp not in run.failed:
            run.failed.add(bpp)
            if result == "timeout":  # hung until the deadline (otherwise `_settle` counts the silent ones)
                self.metrics.fanout_timeouts.labels(bpp).inc()
            # Recorded before the collector may finish: once the answer is out, the next discover (on any
            # worker) sees this failure in the circuit. `recording` keeps the run open until then.
            run.recording += 1
            try:
                await self._record(bpp, False)
            finally:
                run.recording -= 1
                run.event.set()

    async def _record(self, bpp: str, ok: bool) -> None:
        try:
            state = await self.circuit.record(bpp, ok, self.clock())
        except REDIS_ERRORS as e:
            log.warning("circuit state of %s not recorded: %s", bpp, e)
            return
        self.metrics.fanout_circuit_open.labels(bpp).set(0 if state == CLOSED else 1)

    async def collect(self, run: FanoutRun, on_reply: OnReply | None = None) -> list[Hit]:
        """Wait until every target answered or failed, or the deadline; close the record; return the
        matched live hits (`on_reply` is called per accepted reply, for the incremental mode)."""
        try:
            while True:
                run.event.clear()
                await self._take(run, await self._read(run), on_reply)
                left = run.deadline - time.time()
                if run.complete() or left <= 0:
                    break
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(run.event.wait(), left)
            try:
                final = await self.pending.finish(run.key, run.seen)
            except REDIS_ERRORS as e:
                log.warning("fan-out %s: closing the pending record failed: %s", run.key, e)
                final = []
            await self._take(run, final, on_reply)
        finally:
            self.pending.unwatch(run.key)
        run.settled = True   # from here on, a send that fails late does not count again
        self._background(self._settle(run))  # circuit bookkeeping stays off the answer's path
        return run.hits

    async def _read(self, run: FanoutRun) -> list[Reply]:
        try:
            return await self.pending.replies(run.key, run.seen)
        except REDIS_ERRORS as e:  # keep waiting: finish() reads everything again
            log.warning("fan-out %s: reading replies failed: %s", run.key, e)
            return []

    async def _take(self, run: FanoutRun, replies: list[Reply], on_reply: OnReply | None) -> None:
        for r in replies:
            run.seen += 1
            if r.bpp_id not in run.targets or r.bpp_id in run.answered:
                continue
            run.answered.add(r.bpp_id)
            run.failed.discard(r.bpp_id)  # replied although its discover looked failed: the reply counts
            hits = _hits_dec.decode(r.payload)
            run.hits.extend(hits)
            self.metrics.fanout_reply_latency.labels(r.bpp_id).observe(
                max(0.0, r.received_at - run.sent_at.get(r.bpp_id, run.started)))
            if on_reply is not None:
                try:
                    await on_reply(r.bpp_id, hits)
                except Exception:  # noqa: BLE001 - one failed partial delivery must not stop the others
                    log.exception("incremental on_discover for %s failed", r.bpp_id)

    async def _settle(self, run: FanoutRun) -> None:
        """One circuit outcome per target: replied = success; silent by the deadline = failure (failed sends
        were recorded when they failed)."""
        for bpp in run.targets:
            if bpp in run.answered:
                await self._record(bpp, True)
            elif bpp not in run.failed:
                run.failed.add(bpp)
                self.metrics.fanout_timeouts.labels(bpp).inc()
                await self._record(bpp, False)

    # ---- any replica: replies

    def _remember_plan(self, key: str, query: Query) -> None:
        self._plans[key] = query
        self._plans.move_to_end(key)
        while len(self._plans) > PLAN_CACHE_SIZE:
            self._plans.popitem(last=False)

    async def _plan(self, key: str, rec: PendingRecord, work: WorkBudget) -> Query:
        query = self._plans.get(key)
        if query is None:  # the request was received by another replica: plan its intent the same way
            query = await run_off_loop(self.settings.work_threads, work, functools.partial(
                build_query, _intent_dec.decode(rec.intent), settings=self.settings))
            self._remember_plan(key, query)
        return query

    async def accept_reply(self, doc: dict, ctx: Context, caller: Caller) -> str:
        """Judge one on_discover whose signature and signer (== context.bpp_id) are verified. Returns
        accepted | late | duplicate (all ACKed). Raises BecknError, in this order: 400
        CTX_TRANSACTION_ID_UNKNOWN for no pending request or an untargeted BPP; 401 AUT_UNAUTHORIZED_ACTION
        when a catalog names another BPP; 400 SCH_* for catalogs that cannot be read; 503 when the shared
        state is unreachable."""
        bpp = caller.subscriber_id
        key = pending_key(ctx.transaction_id or "", ctx.message_id or "")
        try:
            verdict, rec = await self.pending.lookup(key, bpp, time.time())
            if verdict in (UNKNOWN, NOT_TARGETED):
                raise BecknError(E.CTX_TRANSACTION_ID_UNKNOWN,
                                 f"no pending discover for transaction {ctx.transaction_id} message "
                                 f"{ctx.message_id} awaits a reply from {bpp}", 400, "context.message_id")
            # Ownership before anything is read (even for a late reply): every catalog must be the signer's.
            msg = doc.get("message")
            cats = msg.get("catalogs") if isinstance(msg, dict) else None
            require_publisher(caller, ctx, [c for c in cats if isinstance(c, dict)] if isinstance(cats, list) else [])
            if verdict == ACCEPTED:
                assert rec is not None
                # docs/decisions.md §24: planning and re-filtering a reply have a discover's work budget and
                # run off the event loop; past the budget the reply is refused with a 400 naming the limit
                work = WorkBudget(self.settings.discover_work_ms, what="re-filtering this on_discover reply")
                query = await self._plan(key, rec, work)
                hits = await run_off_loop(self.settings.work_threads, work, functools.partial(
                    live_hits, reply_catalogs(doc), bpp_id=bpp, bpp_uri=ctx.bpp_uri or caller.subscriber.url,
                    dialect=ctx.dialect, query=query, settings=self.settings, now=self.clock()))
                verdict = await self.pending.offer(key, Reply(bpp_id=bpp, received_at=time.time(),
                                                              payload=_hits_enc.encode(hits)))
                if verdict in (UNKNOWN, NOT_TARGETED):  # forgotten in between: its late window ended
                    verdict = LATE
        except REDIS_ERRORS as e:
            log.warning("on_discover from %s: pending store unavailable: %s", bpp, e)
            raise BecknError(E.NET_DOWNSTREAM_UNAVAILABLE, "fan-out state temporarily unavailable; retry", 503) from None
        self.metrics.fanout_replies.labels(bpp, verdict).inc()
        return verdict


def build_fanout(settings: Settings, *, registry: Registry, storage: "Storage", outbound: Outbound,
                 metrics: Metrics, clock: Callable[[], float], redis: "Redis | None") -> Fanout:
    """Shared (Redis) pending store and circuit breaker when Redis is configured, else in-process ones."""
    if redis is not None:
        pending: PendingStore = RedisPendingStore(redis)
        circuit: CircuitBreaker = RedisCircuitBreaker(redis, settings.circuit_failures, settings.circuit_cooldown_s)
    else:
        pending = MemoryPendingStore()
        circuit = MemoryCircuitBreaker(settings.circuit_failures, settings.circuit_cooldown_s)
    return Fanout(settings=settings, registry=registry, storage=storage, outbound=outbound, pending=pending,
                  circuit=circuit, metrics=metrics, clock=clock)
