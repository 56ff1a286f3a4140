"""Read-only overviews of what the index holds, for the operator console (docs/decisions.md §R):
connectors on a map (one point each, or clusters on a web-mercator tile grid) and one summary row per
publisher. Both backends return the same shapes from the same rules (the helpers below): what counts is
what a discover could return now (`cds.core.matching.is_live`), published data only (no cached fan-out
replies), items with a location; a live status older than the freshness bound reads "Unknown", as in an
on_discover (docs/decisions.md §S Expiry).
"""

from __future__ import annotations

import math
from typing import Iterable

import msgspec

from cds.core.documents import CatalogMeta

MAX_PRECISION = 20
UNKNOWN = "Unknown"


class CoverageQuery(msgspec.Struct, kw_only=True, frozen=True):
    precision: int = 6                     # cluster cell = a web-mercator tile at this zoom (0..20)
    bbox: tuple[float, float, float, float] | None = None   # lon_min, lat_min, lon_max, lat_max
    bpp_id: str | None = None
    max_points: int = 500                  # at most this many connectors in view: each one, no clusters
    fresh_after: float = 0.0               # a status published before this instant reads "Unknown"


class CoverageCell(msgspec.Struct, kw_only=True):
    lon: float                             # centroid of the cell's connectors
    lat: float
    count: int
    types: dict[str, int] = {}             # by connector type ("" = none given)
    statuses: dict[str, int] = {}          # by live status (stale or none: "Unknown")


class CoveragePoint(msgspec.Struct, kw_only=True):
    lon: float
    lat: float
    bpp_id: str
    catalog_id: str
    item_id: str
    connector_type: str | None = None
    max_kw: float | None = None
    status: str = UNKNOWN


class Coverage(msgspec.Struct, kw_only=True):
    total: int                             # connectors in view
    cells: list[CoverageCell] = []         # when total > max_points
    points: list[CoveragePoint] = []       # when total <= max_points


class PublisherSummary(msgspec.Struct, kw_only=True):
    bpp_id: str
    catalogs: int = 0                      # live published catalogs
    items: int = 0                         # their items
    expired_catalogs: int = 0              # stored but expired or inactive (purged by the sweep)
    last_published_at: float | None = None


def tile(lon: float, lat: float, zoom: int) -> tuple[int, int]:
    """The web-mercator tile (x, y) holding a point, as Elasticsearch's geotile_grid computes it."""
    n = 1 << zoom
    lat = max(-85.0511287798066, min(85.0511287798066, lat))
    x = int((lon + 180.0) / 360.0 * n)
    s = math.sin(math.radians(lat))
    y = int((0.5 - math.log((1 + s) / (1 - s)) / (4 * math.pi)) * n)
    return min(max(x, 0), n - 1), min(max(y, 0), n - 1)


def status_label(status: str | None, published_at: float | None, fresh_after: float) -> str:
    if not status or published_at is None or published_at < fresh_after:
        return UNKNOWN
    return status


def in_bbox(lon: float, lat: float, bbox: tuple[float, float, float, float] | None) -> bool:
    return bbox is None or (bbox[0] <= lon <= bbox[2] and bbox[1] <= lat <= bbox[3])


def catalog_live(meta: CatalogMeta, now: float) -> bool:
    """A published catalog a discover could return now (its items are checked one by one)."""
    return (meta.is_active and not meta.live and (meta.expires_at is None or now < meta.expires_at)
            and (meta.valid_from is None or meta.valid_from <= now))


def summarize_publishers(metas: Iterable[CatalogMeta], now: float) -> list[PublisherSummary]:
    """One row per publisher of stored (non-live) catalogs, by publisher id. `items` counts the catalogs'
    items as published (inactive ones included: the console shows what each publisher sent)."""
    rows: dict[str, PublisherSummary] = {}
    for m in metas:
        if m.live:
            continue
        row = rows.get(m.bpp_id)
        if row is None:
            row = rows[m.bpp_id] = PublisherSummary(bpp_id=m.bpp_id)
        if catalog_live(m, now):
            row.catalogs += 1
            row.items += m.item_count
        else:
            row.expired_catalogs += 1
        if row.last_published_at is None or m.published_at > row.last_published_at:
            row.last_published_at = m.published_at
    return [rows[k] for k in sorted(rows)]


class CellTally:
    """Accumulates connectors into tile cells (the embedded backend's twin of geotile_grid + geo_centroid)."""

    def __init__(self, precision: int) -> None:
        self.precision = precision
        self._cells: dict[tuple[int, int], list] = {}

    def add(self, lon: float, lat: float, connector_type: str | None, status: str) -> None:
        key = tile(lon, lat, self.precision)
        c = self._cells.get(key)
        if c is None:
            c = self._cells[key] = [0, 0.0, 0.0, {}, {}]
        c[0] += 1
        c[1] += lon
        c[2] += lat
        t = connector_type or ""
        c[3][t] = c[3].get(t, 0) + 1
        c[4][status] = c[4].get(status, 0) + 1

    def cells(self) -> list[CoverageCell]:
        cells = [CoverageCell(lon=c[1] / c[0], lat=c[2] / c[0], count=c[0], types=c[3], statuses=c[4])
                 for c in self._cells.values()]
        return sorted(cells, key=lambda c: (c.lon, c.lat))
