"""Pushdowns: the part of a filter a backend can decide from its index (terms and ranges on typed item fields),
always a superset of the predicate's matches (docs/decisions.md §S Matching). `cds.core.exactness` says when the
superset is exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cds.core.filter_fields import CATALOG_FIELDS, ITEM_FIELDS, TERM_KINDS, Field, names_of
from cds.core.filter_values import FLIP, kind_of
from cds.core.jsonpath_ast import And, Cmp, In, Lit, Path, RootQuery


@dataclass(frozen=True, slots=True)
class Pushdowns:
    """Candidate narrowing for `cds.core.query.Query`; always a superset of the predicate's matches."""

    terms: dict[str, frozenset[str]] = field(default_factory=dict)
    ranges: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)


def _conjuncts(e: Any) -> list[Any]:
    if e is None:
        return []
    return list(e.items) if isinstance(e, And) else [e]


def pushdowns_of(rq: RootQuery) -> Pushdowns:
    """Terms/ranges from top-level AND-ed equality, `in` and range tests on indexed fields."""
    terms: dict[str, frozenset[str]] = {}
    ranges: dict[str, tuple[float | None, float | None]] = {}
    sources = [(c, CATALOG_FIELDS) for c in _conjuncts(rq.catalog_filter)]
    if rq.target == "items":
        sources += [(c, ITEM_FIELDS) for c in _conjuncts(rq.filter)]
    for e, fields in sources:
        if isinstance(e, Cmp):
            op, a, b = e.op, e.left, e.right
            if isinstance(a, Lit):
                op, a, b = FLIP[op], b, a
            if not (isinstance(a, Path) and isinstance(b, Lit)):
                continue
            names = names_of(a)
            fld = fields.get(names) if names else None
            if fld is None or fld.attr not in PUSH_ATTRS:
                continue
            v = b.value
            if fld.kind in TERM_KINDS and op == "==":
                vals = frozenset([fld.canon(v) if fld.canon else v]) if isinstance(v, str) else frozenset()
                _add_term(terms, fld, vals)
            elif fld.kind == "num" and op in ("==", "<", "<=", ">", ">=") and kind_of(v) == "num":
                lo, hi = ranges.get(fld.attr, (None, None))
                if op in ("==", ">", ">="):
                    lo = v if lo is None else max(lo, v)
                if op in ("==", "<", "<="):
                    hi = v if hi is None else min(hi, v)
                ranges[fld.attr] = (lo, hi)
        elif isinstance(e, In) and isinstance(e.left, Path):
            names = names_of(e.left)
            fld = fields.get(names) if names else None
            if fld is None or fld.attr not in PUSH_ATTRS or fld.kind not in TERM_KINDS:
                continue
            vals = frozenset(fld.canon(v) if fld.canon else v for v in e.values if isinstance(v, str))
            _add_term(terms, fld, vals)
    return Pushdowns(terms, ranges)


def _add_term(terms: dict[str, frozenset[str]], fld: "Field", vals: frozenset[str]) -> None:
    """AND one more term test on `fld`. A scalar holds one value: the sets intersect. A list field matches
    when it contains one of the values, and one list can satisfy both tests ("contains A" and "contains B"):
    then either set alone is a superset of the conjunction, and the smaller one narrows more."""
    cur = terms.get(fld.attr)
    if cur is None:
        terms[fld.attr] = vals
    elif fld.kind == "list":
        terms[fld.attr] = min(cur, vals, key=len)
    else:
        terms[fld.attr] = cur & vals


# ItemDoc attributes that pushdowns may name (catalog fields map onto the item's copy of them).
PUSH_ATTRS = {
    "connector_type", "max_kw", "min_kw", "power_type", "vehicle_types", "evse_id", "qr", "station_id",
    "item_id", "provider_id", "provider_name", "parking_type", "amenities", "charging_speed",
    "catalog_id", "bpp_id",
}
