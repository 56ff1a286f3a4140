"""The console's coverage overview on Elasticsearch (`ElasticStorage.coverage`, indexer/overview.py): a
geotile_grid with centroids, connector types and fresh statuses per cell, or the documents themselves when few."""

from __future__ import annotations

from typing import Any, Protocol

from elasticsearch import AsyncElasticsearch

from cds.core.documents import CatalogMeta
from indexer.elastic import generations, translate
from indexer.elastic.mapping import decode_item
from indexer.overview import (
    MAX_PRECISION, UNKNOWN, Coverage, CoverageCell, CoveragePoint, CoverageQuery, status_label,
)

MAX_TERMS = 60_000             # below index.max_terms_count (65,536)


class Store(Protocol):
    """What the overview reads of `ElasticStorage`."""

    @property
    def es(self) -> AsyncElasticsearch: ...

    @property
    def items_alias(self) -> str: ...

    @property
    def catalogs_alias(self) -> str: ...

    async def current_metas(self, extra: list[dict[str, Any]]) -> list[tuple[str, CatalogMeta]]: ...


async def coverage(store: Store, query: CoverageQuery, now: float) -> Coverage:
    """geotile_grid + geo_centroid, or the documents themselves when few. A published status is read
    when its catalog is (normalisation stamps both with one instant), so a cell's stale statuses are those
    of the catalogs published before `fresh_after`: one terms filter on their generations."""
    filters: list[dict[str, Any]] = [generations.lookup_filter(store.catalogs_alias), {"term": {"live": False}},
                                     {"exists": {"field": "loc"}}, *translate.live_filters(now)]
    if query.bpp_id is not None:
        filters.append({"term": {"bpp_id": query.bpp_id}})
    if query.bbox is not None:
        b = query.bbox
        filters.append({"geo_bounding_box": {"loc": {"top_left": {"lon": b[0], "lat": b[3]},
                                                     "bottom_right": {"lon": b[2], "lat": b[1]}}}})
    es_query = {"bool": {"filter": filters}}
    resp = await store.es.search(index=store.items_alias, query=es_query, size=0, track_total_hits=True)
    total = resp["hits"]["total"]["value"]
    if total <= query.max_points:
        return Coverage(total=total, points=await _points(store, es_query, query, total))
    aggs = {"grid": {"geotile_grid": {"field": "loc", "precision": min(query.precision, MAX_PRECISION),
                                      "size": 10_000},
                     "aggs": {"centroid": {"geo_centroid": {"field": "loc"}},
                              "types": {"terms": {"field": "connector_type", "size": 50, "missing": ""}},
                              "fresh": {"filter": await _fresh_filter(store, query.fresh_after),
                                        "aggs": {"statuses": {"terms": {"field": "status", "size": 50}}}}}}}
    resp = await store.es.search(index=store.items_alias, query=es_query, size=0, aggs=aggs,
                                 track_total_hits=False)
    cells = []
    for b in resp["aggregations"]["grid"]["buckets"]:
        statuses = {s["key"]: s["doc_count"] for s in b["fresh"]["statuses"]["buckets"]}
        unknown = b["doc_count"] - sum(statuses.values())
        if unknown:
            statuses[UNKNOWN] = statuses.get(UNKNOWN, 0) + unknown
        loc = b["centroid"]["location"]
        cells.append(CoverageCell(lon=loc["lon"], lat=loc["lat"], count=b["doc_count"], statuses=statuses,
                                  types={t["key"]: t["doc_count"] for t in b["types"]["buckets"]}))
    cells.sort(key=lambda c: (c.lon, c.lat))
    return Coverage(total=total, cells=cells)


async def _fresh_filter(store: Store, fresh_after: float) -> dict[str, Any]:
    stale = [cg for cg, _ in await store.current_metas(extra=[{"range": {"published_at": {"lt": fresh_after}}}])]
    if len(stale) > MAX_TERMS:   # beyond a terms query's bound: judge by the generation's write time
        return {"range": {"ts": {"gte": fresh_after}}}
    return {"bool": {"must_not": [{"terms": {"cg": stale}}]}} if stale else {"match_all": {}}


async def _points(store: Store, es_query: dict[str, Any], query: CoverageQuery,
                  total: int) -> list[CoveragePoint]:
    if total == 0:
        return []
    resp = await store.es.search(index=store.items_alias, query=es_query, size=total, _source=["d"],
                                 track_total_hits=False)
    out = []
    for h in resp["hits"]["hits"]:
        d = decode_item(h["_source"]["d"])
        out.append(CoveragePoint(lon=d.lon, lat=d.lat, bpp_id=d.bpp_id, catalog_id=d.catalog_id,
                                 item_id=d.item_id, connector_type=d.connector_type, max_kw=d.max_kw,
                                 status=status_label(d.status, d.status_at, query.fresh_after)))
    return out
