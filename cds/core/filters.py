"""Discover filters: `compile_filter` turns a `filters.expression` into a `CompiledFilter` - the predicate over
(item, catalog header, now) and the pushdowns that narrow candidates (docs/decisions.md §S Matching, §24).

Parsing is `cds.core.jsonpath`, predicates are built by `cds.core.filter_compiler` from the typed fields of
`cds.core.filter_fields` and the value semantics of `cds.core.filter_values`; pushdowns are
`cds.core.filter_pushdowns`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo
from typing import Any, Callable

from cds.core import timeutil
from cds.core.errors import BecknError, jsonpath_error
from cds.core.exactness import covered_conjuncts
from cds.core.filter_compiler import Compiler, Fallback
from cds.core.filter_fields import CATALOG, ITEM
from cds.core.filter_pushdowns import Pushdowns, pushdowns_of
from cds.core.filter_values import Ctx, Pred
from cds.core.jsonpath import parse
from cds.core.jsonpath_ast import RootQuery
from cds.core.timevec import WindowTerm


@dataclass(frozen=True, slots=True)
class CompiledFilter:
    expression: str
    ast: RootQuery
    predicate: Callable[[Any, Any, float], bool]   # (ItemDoc, CatalogMeta, now) -> bool
    pushdowns: Pushdowns
    time_window: tuple[float, float] | None        # queried availability interval (UTC epoch), if any
    trivial: bool = False                          # selects every item (no condition at all)
    window: WindowTerm | None = None               # an availability-window conjunct a search may decide vectorised


def compile_filter(expression: str, *, tz: "tzinfo | str", status_fresh_s: int) -> CompiledFilter:
    """Compile a discover `filters.expression`; invalid or unsupported input -> SCH_INVALID_JSONPATH."""
    zone = timeutil.as_tz(tz)
    try:
        rq = parse(expression)
        comp = Compiler(zone, status_fresh_s)
        cat_fn = comp.pred(rq.catalog_filter, CATALOG)[0] if rq.catalog_filter is not None else None
        if rq.target == "offers":
            item_fn: Pred | None = comp.offer_exists(rq.filter)[0]
        else:
            item_fn = comp.pred(rq.filter, ITEM)[0] if rq.filter is not None else None
        push = pushdowns_of(rq)
        term = _window_term(comp, rq)
    except BecknError:
        raise
    except Fallback:
        raise jsonpath_error("invalid JSONPath filter: unsupported use of availabilityWindow") from None
    except (RecursionError, ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
        raise jsonpath_error(f"invalid JSONPath filter: {type(e).__name__}") from None

    memo: list[Any] = [None]  # catalog predicate memo: one (meta, now, result) tuple, replaced whole

    if cat_fn is None and item_fn is not None and not comp.uses_ctx:
        fast = item_fn

        def predicate(doc: Any, meta: Any, now: float) -> bool:
            return fast(doc, None)  # type: ignore[arg-type]
    else:
        predicate = _full_predicate(cat_fn, item_fn, memo, zone)

    window = comp.time_windows[0] if comp.time_windows else None
    trivial = cat_fn is None and item_fn is None
    return CompiledFilter(expression, rq, predicate, push, window, trivial, term)


def _window_term(comp: Compiler, rq: RootQuery) -> WindowTerm | None:
    if rq.target != "items" or rq.filter is None:
        return None
    found = comp.top_window(rq.filter)
    if found is None:
        return None
    x, y, rest = found
    return WindowTerm(x, y, timeutil.wall_seconds(x, comp.tz), timeutil.wall_seconds(y, comp.tz),
                      rq.catalog_filter is None and covered_conjuncts(rest))


def _full_predicate(cat_fn: Pred | None, item_fn: Pred | None, memo: list[Any], zone: tzinfo
                    ) -> Callable[[Any, Any, float], bool]:
    def predicate(doc: Any, meta: Any, now: float) -> bool:
        ctx = Ctx(doc, meta, now, zone)
        if cat_fn is not None:
            # one tuple read and one tuple write: safe when the same compiled filter runs in several threads
            # (the loop and the work pool) at once
            m = memo[0]
            if m is None or m[0] is not meta or m[1] != now:
                m = (meta, now, cat_fn(meta, ctx))
                memo[0] = m
            if not m[2]:
                return False
        return item_fn is None or item_fn(doc, ctx)
    return predicate
