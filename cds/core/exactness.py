"""Which compiled filters are exactly their pushdowns (docs/decisions.md §G).

A filter's predicate holds only where its Query terms and ranges do (`cds.core.filter_pushdowns`: a
superset). For a plain conjunction of typed tests on indexed item fields the two are the same set, and a
backend that decided the terms and ranges exactly may skip the predicate. `covered` says so only when every
top-level conjunct is one of:

- `field == 'text'` or `field in [...]` on a string field: the predicate's `==` / set membership on the
  canonical value is the term's membership (a scalar tested several times: the sets intersect, as do tests);
- the same on a list field, once per field (two tests on one list may be met by different elements, while
  the term keeps only one of the sets);
- `field >= n`, `field <= n`, `field == n` on a number field, n a finite float: the predicate's comparison
  (false on a missing value, and on NaN) is the inclusive range's. Strict `<` / `>` are not (the range is
  inclusive), nor numbers a float cannot hold (the index compares float columns).

Anything else (catalog filters, offers, windows, status, negation, disjunction, raw JSON paths, literals of
another type than the field's) is not covered: the predicate runs.
"""

from __future__ import annotations

import math
from typing import Any

from cds.core.filter_fields import ITEM_FIELDS, names_of
from cds.core.filter_pushdowns import PUSH_ATTRS
from cds.core.filter_values import FLIP, kind_of
from cds.core.jsonpath_ast import And, Cmp, In, Lit, Path, RootQuery

_RANGE_OPS = ("==", ">=", "<=")


def covered(rq: RootQuery) -> bool:
    """Does the predicate of `rq` hold exactly when its pushdown terms and ranges do?"""
    if rq.target != "items" or rq.catalog_filter is not None or rq.filter is None:
        return False
    return covered_conjuncts(list(rq.filter.items) if isinstance(rq.filter, And) else [rq.filter])


def covered_conjuncts(conjuncts: list[Any]) -> bool:
    """`covered` for an item filter's top-level conjuncts (the filter of an items query without a catalog filter)."""
    lists: set[str] = set()
    for e in conjuncts:
        attr = _exact_test(e)
        if attr is None:
            return False
        if _ITEM_FIELDS_BY_ATTR[attr] == "list":
            if attr in lists:
                return False
            lists.add(attr)
    return True


def _exact_test(e: Any) -> str | None:
    """The item attribute of a conjunct that is exactly its pushdown, else None."""
    if isinstance(e, Cmp):
        op, a, b = e.op, e.left, e.right
        if isinstance(a, Lit):
            op, a, b = FLIP[op], b, a
        if not (isinstance(a, Path) and isinstance(b, Lit)):
            return None
        fld = _field(a)
        if fld is None:
            return None
        v = b.value
        if fld.kind in ("str", "list"):
            return fld.attr if op == "==" and isinstance(v, str) else None
        if fld.kind == "num" and op in _RANGE_OPS and kind_of(v) == "num" and _float_exact(v):
            return fld.attr
        return None
    if isinstance(e, In) and isinstance(e.left, Path):
        fld = _field(e.left)
        if fld is not None and fld.kind in ("str", "list"):
            return fld.attr
    return None


def _field(path: Path) -> Any:
    names = names_of(path)
    fld = ITEM_FIELDS.get(names) if names else None
    return fld if fld is not None and fld.attr in PUSH_ATTRS else None


def _float_exact(v: float) -> bool:
    try:
        return math.isfinite(v) and float(v) == v
    except OverflowError:         # an int beyond any float
        return False


_ITEM_FIELDS_BY_ATTR = {f.attr: f.kind for f in ITEM_FIELDS.values()}
