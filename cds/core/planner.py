"""Discover intent -> internal Query (filter, spatial, text, packs, origin, limit). All criteria AND."""

from __future__ import annotations

import functools
from typing import Protocol

from cds.core.errors import SCH_TYPE_NOT_SUPPORTED, schema_error
from cds.core.exactness import covered
from cds.core.filters import CompiledFilter, compile_filter
from cds.core.models import DiscoverIntent
from cds.core.packs import schema_packs
from cds.core.query import Query
from cds.core import budget
from cds.core.spatial import MAX_SPATIAL, build_spatials, origin_of
from cds.core.spatial_input import GeometryLimits, plain_positions
from cds.core.spatial_testers import SMALL_GRID_CELLS, grid_cells
from cds.core.text import query_terms

MAX_TEXT_LEN = 1024


class PlannerConfig(Protocol):
    """The values planning needs (the service's settings provide them)."""

    max_results: int
    timezone: str
    status_fresh_s: int


def text_tokens(text: str | None) -> tuple[str, ...]:
    """The analysed query terms of `text_search` (cds.core.text, docs/decisions.md §25), bounded."""
    if not text:
        return ()           # what query_terms gives, without analysing an empty string
    if len(text) > MAX_TEXT_LEN:
        raise schema_error(f"text_search is longer than {MAX_TEXT_LEN} characters", "message.text_search")
    return query_terms(text)


CHEAP_EXPRESSION = 512     # a filter at most this long compiles in well under a millisecond
CHEAP_LINE_VERTICES = 64   # lines (routes) of at most this many vertices in all, with a small segment grid


def cheap_to_plan(intent: DiscoverIntent) -> bool:
    """Planning this intent cannot take long (docs/decisions.md §24: it may run on the event loop): its
    geometries are points or short lines whose segment grid is small (a 64-vertex route plans in ~0.3 ms; a line
    across a continent with a narrow corridor needs a grid of up to 200,000 cells, over 100 ms; polygons may
    need a repair, ms even when small) and its filter is short or already compiled. Anything else plans in the
    work pool, whose thread hop an ACK would otherwise wait for."""
    vertices, cells = 0, 0
    for s in intent.spatial:
        g = s.geometry
        kind = g.get("type") if isinstance(g, dict) else None
        if kind == "LineString":
            segs = _segments(g.get("coordinates"))
            if segs is None:
                return False
            vertices += len(segs) + 1
            if vertices > CHEAP_LINE_VERTICES:
                return False
            cells += grid_cells(segs, s.distance_m or 0.0)
            if cells > SMALL_GRID_CELLS:
                return False
        elif kind != "Point":
            return False
    expr = intent.expression or ""
    return len(expr) <= CHEAP_EXPRESSION


def _segments(coords: object) -> list[tuple[tuple[float, float], tuple[float, float]]] | None:
    """A line's segments from its GeoJSON coordinates as sent, or None when they are not 2 to
    CHEAP_LINE_VERTICES plain positions (`spatial_input.plain_positions`: the pool then plans it, and reports
    what is wrong)."""
    if not isinstance(coords, list) or not 2 <= len(coords) <= CHEAP_LINE_VERTICES:
        return None
    pts = plain_positions(coords)
    return None if pts is None else list(zip(pts, pts[1:]))


@functools.lru_cache(maxsize=1024)
def _compiled(expression: str, timezone: str, status_fresh_s: int) -> tuple[CompiledFilter, bool]:
    """Apps repeat the same few filter shapes; a compiled filter is immutable (its only memo is
    keyed on the catalog and `now`), so one compilation serves every request that sends it.
    With it: is the filter exactly its pushdowns (`cds.core.exactness`)?"""
    compiled = compile_filter(expression, tz=timezone, status_fresh_s=status_fresh_s)
    return compiled, covered(compiled.ast)


_CACHED_CONTEXT_URLS = 4       # longer schema_contexts are rare: not cached (bounds the cache's memory)


@functools.lru_cache(maxsize=256)
def _packs(urls: tuple[str, ...]) -> frozenset[str] | None:
    return schema_packs(list(urls))


def _packs_of(urls: list[str]) -> frozenset[str] | None:
    """`schema_packs`, once per distinct short schema_context (apps send the same few; the result is immutable)."""
    if isinstance(urls, list) and len(urls) <= _CACHED_CONTEXT_URLS and all(isinstance(u, str) for u in urls):
        return _packs(tuple(urls))
    return schema_packs(urls)


def build_query(intent: DiscoverIntent, *, settings: PlannerConfig, limit: int | None = None) -> Query:
    cap = settings.max_results
    lim = cap if limit is None or limit <= 0 else min(limit, cap)

    compiled, exact = None, False
    budget.check()
    expr = (intent.expression or "").strip()
    if expr:
        if (intent.filter_type or "jsonpath").strip().lower() != "jsonpath":
            raise schema_error(f"filter type {intent.filter_type!r} is not supported (use jsonpath)",
                               "message.filters.type", SCH_TYPE_NOT_SUPPORTED)
        compiled, exact = _compiled(expr, settings.timezone, settings.status_fresh_s)

    if len(intent.spatial) > MAX_SPATIAL:
        raise schema_error(f"at most {MAX_SPATIAL} spatial constraints are allowed", "message.spatial")
    budget.check()
    filters = build_spatials(intent.spatial, GeometryLimits.of(settings))

    # Ordering origin: the first Point of a positive constraint; else the first positive constraint's
    # route start (LineString: first vertex) or area centroid (Polygon).
    positive = [f for f in filters if not getattr(f, "negate", False)]
    origin = None
    for f in positive:
        if f.geometry.geom_type == "Point":
            origin = (f.geometry.x, f.geometry.y)
            break
    if origin is None and positive:
        origin = origin_of(positive[0].geometry)

    return Query(
        spatial=filters,
        terms=compiled.pushdowns.terms if compiled else {},
        ranges=compiled.pushdowns.ranges if compiled else {},
        text=text_tokens(intent.text_search),
        packs=_packs_of(intent.schema_context),
        time_window=compiled.time_window if compiled else None,
        predicate=None if compiled is None or compiled.trivial else compiled.predicate,
        predicate_is_pushdowns=exact,
        window=compiled.window if compiled else None,
        origin=origin,
        limit=lim,
        expression=expr or None,
    )
