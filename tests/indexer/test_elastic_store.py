"""ElasticStorage on a real Elasticsearch (tests/es_server.py): bootstrap, query acceptance, atomic
replace under failure and concurrency, expiry in the index, orphan sweeps, migration, readiness and
error surfacing. Backend-neutral behaviour is in tests/behaviour/test_storage_behaviour.py."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import copy
import math
import uuid

import msgspec
import orjson
import pytest
from elasticsearch import ApiError
from shapely.geometry import LineString, MultiPoint, MultiPolygon, Point, Polygon

from cds.core.text import document_terms, query_terms
from cds.core import matching

from cds.core import geodesy, spatial
from cds.config import load_settings
from cds.core.query import Query
from indexer import storage as storage_contract
from cds.core.documents import CatalogMeta, CatalogRecord, ItemDoc, OfferDoc
from indexer.elastic import mapping, store as store_mod, translate
from indexer.elastic.bulk import BulkWriteError, bulk, index_op
from indexer.elastic.mapping import alias_target, catalog_key, cg_of, item_body, item_doc_id
from indexer.elastic.store import ElasticStorage, StorageNotReadyError, build_client

pytestmark = pytest.mark.es

NOW = 1_767_484_800.0      # 2026-01-04T00:00Z
LON0, LAT0 = 77.5946, 12.9716


@pytest.fixture
async def make_store(es_url):
    """Factory of ElasticStorage instances, each on its own index prefix; indices deleted afterwards."""
    made: list[ElasticStorage] = []

    async def make(*, init: bool = True, url: str | None = None, prefix: str | None = None, **kw) -> ElasticStorage:
        refresh = kw.pop("es_refresh", "true")
        max_age = kw.pop("es_generations_max_age_ms", 100)
        settings = load_settings({}, es_url=url or es_url, es_index_prefix=prefix or f"cdse-{uuid.uuid4().hex[:12]}",
                                 es_refresh=refresh, es_generations_max_age_ms=max_age)
        kw.setdefault("retire_grace_s", 0.0)
        st = ElasticStorage(settings, **kw)
        made.append(st)
        if init:
            await st.init_indices()
        await st.open()
        return st

    yield make
    for st in made:
        try:
            await st.drain()
            for alias in (st.items_alias, st.catalogs_alias):
                target = await alias_target(st.es, alias)
                if target:
                    await st.es.indices.delete(index=target)
        except Exception:  # noqa: BLE001 - a stopped server (readiness test) has nothing to clean
            pass
        await st.close()


def rec(bpp: str, cat: str, n: int, *, tag: str = "", start: int = 0, **meta) -> CatalogRecord:
    items = [ItemDoc(bpp_id=bpp, catalog_id=cat, item_id=f"it{k:04d}", lon=LON0 + (k % 40) * 0.002,
                     lat=LAT0 + (k // 40) * 0.002, connector_type=("CCS2", "Type2")[k % 2], max_kw=float(k % 5) * 25,
                     terms=document_terms([f"station {k} {tag}"]), raw=orjson.dumps({"beckn:id": f"it{k:04d}", "tag": tag}))
             for k in range(start, start + n)]
    fields = {"published_at": NOW, "expires_at": NOW + 86400, "item_count": n,
              "header": orjson.dumps({"tag": tag}), "raw": orjson.dumps({"beckn:id": cat, "tag": tag})}
    fields.update(meta)
    return CatalogRecord(meta=CatalogMeta(bpp_id=bpp, catalog_id=cat, **fields), items=items)


def keys(hits) -> list[tuple[str, str, str]]:
    return [h.item.key for h in hits]


async def count(st: ElasticStorage, index: str, query: dict | None = None) -> int:
    await st.es.indices.refresh(index=index)
    return (await st.es.count(index=index, query=query or {"match_all": {}}))["count"]


# --- bootstrap ------------------------------------------------------------------------------------


async def test_indices_are_created_only_by_init_and_init_is_idempotent(make_store):
    st = await make_store(init=False)
    assert await st.ready() is False
    assert not await st.es.indices.exists(index=st.items_alias)          # open() created nothing
    with pytest.raises(StorageNotReadyError):
        await st.search(Query(limit=5), NOW)
    with pytest.raises((StorageNotReadyError, ApiError)):
        await st.replace_catalog(rec("b", "c", 3))
    assert not await st.es.indices.exists(index=st.items_alias)          # no auto-created dynamic index
    first = await st.init_indices()
    assert "created" in first and f"{st.items_alias}-v{mapping.MAPPING_VERSION}" in first
    assert "up to date" in await st.init_indices()
    assert await st.ready() is True
    m = await st.es.indices.get_mapping(index=st.items_alias)
    props = next(iter(m.body.values()))["mappings"]
    assert props["_meta"]["version"] == mapping.MAPPING_VERSION and props["dynamic"] == "strict"
    assert props["properties"]["loc"]["type"] == "geo_point"
    assert props["properties"]["offers"]["type"] == "nested"
    assert props["properties"]["windows"]["type"] == "date_range"


async def test_the_catalog_json_is_stored_packed_and_plain_documents_still_read(make_store):
    """The whole catalog (kept for MERGE) is written packed (cds.core.rawjson); a meta document written before
    that holds it plain, and both read back as the catalog as published."""
    from cds.core.rawjson import is_packed

    st = await make_store()
    r = rec("bpp", "cat", 3)
    r.meta.raw = orjson.dumps({"beckn:id": "cat", "beckn:items": [{"beckn:id": f"it{k}", "x": "y" * 40} for k in range(40)]})
    await st.replace_catalog(r)
    resp = await st.es.search(index=st.catalogs_alias, query={"term": {"kind": "meta"}}, size=5)
    (hit,) = resp["hits"]["hits"]
    stored = base64.b64decode(hit["_source"]["raw"])
    assert is_packed(stored) and len(stored) < len(r.meta.raw)
    st._meta_cache.clear()                                   # read from Elasticsearch, not from the write
    assert (await st.get_catalog("bpp", "cat")).raw == r.meta.raw
    # a document written before packing: its raw is the plain JSON
    await st.es.update(index=hit["_index"], id=hit["_id"], doc={"raw": base64.b64encode(r.meta.raw).decode()},
                       refresh=True)
    st._meta_cache.clear()
    assert (await st.get_catalog("bpp", "cat")).raw == r.meta.raw


async def test_migration_to_a_new_mapping_version_keeps_the_data(make_store, monkeypatch):
    st = await make_store()
    r = rec("bpp", "cat", 30, tag="v1")
    await st.replace_catalog(r)
    before = keys(await st.search(Query(limit=100), NOW))
    old, new = mapping.MAPPING_VERSION, mapping.MAPPING_VERSION + 1
    monkeypatch.setattr(mapping, "MAPPING_VERSION", new)
    monkeypatch.setattr(store_mod, "MAPPING_VERSION", new)
    assert await st.ready() is False                           # code expects the next version, cluster has this
    out = await st.init_indices()
    assert "migrated" in out
    assert await alias_target(st.es, st.items_alias) == f"{st.items_alias}-v{new}"
    assert not await st.es.indices.exists(index=f"{st.items_alias}-v{old}")
    assert await st.ready() is True
    assert keys(await st.search(Query(limit=100), NOW)) == before
    assert (await st.get_catalog("bpp", "cat")).raw == r.meta.raw


async def test_migration_from_v1_gives_stored_items_their_analysed_terms(make_store):
    """Mapping v1 kept whitespace-separated `words` and ItemDoc.text; `cds index init` rebuilds the analysed
    terms (docs/decisions.md §25) from each stored item, so text search finds what was indexed before."""
    from elasticsearch.helpers import async_bulk, async_scan

    st = await make_store()
    r = rec("bpp", "cat", 3)
    r.items[1].amenities = ["RESTAURANT"]
    await st.replace_catalog(r)
    legacy = {"it0001": "dc fast charging stations in koramangala"}    # ItemDoc.text as v1 stored it
    # Put the data back into v1 form: v1 indices with v1 mappings and documents, aliases moved to them.
    v1 = copy.deepcopy(mapping.ITEMS_MAPPING)
    v1["_meta"]["version"] = 1
    del v1["properties"]["terms"]
    v1["properties"]["words"] = {"type": "keyword", "ignore_above": 256}
    v1["properties"]["long_words"] = {"type": "boolean"}
    cats_v1 = copy.deepcopy(mapping.CATALOGS_MAPPING)
    cats_v1["_meta"]["version"] = 1

    def to_v1(src: dict) -> dict:
        if "d" not in src:
            return src
        item = mapping.decode_item(src["d"])
        item.text, item.terms = legacy.get(item.item_id, f"station {item.item_id}"), []
        src.pop("terms", None)
        src["words"] = sorted(set(item.text.split()))
        src["d"] = base64.b64encode(msgspec.msgpack.encode(item)).decode()
        return src

    for alias, m in ((st.items_alias, v1), (st.catalogs_alias, cats_v1)):
        current, old = await alias_target(st.es, alias), f"{alias}-v1"
        await st.es.indices.create(index=old, mappings=m, settings=mapping.index_settings(1, "0-1"))
        docs = [h async for h in async_scan(st.es, index=current, query={"query": {"match_all": {}}})]
        await async_bulk(st.es, ({"_index": old, "_id": h["_id"], "_source": to_v1(h["_source"])} for h in docs),
                         refresh="wait_for")
        await st.es.indices.update_aliases(actions=[{"remove": {"index": current, "alias": alias}},
                                                    {"add": {"index": old, "alias": alias}}])
        await st.es.indices.delete(index=current)
    assert await st.ready() is False
    assert "migrated" in await st.init_indices()
    assert await st.ready() is True
    for text in ("charging station", "Koramangala restaurants"):
        got = await st.search(Query(text=query_terms(text), limit=10), NOW)
        assert [h.item.item_id for h in got] == ["it0001"], text
        assert got[0].item.terms and got[0].item.text == ""
    assert len(await st.search(Query(text=query_terms("stations"), limit=10), NOW)) == 3


# --- every query form is accepted (no 4xx) and pushed down ----------------------------------------


def _queries() -> list[tuple[str, Query, str | None]]:
    p = spatial.prepare
    route = LineString([(LON0 + 0.0001 * k, LAT0 + 0.00005 * (k % 7)) for k in range(5000)])
    square = Polygon([(77.58, 12.96), (77.62, 12.96), (77.62, 13.0), (77.58, 13.0), (77.58, 12.96)])
    many = MultiPoint([(LON0 + 0.001 * k, LAT0) for k in range(100)])
    return [
        ("radius", Query(spatial=(p("dwithin", Point(LON0, LAT0), 1500.0),), origin=(LON0, LAT0)), "geo_distance"),
        ("multipoint radius", Query(spatial=(p("dwithin", MultiPoint([(LON0, LAT0), (77.61, 12.99)]), 300.0),)),
         "geo_distance"),
        ("many points", Query(spatial=(p("dwithin", many, 200.0),)), "geo_bounding_box"),
        ("corridor", Query(spatial=(p("dwithin", LineString([(77.58, 12.95), (77.64, 13.0)]), 400.0),)),
         "geo_shape"),
        ("long route", Query(spatial=(p("dwithin", route, 300.0),), origin=(LON0, LAT0)), "geo_shape"),
        ("polygon buffer", Query(spatial=(p("dwithin", square, 250.0),)), "geo_shape"),
        ("within", Query(spatial=(p("within", square),)), "geo_shape"),
        ("multipolygon", Query(spatial=(p("intersects", MultiPolygon([square, square.buffer(-0.01)])),)), "geo_shape"),
        ("exact point", Query(spatial=(p("intersects", Point(LON0, LAT0)),)), "geo_shape"),
        ("line intersects", Query(spatial=(p("intersects", LineString([(LON0, LAT0), (LON0 + 0.01, LAT0)])),)),
         "geo_shape"),
        ("contains", Query(spatial=(p("contains", square),)), "geo_shape"),
        ("disjoint", Query(spatial=(p("disjoint", square),)), None),
        ("antimeridian", Query(spatial=(p("dwithin", Point(179.99, 0.0), 50_000.0),), origin=(179.99, 0.0)),
         "geo_distance"),
        ("pole", Query(spatial=(p("dwithin", Point(0.0, 89.9), 100_000.0),)), "geo_distance"),
        ("continent", Query(spatial=(p("dwithin", Point(LON0, LAT0), 2_000_000.0),), origin=(LON0, LAT0)),
         "geo_distance"),
        ("text", Query(text=query_terms("Stations 7")), '{"term":{"terms":"station"}}'),
        ("text with odd characters", Query(text=("*", "?", "\\", "é")), '{"term":{"terms":"*"}}'),
        ("terms", Query(terms={f: frozenset({"x", "it0001"}) for f in mapping.KEYWORD_FIELDS}), "terms"),
        ("ranges", Query(ranges={"max_kw": (25.0, 50.0), "min_kw": (None, math.inf)}), "range"),
        ("open range", Query(ranges={"max_kw": (None, None)}), "exists"),
        ("non-numeric range", Query(ranges={"reservation": (1.0, 2.0)}), None),
        ("packs", Query(packs=frozenset({"EvChargingService/v1"})), "terms"),
        ("origin only", Query(origin=(LON0, LAT0), limit=7), None),
        ("limit 1", Query(limit=1, predicate=lambda d, m, n: d.max_kw == 50.0), None),
    ]


async def test_every_query_form_is_accepted_and_exact(make_store):
    st = await make_store()
    records = [rec("bpp-a", "cat-a", 400), rec("bpp-b", "cat-b", 120, start=1000)]
    records[1].items[0].lon, records[1].items[0].lat = None, None    # an item without a location
    for r in records:
        await st.replace_catalog(r)
    for name, q, clause in _queries():
        plan = translate.plan(q, NOW, current=["x"])
        if clause is not None:
            assert clause in orjson.dumps(plan.filters).decode(), name
        got = await st.search(q, NOW)
        assert keys(got) == keys(matching.brute_force(q, records, NOW)), name


async def test_distance_order_is_exact_across_page_boundaries(make_store):
    # Elasticsearch sorts on quantised points (latitude floored to 180/2^32 deg, ~4.7 mm). An exact match
    # that Elasticsearch puts on the next page can still be nearer than everything collected so far.
    step = 180 / 2**32
    m_per_deg = geodesy.EARTH_R * math.pi / 180
    for k in range(100):
        # y: south, stored ~4.4 mm farther south than it is; x: north, on the grid (stored exactly),
        # the first grid point beyond y's true distance: x is farther than y, Elasticsearch says nearer
        y_lat = (math.floor((LAT0 - 1000 / m_per_deg) / step) - k + 0.95) * step
        dy = geodesy.haversine_m(LON0, LAT0, LON0, y_lat)
        x_lat = math.ceil((LAT0 + (dy + 0.0005) / m_per_deg) / step) * step
        dx = geodesy.haversine_m(LON0, LAT0, LON0, x_lat)
        if dx < dy + 0.95 * step * m_per_deg - 0.0005:
            break
    assert dy + 0.0004 < dx < dy + 0.95 * step * m_per_deg - 0.0004
    near = [ItemDoc(bpp_id="b", catalog_id="c", item_id=f"near{k:02d}", lon=LON0, lat=LAT0 + 10 * k / m_per_deg,
                    max_kw=0.0, raw=b"{}") for k in range(1, 50)]
    far = [ItemDoc(bpp_id="b", catalog_id="c", item_id=i, lon=LON0, lat=lat, max_kw=1.0, raw=b"{}")
           for i, lat in (("x", x_lat), ("y", y_lat))]
    r = CatalogRecord(meta=CatalogMeta(bpp_id="b", catalog_id="c", expires_at=NOW + 60), items=near + far)
    st = await make_store()
    await st.replace_catalog(r)
    q = Query(predicate=lambda d, m, n: d.max_kw == 1.0, origin=(LON0, LAT0), limit=1)   # first page: 50 docs
    got = await st.search(q, NOW)
    assert [h.item.item_id for h in got] == ["y"] == [h.item.item_id for h in matching.brute_force(q, [r], NOW)]


async def test_spatial_pushdowns_never_drop_boundary_points(make_store):
    # stations packed around each shape's edge (just inside and just outside): the widened ES filters
    # must let every true match through
    import random

    rnd = random.Random(11)
    m_per_deg = geodesy.EARTH_R * math.pi / 180
    shapes: list[tuple[str, object, float]] = []
    for _ in range(3):
        lon, lat = rnd.uniform(70, 88), rnd.uniform(9, 30)
        route = LineString([(lon + k * rnd.uniform(0.05, 0.3), lat + rnd.uniform(-0.2, 0.2)) for k in range(6)])
        shapes.append(("dwithin", route, rnd.choice([300.0, 2000.0, 15000.0])))
        shapes.append(("dwithin", Point(lon, lat), rnd.choice([50.0, 5000.0, 60000.0])))
        poly = Point(lon, lat).buffer(rnd.uniform(0.05, 0.5), quad_segs=3)
        shapes.append(("within", poly, 0.0))
        shapes.append(("dwithin", poly, 800.0))
    items: list[ItemDoc] = []
    for op, geom, d in shapes:
        edge = geom.boundary if geom.geom_type == "Polygon" else geom
        for _ in range(150):
            q = edge.interpolate(rnd.random(), normalized=True) if edge.length else edge
            r = d * rnd.uniform(0.985, 1.015) + rnd.uniform(-0.5, 0.5)
            th = rnd.uniform(0, 2 * math.pi)
            lat = q.y + r * math.cos(th) / m_per_deg
            lon = q.x + r * math.sin(th) / (m_per_deg * math.cos(math.radians(q.y)))
            items.append(ItemDoc(bpp_id="b", catalog_id="c", item_id=f"p{len(items):05d}", lon=lon, lat=lat, raw=b"{}"))
    r = CatalogRecord(meta=CatalogMeta(bpp_id="b", catalog_id="c"), items=items)
    st = await make_store()
    await st.replace_catalog(r)
    own_inside = 0
    for i, (op, geom, d) in enumerate(shapes):
        q = Query(spatial=(spatial.prepare(op, geom, d),), limit=5000)
        want = matching.brute_force(q, [r], NOW)
        assert keys(await st.search(q, NOW)) == keys(want), (op, geom.geom_type, d)
        own = {it.item_id for it in items[150 * i:150 * (i + 1)]}
        own_inside += sum(h.item.item_id in own for h in want)
    assert 0.2 * len(items) < own_inside < 0.8 * len(items)   # the points really straddle the edges


def test_window_pushdown_is_a_superset_of_daily_overlap():
    # every (daily window, query interval) the matcher accepts must pass the integer-range pushdown
    import random

    from cds.core import timeutil
    from indexer.elastic.mapping import daily_ranges

    rnd = random.Random(7)
    for tz in ("Asia/Kolkata", "Europe/Berlin", "UTC"):
        for _ in range(4000):
            win = (rnd.randrange(0, 86401, 900), rnd.randrange(0, 86401, 900))
            a = NOW + rnd.uniform(-5e6, 5e6)
            b = a + rnd.choice([rnd.uniform(0, 7200), rnd.uniform(0, 90000)])
            if not (timeutil.daily_overlaps(win, a, b, tz) or timeutil.daily_contains(win, a, b, tz)):
                continue
            tods = translate.tod_ranges(a, b, tz)
            if tods is None:
                continue
            stored = daily_ranges(win)
            assert any(r["gte"] <= hi and r["lte"] >= lo for r in stored for lo, hi in tods), (win, a, b, tz)


async def test_the_window_conjunct_is_pushed_down_and_exact(make_store):
    from datetime import datetime, timezone

    from cds.core.planner import build_query
    from cds.core.protocol import parse_context, parse_discover
    from cds.core.normalize import normalize_catalog
    from cds.demo.generator import generate_network

    net = generate_network(600, seed=4, now=datetime.fromtimestamp(NOW, timezone.utc))
    settings = load_settings({})
    recs = [normalize_catalog(c, publisher_id=b.subscriber_id, publisher_uri=b.url, dialect="A", settings=settings,
                              now=NOW)[0] for b, c in net.iter_catalogs()]
    st = await make_store()
    for r in recs:
        await st.replace_catalog(r)
    found = 0
    for _, body in net.labeled_query_mix(30, seed=1, weights={"time_window": 1.0}):
        q = build_query(parse_discover(body, parse_context(body, expected_actions={"discover"}, now=NOW)).intent,
                        settings=settings)
        assert q.window is not None         # the filter's top-level window conjunct: every match meets it
        # without the spatial filter too, so the window clause does the narrowing
        for query in (q, dataclasses.replace(q, spatial=(), origin=None)):
            assert '"windows"' in orjson.dumps(translate.plan(query, NOW, current=["x"]).filters).decode()
            got = await st.search(query, NOW + 3600)
            assert keys(got) == keys(matching.brute_force(query, recs, NOW + 3600))
            found += len(got)
    assert found > 0


# --- atomic replace ---------------------------------------------------------------------------------


async def test_failed_bulk_leaves_the_previous_catalog_fully_visible(make_store):
    st = await make_store()
    v1 = rec("bpp", "cat", 50, tag="v1")
    await st.replace_catalog(v1)
    v2 = rec("bpp", "cat", 1500, tag="v2")      # two bulk requests; the failing doc is in the second
    v2.items[1200].qr = "q" * 40_000            # a keyword term over Lucene's 32766-byte limit: refused
    with pytest.raises(storage_contract.CatalogWriteError) as err:
        await st.replace_catalog(v2)
    assert [i for i, _ in err.value.item_errors] == ["it1200"]
    assert "qr" in err.value.item_errors[0][1]
    assert err.value.retryable is False
    hits = await st.search(Query(limit=5000), NOW)
    assert keys(hits) == keys(matching.brute_force(Query(limit=5000), [v1], NOW))
    assert {h.catalog.header for h in hits} == {v1.meta.header}
    assert orjson.loads((await st.get_catalog("bpp", "cat")).raw)["tag"] == "v1"
    # nothing of the failed generation is left behind
    assert await count(st, st.items_alias) == 50
    assert await count(st, st.catalogs_alias, {"term": {"kind": "meta"}}) == 1


async def test_concurrent_readers_never_see_a_half_replaced_catalog(make_store):
    # default refresh policy (wait_for); the grace period outlives any query
    st = await make_store(es_refresh="wait_for", retire_grace_s=5.0)
    v1 = rec("bpp", "cat", 300, tag="v1")
    v2 = rec("bpp", "cat", 180, tag="v2", start=100)      # overlapping item ids, other content
    other = rec("bpp", "other", 20, tag="o")
    await st.replace_catalog(v1)
    await st.replace_catalog(other)
    full = {v.meta.header: frozenset(it.key for it in v.items) for v in (v1, v2)}
    q_all = Query(terms={"catalog_id": frozenset({"cat"})}, limit=1000)
    q_geo = Query(spatial=(spatial.prepare("dwithin", Point(LON0, LAT0), 50_000.0),),
                  terms={"catalog_id": frozenset({"cat"})}, origin=(LON0, LAT0), limit=1000)
    # a rare predicate and a small limit: several pages per query
    q_page = Query(terms={"catalog_id": frozenset({"cat"})}, predicate=lambda d, m, n: int(d.item_id[2:]) % 25 == 0,
                   limit=10)
    seen: set[bytes] = set()
    done = asyncio.Event()
    reads = 0

    async def writer():
        for i in range(6):
            await st.replace_catalog(v2 if i % 2 == 0 else v1)
        done.set()

    async def reader(q: Query):
        nonlocal reads
        while not done.is_set():
            hits = await st.search(q, NOW)
            headers = {h.catalog.header for h in hits}
            assert len(headers) == 1, "a query saw two versions of one catalog"
            header = headers.pop()
            want = {k for k in full[header]}
            got = {h.item.key for h in hits}
            if q is q_page:
                assert got == set(sorted(k for k in want if int(k[2][2:]) % 25 == 0)[:10])
            else:
                assert got == want
            seen.add(header)
            reads += 1

    await asyncio.gather(writer(), reader(q_all), reader(q_geo), reader(q_page))
    assert seen == {b'{"tag":"v1"}', b'{"tag":"v2"}'} and reads > 6
    await st.drain()
    assert await count(st, st.items_alias) == len(v1.items) + len(other.items)   # old generations retired


# --- batched writes --------------------------------------------------------------------------------


def spy_batches(st: ElasticStorage) -> list[list[tuple[str, str]]]:
    """Record the (publisher, catalog) keys of every group-committed write (a spy: it writes through)."""
    batches: list[list[tuple[str, str]]] = []
    flush = st._commit._flush

    async def recording(records):
        batches.append([(r.meta.bpp_id, r.meta.catalog_id) for r in records])
        return await flush(records)

    st._commit._flush = recording
    return batches


async def test_one_batch_of_many_catalogs_from_several_publishers_rejects_only_the_invalid_one(make_store):
    st = await make_store()
    bad_v1 = rec("bpp-2", "bad", 4, tag="v1")
    await st.replace_catalog(bad_v1)
    version = (await st.es.get(index=st.catalogs_alias, id=mapping.GENERATIONS_ID))["_version"]
    batches = spy_batches(st)
    good = [rec(f"bpp-{p}", f"cat-{c}", 3 + c, tag=f"p{p}c{c}") for p in range(4) for c in range(5)]
    bad = rec("bpp-2", "bad", 6, tag="v2")
    bad.items[3].qr = "q" * 40_000              # a keyword term over Lucene's limit: the document is refused
    records = good[:9] + [bad] + good[9:]
    outcomes = await asyncio.gather(*(st.replace_catalog(r) for r in records), return_exceptions=True)
    assert [type(o) for o in outcomes] == [type(None)] * 9 + [storage_contract.CatalogWriteError] + [type(None)] * 11
    assert [i for i, _ in outcomes[9].item_errors] == ["it0003"] and outcomes[9].retryable is False
    # one write for all of them: one bulk stream, one refresh, one flip of the generations doc
    assert len(batches) == 1 and len(batches[0]) == 21
    assert (await st.es.get(index=st.catalogs_alias, id=mapping.GENERATIONS_ID))["_version"] == version + 1
    hits = await st.search(Query(limit=5000), NOW)
    assert keys(hits) == keys(matching.brute_force(Query(limit=5000), [*good, bad_v1], NOW))
    assert orjson.loads((await st.get_catalog("bpp-2", "bad")).raw)["tag"] == "v1"
    await st.drain()
    assert await count(st, st.items_alias) == sum(len(r.items) for r in good) + len(bad_v1.items)


async def test_two_versions_of_one_catalog_in_one_batch_the_later_wins(make_store):
    st = await make_store()
    await st.replace_catalog(rec("bpp", "cat", 5, tag="v0"))
    batches = spy_batches(st)
    v1, v2 = rec("bpp", "cat", 30, tag="v1"), rec("bpp", "cat", 7, tag="v2", start=20)
    other = rec("bpp", "other", 2)
    await asyncio.gather(st.replace_catalog(v1), st.replace_catalog(other), st.replace_catalog(v2))
    assert batches == [[("bpp", "cat"), ("bpp", "other"), ("bpp", "cat")]]
    hits = await st.search(Query(limit=100), NOW)
    assert keys(hits) == keys(matching.brute_force(Query(limit=100), [v2, other], NOW))
    assert {h.catalog.header for h in hits if h.item.catalog_id == "cat"} == {v2.meta.header}
    assert orjson.loads((await st.get_catalog("bpp", "cat")).raw)["tag"] == "v2"
    await st.drain()        # v0 retired, v1 (never visible) deleted
    assert await count(st, st.items_alias) == len(v2.items) + len(other.items)


async def test_writes_group_commit_under_concurrency_and_a_flush_is_bounded(make_store, monkeypatch):
    st = await make_store()
    batches = spy_batches(st)
    monkeypatch.setattr(st._commit, "_max_weight", 25)       # docs per batch: items + one meta doc
    records = [rec("bpp", f"c{k}", 9) for k in range(8)]     # 10 docs each: two per batch
    await asyncio.gather(*(st.replace_catalog(r) for r in records))
    assert [len(b) for b in batches] == [2, 2, 2, 2]
    big = rec("bpp", "big", 40)                                # over the bound alone: still one batch
    await st.replace_catalog(big)
    assert batches[-1] == [("bpp", "big")]
    assert len(await st.search(Query(limit=1000), NOW)) == 8 * 9 + 40


async def test_another_replica_sees_a_replaced_catalog_once_replace_returns(make_store, monkeypatch):
    writer = await make_store(es_generations_max_age_ms=300)
    reader = await make_store(init=False, prefix=writer._settings.es_index_prefix, es_generations_max_age_ms=300)
    clock = [1000.0]            # the reader's view of time, moved by the test (no timing in the test)
    monkeypatch.setattr(reader._view, "_clock", lambda: clock[0])
    await writer.replace_catalog(rec("bpp", "cat", 3, tag="v1"))
    q = Query(terms={"catalog_id": frozenset({"cat"})}, limit=100)
    assert {h.catalog.header for h in await reader.search(q, NOW)} == {b'{"tag":"v1"}'}
    gets: list[str] = []        # the reader's reads of the generations doc: "version" (no body) or "read"
    real_get = reader.es.get

    async def counted(**kw):
        if kw.get("id") == mapping.GENERATIONS_ID:
            gets.append("version" if kw.get("source") is False else "read")
        return await real_get(**kw)

    monkeypatch.setattr(reader.es, "get", counted)
    for _ in range(20):             # within the copy's age: no generations reads at all
        await reader.search(q, NOW)
    assert gets == []
    await writer.replace_catalog(rec("bpp", "cat", 4, tag="v2"))
    # replace returned after the writer waited out max_age: by then every reader's copy is that old
    clock[0] += 0.301
    assert {h.catalog.header for h in await reader.search(q, NOW)} == {b'{"tag":"v2"}'}
    assert gets == ["version", "read"]      # re-validated by version, fetched because it moved
    clock[0] += 0.301
    await reader.search(q, NOW)
    assert gets == ["version", "read", "version"]      # unchanged: the version check alone


async def test_writers_flip_on_their_own_copy_and_never_lose_another_writers_flip(make_store, monkeypatch):
    a = await make_store()
    b = await make_store(init=False, prefix=a._settings.es_index_prefix)
    reads: list[str] = []           # realtime reads of the generations doc, by writer
    for name, st in (("a", a), ("b", b)):
        real_get = st.es.get

        async def counted(*, _name=name, _get=real_get, **kw):
            if kw.get("id") == mapping.GENERATIONS_ID:
                reads.append(_name)
            return await _get(**kw)

        monkeypatch.setattr(st.es, "get", counted)
    await a.replace_catalog(rec("bpp", "a0", 2))
    await a.replace_catalog(rec("bpp", "a1", 2))
    assert reads == ["a"]           # the first flip reads the doc; the next one writes on a's own copy
    await b.replace_catalog(rec("bpp", "b0", 2))
    await a.replace_catalog(rec("bpp", "a2", 2))        # a's copy is stale now: refused, then read
    await b.replace_catalog(rec("bpp", "b1", 2))
    await a.replace_catalog(rec("bpp", "a0", 3, tag="v2"))
    assert reads == ["a", "b", "a", "b", "a"]
    hits = await a.search(Query(limit=100), NOW)
    assert sorted({h.item.catalog_id for h in hits}) == ["a0", "a1", "a2", "b0", "b1"]
    assert len([h for h in hits if h.item.catalog_id == "a0"]) == 3


# --- expiry in the index ------------------------------------------------------------------------------


def with_promo(n: int) -> CatalogRecord:
    """A catalog of `n` items, each with an offer ending at NOW + 10 and one that never ends."""
    r = rec("bpp", "cat", n)
    for it in r.items:
        it.offers = [OfferDoc(id="promo", item_ids=[it.item_id], valid_to=NOW + 10, raw=b'{"id":"promo"}'),
                     OfferDoc(id="base", item_ids=[it.item_id], raw=b'{"id":"base"}')]
    return r


async def item_hits(st: ElasticStorage) -> list[dict]:
    await st.es.indices.refresh(index=st.items_alias)
    return (await st.es.search(index=st.items_alias, size=100, query={"match_all": {}}))["hits"]["hits"]


async def test_purge_removes_expired_offers_and_catalogs_from_the_index(make_store):
    st = await make_store()
    r = with_promo(3)
    gone = rec("bpp", "gone", 4, expires_at=NOW + 5)
    await st.replace_catalog(r)
    await st.replace_catalog(gone)
    stats = await st.purge_expired(NOW + 11)
    assert (stats.catalogs, stats.offers) == (1, 1)
    docs = await item_hits(st)
    assert len(docs) == 3 and {d["_source"]["catalog_id"] for d in docs} == {"cat"}
    for d in docs:
        assert "offers" not in d["_source"] and "offers_end" not in d["_source"]   # no offer ends any more
        assert [o.id for o in mapping.decode_item(d["_source"]["d"]).offers] == ["base"]
    metas = await count(st, st.catalogs_alias, {"term": {"kind": "meta"}})
    assert metas == 1


async def test_purge_removes_expired_offers_from_docs_written_with_nested_offers(make_store):
    # item docs written before `offers_end` carry one nested document per offer instead
    st = await make_store()
    await st.replace_catalog(with_promo(2))
    for d in await item_hits(st):
        src = d["_source"]
        src["offers"] = [{"id": "promo", "is_active": True, "valid_to": NOW + 10}, {"id": "base", "is_active": True}]
        del src["offers_end"]
        await st.es.index(index=st.items_alias, id=d["_id"], document=src, refresh=True)
    assert (await st.purge_expired(NOW + 11)).offers == 1
    docs = await item_hits(st)
    assert len(docs) == 2
    for d in docs:
        assert [o.id for o in mapping.decode_item(d["_source"]["d"]).offers] == ["base"]


async def test_orphaned_generations_are_swept(make_store):
    st = await make_store(orphan_age_s=0.0)
    live = rec("bpp", "cat", 5)
    await st.replace_catalog(live)
    # a writer that died after its bulk and before the flip
    dead = rec("bpp", "cat", 7, tag="dead")
    cg = cg_of(catalog_key("bpp", "cat"), "deadbeef")
    ops = [index_op(st.items_alias, item_doc_id(cg, it.item_id), item_body(it, dead.meta, cg, "deadbeef", 1.0))
           for it in dead.items]
    await bulk(st.es, ops, refresh="true")
    assert await count(st, st.items_alias) == 12
    assert keys(await st.search(Query(limit=100), NOW)) == keys(matching.brute_force(Query(limit=100), [live], NOW))
    await st.purge_expired(NOW)
    assert await count(st, st.items_alias) == 5


# --- errors and readiness ---------------------------------------------------------------------------


async def test_cluster_errors_are_raised_not_swallowed(make_store):
    st = await make_store()
    await st.replace_catalog(rec("b1", "c", 2))
    await st.replace_catalog(rec("b2", "c", 2))
    target = await alias_target(st.es, st.items_alias)
    # a cluster limit below the number of visible catalogs: the search must fail loudly
    await st.es.indices.put_settings(index=target, settings={"index.max_terms_count": 1})
    with pytest.raises(ApiError) as e:
        await st.search(Query(limit=10), NOW)
    assert e.value.meta.status == 400
    await st.es.indices.put_settings(index=target, settings={"index.max_terms_count": 65536})
    await st.es.indices.close(index=target)
    with pytest.raises(ApiError):
        await st.search(Query(limit=10), NOW)
    with pytest.raises(BulkWriteError) as bulk_err:     # the cluster's fault: not a rejected catalog
        await st.replace_catalog(rec("b3", "c", 2))
    assert not isinstance(bulk_err.value, storage_contract.CatalogWriteError)
    assert {e.type for e in bulk_err.value.errors} == {"index_closed_exception"}
    await st.es.indices.open(index=target, wait_for_active_shards="1")
    assert len(await st.search(Query(limit=10), NOW)) == 4


@pytest.mark.slow
async def test_ready_follows_the_server(make_store):
    from tests import es_server

    # a second, short-lived server: the session's one is not disturbed
    server = await asyncio.to_thread(es_server.start)
    try:
        st = await make_store(url=server.url)
        await st.replace_catalog(rec("bpp", "cat", 3))
        assert await st.ready() is True
        await asyncio.to_thread(server.stop)
        assert await st.ready() is False
        with pytest.raises(Exception):
            await st.search(Query(limit=5), NOW)
        server = await asyncio.to_thread(es_server.start, server.port, server.workdir)
        assert await st.ready() is True
        assert len(await st.search(Query(limit=5), NOW)) == 3      # data survived the restart
    finally:
        await asyncio.to_thread(server.cleanup)


def test_client_auth_and_tls_settings():
    es = build_client(load_settings({}, es_url="https://es.example:9200", es_api_key="a2V5OnNlY3JldA=="))
    assert es._headers["authorization"] == "ApiKey a2V5OnNlY3JldA=="
    es = build_client(load_settings({}, es_url="https://es.example:9200", es_username="u", es_password="p",
                                    es_verify_certs=False))
    assert es._headers["authorization"].startswith("Basic ")
    node = next(iter(es.transport.node_pool.all()))
    assert node.config.verify_certs is False and node.config.scheme == "https"


def test_item_docs_survive_the_binary_blob():
    r = rec("bpp", "cat", 3)
    r.items[0].offers = [OfferDoc(id="o", daily=(79200, 21600), price=12.5, raw=b"{}")]
    r.items[0].windows = [(NOW, NOW + 3600)]
    r.items[0].daily_windows = [(0, 0)]
    for it in r.items:
        body = item_body(it, r.meta, "c.g", "g", 1.0)
        assert mapping.decode_item(body["d"]) == it
        assert orjson.loads(mapping.item_source(it, r.meta, "c.g", "g", 1.0)) == body
    assert orjson.loads(mapping.meta_source(r.meta, "c.g", "g", 1.0)) == mapping.meta_body(r.meta, "c.g", "g", 1.0)
    r.items[0].offers.append(OfferDoc(id="p", valid_to=NOW + 60, raw=b"{}"))
    r.items[0].offers.append(OfferDoc(id="q", valid_to=NOW + 30, raw=b"{}"))
    body = item_body(r.items[0], r.meta, "c.g", "g", 1.0)
    assert body["offers_end"] == NOW + 30
    assert body["daily"] == [{"gte": 0, "lte": 86400}]
    assert msgspec.json.decode(msgspec.json.encode(body))["loc"] == [r.items[0].lon, r.items[0].lat]
