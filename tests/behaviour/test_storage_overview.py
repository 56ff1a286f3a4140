"""The console's read-only overviews (indexer/overview.py) on both backends: the same counts, clusters and
points from the same data, and what a discover could not return (expired, inactive, live, unlocated) never
counted."""

from __future__ import annotations

import pytest

from indexer.overview import UNKNOWN, CoverageQuery, tile
from tests.behaviour.test_storage_behaviour import HOUR, LAT0, LON0, NOW, item, publish, record, storage  # noqa: F401

DELHI = (77.209, 28.6139)


def _network():
    blr = [item("bpp-a", "c1", f"b{i}", LON0 + i * 0.001, LAT0, connector_type="CCS2", status="Available",
                status_at=NOW - 10) for i in range(6)]
    blr.append(item("bpp-a", "c1", "off", LON0, LAT0, connector_type="CCS2", is_active=False))
    blr.append(item("bpp-a", "c1", "nowhere", None, None, connector_type="CCS2"))
    dli = [item("bpp-b", "c2", f"d{i}", DELHI[0] + i * 0.001, DELHI[1], connector_type="Type2", status="Occupied",
                status_at=NOW - 5 * HOUR) for i in range(4)]
    return [
        record("bpp-a", "c1", blr, published_at=NOW - 10),
        record("bpp-b", "c2", dli, published_at=NOW - 5 * HOUR),
        record("bpp-b", "old", [item("bpp-b", "old", "x", *DELHI)], published_at=NOW - 9 * HOUR, expires_at=NOW - HOUR),
        record("bpp-c", "live", [item("bpp-c", "live", "l", *DELHI)], live=True),
    ]


async def test_publishers_one_row_each_with_live_and_expired_catalogs(storage):
    await publish(storage, *_network())
    rows = {r.bpp_id: r for r in await storage.publishers(NOW)}
    assert set(rows) == {"bpp-a", "bpp-b"}                  # live fan-out data is not a publisher
    assert (rows["bpp-a"].catalogs, rows["bpp-a"].items, rows["bpp-a"].expired_catalogs) == (1, 8, 0)
    assert (rows["bpp-b"].catalogs, rows["bpp-b"].items, rows["bpp-b"].expired_catalogs) == (1, 4, 1)
    assert rows["bpp-b"].last_published_at == pytest.approx(NOW - 5 * HOUR)


async def test_coverage_points_count_only_what_a_discover_could_return(storage):
    await publish(storage, *_network())
    cov = await storage.coverage(CoverageQuery(fresh_after=NOW - HOUR), NOW)
    assert cov.total == 10 and not cov.cells
    by_id = {p.item_id: p for p in cov.points}
    assert set(by_id) == {f"b{i}" for i in range(6)} | {f"d{i}" for i in range(4)}
    assert by_id["b0"].status == "Available" and by_id["b0"].connector_type == "CCS2"
    assert by_id["d0"].status == UNKNOWN                   # published 5 h ago: stale
    assert (by_id["d3"].lon, by_id["d3"].lat) == pytest.approx((DELHI[0] + 0.003, DELHI[1]))


async def test_coverage_clusters_on_the_tile_grid_with_breakdowns(storage):
    await publish(storage, *_network())
    cov = await storage.coverage(CoverageQuery(precision=5, max_points=3, fresh_after=NOW - HOUR), NOW)
    assert cov.total == 10 and not cov.points
    assert tile(LON0, LAT0, 5) != tile(*DELHI, 5)
    assert [c.count for c in cov.cells] == [4, 6]          # west to east: Delhi (77.21), Bengaluru (77.59)
    dli, blr = cov.cells
    assert blr.types == {"CCS2": 6} and blr.statuses == {"Available": 6}
    assert dli.types == {"Type2": 4} and dli.statuses == {UNKNOWN: 4}
    assert (blr.lon, blr.lat) == pytest.approx((LON0 + 0.0025, LAT0), abs=1e-4)


async def test_coverage_narrows_by_publisher_and_bbox(storage):
    await publish(storage, *_network())
    assert (await storage.coverage(CoverageQuery(bpp_id="bpp-b"), NOW)).total == 4
    north = await storage.coverage(CoverageQuery(bbox=(70.0, 20.0, 90.0, 35.0)), NOW)
    assert {p.item_id for p in north.points} == {f"d{i}" for i in range(4)}
    assert (await storage.coverage(CoverageQuery(bpp_id="nobody"), NOW)).total == 0
