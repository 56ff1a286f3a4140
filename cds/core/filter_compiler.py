"""The filter compiler: a parsed JSONPath filter (`cds.core.jsonpath_ast`) -> predicates over indexed documents.

- known paths become attribute reads on the typed document (`cds.core.filter_fields`: canonical vocabularies,
  status TTL, docs/decisions.md §S Expiry);
- `availabilityWindow` tests run on the parsed windows with semantic time comparison, and the overlap /
  containment patterns (`startTime <= A && endTime >= B`) are evaluated with real interval logic
  against daily windows (docs/decisions.md §5, §16);
- offer predicates (`$.catalogs[*].offers[?(...)]`, or `@.offers[...]` inside an item filter) run on
  the offers live at `now`;
- any other path is evaluated exactly on the published JSON, decoded lazily (`cds.core.filter_values`).
A missing field never matches, not even with `!=`. Conjuncts are ordered cheapest first: typed, then windows and
offers, then JSON.
"""

from __future__ import annotations

import operator
from datetime import tzinfo
from typing import Any, Callable

from cds.core import budget, timeutil
from cds.core.documents import offer_json, status_stale
from cds.core.errors import jsonpath_error
from cds.core.filter_fields import ITEM, OFFER, RAW, WINDOW, Field, Target, names_of
from cds.core.filter_values import (
    FLIP, ORDER, Ctx, Pred, cmp_time, expand_arrays, kind_of, rfc_cmp, time_value, walk_nodes,
)
from cds.core.jsonpath_ast import (
    And, Cmp, Filter, Func, In, Index, Lit, Name, Not, Or, Path, SelfFilter, Slice, Test, Union, Wild,
)


_START = {"startTime", "startDate", "start"}
_END = {"endTime", "endDate", "end"}


class Fallback(Exception):
    """A sub-expression the typed evaluator cannot answer exactly; evaluate it on JSON instead."""


def _const(value: bool) -> Pred:
    return (lambda cur, ctx: True) if value else (lambda cur, ctx: False)


def _all(fns: list[Pred]) -> Pred:
    # nested pairs for short lists (cheaper per call than all(<generator>)), a loop for long ones
    if len(fns) == 1:
        return fns[0]
    if len(fns) > 4:
        def every(cur: Any, ctx: Ctx) -> bool:
            for f in fns:
                if not f(cur, ctx):
                    return False
            return True
        return every
    a, b = fns[0], _all(fns[1:])
    return lambda cur, ctx: a(cur, ctx) and b(cur, ctx)


def _any(fns: list[Pred]) -> Pred:
    if len(fns) == 1:
        return fns[0]
    if len(fns) > 4:
        def some(cur: Any, ctx: Ctx) -> bool:
            for f in fns:
                if f(cur, ctx):
                    return True
            return False
        return some
    a, b = fns[0], _any(fns[1:])
    return lambda cur, ctx: a(cur, ctx) or b(cur, ctx)


def _split_filter(segs: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]]:
    """`[?(f)]`, `[*] ? (f)` or `? (f)` at the start of `segs` -> (f, rest); else (None, segs)."""
    i = 1 if segs and isinstance(segs[0], Wild) else 0
    if i < len(segs) and isinstance(segs[i], (Filter, SelfFilter)):
        return segs[i].expr, segs[i + 1:]
    return None, segs[i:]


class Compiler:
    def __init__(self, tz: tzinfo, status_fresh_s: int) -> None:
        self.tz = tz
        self.fresh = status_fresh_s
        self.time_windows: list[tuple[float, float]] = []
        self.uses_ctx = False   # False: every test reads typed fields only, no per-document context needed

    # returns (predicate, cost) where cost orders conjuncts: 0 typed, 1 windows/offers, 2 JSON
    def pred(self, e: Any, t: Target) -> tuple[Pred, int]:
        if isinstance(e, And):
            return self.conj(list(e.items), t)
        if isinstance(e, Or):
            parts = [self.pred(x, t) for x in e.items]
            return _any([f for f, _ in parts]), max(c for _, c in parts)
        if isinstance(e, Not):
            f, c = self.pred(e.item, t)
            return (lambda cur, ctx: not f(cur, ctx)), c
        if isinstance(e, Cmp):
            return self.compare(e.op, e.left, e.right, t)
        if isinstance(e, In):
            return self.in_(e, t)
        if isinstance(e, Test):
            return self.test(e.operand, t)
        if isinstance(e, (Lit, Path, Func)):  # a bare operand nested in parentheses
            return self.test(e, t)
        raise jsonpath_error(f"unsupported filter element {type(e).__name__}")

    def conj(self, items: list[Any], t: Target) -> tuple[Pred, int]:
        fns: list[tuple[Pred, int]] = []
        if t is ITEM or t is WINDOW:
            pair = self._window_pair(items, t)
            if pair:
                for x in pair:
                    items.remove(x)
                if t is ITEM:  # DEG: sibling start/end tests on `availabilityWindow` mean one window
                    inner = And(tuple(Cmp(*self._window_cmp(x, t)) for x in pair))
                    fns.append(self.window_exists(inner, None))
                else:
                    fns.append(self._window_pattern(pair))
        fns.extend(self.pred(x, t) for x in items)
        fns.sort(key=lambda fc: fc[1])
        return _all([f for f, _ in fns]), max(c for _, c in fns)

    # --- availability windows ---

    def _window_field(self, path: Any, t: Target) -> str | None:
        if not isinstance(path, Path):
            return None
        segs = path.segments
        if t is ITEM:
            if not segs or segs[0] != Name("availabilityWindow"):
                return None
            segs = segs[2:] if len(segs) > 1 and isinstance(segs[1], Wild) else segs[1:]
        if len(segs) != 1 or not isinstance(segs[0], Name):
            return None
        name = segs[0].name
        return "start" if name in _START else "end" if name in _END else None

    def _window_cmp(self, e: Any, t: Target) -> tuple[str, Path, Lit] | None:
        """A comparison `window.start|end OP time-literal`, normalised to (op, Path(field), Lit)."""
        if not isinstance(e, Cmp):
            return None
        op, a, b = e.op, e.left, e.right
        if isinstance(a, Lit):
            op, a, b = FLIP[op], b, a
        fld = self._window_field(a, t)
        if fld is None or not isinstance(b, Lit) or time_value(b.value, self.tz) is None:
            return None
        return op, Path((Name("startTime" if fld == "start" else "endTime"),)), b

    def _window_pair(self, items: list[Any], t: Target) -> tuple[Any, Any] | None:
        """The overlap/containment pattern `start <= A && end >= B` among the conjuncts."""
        start = end = None
        for x in items:
            wc = self._window_cmp(x, t)
            if wc is None:
                continue
            op, path, lit = wc
            if path.segments[0].name == "startTime" and op in ("<=", "<") and start is None:
                start = (x, lit)
            elif path.segments[0].name == "endTime" and op in (">=", ">") and end is None:
                end = (x, lit)
        if start and end:
            ka = time_value(start[1].value, self.tz)
            kb = time_value(end[1].value, self.tz)
            if ka and kb and ka[0] == kb[0]:
                return start[0], end[0]
        return None

    def _window_pattern(self, pair: tuple[Any, Any]) -> tuple[Pred, int]:
        """Interval logic for `start <= X && end >= Y` against instant and daily windows."""
        tz = self.tz
        x_tv = time_value(self._window_cmp(pair[0], WINDOW)[2].value, tz)  # type: ignore[index]
        y_tv = time_value(self._window_cmp(pair[1], WINDOW)[2].value, tz)  # type: ignore[index]
        assert x_tv and y_tv
        kind, x, y = x_tv[0], x_tv[1], y_tv[1]
        tu = timeutil
        if kind == "i":
            # X >= Y: the window overlaps [Y, X]; X < Y: the window contains [X, Y].
            self.time_windows.append((min(x, y), max(x, y)))
            xw, yw = tu.wall_seconds(x, tz), tu.wall_seconds(y, tz)  # once per query, not per document

            def fn(w: Any, ctx: Ctx) -> bool:
                k, s, e = w
                if k == "i":
                    return s <= x and e >= y
                if xw >= yw:
                    return tu.overlaps_wall((s, e), yw, xw)
                return tu.contains_wall((s, e), xw, yw)
        else:
            xi, yi = int(x), int(y)

            def fn(w: Any, ctx: Ctx) -> bool:
                k, s, e = w
                if k == "t":
                    if xi > yi:
                        return tu.tod_overlaps((s, e), (yi, xi))
                    if xi < yi:
                        return tu.tod_contains((s, e), (xi, yi))
                    return tu.tod_has((s, e), xi)
                ws, we = tu.wall_seconds(s, tz), tu.wall_seconds(e, tz)
                if xi > yi:
                    return tu.overlaps_wall((yi, xi), ws, we)
                if xi < yi:
                    return tu.within_wall((xi, yi), ws, we)
                return tu.point_in_wall(xi, ws, we)
        return fn, 1

    def top_window(self, e: Any) -> tuple[float, float, list[Any]] | None:
        """The instants (X, Y) of an overlap/containment pattern `start <= X && end >= Y` that `pred(e, ITEM)`
        compiles as one conjunct of item filter `e` (`_window_pattern`, instant literals), with the other
        conjuncts; None when there is none. (A search may decide that conjunct for many items at once:
        docs/decisions.md §G "windows".)"""
        items = list(e.items) if isinstance(e, And) else [e]
        pair = self._window_pair(items, ITEM)          # the sibling form, as `conj` finds it
        if pair is None:
            for x in items:
                operand = x.operand if isinstance(x, Test) else x
                if not isinstance(operand, Path) or not operand.segments:
                    continue
                if operand.segments[0] != Name("availabilityWindow"):
                    continue
                flt, rest = _split_filter(operand.segments[1:])
                if rest or not isinstance(flt, And) or len(flt.items) != 2:
                    continue
                inner = self._window_pair(list(flt.items), WINDOW)
                if inner is not None:
                    pair, t = inner, WINDOW
                    items = [y for y in items if y is not x]
                    break
            else:
                return None
        else:
            t = ITEM
            items = [y for y in items if y is not pair[0] and y is not pair[1]]
        x_tv = time_value(self._window_cmp(pair[0], t)[2].value, self.tz)  # type: ignore[index]
        y_tv = time_value(self._window_cmp(pair[1], t)[2].value, self.tz)  # type: ignore[index]
        if not x_tv or not y_tv or x_tv[0] != "i":
            return None
        return x_tv[1], y_tv[1], items

    def window_exists(self, inner: Any, fallback: Path | None) -> tuple[Pred, int]:
        """Some availability window satisfies `inner` (a predicate over one window)."""
        try:
            f, _ = self.pred(inner, WINDOW)
        except Fallback:
            path = fallback or Path((Name("availabilityWindow"), Filter(inner)))
            return self.raw_test(path, ITEM), 2

        def fn(doc: Any, ctx: Ctx) -> bool:
            for s, e in doc.windows:
                if f(("i", s, e), ctx):
                    return True
            for s, e in doc.daily_windows:
                if f(("t", s, e), ctx):
                    return True
            return False
        return fn, 1

    # --- offers ---

    def offer_exists(self, inner: Any | None) -> tuple[Pred, int]:
        """Some offer live at `now` satisfies `inner` (None: any live offer)."""
        self.uses_ctx = True
        if inner is None:
            return (lambda doc, ctx: bool(ctx.live_offers())), 1
        f, c = self.pred(inner, OFFER)
        return (lambda doc, ctx: any(f(o, ctx) for o in ctx.live_offers())), max(c, 1)

    def _offer_sub(self, segs: tuple[Any, ...], make: Callable[[Path], Any]) -> tuple[Pred, int]:
        """`@.offers...` inside an item filter: rewrite onto the offer target."""
        flt, rest = _split_filter(segs[1:])
        parts = [flt] if flt is not None else []
        if rest or flt is None:
            node = make(Path(rest))
            if node is not None:
                parts.append(node)
        return self.offer_exists(None if not parts else parts[0] if len(parts) == 1 else And(tuple(parts)))

    # --- tests, comparisons ---

    def test(self, operand: Any, t: Target) -> tuple[Pred, int]:
        if isinstance(operand, Func):  # only exists() is a test (the parser enforces it)
            return self.test(operand.args[0], t)
        if isinstance(operand, Lit):
            raise jsonpath_error(f"a literal ({operand.value!r}) is not a test")
        segs = operand.segments
        if t is WINDOW:
            if self._window_field(operand, t):
                return _const(True), 0
            raise Fallback()
        if t is ITEM and segs and segs[0] == Name("availabilityWindow"):
            flt, rest = _split_filter(segs[1:])
            if flt is not None and not rest:
                return self.window_exists(flt, operand)
            if len(segs) == 1:
                return (lambda doc, ctx: bool(doc.windows or doc.daily_windows)), 0
        if t is ITEM and segs and segs[0] == Name("offers"):
            return self._offer_sub(segs, lambda p: Test(p) if p.segments else None)
        names = names_of(operand)
        fld = t.fields.get(names) if names else None
        if fld is not None and fld.typed_exists:
            get = operator.attrgetter(fld.attr)
            if fld.kind == "list":
                return (lambda cur, ctx: bool(get(cur))), 0
            return (lambda cur, ctx: get(cur) is not None), 0
        return self.raw_test(operand, t), 2

    def raw_test(self, path: Path, t: Target) -> Pred:
        get = self.getter(path, t)
        return lambda cur, ctx: bool(get(cur, ctx))

    def compare(self, op: str, a: Any, b: Any, t: Target) -> tuple[Pred, int]:
        if isinstance(a, Lit) and not isinstance(b, Lit):
            op, a, b = FLIP[op], b, a
        if isinstance(a, Path) and isinstance(b, Lit):
            if t is WINDOW:
                return self._window_point(op, a, b)
            if t is ITEM and self._window_field(a, t):
                wc = self._window_cmp(Cmp(op, a, b), t)
                if wc is not None:
                    return self.window_exists(Cmp(*wc), None)
            if t is ITEM and a.segments and a.segments[0] == Name("offers"):
                return self._offer_sub(a.segments, lambda p: Cmp(op, p, b))
            names = names_of(a)
            fld = t.fields.get(names) if names else None
            if fld is not None:
                return self._typed_compare(fld, op, b.value), 0
        if t is WINDOW:
            raise Fallback()
        ga, gb = self.getter(a, t), self.getter(b, t)
        tz = self.tz

        def fn(cur: Any, ctx: Ctx) -> bool:
            right = expand_arrays(gb(cur, ctx))
            if not right:
                return False
            n = 0
            for x in expand_arrays(ga(cur, ctx)):
                n += len(right)
                if n > 4096:        # node lists can meet in millions of pairs: the work budget bounds them
                    n = 0
                    budget.check()
                for y in right:
                    if isinstance(x, str) and isinstance(y, str):
                        tx, ty = time_value(x, tz), time_value(y, tz)
                        if tx is not None and ty is not None:
                            if cmp_time(op, tx, ty, tz):
                                return True
                            continue
                    if rfc_cmp(op, x, y):
                        return True
            return False
        return fn, 2

    def _window_point(self, op: str, a: Path, b: Lit) -> tuple[Pred, int]:
        fld = self._window_field(a, WINDOW)
        lit = time_value(b.value, self.tz)
        if fld is None or lit is None:
            raise Fallback()
        idx, tz = (1 if fld == "start" else 2), self.tz
        return (lambda w, ctx: cmp_time(op, (w[0], w[idx]), lit, tz)), 1

    def _status_fn(self) -> Callable[[Any, Ctx], str | None]:
        self.uses_ctx = True
        return self._status

    def _status(self, cur: Any, ctx: Ctx) -> str | None:
        s = cur.status
        if s is None:
            return None
        if status_stale(cur.status_at, ctx.now, self.fresh):
            return "unknown"  # docs/decisions.md §S: stale live status is unknown, never silently "available"
        return s.casefold()

    def _typed_compare(self, fld: Field, op: str, v: Any) -> Pred:
        kind, vk = fld.kind, kind_of(v)
        if kind == "status":
            status = self._status_fn()
            v = v.casefold() if isinstance(v, str) else v
            return lambda cur, ctx: (x := status(cur, ctx)) is not None and rfc_cmp(op, x, v)
        if vk == "str" and fld.canon is not None:
            v = fld.canon(v)
        get = operator.attrgetter(fld.attr)
        want = {"str": "str", "list": "str", "num": "num", "bool": "bool"}[kind]
        if kind == "list":
            if op == "==":
                return (lambda cur, ctx: v in get(cur)) if vk == want else _const(False)
            if op == "!=":
                return lambda cur, ctx: any(x != v for x in get(cur))
            if vk != want:
                return _const(False)
            cmp = ORDER[op]
            return lambda cur, ctx: any(cmp(x, v) for x in get(cur))
        if op == "==":
            if vk != want:
                return _const(False)
            if kind == "bool":
                return lambda cur, ctx: get(cur) is v
            return lambda cur, ctx: get(cur) == v
        if op == "!=":
            if vk != want:
                return lambda cur, ctx: get(cur) is not None
            return lambda cur, ctx: (x := get(cur)) is not None and x != v
        if vk != want or kind == "bool":
            return _const(False)
        cmp = ORDER[op]
        return lambda cur, ctx: (x := get(cur)) is not None and cmp(x, v)

    def in_(self, e: In, t: Target) -> tuple[Pred, int]:
        if isinstance(e.left, Path):
            names = names_of(e.left)
            fld = t.fields.get(names) if names else None
            if fld is not None and fld.kind in ("str", "list", "status"):
                vals = [v for v in e.values if isinstance(v, str)]
                if fld.kind == "status":
                    sset = frozenset(v.casefold() for v in vals)
                    status = self._status_fn()
                    return (lambda cur, ctx: status(cur, ctx) in sset), 0
                vset = frozenset(fld.canon(v) if fld.canon else v for v in vals)
                get = operator.attrgetter(fld.attr)
                if fld.kind == "list":
                    return (lambda cur, ctx: not vset.isdisjoint(get(cur))), 0
                return (lambda cur, ctx: get(cur) in vset), 0
        parts = [self.compare("==", e.left, Lit(v), t) for v in e.values]
        if not parts:
            return _const(False), 0
        return _any([f for f, _ in parts]), max(c for _, c in parts)

    # --- operand getters (node lists) ---

    def getter(self, operand: Any, t: Target) -> Callable[[Any, Ctx], list[Any]]:
        if isinstance(operand, Lit):
            val = [operand.value]
            return lambda cur, ctx: val
        if isinstance(operand, Func):
            return self._func_getter(operand, t)
        if t is WINDOW:
            raise Fallback()
        segs = operand.segments
        if t is ITEM and segs and segs[0] == Name("offers"):
            self.uses_ctx = True
            walk = self._walker(segs[1:])
            return lambda doc, ctx: [n for o in ctx.live_offers() for n in walk([ctx.json_of(o, offer_json)], ctx)]
        names = names_of(operand)
        fld = t.fields.get(names) if names else None
        if fld is not None and (fld.typed_exists or fld.kind != "bool"):
            if fld.kind == "status":
                status = self._status_fn()
                return lambda cur, ctx: [] if (x := status(cur, ctx)) is None else [x]
            get = operator.attrgetter(fld.attr)
            if fld.kind == "list":
                return lambda cur, ctx: [x] if (x := get(cur)) else []
            return lambda cur, ctx: [] if (x := get(cur)) is None else [x]
        if t.raw is None:
            raise Fallback()
        self.uses_ctx = True
        raw, walk = t.raw, self._walker(segs)
        return lambda cur, ctx: walk([raw(cur, ctx)], ctx)

    def _func_getter(self, fn: Func, t: Target) -> Callable[[Any, Ctx], list[Any]]:
        inner = self.getter(fn.args[0], t)
        if fn.name == "length":
            def length(cur: Any, ctx: Ctx) -> list[Any]:
                nodes = inner(cur, ctx)
                if len(nodes) == 1 and isinstance(nodes[0], (str, list, dict)):
                    return [len(nodes[0])]
                return []
            return length
        if fn.name == "count":
            return lambda cur, ctx: [len(inner(cur, ctx))]
        if fn.name == "exists":
            return lambda cur, ctx: [bool(inner(cur, ctx))]
        return lambda cur, ctx: nodes if len(nodes := inner(cur, ctx)) == 1 else []  # value()

    def _walker(self, segs: tuple[Any, ...]) -> Callable[[list[Any], Ctx], list[Any]]:
        steps: list[tuple[str, Any]] = []
        for s in segs:
            if isinstance(s, Name):
                steps.append(("name", s.name))
            elif isinstance(s, Wild):
                steps.append(("wild", None))
            elif isinstance(s, Index):
                steps.append(("index", s.index))
            elif isinstance(s, Slice):
                steps.append(("slice", slice(s.start, s.stop, s.step)))
            elif isinstance(s, Union):
                steps.append(("union", [self._walker((x,)) for x in s.items]))
            elif isinstance(s, Filter):
                steps.append(("filter", self.pred(s.expr, RAW)[0]))
            elif isinstance(s, SelfFilter):
                steps.append(("self", self.pred(s.expr, RAW)[0]))
        return lambda nodes, ctx: walk_nodes(nodes, steps, ctx)
