"""`ElasticStorage`: the Storage protocol on Elasticsearch 8.x (see indexer/storage.py).

Atomic replace (several API replicas reading one cluster):
1. the new version is written as a new *generation* (`cg` = `{catalog key}.{generation id}`): every
   item doc plus an immutable meta doc, in bulk, made searchable (refresh) before anything else;
   a failed bulk deletes what it wrote and raises, so the old version stays;
2. one write to the `generations` doc flips the catalog to the new `cg` (optimistic concurrency);
3. the old generation is deleted after a grace period (default 30 s).
Concurrent `replace_catalog` calls are group-committed (indexer/elastic/batch.py, writes.py): one bulk
stream, one refresh and one flip for every catalog queued meanwhile, each caller getting its own outcome.
Every search filters items on the list of visible generations, from a cached copy of the `generations`
doc that is at most `CDS_ES_GENERATIONS_MAX_AGE_MS` old and re-validated by version (generations.py): a
query sees exactly one generation of each catalog, whichever replica runs it. A query holding a copy from
just before a flip still finds the old generation complete, because it is deleted only after the grace
period (far longer than any query plus the copy's age); `replace_catalog` returns once every replica's
copy may show the new one. Generations left behind by a crash are swept by `purge_expired` after
`orphan_age_s`.

Search: Elasticsearch narrows (translate.py) and orders; `cds.core.matching.matches` decides. Pages are
fetched with `search_after` until `limit` exact matches are in hand and no unseen doc can order
before them (see `_collect`), or the candidates run out. A hard bound (`max_candidates`) stops
runaway scans: the result is then the prefix that is certainly right, and a warning is logged.

Only core-server APIs are used (no painless, `_delete_by_query` or `_update_by_query`), so the code
runs on Elastic's integ-test distribution as on a full cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from typing import Any

import msgspec
from elasticsearch import AsyncElasticsearch, NotFoundError
from elasticsearch.serializer import OrjsonSerializer

from cds.core import budget, matching
from cds.config import Settings
from cds.core.query import Query
from cds.core.documents import CatalogMeta, CatalogRecord, Hit, ItemDoc
from indexer.elastic import coverage, generations, translate
from indexer.elastic.batch import GroupCommit
from indexer.elastic.bulk import NdjsonBytes, Op, bulk, delete_op, delete_where, index_op
from indexer.elastic.mapping import (
    CATALOGS_MAPPING, ITEMS_MAPPING, MAPPING_VERSION, IndexStateError, alias_target, catalog_key, ckey_of,
    decode_item, decode_meta, ensure_index, index_names, index_settings, item_body, meta_doc_id, version_of,
)
from indexer.elastic.writes import CatalogWriter, Hooks, new_generation
from indexer.overview import Coverage, CoverageQuery, PublisherSummary, summarize_publishers
from indexer.storage import PurgeStats, StorageStats

_MATCH_SLICE_S = 0.005   # matching a page yields the event loop after about this long
log = logging.getLogger(__name__)

META_CACHE_SIZE = 4096


class StorageNotReadyError(RuntimeError):
    """The cluster is unreachable or its indices are missing (run `cds index init`)."""


def build_client(settings: Settings) -> AsyncElasticsearch:
    kw: dict[str, Any] = {
        "node_class": "aiohttp",
        "serializers": {OrjsonSerializer.mimetype: OrjsonSerializer(), NdjsonBytes.mimetype: NdjsonBytes()},
        "request_timeout": 30,
        "max_retries": 2,
        "retry_on_timeout": True,
        "verify_certs": settings.es_verify_certs,
    }
    if settings.es_api_key:
        kw["api_key"] = settings.es_api_key
    elif settings.es_username:
        kw["basic_auth"] = (settings.es_username, settings.es_password or "")
    if settings.es_ca_certs:
        kw["ca_certs"] = settings.es_ca_certs
    if not settings.es_verify_certs:
        kw["ssl_show_warn"] = False
    return AsyncElasticsearch(settings.es_url, **kw)


class ElasticStorage:
    name = "elasticsearch"
    holds_documents = False       # the documents live in Elasticsearch, none in this process
    # The ingest worker's default for entries in flight (CDS_INGEST_CONCURRENCY): they wait on shared writes,
    # and a batch is at most what is in flight. Below ~64 catalogs a batch, a refresh per batch is most of
    # Elasticsearch's cost; 128 in flight kept the indexer waiting on the write before it (2,425 connectors/s),
    # 256 lets it normalise the next batch meanwhile (3,175/s; 512 gave no more) (BENCHMARKS.md).
    ingest_concurrency = 256

    def __init__(self, settings: Settings, *, client: AsyncElasticsearch | None = None,
                 retire_grace_s: float = 30.0, orphan_age_s: float = 3600.0, max_candidates: int = 20_000,
                 shards: int = 1, replicas: str = "0-1") -> None:
        if not settings.es_url and client is None:
            raise ValueError("ElasticStorage needs CDS_ES_URL")
        self._settings = settings
        self._names = index_names(settings.es_index_prefix)
        self._client = client
        self._retire_grace_s = retire_grace_s
        self._orphan_age_s = orphan_age_s
        self._max_candidates = max_candidates
        self._index_settings = index_settings(shards, replicas)
        self._meta_cache: OrderedDict[str, CatalogMeta] = OrderedDict()
        self._tasks: set[asyncio.Task] = set()
        # writes must be searchable before the flip, whatever the configured policy
        self._visible = "true" if settings.es_refresh == "true" else "wait_for"
        self._refresh: str | bool = False if settings.es_refresh == "false" else settings.es_refresh
        self._view = generations.GenerationView(lambda: self.es, self.catalogs_alias,
                                                settings.es_generations_max_age_ms / 1000)
        hooks = Hooks(not_ready=self._not_ready, written=self._cache_meta, retire=self._retire_later,
                      discard=self._discard_later)
        self._writer = CatalogWriter(lambda: self.es, self.items_alias, self.catalogs_alias, visible=self._visible,
                                     view=self._view, hooks=hooks)
        self._commit: GroupCommit[CatalogRecord] = GroupCommit(
            self._writer.write, weight=lambda r: len(r.items) + 1, max_weight=settings.es_batch_docs,
            min_interval_s=settings.es_flush_interval_ms / 1000)

    @property
    def es(self) -> AsyncElasticsearch:
        if self._client is None:
            self._client = build_client(self._settings)
        return self._client

    @property
    def items_alias(self) -> str:
        return self._names.items

    @property
    def catalogs_alias(self) -> str:
        return self._names.catalogs

    # --- lifecycle -----------------------------------------------------------------------------

    async def init_indices(self) -> str:
        """Create (or migrate to the current mapping) both indices; a readable summary."""
        lines = [
            await ensure_index(self.es, self._names.items, ITEMS_MAPPING, self._index_settings),
            await ensure_index(self.es, self._names.catalogs, CATALOGS_MAPPING, self._index_settings),
        ]
        return "\n".join(lines)

    async def open(self) -> None:
        # Indices are created only by `init_indices` (cds index init / indexer start), never here.
        if not await self.ready():
            log.warning("Elasticsearch at %s is not ready (unreachable, or indices %s/%s missing: "
                        "run `cds index init`)", self._settings.es_url, self._names.items, self._names.catalogs)

    async def close(self) -> None:
        await self._commit.close()
        for task in list(self._tasks):
            task.cancel()   # pending retires are swept later by purge_expired
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def ready(self) -> bool:
        try:
            for alias in (self._names.items, self._names.catalogs):
                target = await alias_target(self.es, alias)
                if target is None or version_of(target, alias) != MAPPING_VERSION:
                    return False
            return True
        except Exception as e:  # noqa: BLE001 - any failure means "not ready"; the reason is logged
            log.debug("elasticsearch readiness check failed: %s", e)
            return False

    # --- writes --------------------------------------------------------------------------------

    async def replace_catalog(self, record: CatalogRecord) -> None:
        await self._commit.submit(record)
        # searchable here at once; on every other replica once its cached generations list has aged out
        await asyncio.sleep(self._view.max_age_s)

    async def delete_catalog(self, bpp_id: str, catalog_id: str) -> bool:
        ckey = catalog_key(bpp_id, catalog_id)
        started = self._view.now()
        with self._errors():
            before, after = await generations.update(self.es, self.catalogs_alias,
                                                     generations.replacing(ckey, None))
        self._view.adopt(after, started)
        old = [c for c in before.current if ckey_of(c) == ckey]
        self._retire_later(old)
        return bool(old)

    async def _discard(self, cgs: list[str]) -> None:
        """Delete generations; never raises (what it cannot delete, the orphan sweep will)."""
        try:
            await self._delete_generations(cgs)
        except Exception:  # noqa: BLE001
            log.exception("could not delete generation(s) %s; the orphan sweep will", cgs)

    async def _delete_generations(self, cgs: list[str]) -> None:
        if not cgs:
            return
        # no refresh: generations not in the visible list are filtered out by every reader anyway
        await delete_where(self.es, self.items_alias, {"terms": {"cg": cgs}})
        await bulk(self.es, [delete_op(self.catalogs_alias, meta_doc_id(c)) for c in cgs])
        for c in cgs:
            self._meta_cache.pop(c, None)

    def _retire_later(self, cgs: list[str]) -> None:
        self._discard_later(cgs, self._retire_grace_s)

    def _discard_later(self, cgs: list[str], delay: float = 0.0) -> None:
        if not cgs:
            return

        async def retire() -> None:
            await asyncio.sleep(delay)
            await self._discard(cgs)

        task = asyncio.get_running_loop().create_task(retire())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for pending retires (tests and shutdown of short-lived tools)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # --- reads ---------------------------------------------------------------------------------

    async def get_catalog(self, bpp_id: str, catalog_id: str) -> CatalogMeta | None:
        with self._errors():     # realtime, not the cached list: a MERGE builds on the latest version
            snap = await generations.read(self.es, self.catalogs_alias)
        cg = generations.current_of(snap.current, catalog_key(bpp_id, catalog_id))
        if cg is None:
            return None
        try:
            resp = await self.es.get(index=self.catalogs_alias, id=meta_doc_id(cg))
        except NotFoundError:
            return None
        return decode_meta(resp["_source"])

    def _cache_meta(self, cg: str, meta: CatalogMeta) -> None:
        slim = meta if not meta.raw else _slim(meta)
        self._meta_cache[cg] = slim
        self._meta_cache.move_to_end(cg)
        while len(self._meta_cache) > META_CACHE_SIZE:
            self._meta_cache.popitem(last=False)

    async def _metas(self, cgs: set[str]) -> dict[str, CatalogMeta]:
        """Meta of each generation (immutable per generation, so cached without expiry)."""
        out = {cg: self._meta_cache[cg] for cg in cgs if cg in self._meta_cache}
        missing = sorted(cgs - out.keys())
        if missing:
            resp = await self.es.mget(index=self.catalogs_alias, ids=[meta_doc_id(c) for c in missing],
                                      source_excludes=["raw"])
            for doc in resp["docs"]:
                if doc.get("found"):
                    meta = decode_meta(doc["_source"])
                    cg = doc["_source"]["cg"]
                    out[cg] = meta
                    self._cache_meta(cg, meta)
        return out

    async def search(self, query: Query, now: float) -> list[Hit]:
        if query.limit <= 0:
            return []
        # One read of the visible generations for all pages: a flip between two pages must not mix
        # generations (their old docs outlive any search by the retire grace period).
        with self._errors():
            snap = await self._view.current()
            plan = translate.plan(query, now, current=list(snap.current), tz=self._settings.tz)
            if plan.impossible:
                return []
            return await self._collect(query, plan, now)

    async def _collect(self, query: Query, plan: translate.Plan, now: float) -> list[Hit]:
        hits: list[Hit] = []
        work = budget.current()
        size = min(max(query.limit + 20, 50), 1000)
        search_after: list[Any] | None = None
        seen = 0
        while True:
            body: dict[str, Any] = {"query": plan.query, "sort": plan.sort, "size": size,
                                    "_source": ["d", "cg"], "track_total_hits": False}
            if search_after is not None:
                body["search_after"] = search_after
            resp = await self.es.search(index=self.items_alias, filter_path="hits.hits._source,hits.hits.sort",
                                        **body)
            page = (resp.get("hits") or {}).get("hits") or []
            metas = await self._metas({h["_source"]["cg"] for h in page})
            i = 0
            while i < len(page):            # docs/decisions.md §24: a page is matched in slices of the loop
                if i:
                    await asyncio.sleep(0)
                until = time.perf_counter() + _MATCH_SLICE_S
                with work.running() if work is not None else contextlib.nullcontext():
                    while i < len(page):
                        h = page[i]
                        i += 1
                        if work is not None and not i % 8:
                            work.check()    # the request's work budget: a 400 naming the limit when spent
                        meta = metas.get(h["_source"]["cg"])
                        if meta is None:    # generation retired between the search and the meta fetch
                            continue
                        item = decode_item(h["_source"]["d"])
                        if matching.matches(query, item, meta, now):
                            dist = matching.distance(query, item) if query.origin is not None else None
                            hits.append(Hit(item=item, catalog=meta, distance=dist))
                        if time.perf_counter() >= until:
                            break
            seen += len(page)
            if len(page) < size:
                return matching.select(hits, query.limit)
            last = page[-1]["sort"]
            if plan.done(hits, query.limit, last):
                return matching.select(hits, query.limit)
            if seen >= self._max_candidates:
                certain = plan.certain(hits, last)
                log.warning("search stopped after %d candidates with %d certain match(es) (limit %d): %s",
                            seen, len(certain), query.limit, query.expression or "<no expression>")
                return matching.select(certain, query.limit)
            search_after = last
            size = min(size * 2, 1000)

    async def live_publishers(self, now: float) -> set[str]:
        out: set[str] = set()
        for _, meta in await self.current_metas(extra=[{"term": {"live": False}}, {"term": {"is_active": True}}]):
            if meta.is_active and not meta.live and (meta.expires_at is None or meta.expires_at > now):
                out.add(meta.bpp_id)
        return out

    async def current_metas(self, extra: list[dict[str, Any]]) -> list[tuple[str, CatalogMeta]]:
        """(cg, meta) of the visible catalogs matching `extra` filters."""
        query = {"bool": {"filter": [generations.lookup_filter(self.catalogs_alias), {"term": {"kind": "meta"}},
                                     *extra]}}
        out: list[tuple[str, CatalogMeta]] = []
        search_after: list[Any] | None = None
        while True:
            kw: dict[str, Any] = {"search_after": search_after} if search_after else {}
            with self._errors():
                resp = await self.es.search(index=self.catalogs_alias, query=query, sort=[{"cg": "asc"}], size=2000,
                                            source_excludes=["raw"], track_total_hits=False, **kw)
            page = resp["hits"]["hits"]
            out += [(h["_source"]["cg"], decode_meta(h["_source"])) for h in page]
            if len(page) < 2000:
                return out
            search_after = page[-1]["sort"]

    async def stats(self) -> StorageStats:
        lookup = generations.lookup_filter(self.catalogs_alias)
        with self._errors():
            cats = await self.es.search(
                index=self.catalogs_alias, size=0, track_total_hits=True,
                query={"bool": {"filter": [lookup, {"term": {"kind": "meta"}}]}},
                aggs={"newest": {"max": {"field": "published_at"}}})
            items = await self.es.count(index=self.items_alias, query={"bool": {"filter": [lookup]}})
        newest = cats["aggregations"]["newest"]["value"]
        return StorageStats(catalogs=cats["hits"]["total"]["value"], items=items["count"],
                            newest_published_at=newest)

    # --- console overviews (indexer/overview.py) --------------------------------------------------

    async def publishers(self, now: float) -> list[PublisherSummary]:
        return summarize_publishers((m for _, m in await self.current_metas(extra=[])), now)

    async def coverage(self, query: CoverageQuery, now: float) -> Coverage:
        with self._errors():
            return await coverage.coverage(self, query, now)

    # --- expiry --------------------------------------------------------------------------------

    async def purge_expired(self, now: float) -> PurgeStats:
        stats = PurgeStats()
        with self._errors():
            expired = await self.current_metas(extra=[{"range": {"expires_at": {"lte": now}}}])
            # by generation, not by catalog: a catalog re-published meanwhile keeps its new generation
            gone = {cg for cg, m in expired if m.expires_at is not None and m.expires_at <= now}
            if gone:
                started = self._view.now()
                before, after = await generations.update(self.es, self.catalogs_alias, generations.removing(gone))
                self._view.adopt(after, started)
                removed = sorted(set(before.current) - set(after.current))
                await self._delete_generations(removed)   # expired: no reader may show them anyway
                stats.catalogs = len(removed)
            stats.offers = await self._purge_offers(now)
            await self._sweep_orphans()
        return stats

    async def _purge_offers(self, now: float) -> int:
        from elasticsearch.helpers import async_scan

        query = {"bool": {"filter": [
            generations.lookup_filter(self.catalogs_alias),
            {"bool": {"should": [
                {"range": {"offers_end": {"lt": now}}},
                # documents written before offers_end (mapping.py)
                {"nested": {"path": "offers", "query": {"range": {"offers.valid_to": {"lt": now}}}}},
            ], "minimum_should_match": 1}},
        ]}}
        ops: list[Op] = []
        removed: dict[str, set[str]] = {}   # cg -> ids of the offers removed (counted once per catalog)
        rows: list[tuple[dict[str, Any], ItemDoc]] = []
        async for hit in async_scan(self.es, index=self.items_alias, query={"query": query}, size=500,
                                    seq_no_primary_term=True, _source=["d", "cg", "gen", "ts"]):
            rows.append((hit, decode_item(hit["_source"]["d"])))
        metas = await self._metas({h["_source"]["cg"] for h, _ in rows})
        for hit, item in rows:
            keep = [o for o in item.offers if o.valid_to is None or o.valid_to >= now]
            meta = metas.get(hit["_source"]["cg"])
            if len(keep) == len(item.offers) or meta is None:
                continue
            removed.setdefault(hit["_source"]["cg"], set()).update(
                o.id for o in item.offers if o.valid_to is not None and o.valid_to < now)
            item.offers = keep
            src = hit["_source"]
            body = item_body(item, meta, src["cg"], src["gen"], src["ts"])
            # only if unchanged since read: a concurrent retire/replace wins
            ops.append(index_op(self.items_alias, hit["_id"], body,
                                if_seq_no=hit["_seq_no"], if_primary_term=hit["_primary_term"]))
        if ops:
            await bulk(self.es, ops, refresh=self._refresh, ignore_conflicts=True)
        return sum(len(ids) for ids in removed.values())

    async def _sweep_orphans(self) -> None:
        """Delete generations that are not current and older than orphan_age_s (crashed writers,
        retires cut short by a restart). Wall clock, not the purge's `now`."""
        cutoff = time.time() - self._orphan_age_s
        not_current = {"bool": {"must_not": [generations.lookup_filter(self.catalogs_alias)],
                                "filter": [{"range": {"ts": {"lt": cutoff}}}]}}
        n = await delete_where(self.es, self.items_alias, not_current, refresh=self._refresh)
        meta_q = {"bool": {"must_not": [generations.lookup_filter(self.catalogs_alias)],
                           "filter": [{"term": {"kind": "meta"}}, {"range": {"ts": {"lt": cutoff}}}]}}
        n += await delete_where(self.es, self.catalogs_alias, meta_q, refresh=self._refresh)
        if n:
            log.info("swept %d orphaned document(s) older than %.0f s", n, self._orphan_age_s)

    # --- errors --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self):
        """A missing index becomes StorageNotReadyError; every other API error propagates as is."""
        try:
            yield
        except NotFoundError as e:
            if generations.index_missing(e):
                raise self._not_ready() from e
            raise

    def _not_ready(self) -> StorageNotReadyError:
        return StorageNotReadyError(f"Elasticsearch indices {self._names.items}/{self._names.catalogs} are "
                                    "missing: run `cds index init`")


def _slim(meta: CatalogMeta) -> CatalogMeta:
    return msgspec.structs.replace(meta, raw=b"")


__all__ = ["ElasticStorage", "IndexStateError", "StorageNotReadyError", "new_generation"]
