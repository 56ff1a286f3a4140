"""The discover filter compiler: a parsed JSONPath filter (`cds.core.jsonpath`) -> a predicate over indexed items.

Compilation targets an indexed item (`ItemDoc` + `CatalogMeta` + now):
- known paths become attribute reads on the typed document (canonical vocabularies, status TTL);
- `availabilityWindow` tests run on the parsed windows with semantic time comparison, and the overlap /
  containment patterns (`startTime <= A && endTime >= B`) are evaluated with real interval logic
  against daily windows (docs/decisions.md §5, §16);
- offer predicates (`$.catalogs[*].offers[?(...)]`, or `@.offers[...]` inside an item filter) run on
  the offers live at `now`;
- any other path is evaluated exactly on the item's published JSON, decoded lazily.
Comparisons follow RFC 9535 typing (incompatible types never order), an array-valued operand matches if
any element matches (docs/decisions.md §6), and a missing field never matches, not even with `!=`.

Longer than most modules: one compiler over one grammar, with typed fast paths for every indexed field.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any, Callable

import orjson

from cds.core import budget, timeutil
from cds.core.errors import BecknError, jsonpath_error
from cds.core.jsonpath import parse
from cds.core.jsonpath_ast import (
    And, Cmp, Filter, Func, In, Index, Lit, Name, Not, Or, Path, RootQuery, SelfFilter, Slice, Test, Union, Wild,
)
from cds.core.path_names import raw_keys
from cds.core import vocab
from cds.core.documents import item_json, offer_json
# --- evaluation helpers ------------------------------------------------------------------------------


class Ctx:
    """Per-evaluation state: the document being tested, `now`, and lazily decoded JSON."""

    __slots__ = ("doc", "meta", "now", "tz", "_raw", "_offers", "_jsons")

    def __init__(self, doc: Any, meta: Any, now: float, tz: tzinfo) -> None:
        self.doc, self.meta, self.now, self.tz = doc, meta, now, tz
        self._raw: Any = _UNSET
        self._offers: Any = None
        self._jsons: dict[int, Any] | None = None

    def live_offers(self) -> list[Any]:
        if self._offers is None:
            self._offers = _live_offers()(self.doc, self.now, self.tz)
        return self._offers

    def json_of(self, obj: Any, raw: Callable[[Any], bytes]) -> Any:
        """`obj`'s JSON, decoded once per evaluation from `raw(obj)` (stored JSON may be packed: docs/decisions.md §P)."""
        if obj is self.doc:
            if self._raw is _UNSET:
                self._raw = _decode(raw(obj))
            return self._raw
        if self._jsons is None:
            self._jsons = {}
        key = id(obj)
        if key not in self._jsons:
            self._jsons[key] = _decode(raw(obj))
        return self._jsons[key]


_UNSET = object()
_MISSING = object()
_LIVE: list[Callable[..., list[Any]]] = []


def _live_offers() -> Callable[..., list[Any]]:
    if not _LIVE:
        from cds.core.matching import live_offers  # late: matching is the one definition of "live"

        _LIVE.append(live_offers)
    return _LIVE[0]


def _decode(raw: bytes) -> Any:
    if not raw:
        return {}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if v is True or v is False:
        return "bool"
    if isinstance(v, (int, float)):
        return "num"
    if isinstance(v, str):
        return "str"
    if isinstance(v, list):
        return "arr"
    if isinstance(v, dict):
        return "obj"
    return "other"


def _eq(a: Any, b: Any) -> bool:
    ka, kb = _kind(a), _kind(b)
    if ka != kb:
        return False
    if ka == "arr":
        return len(a) == len(b) and all(_eq(x, y) for x, y in zip(a, b))
    if ka == "obj":
        return a.keys() == b.keys() and all(_eq(a[k], b[k]) for k in a)
    return a == b


_ORDER = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
          "==": operator.eq, "!=": operator.ne}
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


def _cmp(op: str, a: Any, b: Any) -> bool:
    """RFC 9535 comparison of two present values."""
    if op == "==":
        return _eq(a, b)
    if op == "!=":
        return not _eq(a, b)
    ka = _kind(a)
    if ka != _kind(b) or ka not in ("num", "str"):
        return False
    return _ORDER[op](a, b)


# A time value: ("i", epoch seconds) for instants, ("t", local seconds of day) for times of day.
TimeVal = tuple[str, float]


@functools.lru_cache(maxsize=8192)
def _instant(s: str, tz: tzinfo) -> float | None:
    """`timeutil.parse_instant` (a pure function of its arguments), memoised: a filter compares the same few
    strings against every candidate, and one comparison can meet thousands of node pairs."""
    return timeutil.parse_instant(s, tz)


def time_value(s: Any, tz: tzinfo) -> TimeVal | None:
    if not isinstance(s, str) or not s[:1].isdigit():
        return None
    inst = _instant(s, tz) if len(s) <= 64 else None
    if inst is not None:
        return ("i", inst)
    tod = timeutil.daily_seconds_local(s, tz)
    if tod is not None:
        return ("t", tod)
    return None


def cmp_time(op: str, a: TimeVal, b: TimeVal, tz: tzinfo) -> bool:
    """Semantic time comparison; an instant against a time of day compares local times in `tz`."""
    (ka, va), (kb, vb) = a, b
    if ka != kb:
        if ka == "i":
            va = timeutil.local_seconds(va, tz)
        else:
            vb = timeutil.local_seconds(vb, tz)
    return _ORDER[op](va, vb)


def _expand(values: list[Any]) -> list[Any]:
    """docs/decisions.md §6: an array-valued operand stands for its elements."""
    if not any(isinstance(v, list) for v in values):
        return values
    out: list[Any] = []
    for v in values:
        if isinstance(v, list):
            out.extend(v)
        else:
            out.append(v)
    return out


def _children(node: Any) -> list[Any]:
    if isinstance(node, list):
        return node
    if isinstance(node, dict):
        return list(node.values())
    return []


def _member(node: Any, name: str) -> Any:
    for key in raw_keys(name):
        if key in node:
            return node[key]
    return _MISSING


# --- compiler -----------------------------------------------------------------------------------------

Pred = Callable[[Any, Ctx], bool]


@dataclass(frozen=True, slots=True)
class _Field:
    attr: str
    kind: str                                   # str | num | bool | list | status
    canon: Callable[[Any], Any] | None = None   # applied to string literals (vocabularies)
    typed_exists: bool = True                   # False: the typed default hides absence; test on JSON


@dataclass(frozen=True, slots=True)
class _Target:
    name: str
    fields: dict[tuple[str, ...], _Field]
    raw: Callable[[Any, Ctx], Any] | None       # the target's JSON, for paths that are not typed


_ITEM_FIELDS = {
    ("itemAttributes", "connectorType"): _Field("connector_type", "str", vocab.connector_type),
    ("itemAttributes", "maxPowerKW"): _Field("max_kw", "num"),
    ("itemAttributes", "minPowerKW"): _Field("min_kw", "num"),
    ("itemAttributes", "powerType"): _Field("power_type", "str", vocab.power_type),
    ("itemAttributes", "vehicleType"): _Field("vehicle_types", "list", vocab.vehicle_type),
    ("itemAttributes", "evseId"): _Field("evse_id", "str"),
    ("itemAttributes", "qrIdentifier"): _Field("qr", "str"),
    ("itemAttributes", "chargingStation", "id"): _Field("station_id", "str"),
    ("id",): _Field("item_id", "str"),
    ("provider", "id"): _Field("provider_id", "str"),
    ("provider", "descriptor", "name"): _Field("provider_name", "str"),
    ("itemAttributes", "parkingType"): _Field("parking_type", "str"),
    ("itemAttributes", "amenityFeature"): _Field("amenities", "list", vocab.upper),
    ("itemAttributes", "reservationSupported"): _Field("reservation", "bool"),
    ("itemAttributes", "chargingSpeed"): _Field("charging_speed", "str", vocab.upper),
    ("isActive",): _Field("is_active", "bool", typed_exists=False),
    ("itemAttributes", "stationStatus"): _Field("status", "status"),
    ("itemAttributes", "availability"): _Field("status", "status"),
}
_OFFER_FIELDS = {
    ("id",): _Field("id", "str"),
    ("price", "value"): _Field("price", "num"),
    ("price", "currency"): _Field("currency", "str"),
    ("price", "applicableQuantity", "unitCode"): _Field("unit", "str", vocab.upper),
    ("considerations", "considerationAttributes", "price"): _Field("price", "num"),
    ("considerations", "considerationAttributes", "priceCurrency"): _Field("currency", "str"),
    ("considerations", "considerationAttributes", "unitCode"): _Field("unit", "str", vocab.upper),
    ("offerAttributes", "tariffModel"): _Field("tariff_model", "str", vocab.upper),
    ("acceptedPaymentMethod",): _Field("payment_methods", "list", vocab.upper),
    ("items",): _Field("item_ids", "list"),
    ("isActive",): _Field("is_active", "bool", typed_exists=False),
}
_CATALOG_FIELDS = {
    ("id",): _Field("catalog_id", "str"),
    ("bppId",): _Field("bpp_id", "str"),
    ("bppUri",): _Field("bpp_uri", "str"),
    ("isActive",): _Field("is_active", "bool", typed_exists=False),
}
# ItemDoc attributes a backend can narrow on (Query.terms / Query.ranges), from ITEM and CATALOG fields.
_TERM_KINDS = ("str", "list")

ITEM = _Target("item", _ITEM_FIELDS, lambda d, ctx: ctx.json_of(d, item_json))
OFFER = _Target("offer", _OFFER_FIELDS, lambda o, ctx: ctx.json_of(o, offer_json))
CATALOG = _Target("catalog", _CATALOG_FIELDS, lambda m, ctx: ctx.json_of(m, _header))
WINDOW = _Target("window", {}, None)          # cur = (kind "i"|"t", start, end)
RAW = _Target("raw", {}, lambda j, ctx: j)    # cur = a JSON value


def _header(meta: Any) -> bytes:
    return meta.header

_START = {"startTime", "startDate", "start"}
_END = {"endTime", "endDate", "end"}


class _Fallback(Exception):
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


def _names(path: Path) -> tuple[str, ...] | None:
    if all(isinstance(s, Name) for s in path.segments):
        return tuple(s.name for s in path.segments)
    return None


def _split_filter(segs: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]]:
    """`[?(f)]`, `[*] ? (f)` or `? (f)` at the start of `segs` -> (f, rest); else (None, segs)."""
    i = 1 if segs and isinstance(segs[0], Wild) else 0
    if i < len(segs) and isinstance(segs[i], (Filter, SelfFilter)):
        return segs[i].expr, segs[i + 1:]
    return None, segs[i:]


class _Compiler:
    def __init__(self, tz: tzinfo, status_fresh_s: int) -> None:
        self.tz = tz
        self.fresh = status_fresh_s
        self.time_windows: list[tuple[float, float]] = []
        self.uses_ctx = False   # False: every test reads typed fields only, no per-document context needed

    # returns (predicate, cost) where cost orders conjuncts: 0 typed, 1 windows/offers, 2 JSON
    def pred(self, e: Any, t: _Target) -> tuple[Pred, int]:
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

    def conj(self, items: list[Any], t: _Target) -> tuple[Pred, int]:
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

    def _window_field(self, path: Any, t: _Target) -> str | None:
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

    def _window_cmp(self, e: Any, t: _Target) -> tuple[str, Path, Lit] | None:
        """A comparison `window.start|end OP time-literal`, normalised to (op, Path(field), Lit)."""
        if not isinstance(e, Cmp):
            return None
        op, a, b = e.op, e.left, e.right
        if isinstance(a, Lit):
            op, a, b = _FLIP[op], b, a
        fld = self._window_field(a, t)
        if fld is None or not isinstance(b, Lit) or time_value(b.value, self.tz) is None:
            return None
        return op, Path((Name("startTime" if fld == "start" else "endTime"),)), b

    def _window_pair(self, items: list[Any], t: _Target) -> tuple[Any, Any] | None:
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

    def window_exists(self, inner: Any, fallback: Path | None) -> tuple[Pred, int]:
        """Some availability window satisfies `inner` (a predicate over one window)."""
        try:
            f, _ = self.pred(inner, WINDOW)
        except _Fallback:
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

    def test(self, operand: Any, t: _Target) -> tuple[Pred, int]:
        if isinstance(operand, Func):  # only exists() is a test (the parser enforces it)
            return self.test(operand.args[0], t)
        if isinstance(operand, Lit):
            raise jsonpath_error(f"a literal ({operand.value!r}) is not a test")
        segs = operand.segments
        if t is WINDOW:
            if self._window_field(operand, t):
                return _const(True), 0
            raise _Fallback()
        if t is ITEM and segs and segs[0] == Name("availabilityWindow"):
            flt, rest = _split_filter(segs[1:])
            if flt is not None and not rest:
                return self.window_exists(flt, operand)
            if len(segs) == 1:
                return (lambda doc, ctx: bool(doc.windows or doc.daily_windows)), 0
        if t is ITEM and segs and segs[0] == Name("offers"):
            return self._offer_sub(segs, lambda p: Test(p) if p.segments else None)
        names = _names(operand)
        fld = t.fields.get(names) if names else None
        if fld is not None and fld.typed_exists:
            get = operator.attrgetter(fld.attr)
            if fld.kind == "list":
                return (lambda cur, ctx: bool(get(cur))), 0
            return (lambda cur, ctx: get(cur) is not None), 0
        return self.raw_test(operand, t), 2

    def raw_test(self, path: Path, t: _Target) -> Pred:
        get = self.getter(path, t)
        return lambda cur, ctx: bool(get(cur, ctx))

    def compare(self, op: str, a: Any, b: Any, t: _Target) -> tuple[Pred, int]:
        if isinstance(a, Lit) and not isinstance(b, Lit):
            op, a, b = _FLIP[op], b, a
        if isinstance(a, Path) and isinstance(b, Lit):
            if t is WINDOW:
                return self._window_point(op, a, b)
            if t is ITEM and self._window_field(a, t):
                wc = self._window_cmp(Cmp(op, a, b), t)
                if wc is not None:
                    return self.window_exists(Cmp(*wc), None)
            if t is ITEM and a.segments and a.segments[0] == Name("offers"):
                return self._offer_sub(a.segments, lambda p: Cmp(op, p, b))
            names = _names(a)
            fld = t.fields.get(names) if names else None
            if fld is not None:
                return self._typed_compare(fld, op, b.value), 0
        if t is WINDOW:
            raise _Fallback()
        ga, gb = self.getter(a, t), self.getter(b, t)
        tz = self.tz

        def fn(cur: Any, ctx: Ctx) -> bool:
            right = _expand(gb(cur, ctx))
            if not right:
                return False
            n = 0
            for x in _expand(ga(cur, ctx)):
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
                    if _cmp(op, x, y):
                        return True
            return False
        return fn, 2

    def _window_point(self, op: str, a: Path, b: Lit) -> tuple[Pred, int]:
        fld = self._window_field(a, WINDOW)
        lit = time_value(b.value, self.tz)
        if fld is None or lit is None:
            raise _Fallback()
        idx, tz = (1 if fld == "start" else 2), self.tz
        return (lambda w, ctx: cmp_time(op, (w[0], w[idx]), lit, tz)), 1

    def _status_fn(self) -> Callable[[Any, Ctx], str | None]:
        self.uses_ctx = True
        return self._status

    def _status(self, cur: Any, ctx: Ctx) -> str | None:
        s = cur.status
        if s is None:
            return None
        at = cur.status_at
        if at is None or ctx.now - at > self.fresh:
            return "unknown"  # docs/decisions.md §S: stale live status is unknown, never silently "available"
        return s.casefold()

    def _typed_compare(self, fld: _Field, op: str, v: Any) -> Pred:
        kind, vk = fld.kind, _kind(v)
        if kind == "status":
            status = self._status_fn()
            v = v.casefold() if isinstance(v, str) else v
            return lambda cur, ctx: (x := status(cur, ctx)) is not None and _cmp(op, x, v)
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
            cmp = _ORDER[op]
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
        cmp = _ORDER[op]
        return lambda cur, ctx: (x := get(cur)) is not None and cmp(x, v)

    def in_(self, e: In, t: _Target) -> tuple[Pred, int]:
        if isinstance(e.left, Path):
            names = _names(e.left)
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

    def getter(self, operand: Any, t: _Target) -> Callable[[Any, Ctx], list[Any]]:
        if isinstance(operand, Lit):
            val = [operand.value]
            return lambda cur, ctx: val
        if isinstance(operand, Func):
            return self._func_getter(operand, t)
        if t is WINDOW:
            raise _Fallback()
        segs = operand.segments
        if t is ITEM and segs and segs[0] == Name("offers"):
            self.uses_ctx = True
            walk = self._walker(segs[1:])
            return lambda doc, ctx: [n for o in ctx.live_offers() for n in walk([ctx.json_of(o, offer_json)], ctx)]
        names = _names(operand)
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
            raise _Fallback()
        self.uses_ctx = True
        raw, walk = t.raw, self._walker(segs)
        return lambda cur, ctx: walk([raw(cur, ctx)], ctx)

    def _func_getter(self, fn: Func, t: _Target) -> Callable[[Any, Ctx], list[Any]]:
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
        return lambda nodes, ctx: _walk(nodes, steps, ctx)


_MAX_NODES_PER_STEP = 10000


def _walk(nodes: list[Any], steps: list[tuple[str, Any]], ctx: Ctx) -> list[Any]:
    for kind, arg in steps:
        out: list[Any] = []
        if kind == "name":
            for n in nodes:
                if isinstance(n, dict):
                    v = _member(n, arg)
                    if v is not _MISSING:
                        out.append(v)
                elif isinstance(n, list):  # docs/decisions.md §6: an array addressed like an object
                    for el in n:
                        if isinstance(el, dict) and (v := _member(el, arg)) is not _MISSING:
                            out.append(v)
        elif kind == "wild":
            for n in nodes:
                out.extend(_children(n))
        elif kind == "index":
            for n in nodes:
                if isinstance(n, list) and -len(n) <= arg < len(n):
                    out.append(n[arg])
        elif kind == "slice":
            for n in nodes:
                if isinstance(n, list):
                    out.extend(n[arg])
        elif kind == "union":
            for n in nodes:
                for w in arg:
                    out.extend(w([n], ctx))
        elif kind == "filter":
            for n in nodes:
                out.extend(c for c in _children(n) if arg(c, ctx))
        else:  # SQL/JSON filter, lax mode: arrays are unwrapped
            for n in nodes:
                out.extend(c for c in (n if isinstance(n, list) else [n]) if arg(c, ctx))
        nodes = out[:_MAX_NODES_PER_STEP]
        if not nodes:
            break
        if len(nodes) > 256:
            budget.check()          # a walk over many nodes is charged to the request's work budget
    return nodes


# --- public API ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pushdowns:
    """Candidate narrowing for `cds.core.query.Query`; always a superset of the predicate's matches."""

    terms: dict[str, frozenset[str]] = field(default_factory=dict)
    ranges: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CompiledFilter:
    expression: str
    ast: RootQuery
    predicate: Callable[[Any, Any, float], bool]   # (ItemDoc, CatalogMeta, now) -> bool
    pushdowns: Pushdowns
    time_window: tuple[float, float] | None        # queried availability interval (UTC epoch), if any
    trivial: bool = False                          # selects every item (no condition at all)


def _conjuncts(e: Any) -> list[Any]:
    if e is None:
        return []
    return list(e.items) if isinstance(e, And) else [e]


def _pushdowns(rq: RootQuery) -> Pushdowns:
    """Terms/ranges from top-level AND-ed equality, `in` and range tests on indexed fields."""
    terms: dict[str, frozenset[str]] = {}
    ranges: dict[str, tuple[float | None, float | None]] = {}
    sources = [(c, _CATALOG_FIELDS) for c in _conjuncts(rq.catalog_filter)]
    if rq.target == "items":
        sources += [(c, _ITEM_FIELDS) for c in _conjuncts(rq.filter)]
    for e, fields in sources:
        if isinstance(e, Cmp):
            op, a, b = e.op, e.left, e.right
            if isinstance(a, Lit):
                op, a, b = _FLIP[op], b, a
            if not (isinstance(a, Path) and isinstance(b, Lit)):
                continue
            names = _names(a)
            fld = fields.get(names) if names else None
            if fld is None or fld.attr not in _PUSH_ATTRS:
                continue
            v = b.value
            if fld.kind in _TERM_KINDS and op == "==":
                vals = frozenset([fld.canon(v) if fld.canon else v]) if isinstance(v, str) else frozenset()
                _add_term(terms, fld, vals)
            elif fld.kind == "num" and op in ("==", "<", "<=", ">", ">=") and _kind(v) == "num":
                lo, hi = ranges.get(fld.attr, (None, None))
                if op in ("==", ">", ">="):
                    lo = v if lo is None else max(lo, v)
                if op in ("==", "<", "<="):
                    hi = v if hi is None else min(hi, v)
                ranges[fld.attr] = (lo, hi)
        elif isinstance(e, In) and isinstance(e.left, Path):
            names = _names(e.left)
            fld = fields.get(names) if names else None
            if fld is None or fld.attr not in _PUSH_ATTRS or fld.kind not in _TERM_KINDS:
                continue
            vals = frozenset(fld.canon(v) if fld.canon else v for v in e.values if isinstance(v, str))
            _add_term(terms, fld, vals)
    return Pushdowns(terms, ranges)


def _add_term(terms: dict[str, frozenset[str]], fld: "_Field", vals: frozenset[str]) -> None:
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
_PUSH_ATTRS = {
    "connector_type", "max_kw", "min_kw", "power_type", "vehicle_types", "evse_id", "qr", "station_id",
    "item_id", "provider_id", "provider_name", "parking_type", "amenities", "charging_speed",
    "catalog_id", "bpp_id",
}


def compile_filter(expression: str, *, tz: "tzinfo | str", status_fresh_s: int) -> CompiledFilter:
    """Compile a discover `filters.expression`; invalid or unsupported input -> SCH_INVALID_JSONPATH."""
    zone = timeutil.as_tz(tz)
    try:
        rq = parse(expression)
        comp = _Compiler(zone, status_fresh_s)
        cat_fn = comp.pred(rq.catalog_filter, CATALOG)[0] if rq.catalog_filter is not None else None
        if rq.target == "offers":
            item_fn: Pred | None = comp.offer_exists(rq.filter)[0]
        else:
            item_fn = comp.pred(rq.filter, ITEM)[0] if rq.filter is not None else None
        push = _pushdowns(rq)
    except BecknError:
        raise
    except _Fallback:
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
    return CompiledFilter(expression, rq, predicate, push, window, trivial)


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
