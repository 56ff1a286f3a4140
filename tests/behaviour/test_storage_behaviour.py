"""The storage contract (indexer/storage.py), run against every backend: embedded and Elasticsearch.

Where the contract is "exactly what cds.core.matching says", results are compared with
`cds.core.matching.brute_force`; the scenarios also carry hand-written expectations (positions placed at
known distances, windows at known hours) so that a bug shared by the matcher and a backend shows up.
The Elasticsearch runs use a real server (tests/es_server.py), one fresh index prefix per test.
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from datetime import datetime, timezone

import orjson
import pytest
from shapely.geometry import LineString, Point, Polygon

from cds.core import matching

from cds.core import geodesy, spatial
from cds.config import load_settings
from cds.core.filters import compile_filter
from cds.core.planner import build_query
from cds.core.protocol import parse_context, parse_discover
from cds.core.query import Query
from cds.core.documents import CatalogMeta, CatalogRecord, ItemDoc, OfferDoc, item_json
from cds.core.text import document_terms, query_terms
from tests.harness import load_fixture

NOW = datetime(2026, 1, 4, tzinfo=timezone.utc).timestamp()
HOUR = 3600.0
M_PER_DEG = geodesy.EARTH_R * math.pi / 180   # metres per degree of latitude on the matcher's sphere
LON0, LAT0 = 77.5946, 12.9716                 # Bengaluru


@pytest.fixture(params=["embedded", pytest.param("elastic", marks=pytest.mark.es)])
async def storage(request, tmp_path):
    if request.param == "embedded":
        from indexer.embedded.store import EmbeddedStorage

        store = EmbeddedStorage(tmp_path / "index", fsync=False)
        await store.open()
        yield store
        await store.close()
        return
    from indexer.elastic.mapping import alias_target
    from indexer.elastic.store import ElasticStorage

    url = request.getfixturevalue("es_url")
    prefix = f"cdsb-{uuid.uuid4().hex[:12]}"
    # refresh=true: writes become searchable at once (wait_for would add ~1 s per publish here)
    store = ElasticStorage(load_settings({}, es_url=url, es_index_prefix=prefix, es_refresh="true"),
                           retire_grace_s=0.0)
    await store.init_indices()
    await store.open()
    yield store
    await store.drain()
    for alias in (store.items_alias, store.catalogs_alias):
        target = await alias_target(store.es, alias)
        if target:
            await store.es.indices.delete(index=target)
    await store.close()


# --- builders -------------------------------------------------------------------------------------


def item(bpp: str, cat: str, iid: str, lon: float | None = LON0, lat: float | None = LAT0, **kw) -> ItemDoc:
    raw = orjson.dumps({"beckn:id": iid})
    return ItemDoc(bpp_id=bpp, catalog_id=cat, item_id=iid, lon=lon, lat=lat, raw=raw, **kw)


def record(bpp: str, cat: str, items: list[ItemDoc], *, tag: str = "", **meta) -> CatalogRecord:
    for it in items:
        it.bpp_id, it.catalog_id = bpp, cat
    fields = {"published_at": NOW - 60, "expires_at": NOW + 24 * HOUR, "item_count": len(items),
              "header": orjson.dumps({"beckn:id": cat, "tag": tag}), "raw": orjson.dumps({"beckn:id": cat, "tag": tag})}
    fields.update(meta)
    return CatalogRecord(meta=CatalogMeta(bpp_id=bpp, catalog_id=cat, **fields), items=items)


def north(d_m: float) -> tuple[float, float]:
    """A point d_m metres due north of the origin (along a meridian haversine distance is R * dlat)."""
    return LON0, LAT0 + d_m / M_PER_DEG


def east(d_m: float, lon: float = LON0, lat: float = LAT0) -> tuple[float, float]:
    """A point d_m metres east (on the same parallel: exact for small offsets to well under 1 m)."""
    return lon + d_m / (M_PER_DEG * math.cos(math.radians(lat))), lat


def keys(hits) -> list[tuple[str, str, str]]:
    return [h.item.key for h in hits]


def ids(hits) -> list[str]:
    return [h.item.item_id for h in hits]


async def publish(storage, *records: CatalogRecord) -> list[CatalogRecord]:
    for r in records:
        await storage.replace_catalog(r)
    return list(records)


async def check(storage, query: Query, records: list[CatalogRecord], now: float = NOW) -> list:
    got = await storage.search(query, now)
    want = matching.brute_force(query, records, now)
    assert keys(got) == keys(want)
    for g, w in zip(got, want):
        assert (g.distance is None) == (w.distance is None)
        if w.distance is not None:
            assert g.distance == pytest.approx(w.distance, abs=1e-6)
        assert g.catalog.catalog_id == w.catalog.catalog_id and g.catalog.header == w.catalog.header
    return got


# --- publish, replace, delete ---------------------------------------------------------------------


async def test_publish_then_everything_is_found_in_id_order(storage):
    recs = await publish(
        storage,
        record("bpp-b", "cat-1", [item("", "", i) for i in ("z", "a", "m")]),
        record("bpp-a", "cat-1", [item("", "", "k")]),
        record("bpp-a", "cat-0", [item("", "", "q"), item("", "", "b")]),
    )
    got = await check(storage, Query(limit=100), recs)
    # docs/decisions.md §8: without a location, catalog id then BPP then item id
    assert keys(got) == [("bpp-a", "cat-0", "b"), ("bpp-a", "cat-0", "q"), ("bpp-a", "cat-1", "k"),
                         ("bpp-b", "cat-1", "a"), ("bpp-b", "cat-1", "m"), ("bpp-b", "cat-1", "z")]
    assert {item_json(h.item) for h in got} >= {orjson.dumps({"beckn:id": "z"})}
    st = await storage.stats()
    assert (st.catalogs, st.items) == (3, 6)
    assert st.newest_published_at == pytest.approx(NOW - 60)


async def test_replace_is_full_and_atomic_per_catalog(storage):
    other = record("bpp-a", "other", [item("", "", "o1")])
    await publish(storage, record("bpp-a", "cat", [item("", "", i, connector_type="Type2") for i in ("1", "2", "3")],
                                  tag="v1"), other)
    v2 = record("bpp-a", "cat", [item("", "", "2", connector_type="CCS2"), item("", "", "4")], tag="v2")
    await storage.replace_catalog(v2)
    got = await check(storage, Query(limit=100), [v2, other])
    assert ids(got) == ["2", "4", "o1"]      # catalog "cat" before "other"
    two = next(h for h in got if h.item.item_id == "2")
    assert two.item.connector_type == "CCS2" and two.catalog.header == v2.meta.header
    meta = await storage.get_catalog("bpp-a", "cat")
    assert meta is not None and orjson.loads(meta.raw)["tag"] == "v2"
    assert (await storage.stats()).items == 3
    # the same catalog id under another publisher is another catalog
    assert await storage.get_catalog("bpp-x", "cat") is None


async def test_delete_catalog(storage):
    await publish(storage, record("bpp-a", "cat", [item("", "", "1")]), record("bpp-a", "keep", [item("", "", "2")]))
    assert await storage.delete_catalog("bpp-a", "cat") is True
    assert await storage.delete_catalog("bpp-a", "cat") is False
    assert await storage.delete_catalog("bpp-zz", "nothing") is False
    assert ids(await storage.search(Query(limit=10), NOW)) == ["2"]
    assert await storage.get_catalog("bpp-a", "cat") is None
    assert (await storage.stats()).catalogs == 1


# --- spatial --------------------------------------------------------------------------------------


async def test_radius_nearest_first_with_ties_and_cap(storage):
    # 200 m steps north, alternating catalogs; two stations share one point (tie -> catalog id order)
    a = [item("", "", f"n{k:02d}", *north(200 * k)) for k in range(1, 15, 2)]
    b = [item("", "", f"n{k:02d}", *north(200 * k)) for k in range(2, 15, 2)]
    b.append(item("", "", "tie", *north(600)))
    recs = await publish(storage, record("bpp-1", "B", a), record("bpp-1", "A", b))
    q = Query(spatial=(spatial.prepare("dwithin", Point(LON0, LAT0), 1500.0),), origin=(LON0, LAT0), limit=100)
    got = await check(storage, q, recs)
    # hand expectation: 200..1400 m, nearest first; at 600 m catalog "A" ("tie") before catalog "B" ("n03")
    assert ids(got) == ["n01", "n02", "tie", "n03", "n04", "n05", "n06", "n07"]
    assert [round(h.distance) for h in got] == [200, 400, 600, 600, 800, 1000, 1200, 1400]
    capped = await check(storage, with_limit(q, 3), recs)
    assert ids(capped) == ["n01", "n02", "tie"]
    # exactly on the radius is inside (closed), a metre beyond is not
    edge = Query(spatial=(spatial.prepare("dwithin", Point(LON0, LAT0), 1400.0 + 1e-6),), limit=100)
    assert "n07" in ids(await check(storage, edge, recs))
    short = Query(spatial=(spatial.prepare("dwithin", Point(LON0, LAT0), 1399.0),), limit=100)
    assert "n07" not in ids(await check(storage, short, recs))


def with_limit(q: Query, limit: int) -> Query:
    return dataclasses.replace(q, limit=limit)


async def test_corridor_along_a_route(storage):
    route = LineString([(LON0, LAT0), (LON0, LAT0 + 0.5)])     # ~55 km due north
    mid = LAT0 + 0.25
    stations = [
        item("", "", "e300", *east(300, lat=mid)), item("", "", "e900", *east(900, lat=mid)),
        item("", "", "w950", *east(-950, lat=mid)), item("", "", "e1500", *east(1500, lat=mid)),
        item("", "", "beyond_end_500", LON0, LAT0 + 0.5 + 500 / M_PER_DEG),
        item("", "", "before_start_1200", LON0, LAT0 - 1200 / M_PER_DEG),
        item("", "", "nowhere", None, None),
    ]
    recs = await publish(storage, record("bpp-r", "route", stations))
    q = Query(spatial=(spatial.prepare("dwithin", route, 1000.0),), origin=(LON0, LAT0), limit=100)
    got = await check(storage, q, recs)
    assert sorted(ids(got)) == ["beyond_end_500", "e300", "e900", "w950"]
    assert ids(got)[-1] == "beyond_end_500"   # farthest from the route start


async def test_polygon_within_with_hole_and_boundary(storage):
    outer = [(77.0, 12.0), (77.1, 12.0), (77.1, 12.1), (77.0, 12.1), (77.0, 12.0)]
    hole = [(77.04, 12.04), (77.06, 12.04), (77.06, 12.06), (77.04, 12.06), (77.04, 12.04)]
    stations = [item("", "", "inside", 77.02, 12.02), item("", "", "in_hole", 77.05, 12.05),
                item("", "", "on_edge", 77.1, 12.05), item("", "", "outside", 77.11, 12.05),
                item("", "", "far", 80.0, 20.0)]
    recs = await publish(storage, record("bpp-p", "poly", stations))
    for op in ("within", "intersects"):
        q = Query(spatial=(spatial.prepare(op, Polygon(outer, [hole])),), limit=100)
        assert sorted(ids(await check(storage, q, recs))) == ["inside", "on_edge"]
    disjoint = Query(spatial=(spatial.prepare("disjoint", Polygon(outer, [hole])),), limit=100)
    assert sorted(ids(await check(storage, disjoint, recs))) == ["far", "in_hole", "outside"]


# --- attributes -----------------------------------------------------------------------------------


async def test_terms_ranges_lists_and_packs(storage):
    stations = [
        item("", "", "ccs50", connector_type="CCS2", max_kw=50.0, vehicle_types=["4-WHEELER"],
             pack="EvChargingService/v1"),
        item("", "", "ccs60", connector_type="CCS2", max_kw=60.0, vehicle_types=["3-WHEELER", "4-WHEELER"]),
        item("", "", "t2", connector_type="Type2", max_kw=22.0, vehicle_types=["2-WHEELER", "3-WHEELER"],
             pack="EvChargingService/v1"),
        item("", "", "nokw", connector_type="CCS2", vehicle_types=[]),
    ]
    recs = await publish(storage, record("bpp-t", "attrs", stations))

    async def found(**kw) -> list[str]:
        return sorted(ids(await check(storage, Query(limit=100, **kw), recs)))

    assert await found(terms={"connector_type": frozenset({"CCS2"})}) == ["ccs50", "ccs60", "nokw"]
    assert await found(ranges={"max_kw": (50.0, None)}) == ["ccs50", "ccs60"]          # inclusive
    assert await found(ranges={"max_kw": (None, 50.0)}) == ["ccs50", "t2"]
    assert await found(ranges={"max_kw": (50.0001, 59.9999)}) == []
    assert await found(terms={"vehicle_types": frozenset({"3-WHEELER"})}) == ["ccs60", "t2"]   # any element
    assert await found(terms={"connector_type": frozenset({"CCS2"}), "vehicle_types": frozenset({"3-WHEELER"})}) \
        == ["ccs60"]
    assert await found(terms={"connector_type": frozenset()}) == []
    assert await found(terms={"bpp_id": frozenset({"bpp-t"}), "catalog_id": frozenset({"attrs"})}) \
        == ["ccs50", "ccs60", "nokw", "t2"]
    assert await found(packs=frozenset({"EvChargingService/v1"})) == ["ccs50", "t2"]
    assert await found(packs=frozenset({"Other/v2"})) == []


async def test_text_terms_every_query_term_must_be_a_term_of_the_item(storage):
    """docs/decisions.md §25: terms, not substrings; one analyzer (cds.core.text) for documents and queries."""
    stations = [item("", "", "hub", terms=document_terms(["Fast DC Charging Hub", "MG Road", "Café"])),
                item("", "", "slow", terms=document_terms(["Slow AC point"])),
                item("", "", "odd", terms=document_terms(["rate*card? back\\slash"])),
                item("", "", "none")]
    recs = await publish(storage, record("bpp-x", "text", stations))

    async def found(text: str) -> list[str]:
        return sorted(ids(await check(storage, Query(text=query_terms(text), limit=100), recs)))

    assert await found("charging hubs") == ["hub"]            # stemmed: charg, hub
    assert await found("CHARGER") == []                       # a different stem: not a substring test
    assert await found("charg") == ["hub"]                    # ... but a stem is a term
    assert await found("harg") == []                          # never inside a word
    assert await found("hub fast") == ["hub"]
    assert await found("hub slow") == []                      # every term must match
    assert await found("cafe") == ["hub"] and await found("CAFÉ") == ["hub"]   # ASCII-folded both ways
    assert await found("card") == ["odd"] and await found("*") == sorted(["hub", "none", "odd", "slow"])
    assert await found("give me all, please") == ["hub", "none", "odd", "slow"]   # filler only: no criterion


def _example_records() -> list[CatalogRecord]:
    """The UBC publish example and the DEG discovery catalog, as two publishers (validity as published)."""
    from cds.core.normalize import normalize_catalog

    settings = load_settings({})
    out = []
    for bpp, name in (("ubc-bpp", "UBC_catalog_publish_ev-charging-catalog-publish.json"),
                      ("deg-bpp", "DEG_on_discover_ev-charging-discovery-catalog.json")):
        cat = load_fixture(name)["message"]["catalogs"][0]
        rec, _ = normalize_catalog(cat, publisher_id=bpp, publisher_uri=f"https://{bpp}.example/beckn",
                                   dialect="A", settings=settings, now=NOW)
        out.append(rec)
    return out


BTM, KORAMANGALA, INDIRANAGAR = ("IND*ecopower-charging*cs-01*IN*ECO*BTM*01*CCS2*A*CCS2-A",
                                 "IND*greencharge-koramangala*cs-02*IN*GC*KOR*01*CCS2*A*CCS2-B",
                                 "IND*powergrid-indiranagar*cs-03*IN*PG*IND*01*TYPE2*A*TYPE2-A")


@pytest.mark.parametrize("text, want", [
    ("Give me all charging stations.", [BTM, KORAMANGALA, INDIRANAGAR]),      # the UBC example
    ("fast dc charging koramangala", [KORAMANGALA]),                        # the DEG / UEI example
    ("chargers near me", [BTM, KORAMANGALA, INDIRANAGAR]),
    ("restaurant in Koramangala", [KORAMANGALA]),                           # amenities are text too
    ("type 2 indiranagar", [INDIRANAGAR]),
    ("show me anything nearby please", [BTM, KORAMANGALA, INDIRANAGAR]),    # filler only: no text criterion
    ("hydrogen", []),
])
async def test_example_text_queries_on_the_ubc_and_deg_catalogs(storage, text, want):
    recs = await publish(storage, *_example_records())
    body = {"context": {"action": "discover", "version": "2.0.0", "domain": "beckn.one:deg:ev-charging",
                        "bap_id": "bap.example", "bap_uri": "https://bap.example/beckn", "transaction_id": "t",
                        "message_id": "m", "timestamp": "2026-01-04T00:00:00Z", "ttl": "PT30S"},
            "message": {"text_search": text}}
    query = build_query(parse_discover(body, parse_context(body, expected_actions={"discover"}, now=NOW)).intent,
                        settings=load_settings({}))
    got = await check(storage, query, recs)
    assert sorted((h.item.bpp_id, h.item.item_id) for h in got) == sorted(
        (bpp, i) for bpp in ("deg-bpp", "ubc-bpp") for i in want)


async def test_time_window_predicate(storage):
    day = NOW  # 2026-01-04T00:00Z
    stations = [
        item("", "", "morning", windows=[(day + 8 * HOUR, day + 12 * HOUR)]),
        item("", "", "evening", windows=[(day + 14 * HOUR, day + 18 * HOUR)]),
        item("", "", "daily_6_10_ist", daily_windows=[(6 * 3600, 10 * 3600)]),   # 00:30-04:30Z
        item("", "", "always"),
    ]
    recs = await publish(storage, record("bpp-w", "win", stations))

    def q(start: str, end: str) -> Query:
        expr = (f"$[?(@.beckn:availabilityWindow[?(@.schema:startTime <= '{end}' && "
                f"@.schema:endTime >= '{start}')])]")
        c = compile_filter(expr, tz="Asia/Kolkata", status_fresh_s=900)
        return Query(predicate=c.predicate, time_window=c.time_window, terms=c.pushdowns.terms, limit=100)

    assert ids(await check(storage, q("2026-01-04T09:00:00Z", "2026-01-04T10:00:00Z"), recs)) == ["morning"]
    assert ids(await check(storage, q("2026-01-04T02:00:00Z", "2026-01-04T03:00:00Z"), recs)) == ["daily_6_10_ist"]
    assert sorted(ids(await check(storage, q("2026-01-04T11:00:00Z", "2026-01-04T15:00:00Z"), recs))) == \
        ["evening", "morning"]
    # no time asked: windows never hide an item (docs/decisions.md §5)
    assert len(await check(storage, Query(limit=100), recs)) == 4


# --- liveness, TTL and purge ----------------------------------------------------------------------


async def test_liveness_expiry_and_purge(storage):
    offers = [OfferDoc(id="old", item_ids=["i1"], valid_to=NOW + 50, raw=b'{"id":"old"}'),
              OfferDoc(id="new", item_ids=["i1", "i2"], raw=b'{"id":"new"}')]
    short = record("bpp-a", "short", [item("", "", "i1", offers=offers), item("", "", "i2", offers=offers[1:])],
                   expires_at=NOW + 100)
    later = record("bpp-a", "later", [item("", "", "l1"), item("", "", "inactive", is_active=False)])
    future = record("bpp-b", "future", [item("", "", "f1")], valid_from=NOW + 10)
    off = record("bpp-c", "off", [item("", "", "c1")], is_active=False)
    recs = await publish(storage, short, later, future, off)

    assert sorted(ids(await check(storage, Query(limit=100), recs, NOW))) == ["i1", "i2", "l1"]
    assert sorted(ids(await check(storage, Query(limit=100), recs, NOW + 20))) == ["f1", "i1", "i2", "l1"]
    # expires_at is exclusive: at NOW + 100 the catalog is gone from results, before any purge
    assert sorted(ids(await check(storage, Query(limit=100), recs, NOW + 100))) == ["f1", "l1"]

    stats = await storage.purge_expired(NOW + 60)
    assert (stats.catalogs, stats.offers) == (0, 1)
    hit = next(h for h in await storage.search(Query(limit=100), NOW + 60) if h.item.item_id == "i1")
    assert [o.id for o in hit.item.offers] == ["new"]

    stats = await storage.purge_expired(NOW + 100)
    assert (stats.catalogs, stats.offers) == (1, 0)
    assert await storage.get_catalog("bpp-a", "short") is None
    assert await storage.get_catalog("bpp-a", "later") is not None
    st = await storage.stats()
    assert (st.catalogs, st.items) == (3, 4)
    assert await storage.purge_expired(NOW + 100) == type(stats)()


async def test_live_publishers(storage):
    await publish(
        storage,
        record("bpp-pub", "c", [item("", "", "1")]),
        record("bpp-live", "c", [item("", "", "2")], live=True),            # fan-out data is not a publish
        record("bpp-off", "c", [item("", "", "3")], is_active=False),
        record("bpp-exp", "c", [item("", "", "4")], expires_at=NOW),
        record("bpp-none", "c", [item("", "", "5")], expires_at=None),
    )
    assert await storage.live_publishers(NOW) == {"bpp-pub", "bpp-none"}
    assert await storage.live_publishers(NOW - 1) == {"bpp-pub", "bpp-none", "bpp-exp"}
    await storage.delete_catalog("bpp-none", "c")
    assert await storage.live_publishers(NOW) == {"bpp-pub"}


# --- over-fetch and paging ------------------------------------------------------------------------


async def test_selective_predicate_pages_past_the_first_candidates(storage):
    # 900 candidates, 1 in 9 matches the predicate: a backend must keep paging to fill the limit
    recs = []
    for c in range(3):
        items = [item("", "", f"it{k:03d}", *north(37.0 * k + c), max_kw=float(k % 9)) for k in range(300)]
        recs.append(record(f"bpp-{c}", f"cat-{c}", items))
    await publish(storage, *recs)

    def pred(doc, meta, now):
        return doc.max_kw == 4.0

    matching_count = 3 * sum(1 for k in range(300) if k % 9 == 4)
    for origin in (None, (LON0, LAT0)):
        for limit in (1, 7, 60, 500):
            q = Query(predicate=pred, origin=origin, limit=limit)
            got = await check(storage, q, recs)
            assert len(got) == min(limit, matching_count)
            assert all(h.item.max_kw == 4.0 for h in got)
    # with a spatial filter and distance order
    q = Query(spatial=(spatial.prepare("dwithin", Point(LON0, LAT0), 5000.0),), predicate=pred,
              origin=(LON0, LAT0), limit=25)
    got = await check(storage, q, recs)
    assert [h.distance for h in got] == sorted(h.distance for h in got)


# --- a generated network through the real planner -------------------------------------------------


def _network_records():
    from cds.core.normalize import normalize_catalog
    from cds.demo.generator import generate_network

    net = generate_network(1200, seed=11, now=datetime.fromtimestamp(NOW, timezone.utc))
    settings = load_settings({})
    recs = []
    for bpp, cat in net.iter_catalogs():
        rec, _ = normalize_catalog(cat, publisher_id=bpp.subscriber_id, publisher_uri=bpp.url, dialect="A",
                                   settings=settings, now=NOW)
        recs.append(rec)
    return net, settings, recs


async def test_generated_network_query_mix_equals_brute_force(storage):
    net, settings, recs = _network_records()
    await publish(storage, *recs)
    checked = 0
    for kind, body in net.labeled_query_mix(40, seed=5):
        ctx = parse_context(body, expected_actions={"discover"}, now=NOW)
        query = build_query(parse_discover(body, ctx).intent, settings=settings)
        for limit in (query.limit, 3):
            await check(storage, with_limit(query, limit), recs, NOW + HOUR)
            checked += 1
    assert checked == 80
    assert (await storage.stats()).items == sum(len(r.items) for r in recs)
