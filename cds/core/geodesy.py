"""Geodesy on the matcher's sphere: point and segment distances, and the lon/lat boxes that hold everything within a
distance of a geometry (docs/decisions.md §S Matching).

Distances are geodesic on a sphere of radius 6,371,008.8 m (the IUGG mean radius; within 0.5% of the
ellipsoid everywhere):
- point to point: haversine;
- point to a line segment (route corridors, polygon edges): the closest point of the segment is found in
  an equirectangular projection centred on the query point (lon/lat straight lines stay straight there,
  so the segment shape is exact; only the local scale is approximated, by well under 0.1% within 50 km of
  the point at India's latitudes), then the distance to that closest point is computed with haversine.
  Segments are straight in lon/lat, as in GeoJSON/PostGIS geometry.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
from shapely.geometry.base import BaseGeometry


EARTH_R = 6_371_008.8
DEG = math.pi / 180.0
M_PER_DEG = EARTH_R * DEG


def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    p1, p2 = lat1 * DEG, lat2 * DEG
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin((lon2 - lon1) * DEG / 2) ** 2
    return 2 * EARTH_R * math.asin(min(1.0, math.sqrt(a)))


def haversine_from(lon1: float, lat1: float) -> Callable[[float, float], float]:
    """`haversine_m` from a fixed first point, its terms computed once: the same float, operation for
    operation (a search measures many stations from one origin; hits are ordered by this exact value)."""
    p1, c1 = lat1 * DEG, math.cos(lat1 * DEG)
    sin, cos, asin, sqrt = math.sin, math.cos, math.asin, math.sqrt

    def from_origin(lon2: float, lat2: float) -> float:
        p2 = lat2 * DEG
        a = sin((p2 - p1) / 2) ** 2 + c1 * cos(p2) * sin((lon2 - lon1) * DEG / 2) ** 2
        return 2 * EARTH_R * asin(min(1.0, sqrt(a)))
    return from_origin


def _wrap_dlon(d: float) -> float:
    if d > 180.0:
        return d - 360.0
    if d < -180.0:
        return d + 360.0
    return d


def segment_distance_m(lon: float, lat: float, a: tuple[float, float], b: tuple[float, float]) -> float:
    """Geodesic distance (m) from a point to the lon/lat-straight segment a-b (see module doc)."""
    k = math.cos(lat * DEG)
    ax, ay = _wrap_dlon(a[0] - lon) * k, a[1] - lat
    bx, by = _wrap_dlon(b[0] - lon) * k, b[1] - lat
    dx, dy = bx - ax, by - ay
    den = dx * dx + dy * dy
    t = 0.0 if den == 0.0 else max(0.0, min(1.0, -(ax * dx + ay * dy) / den))
    return haversine_m(lon, lat, a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)


def reach_dlat(distance_m: float) -> float:
    """Latitude half-height (degrees) of the cap of radius `distance_m` around any point (never too small)."""
    return distance_m / M_PER_DEG * (1 + 1e-9) + 1e-9


def reach_dlon(distance_m: float, lat_max: float) -> float:
    """Longitude half-width (degrees) of the cap of radius `distance_m` around any point at latitude
    |lat| <= lat_max: asin(sin(d/R) / cos(lat)) is exact for a spherical cap and grows with |lat|.
    360 when the cap reaches a pole."""
    delta = distance_m / EARTH_R
    if abs(lat_max) * DEG + delta >= 89.99 * DEG:
        return 360.0
    ratio = math.sin(delta) / math.cos(abs(lat_max) * DEG)
    return math.degrees(math.asin(min(1.0, ratio))) * (1 + 1e-9) + 1e-9


def reach_bbox(geom: BaseGeometry, distance_m: float) -> tuple[float, float, float, float]:
    """A lon/lat box holding every point within `distance_m` of the geometry (never too small)."""
    return reach_box(geom.bounds, distance_m)


def reach_box(bounds: tuple[float, float, float, float], distance_m: float) -> tuple[float, float, float, float]:
    """`reach_bbox` of a geometry with these bounds (minx, miny, maxx, maxy)."""
    minx, miny, maxx, maxy = bounds
    dlat = reach_dlat(distance_m)
    dlon = reach_dlon(distance_m, max(abs(miny), abs(maxy)))
    lo_lat, hi_lat = max(-90.0, miny - dlat), min(90.0, maxy + dlat)
    lo_lon, hi_lon = minx - dlon, maxx + dlon
    if dlon >= 360.0 or lo_lon < -180.0 or hi_lon > 180.0:  # reaches a pole or wraps the antimeridian
        return (-180.0, lo_lat, 180.0, hi_lat)
    return (lo_lon, lo_lat, hi_lon, hi_lat)


def segment_distances_m(lon: Any, lat: Any, ax0: np.ndarray, ay0: np.ndarray, bx0: np.ndarray,
                        by0: np.ndarray) -> np.ndarray:
    """`segment_distance_m` for many segments at once; `lon`/`lat` one point (floats) or a column of points
    (arrays of shape (n, 1): one row of distances per point, `cds.core.spatialvec`)."""
    cos = np.cos if isinstance(lat, np.ndarray) else math.cos
    k = cos(lat * DEG)
    ddx, ddy = ax0 - lon, bx0 - lon
    ddx = np.where(ddx > 180.0, ddx - 360.0, np.where(ddx < -180.0, ddx + 360.0, ddx))
    ddy = np.where(ddy > 180.0, ddy - 360.0, np.where(ddy < -180.0, ddy + 360.0, ddy))
    ax, ay = ddx * k, ay0 - lat
    bx, by = ddy * k, by0 - lat
    dx, dy = bx - ax, by - ay
    den = dx * dx + dy * dy
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(den == 0.0, 0.0, np.clip(-(ax * dx + ay * dy) / np.where(den == 0.0, 1.0, den), 0.0, 1.0))
    qx, qy = ax0 + (bx0 - ax0) * t, ay0 + (by0 - ay0) * t
    p1, p2 = lat * DEG, qy * DEG
    a = np.sin((p2 - p1) / 2) ** 2 + cos(p1) * np.cos(p2) * np.sin((qx - lon) * DEG / 2) ** 2
    return 2 * EARTH_R * np.arcsin(np.minimum(1.0, np.sqrt(a)))
