"""cds.core.matching: liveness, offers, matches(), ordering, cap and the brute-force reference."""

from __future__ import annotations

import math
from datetime import datetime, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from cds.core.text import document_terms
from cds.core import matching
from cds.config import Settings
from cds.core.models import DiscoverIntent, SpatialSpec
from cds.core.planner import build_query
from cds.core.query import Query
from cds.core.documents import CatalogMeta, CatalogRecord, Hit, ItemDoc, OfferDoc

H = 3600
NOW = datetime(2026, 1, 4, 7, 0, tzinfo=timezone.utc).timestamp()   # 12:30 IST
SETTINGS = Settings(max_results=100)
R = 6_371_008.8


def utc(*a: int) -> float:
    return datetime(*a, tzinfo=timezone.utc).timestamp()


def cosines_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    c = math.sin(p1) * math.sin(p2) + math.cos(p1) * math.cos(p2) * math.cos(math.radians(lon2 - lon1))
    return R * math.acos(max(-1.0, min(1.0, c)))


def item(item_id: str, lon: float = 77.59, lat: float = 12.94, *, catalog: str = "cat-1", bpp: str = "bpp-a",
         connector: str = "CCS2", kw: float = 60, **kw_args: object) -> ItemDoc:
    kw_args.setdefault("pack", "EvChargingService/v1")
    return ItemDoc(bpp_id=bpp, catalog_id=catalog, item_id=item_id, lon=lon, lat=lat, connector_type=connector,
                   max_kw=kw, terms=document_terms([f"{item_id} dc fast charger koramangala"]), **kw_args)  # type: ignore[arg-type]


def meta(catalog: str = "cat-1", bpp: str = "bpp-a", **kw: object) -> CatalogMeta:
    return CatalogMeta(bpp_id=bpp, catalog_id=catalog, **kw)  # type: ignore[arg-type]


def test_is_live() -> None:
    it = item("a")
    assert matching.is_live(it, meta(), NOW)
    assert not matching.is_live(it, meta(expires_at=NOW - 1), NOW)
    assert not matching.is_live(it, meta(expires_at=NOW), NOW)
    assert matching.is_live(it, meta(expires_at=NOW + 1), NOW)
    assert not matching.is_live(it, meta(is_active=False), NOW)
    assert not matching.is_live(it, meta(valid_from=NOW + 60), NOW)
    assert not matching.is_live(item("b", is_active=False), meta(), NOW)


def test_live_offers() -> None:
    offers = [OfferDoc(id="always"), OfferDoc(id="off", is_active=False),
              OfferDoc(id="window", valid_from=NOW - 10, valid_to=NOW + 10),
              OfferDoc(id="ended", valid_to=NOW - 1), OfferDoc(id="later", valid_from=NOW + 1),
              OfferDoc(id="lunch", daily=(12 * H, 14 * H)), OfferDoc(id="night", daily=(22 * H, 6 * H))]
    it = item("a", offers=offers)
    assert [o.id for o in matching.live_offers(it, NOW, "Asia/Kolkata")] == ["always", "window", "lunch"]
    at_23_ist = utc(2026, 1, 4, 17, 30)
    assert [o.id for o in matching.live_offers(it, at_23_ist, "Asia/Kolkata")] == ["always", "later", "night"]


def test_matches_ands_every_criterion() -> None:
    docs = {
        "near-ccs2": item("near-ccs2"),
        "near-type2": item("near-type2", connector="Type2"),
        "far-ccs2": item("far-ccs2", lon=76.64, lat=12.30),
        "other-pack": item("other-pack", pack="OtherPack/v1"),
        "no-location": item("no-location", lon=None, lat=None),
    }
    q = build_query(DiscoverIntent(
        expression="$[?(@.beckn:itemAttributes.connectorType == 'CCS2')]", text_search="Koramangala chargers hub",
        spatial=[SpatialSpec(op="s_dwithin", geometry={"type": "Point", "coordinates": [77.59, 12.94]},
                             distance_m=5000)],
        schema_context=["https://x/schema/EvChargingService/v1/context.jsonld"]), settings=SETTINGS)
    got = {k for k, d in docs.items() if matching.matches(q, d, meta(), NOW)}
    # "hub" is not in any text: every term must occur
    assert got == set()
    q2 = build_query(DiscoverIntent(
        expression="$[?(@.beckn:itemAttributes.connectorType == 'CCS2')]", text_search="Koramangala chargers",
        spatial=[SpatialSpec(op="s_dwithin", geometry={"type": "Point", "coordinates": [77.59, 12.94]},
                             distance_m=5000)],
        schema_context=["https://x/schema/EvChargingService/v1/context.jsonld"]), settings=SETTINGS)
    assert {k for k, d in docs.items() if matching.matches(q2, d, meta(), NOW)} == {"near-ccs2"}


def test_windows_do_not_hide_items_unless_asked() -> None:
    past = item("past-window", windows=[(utc(2025, 1, 1), utc(2025, 1, 2))], daily_windows=[(2 * H, 3 * H)])
    q = build_query(DiscoverIntent(expression="$[?(@.beckn:itemAttributes.connectorType == 'CCS2')]"),
                    settings=SETTINGS)
    assert matching.matches(q, past, meta(), NOW)


def test_terms_and_ranges_are_applied() -> None:
    q = Query(terms={"connector_type": frozenset({"Type2"})}, ranges={"max_kw": (None, 30.0)})
    assert matching.matches(q, item("a", connector="Type2", kw=22), meta(), NOW)
    assert not matching.matches(q, item("b", connector="Type2", kw=60), meta(), NOW)
    assert not matching.matches(q, item("c", kw=22), meta(), NOW)
    assert matching.matches(Query(terms={"vehicle_types": frozenset({"2-WHEELER"})}),
                            item("d", vehicle_types=["4-WHEELER", "2-WHEELER"]), meta(), NOW)


def test_order_and_cap_with_origin() -> None:
    origin = (77.59, 12.94)
    q = Query(origin=origin, limit=3)
    hits = [Hit(item=i, catalog=meta(i.catalog_id, i.bpp_id), distance=matching.distance(q, i)) for i in [
        item("far", 77.70, 12.94), item("mid", 77.62, 12.94), item("near-b", 77.60, 12.94, catalog="cat-2"),
        item("near-a", 77.60, 12.94, catalog="cat-1", bpp="bpp-z"), item("near-a2", 77.60, 12.94, catalog="cat-1")]]
    got = [h.item.item_id for h in matching.select(hits, q.limit)]
    # same distance: catalog id, then bpp id, then item id
    assert got == ["near-a2", "near-a", "near-b"]
    assert matching.distance(q, item("x", 77.60, 12.94)) == \
        __import__("pytest").approx(cosines_m(77.59, 12.94, 77.60, 12.94), abs=0.5)
    assert matching.distance(Query(), item("x")) is None


def test_order_without_origin() -> None:
    hits = [Hit(item=item(i, catalog=c, bpp=b), catalog=meta(c, b))
            for i, c, b in [("z", "a", "b1"), ("a", "b", "b1"), ("b", "a", "b2"), ("a", "a", "b2")]]
    assert [(h.item.catalog_id, h.item.bpp_id, h.item.item_id) for h in matching.select(hits, 10)] == [
        ("a", "b1", "z"), ("a", "b2", "a"), ("a", "b2", "b"), ("b", "b1", "a")]
    assert matching.order_key(hits[0]) == ("a", "b1", "z")


def test_brute_force_ubc_connection_spec() -> None:
    q = build_query(DiscoverIntent(
        expression="$[?(@.beckn:itemAttributes.connectorType == 'CCS2' && @.beckn:itemAttributes.maxPowerKW >= 50)]",
        spatial=[SpatialSpec(op="s_dwithin", targets=["$['beckn:availableAt'][*]['geo']"],
                             geometry={"type": "Point", "coordinates": [77.59, 12.94]}, distance_m=10_000)]),
        settings=SETTINGS)
    recs = [
        CatalogRecord(meta=meta("cat-1", "bpp-a"), items=[
            item("btm", 77.5946, 12.9716), item("slow", 77.60, 12.95, kw=22), item("mysuru", 76.64, 12.30)]),
        CatalogRecord(meta=meta("cat-9", "bpp-b"), items=[item("jayanagar", 77.583, 12.925, kw=120),
                                                          item("type2", 77.59, 12.94, connector="Type2")]),
        CatalogRecord(meta=meta("cat-x", "bpp-c", expires_at=NOW - 1), items=[item("expired", 77.59, 12.94)]),
    ]
    hits = matching.brute_force(q, recs, NOW)
    expected = sorted(
        ((cosines_m(77.59, 12.94, i.lon, i.lat), i.item_id) for r in recs for i in r.items
         if i.connector_type == "CCS2" and i.max_kw >= 50 and cosines_m(77.59, 12.94, i.lon, i.lat) <= 10_000
         and (r.meta.expires_at is None or r.meta.expires_at > NOW)))
    assert [h.item.item_id for h in hits] == [i for _, i in expected] == ["jayanagar", "btm"]
    assert all(h.distance is not None for h in hits)


points = st.tuples(st.floats(77.4, 77.8), st.floats(12.8, 13.1))


@settings(max_examples=100, deadline=None)
@given(st.lists(points, min_size=0, max_size=25), points, st.floats(100, 30_000), st.integers(1, 10))
def test_brute_force_radius_matches_independent_expectation(pts, center, radius, limit) -> None:
    recs = [CatalogRecord(meta=meta(f"cat-{n % 3}"), items=[]) for n in range(3)]
    for n, (lon, lat) in enumerate(pts):
        recs[n % 3].items.append(item(f"i{n:02d}", lon, lat, catalog=f"cat-{n % 3}"))
    q = build_query(DiscoverIntent(spatial=[SpatialSpec(op="s_dwithin", geometry={
        "type": "Point", "coordinates": list(center)}, distance_m=radius)]), settings=SETTINGS, limit=limit)
    dists = {f"i{n:02d}": cosines_m(*center, lon, lat) for n, (lon, lat) in enumerate(pts)}
    if any(abs(d - radius) < 0.01 for d in dists.values()):
        return  # too close to the edge to call independently
    inside = [(d, f"cat-{int(i[1:]) % 3}", i) for i, d in dists.items() if d <= radius]
    near = sorted(d for d, _, _ in inside)
    if any(b - a < 0.01 for a, b in zip(near, near[1:])):
        return  # two stations at the same distance to within a centimetre: the two formulas may order them apart
    expected = [i for _, _, i in sorted(inside)][:limit]
    got = matching.brute_force(q, recs, NOW)
    assert [h.item.item_id for h in got] == expected


def test_ubc_examples_end_to_end_with_the_normaliser() -> None:
    """The UBC discover examples against the UBC publish catalog, as indexed by cds.core.normalize.

    Expected counts are the ones the protocol reference found with two independent RFC 9535 libraries
    (after rewriting the colon keys): QR -> 1, CPO -> 1, CCS2 && >= 50 kW -> 2, time window -> 1.
    """
    import json
    import os

    from cds.core.normalize import normalize_catalog

    fix = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures")
    with open(os.path.join(fix, "UBC_catalog_publish_ev-charging-catalog-publish.json"), encoding="utf-8") as fh:
        catalog = json.load(fh)["message"]["catalogs"][0]
    rec, _ = normalize_catalog(catalog, publisher_id="bpp.ev-network.example.com", publisher_uri=None, dialect="A",
                               settings=SETTINGS, now=NOW)
    expected = {"UBC_discovery-by-QR.json": 1, "UBC_discovery-services-by-a-cpo.json": 1,
                "UBC_discovery-within-boundary-with-connection-spec.json": 2,
                "UBC_discovery-within-a-timerange.json": 1,
                "UBC_discovery-within-boundary-with-vehicle-spec.json": 0}
    for name, count in expected.items():
        with open(os.path.join(fix, name), encoding="utf-8") as fh:
            expr = json.load(fh)["message"]["filters"]["expression"]
        q = build_query(DiscoverIntent(expression=expr), settings=SETTINGS)
        assert len(matching.brute_force(q, [rec], NOW)) == count, name


@settings(max_examples=200, deadline=None)
@given(st.tuples(st.floats(-180, 180), st.floats(-90, 90)), st.lists(st.tuples(st.floats(-180, 180), st.floats(-90, 90))))
def test_distancer_gives_the_same_floats_as_distance(origin, pts) -> None:
    q = Query(origin=origin)
    dist = matching.distancer(q)
    for lon, lat in pts:
        it = item("a", lon, lat)
        assert dist(it) == matching.distance(q, it)       # bit for bit: hits are ordered by it
    assert dist(item("b", None, None)) is None and matching.distancer(Query())(item("c")) is None


def test_catalog_live_mask_is_catalog_live_for_many_catalogs() -> None:
    import numpy as np

    metas = [meta(f"c{i}", is_active=a, valid_from=f, expires_at=e)
             for i, (a, f, e) in enumerate((a, f, e) for a in (True, False) for f in (None, NOW - 1, NOW, NOW + 1)
                                           for e in (None, NOW - 1, NOW, NOW + 1))]
    def column(values: list) -> np.ndarray:
        return np.array([math.nan if v is None else v for v in values])

    mask = matching.catalog_live_mask(np.array([m.is_active for m in metas]), column([m.valid_from for m in metas]),
                                      column([m.expires_at for m in metas]), NOW)
    assert mask.tolist() == [matching.catalog_live(m, NOW) for m in metas]
    assert any(mask) and not all(mask)


def test_item_matcher_is_matches_for_live_items_and_spatial_decides_says_when_it_is_not_needed() -> None:
    spatial_query = build_query(
        DiscoverIntent(spatial=[SpatialSpec(op="s_dwithin", geometry={"type": "Point", "coordinates": [77.59, 12.94]},
                                            distance_m=5000)]), settings=SETTINGS)
    items = [item("a"), item("b", pack="Other/v1"), item("c", pack=None), item("d", lon=78.5)]
    for q in (spatial_query, Query(text=("koramangala",)), Query(text=("mall",)), Query(packs=frozenset({"Other/v1"})),
              Query()):
        match = matching.item_matcher(q, NOW)
        for it in items:
            assert match(it, meta()) == matching.matches(q, it, meta(), NOW)
    assert matching.spatial_decides(spatial_query)
    assert not matching.spatial_decides(Query(text=("dc",)))
    assert not matching.spatial_decides(Query(packs=frozenset({"EvChargingService/v1"})))
    assert not matching.spatial_decides(Query(terms={"connector_type": frozenset({"CCS2"})}))
    assert matching.spatial_decides(Query(terms={"connector_type": frozenset({"CCS2"})}), pushdowns_known=True)


@settings(max_examples=200, deadline=None)
@given(hits=st.lists(st.tuples(st.sampled_from(["c1", "c2"]), st.sampled_from(["b1", "b2"]),
                               st.sampled_from(["i1", "i2", "i3"]),
                               st.one_of(st.none(), st.sampled_from([0.0, 5.5, 5.5, 100.0]))), max_size=12),
       limit=st.integers(0, 14))
def test_ranked_orders_as_select(hits, limit) -> None:
    meta = CatalogMeta(bpp_id="b1", catalog_id="c1", published_at=0.0)
    docs = [ItemDoc(bpp_id=b, catalog_id=c, item_id=i) for c, b, i, _ in hits]   # equal keys too: arrival order
    want = matching.select([Hit(item=doc, catalog=meta, distance=h[3]) for doc, h in zip(docs, hits)], limit)
    found = [(math.inf if h[3] is None else h[3], doc.catalog_id, doc.bpp_id, doc.item_id, n, doc, meta, h[3])
             for n, (doc, h) in enumerate(zip(docs, hits))]
    got = matching.ranked(found, limit)
    assert [(h.item, h.distance) for h in got] == [(h.item, h.distance) for h in want]
    assert all(a.item is b.item for a, b in zip(got, want))
