"""Point testers of prepared spatial filters: "is this station point in / near the request geometry?", each built
once at planning and then called for every candidate, with a bounded cost per point (docs/decisions.md §24).

Radius tests are pure Python (a bbox rejection, then haversine with precomputed cos(lat)); route and polygon
tests look up only nearby segments in a grid of their distance-widened boxes (numpy beyond a few); areas are
pre-classified in a grid of cells, so only points in edge cells ask GEOS.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np
import shapely
from shapely.geometry import LineString, Point, Polygon
from shapely.geometry.base import BaseGeometry

from cds.core.geodesy import (
    DEG, EARTH_R, haversine_m, reach_dlat, segment_distance_m, segment_distances_m,
)


def points_of(geom: BaseGeometry) -> list[tuple[float, float]]:
    return [(p.x, p.y) for p in getattr(geom, "geoms", [geom])]


def segments_of(geom: BaseGeometry) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    segs = []
    for part in getattr(geom, "geoms", [geom]):
        lines: Iterable[Any]
        if isinstance(part, Polygon):
            lines = [part.exterior, *part.interiors]
        elif isinstance(part, (LineString,)):
            lines = [part]
        else:
            lines = []
        for line in lines:
            cs = [(a[0], a[1]) for a in shapely.get_coordinates(line).tolist()]   # one call, not one per vertex
            segs.extend(zip(cs, cs[1:]))
    return segs


def is_areal(geom: BaseGeometry) -> bool:
    return any(isinstance(p, Polygon) for p in getattr(geom, "geoms", [geom]))


_SMALL_CELL = 32       # grid cells with at most this many segments are filtered in plain Python
_FEW_SEGMENTS = 32     # a line of at most this many segments (and a small grid) builds its grid on first use
_FEW_POINTS = 16       # more points than this: a grid narrows them (as zero-length segments)
_VECTOR_FROM = 24      # a point with more candidate segments than this measures them with numpy


def radius_tester(pts: list[tuple[float, float]], d: float, bbox: tuple[float, float, float, float]):
    minx, miny, maxx, maxy = bbox
    if len(pts) == 1:
        (plon, plat), = pts
        cos_p = math.cos(plat * DEG)
        half = math.sin(d / (2 * EARTH_R)) ** 2 if d < math.pi * EARTH_R else 1.0

        def one(lon: float, lat: float) -> bool:
            if not (miny <= lat <= maxy and minx <= lon <= maxx):
                return False
            a = math.sin((lat - plat) * DEG / 2) ** 2 + cos_p * math.cos(lat * DEG) * \
                math.sin((lon - plon) * DEG / 2) ** 2
            return a <= half * (1 + 1e-12)
        return one
    if len(pts) > _FEW_POINTS:  # bounded cost per tested point: only the points within reach are measured
        near = _NearSegments([(p, p) for p in pts], d)

        def grid(lon: float, lat: float) -> bool:
            return miny <= lat <= maxy and minx <= lon <= maxx and near.any_within(lon, lat)
        return grid

    def many(lon: float, lat: float) -> bool:
        if not (miny <= lat <= maxy and minx <= lon <= maxx):
            return False
        return any(haversine_m(lon, lat, x, y) <= d for x, y in pts)
    return many


def widened_boxes(ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray, d: float
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per segment a lon/lat box holding every point within `d` of it (never too small: `geodesy.reach_bbox`
    per segment), and which boxes are full-width (they reach a pole): (x0, y0, x1, y1, full). The point tests
    measure a segment only where its box holds the point; `cds.core.spatialvec` uses the same boxes."""
    dlat = reach_dlat(d)
    lat_max = np.maximum(np.abs(ay), np.abs(by))
    delta = d / EARTH_R
    polar = lat_max * DEG + delta >= 89.99 * DEG
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.minimum(1.0, math.sin(delta) / np.cos(lat_max * DEG))
    dlon = np.where(polar, 360.0, np.degrees(np.arcsin(np.where(polar, 0.0, ratio))) * (1 + 1e-9) + 1e-9)
    full = polar | (dlon >= 360.0)
    x0 = np.where(full, -180.0, np.minimum(ax, bx) - dlon)
    x1 = np.where(full, 180.0, np.maximum(ax, bx) + dlon)
    y0, y1 = np.minimum(ay, by) - dlat, np.maximum(ay, by) + dlat
    return x0, y0, x1, y1, full


SMALL_GRID_CELLS = 4096     # a segment grid of at most this many entries builds in well under a millisecond


def _first_cell(d: float) -> float:
    """The cell size (degrees) a segment grid starts from: twice the reach, at least 0.01."""
    return max(2 * reach_dlat(d), 0.01)


def _spans(x0: np.ndarray, y0: np.ndarray, x1: np.ndarray, y1: np.ndarray, cell: float
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per box its first grid column and row and how many columns and rows it touches at this cell size."""
    gx0, gx1 = np.floor(x0 / cell).astype(np.int64), np.floor(x1 / cell).astype(np.int64)
    gy0, gy1 = np.floor(y0 / cell).astype(np.int64), np.floor(y1 / cell).astype(np.int64)
    return gx0, gy0, gx1 - gx0 + 1, gy1 - gy0 + 1


def grid_cells(segs: Iterable[tuple[tuple[float, float], tuple[float, float]]], d: float) -> int:
    """How many (segment, cell) entries a segment grid of these segments within `d` starts with: what building
    it costs (`_SegmentGrid`, the same boxes as `widened_boxes`; a full-width box is checked apart, counted once).
    Plain Python: it is asked of short lines only, where numpy's per-call cost would dominate."""
    cell, dlat = _first_cell(d), reach_dlat(d)
    # `geodesy.reach_dlon` per segment (360: a full-width box), inlined with the same arithmetic (the same boxes
    # to the last bit) and sin(d/R) once; no min/max calls: most of a short route's planning (docs/decisions.md §G)
    delta = d / EARTH_R
    sin_delta, pole = math.sin(delta), 89.99 * DEG
    floor, cos, asin, degrees = math.floor, math.cos, math.asin, math.degrees
    total = 0
    for (ax, ay), (bx, by) in segs:
        if ax > bx:
            ax, bx = bx, ax
        if ay > by:
            ay, by = by, ay
        lat_max = by if by >= -ay else -ay          # max(|ay|, |by|)
        if lat_max * DEG + delta >= pole:
            total += 1
            continue
        ratio = sin_delta / cos(lat_max * DEG)
        dlon = degrees(asin(ratio if ratio < 1.0 else 1.0)) * (1 + 1e-9) + 1e-9
        total += ((floor((bx + dlon) / cell) - floor((ax - dlon) / cell) + 1)
                  * (floor((by + dlat) / cell) - floor((ay - dlat) / cell) + 1))
    return total


class _SegmentGrid:
    """Uniform lon/lat grid of segment indices: each segment is filed under every cell its
    distance-widened box touches, so a point only measures the segments that can be within reach.
    Built and queried with numpy: its cost is bounded by MAX_ENTRIES, not by Python loops."""

    MAX_ENTRIES = 200_000

    def __init__(self, segs: list[tuple[tuple[float, float], tuple[float, float]]], d: float) -> None:
        arr = np.asarray(segs, dtype=np.float64).reshape(-1, 4)
        x0, y0, x1, y1, full = widened_boxes(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], d)
        self.x0, self.y0, self.x1, self.y1 = x0, y0, x1, y1
        self.full = np.flatnonzero(full)                      # polar boxes: always checked
        part = np.flatnonzero(~full)
        cell = _first_cell(d)
        while True:
            gx0, gy0, nx, ny = _spans(x0[part], y0[part], x1[part], y1[part], cell)
            if int((nx * ny).sum()) <= self.MAX_ENTRIES:
                break
            cell *= 2
        self.cell = cell
        counts = nx * ny
        seg = np.repeat(part, counts)                         # one entry per (segment, cell)
        k = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        rny = np.repeat(ny, counts)
        gx = np.repeat(gx0, counts) + k // np.maximum(rny, 1)
        gy = np.repeat(gy0, counts) + k % np.maximum(rny, 1)
        order = np.lexsort((seg, gy, gx))
        gx, gy, seg = gx[order], gy[order], seg[order]
        starts = np.flatnonzero(np.r_[True, (gx[1:] != gx[:-1]) | (gy[1:] != gy[:-1])]) if len(seg) else seg
        ends = np.r_[starts[1:], len(seg)]
        self.entries = seg
        self.grid: dict[tuple[int, int], tuple[int, int]] = {
            (int(x), int(y)): (int(a), int(b)) for x, y, a, b in zip(gx[starts], gy[starts], starts, ends)}
        # few segments in a cell (the usual case): plain Python lists beat numpy's per-call overhead; filled on
        # first use of a cell (a dict write is atomic: safe from several threads)
        self.small: dict[tuple[int, int], list[int] | None] = {}
        self.box_list = list(zip(x0.tolist(), y0.tolist(), x1.tolist(), y1.tolist()))

    def candidates(self, lon: float, lat: float) -> "list[int] | np.ndarray":
        """Indices of the segments whose widened box holds the point."""
        key = (math.floor(lon / self.cell), math.floor(lat / self.cell))
        span = self.grid.get(key)
        if not len(self.full):
            if span is None:
                return []
            few = self.small.get(key, False)
            if few is False:
                few = self.small[key] = self.entries[span[0]:span[1]].tolist() \
                    if span[1] - span[0] <= _SMALL_CELL else None
            if few is not None:
                bl = self.box_list
                return [i for i in few if bl[i][0] <= lon <= bl[i][2] and bl[i][1] <= lat <= bl[i][3]]
        if span is None:
            hit = self.full
        else:
            hit = self.entries[span[0]:span[1]]
            if len(self.full):
                hit = np.concatenate([hit, self.full])
        if not len(hit):
            return []
        keep = (self.x0[hit] <= lon) & (lon <= self.x1[hit]) & (self.y0[hit] <= lat) & (lat <= self.y1[hit])
        return hit[keep]


class _NearSegments:
    """"Is the point within `d` of some segment?" with a bounded cost per point: the grid gives the segments
    within reach; many of them are measured at once with numpy (same formula as `segment_distance_m`)."""

    def __init__(self, segs: list[tuple[tuple[float, float], tuple[float, float]]], d: float) -> None:
        self.segs = segs
        self.d = d
        # A small grid (few segments, few cells) is built on first use (cheap then; a search that decides the
        # constraint vectorised never asks), and so are the segments' numpy columns. Any other: now, at planning,
        # never in the search, where a long narrow corridor's 200,000 entries are a loop hold of ~100 ms even for
        # two segments (docs/decisions.md §G).
        small = len(segs) <= _FEW_SEGMENTS and grid_cells(segs, d) <= SMALL_GRID_CELLS
        self._grid = None if small else _SegmentGrid(segs, d)
        self._columns = None if small else _columns(segs)

    @property
    def grid(self) -> _SegmentGrid:
        grid = self._grid
        if grid is None:        # two threads may both build it: the same grid, one of them kept
            grid = self._grid = _SegmentGrid(self.segs, self.d)
        return grid

    @property
    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """ax, ay, bx, by of every segment (built once, as `grid`)."""
        cols = self._columns
        if cols is None:
            cols = self._columns = _columns(self.segs)
        return cols

    def any_within(self, lon: float, lat: float) -> bool:
        cands = self.grid.candidates(lon, lat)
        if len(cands) <= _VECTOR_FROM:
            segs, d = self.segs, self.d
            ids = cands if isinstance(cands, list) else cands.tolist()
            return any(segment_distance_m(lon, lat, *segs[i]) <= d for i in ids)
        ax, ay, bx, by = self.columns
        return bool((segment_distances_m(lon, lat, ax[cands], ay[cands], bx[cands], by[cands]) <= self.d).any())


def _columns(segs: list[tuple[tuple[float, float], tuple[float, float]]]
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    arr = np.asarray(segs, dtype=np.float64).reshape(-1, 4) if segs else np.zeros((0, 4))
    return arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3]


def prepare_now(geom: BaseGeometry) -> None:
    """Prepare for repeated point tests, and make GEOS build its lazy point-location index now: afterwards
    the tests only read it, so the same filter can be used from the loop and a worker thread at once."""
    shapely.prepare(geom)
    x0, y0, x1, y1 = geom.bounds
    shapely.intersects_xy(geom, (x0 + x1) / 2, (y0 + y1) / 2)


class AreaGrid:
    """Point-in-area with a grid of cells classified once as inside / outside / on the edge;
    only points in edge cells need GEOS."""

    N = 48

    def __init__(self, geom: BaseGeometry) -> None:
        prepare_now(geom)
        self.geom = geom
        x0, y0, x1, y1 = geom.bounds
        self.x0, self.y0 = x0, y0
        self.w = max((x1 - x0) / self.N, 1e-9)
        self.h = max((y1 - y0) / self.N, 1e-9)
        ix, iy = [a.ravel() for a in np.meshgrid(range(self.N), range(self.N))]
        boxes = shapely.box(x0 + ix * self.w, y0 + iy * self.h, x0 + (ix + 1) * self.w, y0 + (iy + 1) * self.h)
        inside = shapely.contains(geom, boxes)
        touches = shapely.intersects(geom, boxes)
        # 1 = inside, 0 = outside, -1 = edge
        self.state = {(int(a), int(b)): (1 if i else (-1 if t else 0))
                      for a, b, i, t in zip(ix, iy, inside, touches)}

    def covers(self, lon: float, lat: float) -> bool:
        st = self.state.get((math.floor((lon - self.x0) / self.w), math.floor((lat - self.y0) / self.h)), -1)
        if st >= 0:
            return st == 1
        return bool(shapely.intersects_xy(self.geom, lon, lat))


def _point_parts(geom: BaseGeometry) -> list[tuple[float, float]]:
    return [(p.x, p.y) for p in getattr(geom, "geoms", [geom]) if isinstance(p, Point)]


def shape_tester(geom: BaseGeometry, d: float, bbox: tuple[float, float, float, float]):
    """dwithin for lines/polygons (and mixed multi-geometries)."""
    minx, miny, maxx, maxy = bbox
    pts = _point_parts(geom)
    segs = segments_of(geom) + [(p, p) for p in pts]   # points as zero-length segments: one bounded lookup
    area = AreaGrid(geom) if is_areal(geom) else None
    # Built here, at planning (off the loop for a costly request), never lazily in the search: for thousands of
    # segments the build is a loop hold of 100+ ms (docs/decisions.md §G); only a few segments' grid waits.
    near = _NearSegments(segs, d)

    def test(lon: float, lat: float) -> bool:
        if not (miny <= lat <= maxy and minx <= lon <= maxx):
            return False
        if area is not None and area.covers(lon, lat):
            return True
        return near.any_within(lon, lat)
    return test
