"""Discover: plan the query, search the index, assemble one on_discover in the caller's dialect."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from cds.assemble import assemble_catalogs, build_on_discover
from cds.config import Settings
from cds.metrics import Metrics
from cds.models import DiscoverRequest
from cds.outbound import Delivery, Outbound
from cds.planner import build_query
from cds.query import Query
from indexer.storage import Storage

log = logging.getLogger("cds.discover")


class DiscoverService:
    def __init__(self, storage: Storage, settings: Settings, metrics: Metrics, outbound: Outbound | None,
                 clock: Callable[[], float] = time.time) -> None:
        self._storage = storage
        self._settings = settings
        self._metrics = metrics
        self._outbound = outbound
        self._clock = clock

    def plan(self, req: DiscoverRequest) -> Query:
        """Compile the request; raises BecknError (400) for invalid filters/geometry."""
        return build_query(req.intent, settings=self._settings)

    async def answer(self, req: DiscoverRequest, query: Query) -> dict[str, Any]:
        now = self._clock()
        t0 = time.perf_counter()
        hits = await self._storage.search(query, now)
        self._metrics.search_latency.labels(self._storage.name).observe(time.perf_counter() - t0)
        self._metrics.discover_results.observe(len(hits))
        catalogs = assemble_catalogs(hits, dialect=req.context.dialect, now=now, settings=self._settings)
        return build_on_discover(req.context, catalogs, settings=self._settings, now=now)

    async def answer_and_deliver(self, req: DiscoverRequest, query: Query, callback_base: str,
                                 received_at: float) -> Delivery | None:
        """The async path: compute the answer and POST it to {bap_uri}/on_discover."""
        assert self._outbound is not None
        try:
            body = await self.answer(req, query)
        except Exception:  # noqa: BLE001 - a background task must log, never die silently
            log.exception("discover %s failed", req.context.message_id)
            return None
        delivery = await self._outbound.post(f"{callback_base}/on_discover", body)
        outcome = "delivered" if delivery.ok else "failed"
        self._metrics.callbacks.labels("on_discover", outcome).inc()
        if delivery.attempts > 1:
            self._metrics.callback_retries.labels("on_discover").inc(delivery.attempts - 1)
        if delivery.ok:
            self._metrics.callback_latency.labels("on_discover").observe(time.time() - received_at)
        return delivery
