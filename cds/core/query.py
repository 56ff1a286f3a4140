"""The internal query: what a discover request asks for, independent of dialect and backend.

Built by `cds.core.planner.build_query` from a parsed discover intent; consumed by storage backends
(for candidate narrowing) and by `cds.core.matching` (for the exact answer).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

    from cds.core.documents import CatalogMeta, ItemDoc
    from cds.core.timevec import WindowTerm


@dataclass(frozen=True, slots=True)
class SpatialFilter:
    """One spatial constraint on the item's station location."""

    op: str                                  # "dwithin" | "within" | "intersects" | "contains" | "disjoint" ...
    geometry: "BaseGeometry"                 # shapely geometry, lon/lat (EPSG:4326)
    distance_m: float = 0.0                  # for dwithin
    # lon/lat envelope (min_lon, min_lat, max_lon, max_lat) that contains every matching point,
    # already widened by distance_m; None when the op cannot be bounded (e.g. disjoint).
    bbox: tuple[float, float, float, float] | None = None


@dataclass(frozen=True, slots=True)
class Query:
    spatial: tuple[SpatialFilter, ...] = ()
    # Candidate-narrowing pushdowns. Keys are ItemDoc attribute names. Each is a *superset* of
    # the true matches: an item can only match if its attribute value (or, for list attributes,
    # one of its elements) is in the set / inside the inclusive range (None = open end).
    terms: Mapping[str, frozenset[str]] = field(default_factory=dict)
    ranges: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)
    text: tuple[str, ...] = ()               # analysed query terms (cds.core.text); each in ItemDoc.terms
    packs: frozenset[str] | None = None      # attribute-pack names from schema_context, None = any
    time_window: tuple[float, float] | None = None  # the request asks about this interval (UTC epoch)
    # Exact evaluation of the JSONPath filter expression (None = no filter).
    predicate: "Callable[[ItemDoc, CatalogMeta, float], bool] | None" = None
    # The predicate holds exactly when the terms and ranges do (cds.core.exactness): a backend that decided
    # them exactly need not run it (docs/decisions.md §G).
    predicate_is_pushdowns: bool = False
    # A conjunct of the predicate a search may decide for many items at once (cds.core.timevec), if any.
    window: "WindowTerm | None" = None
    origin: tuple[float, float] | None = None  # lon, lat used for nearest-first ordering
    limit: int = 100
    expression: str | None = None            # the original expression, for logs and debugging
