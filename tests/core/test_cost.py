"""Bounded cost of a discover (docs/decisions.md §24), below the HTTP layer: geometry checked cheaply before any
repair, limits counted on what is computed, the work budget, and no overflow from numbers or dates of any size.
(Over real HTTP, with /health/live measured meanwhile: tests/api/test_cost_serve.py.)"""

from __future__ import annotations

import asyncio
import math
import os
import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds.config import load_settings
from cds.core import budget, geodesy, spatial, spatial_input, timeutil
from cds.core.budget import WorkBudget, WorkLimitExceeded
from cds.core.documents import CatalogMeta, ItemDoc
from cds.core.errors import BecknError
from cds.core.filters import compile_filter
from cds.core.matching import matches
from cds.core.models import Context, DiscoverIntent, DiscoverRequest, SpatialSpec
from cds.core.planner import CHEAP_LINE_VERTICES, build_query, cheap_to_plan
from cds.core.protocol import parse_context, parse_discover
from loadtests import fuzz_strategies as fs
from loadtests.costly import TARGET, star
from loadtests.costly import circle as _circle
from loadtests.costly import random_polygon as _random_polygon
from loadtests.costly import route as _route

SETTINGS = load_settings({})


def random_polygon(n: int, seed: int = 1) -> dict:
    return _random_polygon(n, seed, ndigits=None)


def circle(n: int, cx: float = 77.5, cy: float = 12.9, r: float = 0.5) -> dict:
    return _circle(n, cx, cy, r, ndigits=None)


def route(n: int, seed: int = 0) -> dict:
    return _route(n, seed, start=(74.0, 12.0), ndigits=None)


def spec(geometry: dict, op: str = "s_within", distance: float | None = None) -> SpatialSpec:
    return SpatialSpec(op=op, targets=[TARGET], geometry=geometry, distance_m=distance)


def timed(fn, *args):
    t0 = time.thread_time()
    try:
        return fn(*args), time.thread_time() - t0
    except BecknError as e:
        return e, time.thread_time() - t0


# ---- geometry: checked before any repair ------------------------------------------------------------------


@pytest.mark.parametrize("geometry", [star(151), star(301), random_polygon(400), random_polygon(9000, 2)],
                         ids=["star-151", "star-301", "random-400", "random-9000"])
def test_a_polygon_crossing_itself_too_often_is_refused_before_any_repair(geometry):
    # make_valid took ~30 s for the 151-point star and minutes for the random ones; the count takes milliseconds
    err, cpu = timed(spatial.build_spatials, [spec(geometry)])
    assert isinstance(err, BecknError) and err.status == 400 and err.code == "SCH_SCHEMA_VALIDATION_FAILED"
    assert "CDS_MAX_REPAIR_CROSSINGS" in err.message and "64" in err.message
    assert cpu < 1.0


def test_a_polygon_with_a_few_crossings_is_still_repaired():
    bowtie = {"type": "Polygon", "coordinates": [[[77.0, 12.0], [78.0, 13.0], [78.0, 12.0], [77.0, 13.0], [77.0, 12.0]]]}
    f = spatial.build_spatial(spec(bowtie))
    assert f.geometry.geom_type == "MultiPolygon"
    assert spatial.contains(f, 77.2, 12.5) and spatial.contains(f, 77.8, 12.5)
    assert not spatial.contains(f, 77.5, 12.9)
    # a 9-point star crosses itself 9 * 3 = 27 times: under the default, over a limit of 10
    assert spatial.build_spatial(spec(star(9))).geometry.is_valid
    with pytest.raises(BecknError, match="more than 10 times"):
        spatial.build_spatials([spec(star(9))], spatial_input.GeometryLimits(max_repair_crossings=10))


def test_count_crossings():
    from shapely.geometry import Polygon

    def poly(g: dict) -> Polygon:
        return Polygon(g["coordinates"][0])

    assert spatial_input.count_crossings(poly(circle(1000)), 64) == 0
    assert spatial_input.count_crossings(poly(star(9)), 1000) == 27          # {9/4}: every edge crosses 6 others
    assert 64 < spatial_input.count_crossings(poly(star(151)), 64) < 20_000  # stops soon after the cap


def test_the_vertex_limit_counts_what_is_computed():
    # Repair adds the crossing points: a polygon under the input limit can be over it once repaired.
    limits = spatial_input.GeometryLimits(max_vertices=20)
    assert spatial_input.vertex_count(spatial.build_spatial(spec(star(9))).geometry) > 18
    with pytest.raises(BecknError, match=r"as computed.*more than 20 \(CDS_MAX_GEOMETRY_VERTICES\)"):
        spatial.build_spatials([spec(star(9))], limits)
    # The limit is for the whole request: eight routes of 9,000 points are refused, each alone is fine.
    routes = [spec(route(9000, i), "s_dwithin", 5000) for i in range(8)]
    err, cpu = timed(spatial.build_spatials, routes, spatial_input.GeometryLimits(route_simplify_m=0))
    assert isinstance(err, BecknError) and "CDS_MAX_GEOMETRY_VERTICES" in err.message
    assert cpu < 1.0
    assert len(spatial.build_spatials(routes[:1])) == 1


def test_dense_routes_are_simplified_before_the_limit_is_applied():
    straight = {"type": "LineString", "coordinates": [[77.0 + i * 1e-4, 12.0] for i in range(6000)]}
    fs_ = spatial.build_spatials([spec(straight, "s_dwithin", 1000), spec(straight, "s_dwithin", 1000)])
    assert all(spatial_input.vertex_count(f.geometry) < 10 for f in fs_)
    assert spatial.contains(fs_[0], 77.3, 12.005) and not spatial.contains(fs_[0], 77.3, 12.02)
    # under the limit nothing is simplified: the geometry is used exactly as sent
    assert spatial_input.vertex_count(spatial.build_spatial(spec(straight, "s_dwithin", 1000)).geometry) == 6000


def test_more_positions_than_the_limit_are_refused_while_reading():
    err, cpu = timed(spatial.build_spatials, [spec(circle(10_001))])
    assert isinstance(err, BecknError) and "more than 10000 vertices" in err.message
    err, _ = timed(spatial.build_spatials, [spec(circle(500))], spatial_input.GeometryLimits(max_vertices=100))
    assert isinstance(err, BecknError) and "more than 100 vertices (CDS_MAX_GEOMETRY_VERTICES)" in err.message


def test_degenerate_geometries_are_a_400_not_a_crash():
    for g in ({"type": "Polygon", "coordinates": [[[77, 12], [77, 12], [77, 12], [77, 12]]]},
              {"type": "LineString", "coordinates": [[77, 12], [77, 12]]},
              {"type": "MultiPolygon", "coordinates": [[[[77, 12], [77, 12], [77, 12], [77, 12]]],
                                                       [[[77, 12], [78, 13], [78, 12], [77, 13], [77, 12]]]]}):
        try:
            f = spatial.build_spatial(spec(g, "s_dwithin", 1000))
        except BecknError as e:
            assert e.status == 400
        else:
            spatial.contains(f, 77.0, 12.0)


@pytest.mark.parametrize("geometry,distance", [
    (circle(9999), 2_000_000), (circle(9999), None),
    ({"type": "MultiPoint", "coordinates": route(9999)["coordinates"]}, 2_000_000),
    ({"type": "LineString", "coordinates": [[68 + (i * 7919 % 2900) / 100, 8 + (i * 104729 % 2700) / 100]
                                            for i in range(9999)]}, 5_000),
], ids=["circle-2000km", "circle-within", "multipoint-2000km", "zigzag-5km"])
def test_a_point_test_has_a_bounded_cost_whatever_the_geometry(geometry, distance):
    f = spatial.build_spatial(spec(geometry, "s_dwithin" if distance else "s_within", distance))
    rnd = random.Random(3)
    t0 = time.thread_time()
    for _ in range(200):
        spatial.contains(f, rnd.uniform(68, 97), rnd.uniform(8, 35))
    per_point = (time.thread_time() - t0) / 200
    assert per_point < 0.005, per_point     # vectorised over the candidate segments: well under a millisecond


def test_the_vectorised_segment_distance_is_the_scalar_one():
    rnd = random.Random(5)
    segs = [((rnd.uniform(70, 80), rnd.uniform(10, 20)), (rnd.uniform(70, 80), rnd.uniform(10, 20))) for _ in range(50)]
    segs.append(((75.0, 15.0), (75.0, 15.0)))
    import numpy as np
    arr = np.asarray(segs).reshape(-1, 4)
    for _ in range(20):
        lon, lat = rnd.uniform(70, 80), rnd.uniform(10, 20)
        vec = geodesy.segment_distances_m(lon, lat, arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3])
        for (a, b), d in zip(segs, vec):
            assert abs(geodesy.segment_distance_m(lon, lat, a, b) - d) < 1e-6


# ---- the work budget --------------------------------------------------------------------------------------


def test_the_work_budget_counts_cpu_time_of_running_stretches_only():
    b = WorkBudget(30, setting="CDS_DISCOVER_WORK_MS")
    b.check()                                   # not running: never raises
    time.sleep(0.05)                            # waiting is not work
    with b.running():
        b.check()
    assert b.used_ms < 30
    with pytest.raises(WorkLimitExceeded) as e:
        with b.running():
            while True:
                budget.check()                  # the module-level check sees the budget in force
    assert e.value.status == 400 and e.value.code == "SCH_SCHEMA_VALIDATION_FAILED"
    assert "30 ms (CDS_DISCOVER_WORK_MS)" in e.value.message
    assert budget.current() is None             # nothing left in force outside


def test_planning_is_charged_to_the_budget():
    intent = DiscoverIntent(expression="$[?(@.beckn:itemAttributes.connectorType == 'CCS2')]",
                            spatial=[spec(circle(9999), "s_dwithin", 2_000_000)])
    assert not cheap_to_plan(intent)
    with pytest.raises(WorkLimitExceeded):
        with WorkBudget(1).running():
            build_query(intent, settings=SETTINGS)
    assert cheap_to_plan(DiscoverIntent(spatial=[spec({"type": "Point", "coordinates": [77, 12]}, "s_dwithin", 10)]))


def test_short_routes_plan_on_the_loop_and_long_ones_in_the_pool():
    def line(n: int) -> dict:
        return {"type": "LineString", "coordinates": [[77 + i / 100, 12 + (i % 2) / 100] for i in range(n)]}
    assert cheap_to_plan(DiscoverIntent(spatial=[spec(line(CHEAP_LINE_VERTICES), "s_dwithin", 2000)]))
    assert not cheap_to_plan(DiscoverIntent(spatial=[spec(line(CHEAP_LINE_VERTICES + 1), "s_dwithin", 2000)]))
    # the vertices of every line count together
    half = CHEAP_LINE_VERTICES // 2 + 1
    assert not cheap_to_plan(DiscoverIntent(spatial=[spec(line(half), "s_dwithin", 2000),
                                                     spec(line(half), "s_intersects")]))
    # two vertices across the country with a narrow corridor: a segment grid of millions of cells (~100 ms)
    across = {"type": "LineString", "coordinates": [[68, 8], [97, 35]]}
    assert not cheap_to_plan(DiscoverIntent(spatial=[spec(across, "s_dwithin", 2000)]))
    assert cheap_to_plan(DiscoverIntent(spatial=[spec(across, "s_dwithin", 500_000)]))
    assert not cheap_to_plan(DiscoverIntent(spatial=[spec({"type": "LineString", "coordinates": [[68, 8], ["x", 9]]},
                                                          "s_dwithin", 500_000)]))
    # a polygon may need a repair and grids: never on the loop, however small
    square = {"type": "Polygon", "coordinates": [[[77, 12], [77.1, 12], [77.1, 12.1], [77, 12.1], [77, 12]]]}
    assert not cheap_to_plan(DiscoverIntent(spatial=[spec(square, "s_within")]))
    assert not cheap_to_plan(DiscoverIntent(spatial=[spec({"type": "LineString", "coordinates": "x"}, "s_dwithin", 9)]))


def test_the_embedded_search_is_refused_past_its_budget_and_yields_the_loop_meanwhile(tmp_path):
    from indexer.embedded import EmbeddedStorage
    from cds.demo.generator import generate_network
    from cds.core.normalize import normalize_catalog

    async def main():
        storage = EmbeddedStorage(tmp_path / "idx", fsync=False)
        await storage.open()
        try:
            net = generate_network(2000, seed=3)
            now = time.time()
            for _bpp, cat in net.iter_catalogs():
                rec, _ = normalize_catalog(cat, publisher_id=cat["beckn:bppId"], publisher_uri=None,
                                           dialect="A", settings=SETTINGS, now=now)
                await storage.replace_catalog(rec)
            # a filter no item passes, on a raw JSON path: every item is evaluated
            intent = DiscoverIntent(expression="$[?(@.beckn:descriptor.schema:name == 'no such name')]",
                                    spatial=[spec(circle(9999, 80, 20, 15), "s_dwithin", 2_000_000)])
            query = build_query(intent, settings=SETTINGS)
            ticks: list[float] = []

            async def ticker():
                while True:
                    ticks.append(time.perf_counter())
                    await asyncio.sleep(0)

            t = asyncio.create_task(ticker())
            await asyncio.sleep(0)
            t0, c0 = time.perf_counter(), time.thread_time()
            assert await storage.search(query, now) == []            # no budget in force: answered
            full_ms = (time.thread_time() - c0) * 1000
            t1 = time.perf_counter()
            t.cancel()
            assert full_ms > 10, full_ms                              # (so that 1 ms cannot be enough)
            during = [x for x in ticks if t0 <= x <= t1]
            assert len(during) >= max(2, full_ms / 10)                # the loop ran others between slices
            gaps = [b - a for a, b in zip([t0, *during], [*during, t1])]
            # slices of ~5 ms; on an overloaded machine a slice can also wait for a core (load / cores)
            stretch = max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))
            assert sorted(gaps)[len(gaps) // 2] < 0.02 * stretch and max(gaps) < 0.05 * stretch, max(gaps)
            with budget.in_force(WorkBudget(1)):
                with pytest.raises(WorkLimitExceeded):
                    await storage.search(query, now)
            assert storage.search_now(query, now) == []               # the one-step search (no budget) too
        finally:
            await storage.close()

    asyncio.run(main())


# ---- numbers and dates of any size ---------------------------------------------------------------------------


@pytest.mark.parametrize("literal", ["9" * 309, "-" + "9" * 309, "1" + "0" * 400, "1e308", "9007199254740993",
                                     "18446744073709551616", "0.0000000000000000000000001"])
def test_numbers_of_any_size_compile_or_are_refused(literal):
    expr = f"$[?(@.beckn:itemAttributes.maxPowerKW >= {literal})]"
    try:
        q = build_query(DiscoverIntent(expression=expr), settings=SETTINGS)
    except BecknError as e:
        assert e.status == 400 and e.code == "SCH_INVALID_JSONPATH" and "out of range" in e.message
    else:
        lo, hi = q.ranges["max_kw"]
        assert isinstance(lo, (int, float)) and math.isfinite(lo)


def test_huge_indexes_are_refused():
    with pytest.raises(BecknError, match="index out of range"):
        compile_filter("$[?(@.a[" + "9" * 40 + "] == 1)]", tz="Asia/Kolkata", status_fresh_s=900)


@pytest.mark.parametrize("start,end", [("2025-01-01T00:00:00Z", "9999-12-31T23:59:59Z"),
                                       ("0001-01-01T00:00:00Z", "0001-01-01T00:00:01Z"),
                                       ("9999-12-31T23:59:59-12:00", "9999-12-31T23:59:59+14:00"),
                                       ("0001-01-01T00:00:00+05:30", "9999-12-31T23:59:59Z")])
def test_availability_windows_at_the_ends_of_the_calendar(start, end):
    expr = (f"$[?(@.beckn:availabilityWindow.schema:startTime <= '{start}' && "
            f"@.beckn:availabilityWindow.schema:endTime >= '{end}')]")
    q = build_query(DiscoverIntent(expression=expr), settings=SETTINGS)
    item = ItemDoc(item_id="i", catalog_id="c", bpp_id="b", windows=[(-6e10, 2.5e11)], daily_windows=[(0, 3600)])
    meta = CatalogMeta(catalog_id="c", bpp_id="b")
    matches(q, item, meta, time.time())          # evaluates without overflow


@pytest.mark.parametrize("instant", [-62135596800.0, -62135596800.0 - 86400 * 400, 253402300799.0,
                                     253402300799.0 + 86400 * 400, 0.0, -1e18, 1e18])
def test_time_arithmetic_never_overflows(instant):
    for tz in ("Asia/Kolkata", "Pacific/Kiritimati", "Etc/GMT+12", None):
        timeutil.wall_seconds(instant, tz)
        assert 0 <= timeutil.local_seconds(instant, tz) < 86400
        timeutil.tz_offset_s(tz, instant)
    assert timeutil.rfc3339(instant).endswith("Z")


def test_window_ends_in_year_9999_local_time():
    # 9999-12-31T23:59:59Z is 10000-01-01T05:29:59 in Kolkata: its daily wall time is still computed
    t = timeutil.parse_instant("9999-12-31T23:59:59Z", "UTC")
    assert timeutil.local_seconds(t, "Asia/Kolkata") == 5 * 3600 + 29 * 60 + 59


# ---- fuzz-style: the grammar of discover requests never breaks the planner or the matcher ----------------------

ITEMS = [ItemDoc(item_id=f"i{k}", catalog_id="c", bpp_id="b", lon=70 + k * 0.9, lat=10 + k * 0.7,
                 connector_type="CCS2", max_kw=float(k * 10), windows=[(0.0, 2e9)], daily_windows=[(3600, 7200)])
         for k in range(30)]
META = CatalogMeta(catalog_id="c", bpp_id="b")


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(fs.discovers())
def test_any_discover_from_the_grammar_is_planned_or_refused_and_matching_never_raises(drawn):
    dialect, body = drawn
    ctx = body["context"]
    if dialect == "B":
        ctx.update(bapId="bap", bapUri="http://127.0.0.1/bap", transactionId="t", messageId="m",
                   timestamp=timeutil.rfc3339())
    else:
        ctx.update(bap_id="bap", bap_uri="http://127.0.0.1/bap", transaction_id="t", message_id="m",
                   timestamp=timeutil.rfc3339())
    try:
        c = parse_context(body, expected_actions={"discover"}, now=time.time(), clock_skew_s=5)
        req = parse_discover(body, c)
        work = WorkBudget(2000)
        with work.running():
            query = build_query(req.intent, settings=SETTINGS)
            for item in ITEMS:
                matches(query, item, META, time.time())
    except BecknError as e:
        assert 400 <= e.status < 500
