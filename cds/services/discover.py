"""Discover: plan the query, search the index, fan out to non-caching BPPs, merge, and assemble one
on_discover in the caller's dialect (docs/decisions.md §S; fan-out details in cds.fanout.engine)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from typing import Any, Callable

from cds.core import budget
from cds.core.budget import WorkBudget, WorkLimitExceeded
from cds.core.errors import NET_OVERLOADED, BecknError
from cds.core.jsoncache import JsonCache
from cds.core.replies import build_on_discover
from cds.services.assemble import assemble_catalogs
from cds.services.idle import after_io
from cds.config import Settings
from cds.fanout.engine import Fanout, FanoutRun, merge_hits
from cds.core.matching import select
from cds.metrics import Metrics
from cds.core.models import DiscoverRequest
from cds.trust.auth import Inbound
from cds.trust.outbound import Delivery, Outbound
from cds.trust.replay import ReplayStore, first_time
from cds.core.planner import build_query, cheap_to_plan
from cds.workpool import run_off_loop
from cds.core.query import Query
from cds.core.documents import Hit
from indexer.storage import Storage

log = logging.getLogger("cds.discover")

BACKGROUND_SLICE_S = 0.001   # a background search yields the loop this often (docs/decisions.md §P, "ACKs first")
_NO_TURN = contextlib.nullcontext()


def _background() -> WorkBudget | None:
    """The budget in force when it is a background answer's (`answer_and_deliver` gives it short slices)."""
    work = budget.current()
    return work if work is not None and work.slice_s is not None else None


async def _between_steps() -> None:
    """Between the steps of a background answer (search, assembly, serialising + signing + sending), yield
    behind the requests that arrived meanwhile (docs/decisions.md §P, "ACKs first"): no ACK waits for more than
    one step. A synchronous answer goes on without yielding."""
    work = _background()
    if work is not None and work.pause is not None:
        await work.pause()


class AnswersOverloaded(BecknError):
    """503 `NET_OVERLOADED`: too many POST discovers ACKed and not yet answered in this process."""

    retry_after = 1.0           # the Retry-After header (cds.api.handlers.base)

    def __init__(self, pending: int) -> None:
        super().__init__(NET_OVERLOADED, f"{pending} discovers are waiting to be answered here; the request was "
                                         "not accepted, send it again shortly", 503)


class DiscoverService:
    def __init__(self, storage: Storage, settings: Settings, metrics: Metrics, outbound: Outbound | None,
                 clock: Callable[[], float] = time.time, fanout: Fanout | None = None) -> None:
        self._storage = storage
        self._settings = settings
        self._metrics = metrics
        self._outbound = outbound
        self._clock = clock
        self._fanout = fanout
        # Background answers compute one at a time (docs/decisions.md §P, "ACKs first"): on one core this
        # loses no throughput, and an arriving request waits behind at most one short slice, not one per
        # answer in progress.
        self._lane = asyncio.Semaphore(settings.background_answers)
        self._pending = 0       # admitted background answers not yet computed (`admit`, docs/decisions.md §P)
        self._json_cache = JsonCache(settings.json_cache_mb << 20)   # unpacked item/offer JSON (§G)

    def _cpu_turn(self) -> contextlib.AbstractAsyncContextManager:
        """A background answer (its budget in force slices short: `answer_and_deliver`) waits for the lane
        (entered with `async with`); anything else goes ahead (a shared no-op, nothing to build per request)."""
        return _NO_TURN if _background() is None else self._lane

    def plan(self, req: DiscoverRequest) -> Query:
        """Compile the request; raises BecknError (400) for invalid filters/geometry."""
        return build_query(req.intent, settings=self._settings)

    def work_budget(self) -> WorkBudget:
        """The work one discover may do (CDS_DISCOVER_WORK_MS, docs/decisions.md §24)."""
        return WorkBudget(self._settings.discover_work_ms)

    async def plan_bounded(self, req: DiscoverRequest, work: WorkBudget) -> Query:
        """`plan` charged to `work`: on the loop when it is cheap (points, a short filter), else in the work
        pool so that the loop keeps answering; 400 when the geometry or the filter is over a limit."""
        if cheap_to_plan(req.intent):
            with work.running():
                return self.plan(req)
        return await run_off_loop(self._settings.work_threads, work, self.plan, req)

    async def _search(self, query: Query, now: float) -> list[Hit]:
        async with self._cpu_turn():
            t0 = time.perf_counter()
            hits = await self._storage.search(query, now)
        self._metrics.search_latency.deferred(self._storage.name).observe(time.perf_counter() - t0)
        return hits

    async def _search_or_none(self, query: Query, now: float, run: FanoutRun | None) -> list[Hit]:
        """The index's hits; with a fan-out under way an index failure leaves the live replies to answer."""
        try:
            return await self._search(query, now)
        except BecknError:
            raise                           # the request's own fault (its work budget): never hidden
        except Exception:
            if run is None:
                raise
            log.exception("index search failed; answering with the fan-out replies only")
            return []

    async def _search_or_refuse(self, query: Query, now: float, run: FanoutRun | None) -> list[Hit]:
        """`_search_or_none`; when the request is refused (its work budget), a started fan-out is still
        collected in the background so that its targets' circuits and its pending record are settled."""
        try:
            return await self._search_or_none(query, now, run)
        except BecknError:
            if run is not None and self._fanout is not None:
                self._fanout._background(self._collect(run))
            raise

    async def _start_fanout(self, req: DiscoverRequest, query: Query, received_at: float) -> FanoutRun | None:
        if self._fanout is None:
            return None
        try:
            return await self._fanout.start(req, query, received_at)
        except Exception:  # noqa: BLE001 - the cached answer must still go out
            log.exception("fan-out for %s could not start", req.context.message_id)
            return None

    async def _collect(self, run: FanoutRun, on_reply=None) -> list[Hit]:
        assert self._fanout is not None
        try:
            return await self._fanout.collect(run, on_reply)
        except Exception:  # noqa: BLE001 - answer with what the cache has
            log.exception("fan-out collection failed")
            return []

    async def _merged(self, query: Query, cached: list[Hit], live: list[Hit], now: float) -> list[Hit]:
        merged, overridden = merge_hits(cached, live, query.limit)
        if overridden and len(cached) >= query.limit:
            # Live items replaced some of a full cached page: refill from the index so the cap is exact.
            wider = await self._search(dataclasses.replace(query, limit=query.limit + len(live)), now)
            merged, _ = merge_hits(wider, live, query.limit)
        return merged

    async def _body(self, req: DiscoverRequest, hits: list[Hit]) -> dict[str, Any]:
        self._metrics.discover_results.deferred().observe(len(hits))
        async with self._cpu_turn():
            await _between_steps()
            return self._render(req, hits)

    def _render(self, req: DiscoverRequest, hits: list[Hit]) -> dict[str, Any]:
        now = self._clock()
        catalogs = assemble_catalogs(hits, dialect=req.context.dialect, now=now, settings=self._settings,
                                     splice=True, cache=self._json_cache)
        return build_on_discover(req.context, catalogs, settings=self._settings, now=now)

    async def _answer(self, req: DiscoverRequest, query: Query, received_at: float) -> tuple[dict[str, Any], bool]:
        run = await self._start_fanout(req, query, received_at)  # the fan-out runs while the index answers
        now = self._clock()
        hits = await self._search_or_refuse(query, now, run)
        if run is not None:
            hits = await self._merged(query, hits, await self._collect(run), now)
        return await self._body(req, hits), run is not None

    async def answer_from_index(self, req: DiscoverRequest, query: Query) -> tuple[dict[str, Any], list[Hit]]:
        """The cached part of an answer only (no fan-out, not counted as an answered discover): the
        on_discover body and its hits."""
        hits = await self._search(query, self._clock())
        return self._render(req, hits), hits

    async def answer(self, req: DiscoverRequest, query: Query, received_at: float | None = None,
                     work: WorkBudget | None = None) -> dict[str, Any]:
        """The merged on_discover body (cache + fan-out; waits for the fan-out like the async path, §8.3).
        Raises WorkLimitExceeded (400) when the search needs more than `work` allows."""
        received_at = time.time() if received_at is None else received_at
        with budget.in_force(work or self.work_budget()):
            body, fanned = await self._answer(req, query, received_at)
        if fanned:
            self._metrics.fanout_callback_latency.labels("sync").observe(time.time() - received_at)
        return body

    def refuse_when_full(self) -> None:
        """503 `NET_OVERLOADED` (with Retry-After) while `max_pending_answers` POST discovers are ACKed and not
        yet computed. Without the bound, a client sending POSTs faster than they can be answered grows the queue
        (memory, and the delay of every answer) without limit (docs/decisions.md §P). Called first, before any
        work for the request, and again by `admit`."""
        if self._pending >= self._settings.max_pending_answers:
            raise AnswersOverloaded(self._pending)

    def admit(self) -> None:
        """Right before the ACK of a POST: take room for its answer (or refuse, as `refuse_when_full`). The
        caller must then run `answer_once`, which gives the room back."""
        self.refuse_when_full()
        self._pending += 1

    async def answer_once(self, replay: ReplayStore, inbound: Inbound, req: DiscoverRequest, query: Query,
                          callback_base: str, work: WorkBudget | None = None) -> Delivery | None:
        """After the ACK of a POST (`admit`ted): `answer_and_deliver`, unless it is a replay (§11: the same ACK,
        no second answer). With several workers the check is a round trip to Redis, which no ACK waits for now
        (docs/decisions.md §P, "ACKs first")."""
        waiting = True

        def computed() -> None:                 # once: the answer no longer waits to be computed
            nonlocal waiting
            if waiting:
                waiting = False
                self._pending -= 1
        try:
            if not await first_time(replay, inbound):
                return None
            return await self.answer_and_deliver(req, query, callback_base, inbound.received_at, work,
                                                 computed=computed)
        finally:
            computed()

    async def answer_and_deliver(self, req: DiscoverRequest, query: Query, callback_base: str,
                                 received_at: float, work: WorkBudget | None = None,
                                 computed: Callable[[], None] | None = None) -> Delivery | None:
        """The async path: compute the answer and POST it to {bap_uri}/on_discover. A search over its work
        budget (after the ACK) is answered with an on_discover that carries the error and no catalogs.
        `computed` is called when the answer is ready to send: its room in `admit`'s bound is given back then (a
        slow callback endpoint holds a delivery, not the room of the answers behind it)."""
        assert self._outbound is not None
        work = work or self.work_budget()
        work.slice_s = BACKGROUND_SLICE_S           # also what marks it a background answer (`_cpu_turn`)
        work.pause = after_io
        try:
            with budget.in_force(work):
                if self._settings.fanout_incremental and self._fanout is not None:
                    return await self._deliver_incremental(req, query, callback_base, received_at, computed)
                body, fanned = await self._answer(req, query, received_at)
        except WorkLimitExceeded as e:
            log.warning("discover %s refused after its ACK: %s", req.context.message_id, e.message)
            self._metrics.nacks.labels("discover", e.code).inc()
            return await self._deliver(callback_base, self._refusal(req, e), received_at, False, computed)
        except Exception:  # noqa: BLE001 - a background task must log, never die silently
            log.exception("discover %s failed", req.context.message_id)
            return None
        return await self._deliver(callback_base, body, received_at, fanned, computed)

    def _refusal(self, req: DiscoverRequest, err: BecknError) -> dict[str, Any]:
        body = build_on_discover(req.context, [], settings=self._settings, now=self._clock())
        body["error"] = {"code": err.code, "message": err.message, **({"paths": err.paths} if err.paths else {})}
        return body

    async def _deliver_incremental(self, req: DiscoverRequest, query: Query, callback_base: str,
                                   received_at: float, computed: Callable[[], None] | None) -> Delivery | None:
        """CDS_FANOUT_INCREMENTAL: the cached answer at once, then one on_discover per accepted BPP reply
        (each holding only that BPP's matched items). Late replies are still dropped."""
        run = await self._start_fanout(req, query, received_at)
        hits = await self._search_or_refuse(query, self._clock(), run)
        first = await self._deliver(callback_base, await self._body(req, hits), received_at, False, computed)
        if run is None:
            return first

        async def partial(_bpp: str, live: list[Hit]) -> None:
            await self._deliver(callback_base, await self._body(req, select(live, query.limit)), received_at, True)

        await self._collect(run, partial)
        return first

    async def _deliver(self, callback_base: str, body: dict[str, Any], received_at: float, fanned: bool,
                       computed: Callable[[], None] | None = None) -> Delivery:
        assert self._outbound is not None
        if computed is not None:
            computed()
        await _between_steps()
        delivery = await self._outbound.post(f"{callback_base}/on_discover", body)
        outcome = "delivered" if delivery.ok else "failed"
        self._metrics.callbacks.labels("on_discover", outcome).inc()
        if delivery.attempts > 1:
            self._metrics.callback_retries.labels("on_discover").inc(delivery.attempts - 1)
        if delivery.ok:
            self._metrics.callback_latency.labels("on_discover").observe(time.time() - received_at)
            if fanned:
                self._metrics.fanout_callback_latency.labels("async").observe(time.time() - received_at)
        return delivery
