"""EmbeddedStorage behaviour: candidate narrowing never changes the answer of `cds.core.matching`
(property test against `brute_force`), atomic replaces under concurrent readers, no index leaks,
and the small Storage methods (get/delete/live_publishers/stats/purge)."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import tempfile
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry import LineString, Point, box

from cds.core.text import document_terms, query_terms
from cds.core import matching

from cds.core import spatial
from cds.core.query import Query
from cds.core.documents import CatalogMeta, CatalogRecord, ItemDoc, OfferDoc
from indexer.embedded import EmbeddedStorage
from indexer.embedded.narrow import _PRUNE_FROM

NOW = 1_750_000_000.0
CITIES = {"BLR": (77.59, 12.97), "BOM": (72.88, 19.08), "DEL": (77.21, 28.61), "MAA": (80.27, 13.08),
          "MYS": (76.64, 12.30)}
CONNECTORS = ["CCS2", "Type2", "CHAdeMO", "GB_T", "AC-001"]
POWER = [("AC_SINGLE_PHASE", 3.3), ("AC_3_PHASE", 22.0), ("DC", 60.0), ("DC", 150.0), ("DC", 30.0)]
VEHICLES = ["2-WHEELER", "3-WHEELER", "4-WHEELER"]
AMENITIES = ["WIFI", "CAFE", "RESTROOM", "PARKING"]


def make_item(r: random.Random, bpp: str, cat: str, k: int, tag: str = "",
              where: tuple[float, float] | None = None) -> ItemDoc:
    lon, lat = where if where is not None else (None, None)
    ptype, kw = r.choice(POWER)
    offers = [OfferDoc(id=f"{cat}-o{j}", item_ids=[f"i{k}"], valid_to=r.choice([None, NOW - 50, NOW + 500]),
                       price=float(j)) for j in range(r.randint(0, 2))]
    return ItemDoc(bpp_id=bpp, catalog_id=cat, item_id=f"i{k}{tag}", provider_id=f"prov{k % 3}",
                   lon=lon, lat=lat, connector_type=r.choice(CONNECTORS + [None]), max_kw=kw if r.random() > .1 else None,
                   power_type=ptype, vehicle_types=r.sample(VEHICLES, r.randint(0, 2)),
                   amenities=r.sample(AMENITIES, r.randint(0, 3)), station_id=f"st{k // 4}",
                   evse_id=f"IN*{cat}*E{k}", qr=f"QR-{bpp}-{cat}-{k}{tag}", is_active=r.random() > 0.05,
                   terms=document_terms([f"prov{k % 3} station {r.choice(['mall', 'highway', 'metro'])}"]), offers=offers,
                   raw=f'{{"id":"i{k}"}}'.encode())


def station_location(r: random.Random) -> tuple[float, float] | None:
    if r.random() < 0.05:
        return None
    clon, clat = CITIES[r.choice(list(CITIES))]
    return clon + r.gauss(0, 0.12), clat + r.gauss(0, 0.12)


def make_record(r: random.Random, bpp: str, cat: str, n: int, tag: str = "") -> CatalogRecord:
    meta = CatalogMeta(bpp_id=bpp, catalog_id=cat, published_at=NOW - r.randint(0, 100),
                       expires_at=r.choice([NOW + 3600] * 8 + [NOW - 1, None]), is_active=r.random() > 0.05,
                       item_count=n, raw=b"{}", header=tag.encode())
    # Connectors of one station share its location (so equal distances are common, as in real data).
    stations = [station_location(r) for _ in range(n // 4 + 1)]
    return CatalogRecord(meta=meta, items=[make_item(r, bpp, cat, k, tag, stations[k // 4]) for k in range(n)])


def keys(hits) -> list[tuple]:
    return [(h.item.key, h.distance, h.catalog.header) for h in hits]


def dataset(seed: int, small: bool = True) -> tuple[list[CatalogRecord], list[tuple[str, str]], list[CatalogRecord]]:
    """Initial records, deletions, and replacements (new versions) applied in that order."""
    r = random.Random(seed)
    n_cat = r.randint(2, 6)
    recs = [make_record(r, f"bpp{c % 2}", f"cat{c}", r.randint(0, 90 if small else 1500)) for c in range(n_cat)]
    deletions = [(recs[0].meta.bpp_id, recs[0].meta.catalog_id)] if r.random() < 0.5 else []
    replace = [make_record(r, recs[-1].meta.bpp_id, recs[-1].meta.catalog_id, r.randint(0, 60), tag="v2")]
    return recs, deletions, replace


def final_records(recs, deletions, replace) -> list[CatalogRecord]:
    state = {x.meta.key: x for x in recs}
    for k in deletions:
        state.pop(k, None)
    for x in replace:
        state[x.meta.key] = x
    return list(state.values())


async def populated(d: Path, recs, deletions, replace) -> EmbeddedStorage:
    store = EmbeddedStorage(d, fsync=False)
    await store.open()
    for x in recs:
        await store.replace_catalog(msgspec.structs.replace(x, items=list(x.items)))
    for b, c in deletions:
        assert await store.delete_catalog(b, c)
    for x in replace:
        await store.replace_catalog(msgspec.structs.replace(x, items=list(x.items)))
    return store


# --- query strategy -----------------------------------------------------------------------------------

def random_query(r: random.Random) -> Query:
    """A random discover query: radius / corridor / polygon / none, pushdowns, text, predicate, origin."""
    city = lambda: CITIES[r.choice(sorted(CITIES))]  # noqa: E731
    sp = []
    kind = r.choice(["radius", "corridor", "polygon", "none"])
    if kind == "radius":
        lon, lat = city()
        sp.append(spatial.prepare("dwithin", Point(lon + r.uniform(-.2, .2), lat + r.uniform(-.2, .2)),
                                  r.uniform(500, 40_000)))
    elif kind == "corridor":
        (ax, ay), (bx, by) = city(), city()
        line = LineString([(ax, ay), ((ax + bx) / 2 + 0.1, (ay + by) / 2), (bx, by)])
        sp.append(spatial.prepare("dwithin", line, r.uniform(500, 25_000)))
    elif kind == "polygon":
        lon, lat = city()
        w = r.uniform(0.02, 0.4)
        sp.append(spatial.prepare(r.choice(["within", "intersects"]), box(lon - w, lat - w / 2, lon + w / 3, lat + w)))
    origin = None
    if r.random() < 0.5:
        origin = spatial.origin_of(sp[0].geometry) if sp else city()
    terms = {}
    for attr, pool in (("connector_type", CONNECTORS + ["NOPE"]), ("power_type", [p for p, _ in POWER]),
                       ("vehicle_types", VEHICLES), ("amenities", AMENITIES), ("bpp_id", ["bpp0", "bpp1", "bppX"]),
                       ("catalog_id", [f"cat{i}" for i in range(7)]), ("provider_id", ["prov0", "prov1", "prov2"]),
                       ("station_id", [f"st{i}" for i in range(6)])):
        if r.random() < 1 / 6:
            terms[attr] = frozenset(r.choices(pool, k=r.randint(1, 3)))
    if r.random() < 1 / 7:
        c, k = r.randint(0, 6), r.randint(0, 40)
        terms["qr"] = frozenset({f"QR-bpp{c % 2}-cat{c}-{k}", f"QR-bpp{c % 2}-cat{c}-{k}v2"})
    if r.random() < 1 / 9:
        terms["item_id"] = frozenset(f"i{r.randint(0, 30)}" for _ in range(r.randint(1, 3)))
    ranges = {}
    if r.random() < 0.25:
        ranges["max_kw"] = (r.choice([None, 10.0, 30.0, 60.0]), r.choice([None, 50.0, 150.0]))
    text = tuple(r.choices(["station", "mall", "prov1", "highway", "zzz"], k=r.choice([0, 0, 1, 2])))
    predicate = None
    if r.random() < 0.2:
        cut = r.choice([10.0, 40.0])
        predicate = lambda item, meta, now, cut=cut: (item.max_kw or 0) >= cut  # noqa: E731
    exact = predicate is None and bool(terms or ranges) and r.random() < 0.4
    if exact:   # a predicate that is exactly the pushdowns: the store skips it where it decided them exactly
        pushed = Query(terms=terms, ranges=ranges)
        predicate = lambda item, meta, now, q=pushed: matching.pushdowns_pass(q, item)  # noqa: E731
    return Query(spatial=tuple(sp), terms=terms, ranges=ranges, text=text, predicate=predicate,
                 predicate_is_pushdowns=exact, origin=origin, limit=r.randint(1, 40))


queries = st.builds(random_query, st.randoms(use_true_random=False))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), qs=st.lists(queries, min_size=1, max_size=6))
def test_search_equals_brute_force(seed, qs):
    recs, deletions, replace = dataset(seed)
    final = final_records(recs, deletions, replace)

    async def run():
        with tempfile.TemporaryDirectory() as d:
            store = await populated(Path(d), recs, deletions, replace)
            try:
                for q in qs:
                    assert keys(await store.search(q, NOW)) == keys(matching.brute_force(q, final, NOW)), q
            finally:
                await store.close()
    asyncio.run(run())


async def test_large_catalogs_equal_brute_force(tmp_path):
    """Enough docs for the chunked nearest-first walk, block-wise ordered walk and the full-scan switch."""
    recs, deletions, replace = dataset(7, small=False)
    recs += [make_record(random.Random(i), "bppL", f"big{i}", 1200) for i in range(4)]
    final = final_records(recs, deletions, replace)
    store = await populated(tmp_path, recs, deletions, replace)
    rnd = random.Random(1)
    for i in range(120):
        q = random_query(rnd) if i % 2 else _dense_query(rnd)
        assert keys(await store.search(q, NOW)) == keys(matching.brute_force(q, final, NOW)), q
    await store.close()


def _dense_query(r: random.Random) -> Query:
    lon, lat = CITIES[r.choice(sorted(CITIES))]
    sp = (spatial.prepare("dwithin", Point(lon, lat), r.choice([5_000, 30_000, 200_000])),) if r.random() < .6 else ()
    terms = {"connector_type": frozenset({"CCS2", "Type2"})} if r.random() < .5 else {}
    text = ("zzz",) if r.random() < .1 else ()
    return Query(spatial=sp, terms=terms, text=text, origin=(lon, lat) if r.random() < .6 else None,
                 limit=r.choice([1, 10, 100, 3000]))


async def test_equal_distances_are_ordered_by_ids(tmp_path):
    # One station, many connectors: the limit cuts through a group of equal distances; ids break the tie.
    recs = [CatalogRecord(meta=CatalogMeta(bpp_id="b", catalog_id=cat),
                          items=[ItemDoc(bpp_id="b", catalog_id=cat, item_id=f"i{k:03d}", lon=77.6, lat=12.9)
                                 for k in range(150)]) for cat in ("zz", "aa")]
    store = await populated(tmp_path, recs, [], [])
    for origin, sp in (((77.6, 12.9), ()), ((77.5, 12.8), (spatial.prepare("dwithin", Point(77.5, 12.8), 50_000),))):
        q = Query(spatial=sp, origin=origin, limit=5)
        want = matching.brute_force(q, recs, NOW)
        assert [h.item.catalog_id for h in want] == ["aa"] * 5
        assert keys(await store.search(q, NOW)) == keys(want)
    await store.close()


async def test_items_whose_catalog_id_differs_from_meta_still_ordered_exactly(tmp_path):
    # Key ranges of catalogs then interleave; the backend must notice and fall back to a full sort.
    r = random.Random(3)
    a = make_record(r, "b", "A", 30)
    b = make_record(r, "b", "B", 30)
    for k, it in enumerate(a.items):
        it.catalog_id = "Z" if k % 2 else "A"
    for x in (a, b):
        x.meta.expires_at, x.meta.is_active = NOW + 10, True
    store = await populated(tmp_path, [a, b], [], [])
    for q in (Query(limit=17), Query(terms={"bpp_id": frozenset({"b"})}, limit=45)):
        assert keys(await store.search(q, NOW)) == keys(matching.brute_force(q, [a, b], NOW))
    await store.close()


# --- atomicity ------------------------------------------------------------------------------------------


async def test_concurrent_readers_see_old_or_new_catalog_never_a_mix(tmp_path):
    r = random.Random(5)
    v1 = make_record(r, "bppA", "cat", 40, tag="v1")
    v2 = make_record(r, "bppA", "cat", 25, tag="v2")
    for v in (v1, v2):
        v.meta.expires_at, v.meta.is_active = None, True
        for it in v.items:
            it.is_active = True
    store = EmbeddedStorage(tmp_path, fsync=True)
    await store.open()
    await store.replace_catalog(v1)
    expected = {frozenset(it.key for it in v.items): v.meta.header for v in (v1, v2)}
    q = Query(terms={"bpp_id": frozenset({"bppA"})}, limit=1000)
    q_geo = Query(spatial=(spatial.prepare("dwithin", Point(*CITIES["BLR"]), 2_000_000),),
                  origin=CITIES["BLR"], limit=1000)
    seen: set[bytes] = set()
    done = asyncio.Event()

    async def writer():
        for i in range(60):
            await store.replace_catalog(v2 if i % 2 == 0 else v1)
        done.set()

    async def reader(query):
        while not done.is_set():
            hits = await store.search(query, NOW)
            got = frozenset(h.item.key for h in hits if h.item.lon is not None or query is q)
            headers = {h.catalog.header for h in hits}
            assert len(headers) == 1
            want = {k for k, hdr in expected.items() if hdr in headers}
            full = next(iter(want))
            assert got == (full if query is q else frozenset(k for k in full if _located(k, v1, v2)))
            seen.update(headers)
            await asyncio.sleep(0)

    await asyncio.gather(writer(), *(reader(x) for x in (q, q_geo, q, q_geo)))
    assert seen == {b"v1", b"v2"}
    await store.close()


def _located(key, *recs) -> bool:
    return any(it.key == key and it.lon is not None for rec in recs for it in rec.items)


# --- no leaks ---------------------------------------------------------------------------------------------


async def test_repeated_replace_does_not_grow_the_index(tmp_path):
    store = EmbeddedStorage(tmp_path, fsync=False)
    await store.open()
    r = random.Random(9)
    sizes = []
    for i in range(1000):
        # Every version has fresh item ids, QR codes and locations: old postings must all go.
        rec = make_record(r, "bppA", "cat", 20 + i % 7, tag=f"r{i}")
        await store.replace_catalog(rec)
        await store.search(Query(spatial=(spatial.prepare("dwithin", Point(*CITIES["BLR"]), 30_000),), limit=5), NOW)
        if i >= 993:
            sizes.append((store.index_size(), len(rec.items), rec))
    for size, n, rec in sizes[-1:]:
        assert size["items"] == n and size["live_slots"] == n and size["catalogs"] == 1
        # ids are reused; a replace holds the old and the new version at once (double-buffered swap)
        assert size["doc_slots"] <= 2 * 26
        assert size["entry_slots"] <= 2
        # one grid entry per located item, one posting per set key, two catalog-term keys
        located = sum(it.lon is not None for it in rec.items)
        per_item = sum(getattr(it, a) is not None for it in rec.items
                       for a in ("item_id", "evse_id", "qr", "station_id", "provider_id"))
        assert size["postings"] == located + per_item + 2
        assert size["grid_cells"] <= located and size["grid_arrays"] <= size["grid_cells"]
    assert await store.delete_catalog("bppA", "cat")
    empty = store.index_size()
    assert empty["postings"] == empty["grid_cells"] == empty["grid_arrays"] == empty["items"] == 0
    await store.close()


# --- the other Storage methods ------------------------------------------------------------------------------


async def test_get_delete_stats_and_live_publishers(tmp_path):
    store = EmbeddedStorage(tmp_path, fsync=False)
    await store.open()
    assert await store.ready()
    r = random.Random(11)
    a = make_record(r, "bppA", "c1", 5)
    a.meta.expires_at, a.meta.is_active, a.meta.published_at = NOW + 100, True, NOW - 5
    b = make_record(r, "bppB", "c1", 3)
    b.meta.expires_at, b.meta.is_active, b.meta.published_at = NOW - 1, True, NOW - 2   # expired
    c = make_record(r, "bppC", "c9", 2)
    c.meta.expires_at, c.meta.is_active, c.meta.live = None, True, True                 # fan-out data
    for x in (a, b, c):
        await store.replace_catalog(x)
    got = await store.get_catalog("bppA", "c1")
    assert got is not None and got.raw == b"{}" and got.bpp_id == "bppA"
    assert await store.get_catalog("bppA", "nope") is None
    assert await store.live_publishers(NOW) == {"bppA"}
    st_ = await store.stats()
    assert (st_.catalogs, st_.items, st_.newest_published_at) == (3, 10, NOW - 2)
    assert await store.delete_catalog("bppA", "c1") is True
    assert await store.delete_catalog("bppA", "c1") is False
    assert await store.live_publishers(NOW) == set()
    assert (await store.stats()).items == 5
    await store.close()
    assert not await store.ready()


async def test_purge_removes_expired_catalogs_and_offers(tmp_path):
    store = EmbeddedStorage(tmp_path, fsync=False)
    await store.open()
    live_offer = OfferDoc(id="o-live", valid_to=NOW + 100)
    old_offer = OfferDoc(id="o-old", valid_to=NOW - 100)
    forever = OfferDoc(id="o-forever")
    items = [ItemDoc(bpp_id="b", catalog_id="keep", item_id=f"i{k}", lon=77.0, lat=12.0,
                     offers=[live_offer, old_offer, forever] if k % 2 else [live_offer]) for k in range(6)]
    keep = CatalogRecord(meta=CatalogMeta(bpp_id="b", catalog_id="keep", expires_at=NOW + 500), items=items)
    gone = CatalogRecord(meta=CatalogMeta(bpp_id="b", catalog_id="gone", expires_at=NOW),
                         items=[ItemDoc(bpp_id="b", catalog_id="gone", item_id="x", lon=77.0, lat=12.0)])
    await store.replace_catalog(keep)
    await store.replace_catalog(gone)
    stats = await store.purge_expired(NOW)
    assert (stats.catalogs, stats.offers) == (1, 1)
    assert await store.get_catalog("b", "gone") is None
    hits = await store.search(Query(limit=100), NOW - 1000)     # before expiry: everything left is visible
    assert len(hits) == 6
    assert all([o.id for o in h.item.offers] == (["o-live", "o-forever"] if int(h.item.item_id[1:]) % 2
                                                 else ["o-live"]) for h in hits)
    again = await store.purge_expired(NOW)
    assert (again.catalogs, again.offers) == (0, 0)
    await store.close()


async def test_list_values_beyond_the_bit_set_still_match(tmp_path):
    # 63 distinct amenity values get their own bit; later ones share an overflow bit and must still be found.
    items = [ItemDoc(bpp_id="b", catalog_id="c", item_id=f"i{k:03d}", lon=77.0, lat=12.0,
                     amenities=[f"A{k}", f"A{k + 1}"]) for k in range(80)]
    rec = CatalogRecord(meta=CatalogMeta(bpp_id="b", catalog_id="c"), items=items)
    store = EmbeddedStorage(tmp_path, fsync=False)
    await store.open()
    await store.replace_catalog(rec)
    for wanted in ({"A5"}, {"A70"}, {"A79", "A3"}, {"A200"}):
        q = Query(terms={"amenities": frozenset(wanted)}, limit=10)
        want = matching.brute_force(q, [rec], NOW)
        assert keys(await store.search(q, NOW)) == keys(want) and (want or wanted == {"A200"})
        # some lists carry the overflow bit: the per-candidate match must test the amenities again
        assert not store._index.narrow(q).exact        # noqa: SLF001 - the index's own decision
    await store.close()


async def opened_with(tmp_path, rec: CatalogRecord) -> EmbeddedStorage:
    store = EmbeddedStorage(tmp_path, fsync=False)
    await store.open()
    await store.replace_catalog(rec)
    return store


async def test_exact_pushdowns_are_skipped_only_when_the_index_decides_them(tmp_path):
    rec = make_record(random.Random(3), "b", "c", 50)
    store = await opened_with(tmp_path, rec)
    idx = store._index                                  # noqa: SLF001 - the index's own decision
    decided = Query(terms={"connector_type": frozenset({"CCS2"}), "vehicle_types": frozenset({"4-WHEELER"}),
                           "qr": frozenset({"x"})}, ranges={"max_kw": (30.0, None)}, limit=50)
    assert idx.narrow(decided).exact
    for q in (Query(terms={"reservation": frozenset({"x"})}), Query(terms={"bpp_id": frozenset({"b"})}),
              Query(terms={"provider_name": frozenset({"x"})})):
        assert not idx.narrow(q).exact
    for q in (decided, Query(terms={"connector_type": frozenset({"CCS2"})}, ranges={"max_kw": (None, 60.0)},
                             limit=50)):
        assert keys(await store.search(q, NOW)) == keys(matching.brute_force(q, [rec], NOW))
    await store.close()


async def test_zero_limit_and_unknown_terms(tmp_path):
    rec = make_record(random.Random(2), "b", "c", 10)
    store = await opened_with(tmp_path, rec)
    assert await store.search(Query(limit=0), NOW) == []
    q = Query(terms={"qr": frozenset({"no-such-qr"})})
    assert await store.search(q, NOW) == []
    q = Query(terms={"reservation": frozenset({"x"})}, limit=5)   # not indexed: still exact via matching
    assert keys(await store.search(q, NOW)) == keys(matching.brute_force(q, [rec], NOW))
    await store.close()


async def test_writes_before_open_fail_clearly(tmp_path):
    store = EmbeddedStorage(tmp_path, fsync=False)
    with pytest.raises(RuntimeError, match="not open"):
        await store.delete_catalog("a", "b")


async def test_items_logged_before_terms_were_stored_are_found_by_text_after_a_restart(tmp_path):
    """A log written by an older version holds ItemDoc.text and no terms: replaying it gives every item its
    analysed terms (docs/decisions.md §25), and the snapshot taken at close keeps them."""
    from indexer.embedded import store as store_mod
    from indexer.embedded.persist import frame

    rec = make_record(random.Random(3), "b", "c", 6)
    for k, doc in enumerate(rec.items):
        doc.terms, doc.is_active = [], True
        doc.text = f"prov{k} dc charging stations {'koramangala' if k == 2 else 'btm'}"
    rec.meta.raw = b""
    wal = tmp_path / f"{store_mod._WAL}{1:012d}{store_mod._SUFFIX_WAL}"
    wal.write_bytes(frame(store_mod._encode(store_mod._Put(record=rec, raw_z=b""))))
    for _ in range(2):                                          # the replayed log, then the snapshot
        store = EmbeddedStorage(tmp_path, fsync=False)
        await store.open()
        q = Query(text=query_terms("charging station in Koramangala"), limit=10)
        got = await store.search(q, NOW)
        assert [h.item.item_id for h in got] == [rec.items[2].item_id]
        assert got[0].item.text == "" and "koramangala" in got[0].item.terms
        assert len(await store.search(Query(text=query_terms("stations"), limit=10), NOW)) == 6
        await store.close()


PACKS = [None, "EvChargingService/v1", "Other/v1"]


def with_packs_and_starts(r: random.Random, rec: CatalogRecord) -> CatalogRecord:
    """The record with items of assorted attribute packs and a catalog that may start later (both now decided per
    block of candidates, vectorised, before the matcher)."""
    meta = msgspec.structs.replace(rec.meta, valid_from=r.choice([None, None, NOW - 10, NOW, NOW + 10]))
    return CatalogRecord(meta=meta, items=[msgspec.structs.replace(d, pack=r.choice(PACKS)) for d in rec.items])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), qs=st.lists(queries, min_size=1, max_size=6),
       packs=st.lists(st.sampled_from([None, frozenset({"EvChargingService/v1"}), frozenset({"Other/v1", "Nope/v9"}),
                                       frozenset({"Nope/v9"})]), min_size=6, max_size=6))
def test_search_with_packs_and_catalog_starts_equals_brute_force(seed, qs, packs):
    r = random.Random(seed)
    recs, deletions, replace = dataset(seed)
    recs, replace = [with_packs_and_starts(r, x) for x in recs], [with_packs_and_starts(r, x) for x in replace]
    final = final_records(recs, deletions, replace)

    async def run():
        with tempfile.TemporaryDirectory() as d:
            store = await populated(Path(d), recs, deletions, replace)
            try:
                for q, p in zip(qs, packs):
                    q = dataclasses.replace(q, packs=p)
                    assert keys(await store.search(q, NOW)) == keys(matching.brute_force(q, final, NOW)), q
            finally:
                await store.close()
    asyncio.run(run())


async def test_a_long_route_prunes_its_cells_and_still_equals_brute_force(tmp_path):
    """Beyond `narrow._PRUNE_FROM` occupied cells a route's box is pruned to the cells near it (a short route's
    is not): no match is lost either way, nearest first or not."""
    r = random.Random(3)
    items = [ItemDoc(bpp_id="b", catalog_id="grid", item_id=f"i{k:04d}", lon=77 + r.uniform(0, 1.2),
                     lat=12 + r.uniform(0, 1.2), connector_type=r.choice(["CCS2", "Type2"])) for k in range(3000)]
    rec = CatalogRecord(meta=CatalogMeta(bpp_id="b", catalog_id="grid"), items=items)
    store = await populated(tmp_path, [rec], [], [])
    idx = store._index
    for line, d, long in ((LineString([(77.0, 12.0), (77.6, 12.1), (78.2, 13.2)]), 3_000.0, True),
                          (LineString([(77.3, 12.3), (77.35, 12.32)]), 2_000.0, False)):
        f = spatial.prepare("dwithin", line, d)
        c0, c1 = idx._cell(*f.bbox[:2]), idx._cell(*f.bbox[2:])         # the box's corner cells
        occupied = {c for c in (idx._cell(it.lon, it.lat) for it in items)
                    if c0 % idx._nx <= c % idx._nx <= c1 % idx._nx and c0 // idx._nx <= c // idx._nx <= c1 // idx._nx}
        cells = idx._cells_for(f)
        assert (len(occupied) > _PRUNE_FROM["LineString"]) == long
        assert len(cells) < len(occupied) / 2 if long else len(cells) == len(occupied)
        for origin in (spatial.origin_of(line), None):
            for terms in ({}, {"connector_type": frozenset({"CCS2"})}):
                q = Query(spatial=(f,), terms=terms, origin=origin, limit=60)
                assert keys(await store.search(q, NOW)) == keys(matching.brute_force(q, [rec], NOW))
    await store.close()


def test_live_mask_is_is_live_for_few_candidates_among_many_catalogs_and_for_many():
    """`Index.live_mask` decides only the candidates' catalogs when the slots far outnumber them, else every slot
    once per `now`: both are `matching.is_live`."""
    r = random.Random(7)
    recs = [make_record(r, f"bpp{c % 3}", f"cat{c}", r.randint(1, 6)) for c in range(60)]

    async def run():
        with tempfile.TemporaryDirectory() as d:
            store = await populated(Path(d), recs, [], [])
            try:
                idx = store._index
                ids = idx.live_ids()
                for now in (NOW, NOW + 7200):
                    want = [matching.is_live(idx.docs[i], idx.entry_of[i].meta, now) for i in ids.tolist()]
                    few = ids[:len(idx.slot_active) // 8]           # slots > 4x candidates: their slots only
                    assert idx.live_mask(few, now).tolist() == want[:len(few)]
                    assert len(idx.slot_active) <= 4 * len(ids)     # every slot at once
                    assert idx.live_mask(ids, now).tolist() == want
                    assert not all(want) and any(want)
            finally:
                await store.close()
    asyncio.run(run())
