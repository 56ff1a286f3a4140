"""The operator console's read-only view of this CDS (docs/decisions.md §R; README "Operator console"): the index and ingest at a
glance, one row per BPP (publisher or fan-out target), connectors for the map, and the discover tester.

Everything here reads: the index through the storage overviews (indexer/overview.py), the registry's BPP
list, circuit states, and this process's own Prometheus series, so the numbers are the ones /metrics shows
(per process: with several API processes each console shows its own counters, like each /metrics).
The tester runs the query through the same parser, planner and index as a signed discover (§S Matching);
it does not fan out (it sends nothing to BPPs: a read-only console must not open or close their circuits).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections import defaultdict
from typing import Any, Callable

from cds.config import Settings
from cds.core.protocol import parse_context, parse_discover
from cds.fanout.engine import Fanout
from cds.metrics import Metrics
from cds.services.console_query import discover_body
from cds.services.discover import DiscoverService
from cds.services.gauges import refresh_index_gauges
from cds.trust.registry import Registry
from indexer.overview import Coverage, CoverageQuery
from indexer.storage import Storage

log = logging.getLogger("cds.console")

MAX_POINTS = 2000


class MetricView:
    """One collection of a Prometheus registry: value of (metric sample name, labels)."""

    def __init__(self, metrics: Metrics) -> None:
        self._v: dict[str, dict[tuple, float]] = defaultdict(dict)
        for family in metrics.server_registry().collect():   # the whole server, as /metrics shows it
            for s in family.samples:
                self._v[s.name][tuple(sorted(s.labels.items()))] = s.value

    def get(self, name: str, **labels: str) -> float:
        return self._v.get(name, {}).get(tuple(sorted(labels.items())), 0.0)

    def by_label(self, name: str, label: str, **fixed: str) -> dict[str, float]:
        """{value of `label`: sample} over the samples whose other labels are exactly `fixed`."""
        out: dict[str, float] = {}
        for key, v in self._v.get(name, {}).items():
            d = dict(key)
            lv = d.pop(label, None)
            if lv is not None and d == fixed:
                out[lv] = v
        return out

    def buckets(self, name: str, **labels: str) -> list[tuple[float, float]]:
        """(upper bound, cumulative count) of a histogram, ascending."""
        out = []
        for key, v in self._v.get(name + "_bucket", {}).items():
            d = dict(key)
            le = d.pop("le")
            if d == labels:
                out.append((float(le), v))
        return sorted(out)


def quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Prometheus's histogram_quantile: linear inside the bucket holding the q-th observation."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower
            return lower + (upper - lower) * ((rank - below) / (count - below) if count > below else 1.0)
        lower, below = upper, count
    return lower


def _histogram(view: MetricView, name: str, **labels: str) -> dict[str, Any]:
    count = view.get(name + "_count", **labels)
    b = view.buckets(name, **labels)
    return {"count": int(count), "mean_s": view.get(name + "_sum", **labels) / count if count else None,
            "p50_s": quantile(b, 0.5), "p95_s": quantile(b, 0.95)}


@dataclasses.dataclass
class ConsoleService:
    settings: Settings
    storage: Storage
    metrics: Metrics
    registry: Registry
    fanout: Fanout | None
    ingest: Any                      # IngestPipeline | StreamIngest: pending_count()
    discover: DiscoverService
    clock: Callable[[], float] = time.time

    async def overview(self) -> dict[str, Any]:
        """The index and the ingest path, from the same gauges and counters as /metrics."""
        s, m = self.settings, self.metrics
        await refresh_index_gauges(m, self.storage, self.ingest)
        v = MetricView(m)
        return {
            "subscriber_id": s.subscriber_id, "backend": self.storage.name, "now": self.clock(),
            "redis": bool(s.redis_url), "status_fresh_s": s.status_fresh_s,
            "index": {"catalogs": int(v.get("cds_index_catalogs")), "items": int(v.get("cds_index_items")),
                      "freshness_lag_s": v.get("cds_index_freshness_lag_seconds")},
            "ingest": {
                "backlog": int(v.get("cds_ingest_pending")),
                "backlog_bytes": int(v.get("cds_ingest_backlog_bytes")),
                "consumer_lag": int(v.get("cds_ingest_consumer_lag")),
                "in_flight": int(v.get("cds_ingest_stream_pending")),
                "dead_letters": int(v.get("cds_ingest_dead_letters")),
                "catalogs_accepted": int(v.get("cds_publish_catalogs_total", status="ACCEPTED")),
                "catalogs_rejected": int(v.get("cds_publish_catalogs_total", status="REJECTED")),
                "publish_to_searchable": _histogram(v, "cds_publish_to_searchable_seconds"),
            },
            "discover": {"search": _histogram(v, "cds_search_duration_seconds", backend=self.storage.name)},
        }

    async def bpps(self) -> list[dict[str, Any]]:
        """One row per publisher of stored catalogs and per registry BPP of the domain (a fan-out target
        unless it publishes), with its publish and fan-out figures."""
        now = self.clock()
        pubs = {p.bpp_id: p for p in await self.storage.publishers(now)}
        try:
            registered = {r.subscriber_id: r for r in await self.registry.list_bpps(self.settings.domain)}
        except Exception as e:  # noqa: BLE001 - the registry may be down: show what the index knows
            log.warning("console: registry BPP list unavailable: %s", e)
            registered = {}
        v = MetricView(self.metrics)
        rejected_cat = v.by_label("cds_publish_rejected_total", "bpp", kind="catalog")
        rejected_item = v.by_label("cds_publish_rejected_total", "bpp", kind="item")
        sent = v.by_label("cds_fanout_requests_total", "bpp")
        timeouts = v.by_label("cds_fanout_timeouts_total", "bpp")
        ids = sorted(set(pubs) | set(registered) | set(sent) | set(rejected_cat))
        live = {b for b, p in pubs.items() if p.catalogs > 0}
        circuits = await self._circuits([b for b in ids if b in registered and b not in live], now)
        rows = []
        for bpp in ids:
            p = pubs.get(bpp)
            rows.append({
                # registered and not publishing live catalogs: the fan-out asks it (docs/decisions.md §S Fan-out)
                "bpp_id": bpp, "role": "fan-out target" if bpp in registered and bpp not in live else "publisher",
                "registered": bpp in registered,
                "catalogs": p.catalogs if p else 0, "items": p.items if p else 0,
                "expired_catalogs": p.expired_catalogs if p else 0,
                "last_publish_age_s": (now - p.last_published_at) if p and p.last_published_at else None,
                "rejected_catalogs": int(rejected_cat.get(bpp, 0)), "rejected_items": int(rejected_item.get(bpp, 0)),
                "fanout_requests": int(sent.get(bpp, 0)), "timeouts": int(timeouts.get(bpp, 0)),
                "errors": int(sum(v.get("cds_fanout_responses_total", bpp=bpp, result=r) for r in ("nack", "error"))),
                "reply": _histogram(v, "cds_fanout_reply_seconds", bpp=bpp),
                "circuit": circuits.get(bpp),
            })
        return rows

    async def _circuits(self, bpp_ids: list[str], now: float) -> dict[str, str]:
        if self.fanout is None or not bpp_ids:
            return {}
        try:
            return await self.fanout.circuit.states(bpp_ids, now)
        except Exception as e:  # noqa: BLE001 - Redis down: the states are unknown, the rows stay
            log.warning("console: circuit states unavailable: %s", e)
            return {}

    async def coverage(self, *, precision: int, bbox: tuple[float, float, float, float] | None,
                       bpp_id: str | None, max_points: int) -> Coverage:
        now = self.clock()
        q = CoverageQuery(precision=precision, bbox=bbox, bpp_id=bpp_id, max_points=min(max_points, MAX_POINTS),
                          fresh_after=now - self.settings.status_fresh_s)
        return await self.storage.coverage(q, now)

    async def test_discover(self, form: dict[str, Any]) -> dict[str, Any]:
        """The tester: build the discover, then parse, plan and search it like a signed one (BecknError 400 on
        bad input). Returns the request, the on_discover body, the matched items for the map and the time."""
        s = self.settings
        t0 = time.perf_counter()
        body = discover_body(form, subscriber_id=s.subscriber_id, subscriber_url=s.subscriber_url, domain=s.domain,
                             tz=s.timezone)
        ctx = parse_context(body, expected_actions={"discover"}, now=time.time(), clock_skew_s=s.clock_skew_s)
        req = parse_discover(body, ctx)
        query = self.discover.plan(req)
        answer, hits = await self.discover.answer_from_index(req, query)
        took = time.perf_counter() - t0
        items = [{"bpp_id": h.item.bpp_id, "catalog_id": h.item.catalog_id, "item_id": h.item.item_id,
                  "lon": h.item.lon, "lat": h.item.lat, "connector_type": h.item.connector_type,
                  "max_kw": h.item.max_kw, "distance_m": h.distance} for h in hits]
        return {"request": body, "on_discover": answer, "items": items, "took_ms": round(took * 1000, 2)}
