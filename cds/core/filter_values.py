"""What a compiled filter's predicates evaluate with: the per-document context (`Ctx`), RFC 9535 value
semantics and the walk of a path over published JSON. `cds.core.filter_compiler` builds predicates from these.

Comparisons follow RFC 9535 typing (incompatible types never order); times compare semantically, an instant
against a time of day in the network's zone (docs/decisions.md §5, §16); an array-valued operand stands for its
elements (docs/decisions.md §6); a missing member is `MISSING`, never None.
"""

from __future__ import annotations

import functools
import operator
from datetime import tzinfo
from typing import Any, Callable

import orjson

from cds.core import budget, timeutil
from cds.core.path_names import raw_keys


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
                self._raw = decode_json(raw(obj))
            return self._raw
        if self._jsons is None:
            self._jsons = {}
        key = id(obj)
        if key not in self._jsons:
            self._jsons[key] = decode_json(raw(obj))
        return self._jsons[key]


_UNSET = object()
MISSING = object()
_LIVE: list[Callable[..., list[Any]]] = []


def _live_offers() -> Callable[..., list[Any]]:
    if not _LIVE:
        from cds.core.matching import live_offers  # late: matching is the one definition of "live"

        _LIVE.append(live_offers)
    return _LIVE[0]


def decode_json(raw: bytes) -> Any:
    if not raw:
        return {}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}


def kind_of(v: Any) -> str:
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


def rfc_eq(a: Any, b: Any) -> bool:
    ka, kb = kind_of(a), kind_of(b)
    if ka != kb:
        return False
    if ka == "arr":
        return len(a) == len(b) and all(rfc_eq(x, y) for x, y in zip(a, b))
    if ka == "obj":
        return a.keys() == b.keys() and all(rfc_eq(a[k], b[k]) for k in a)
    return a == b


ORDER = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
         "==": operator.eq, "!=": operator.ne}
FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


def rfc_cmp(op: str, a: Any, b: Any) -> bool:
    """RFC 9535 comparison of two present values."""
    if op == "==":
        return rfc_eq(a, b)
    if op == "!=":
        return not rfc_eq(a, b)
    ka = kind_of(a)
    if ka != kind_of(b) or ka not in ("num", "str"):
        return False
    return ORDER[op](a, b)


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
    return ORDER[op](va, vb)


def expand_arrays(values: list[Any]) -> list[Any]:
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


def children(node: Any) -> list[Any]:
    if isinstance(node, list):
        return node
    if isinstance(node, dict):
        return list(node.values())
    return []


def member(node: Any, name: str) -> Any:
    for key in raw_keys(name):
        if key in node:
            return node[key]
    return MISSING


# A predicate of a compiled filter over the current node (item, offer, catalog, window or JSON value).
Pred = Callable[[Any, Ctx], bool]


_MAX_NODES_PER_STEP = 10000


def walk_nodes(nodes: list[Any], steps: list[tuple[str, Any]], ctx: Ctx) -> list[Any]:
    for kind, arg in steps:
        out: list[Any] = []
        if kind == "name":
            for n in nodes:
                if isinstance(n, dict):
                    v = member(n, arg)
                    if v is not MISSING:
                        out.append(v)
                elif isinstance(n, list):  # docs/decisions.md §6: an array addressed like an object
                    for el in n:
                        if isinstance(el, dict) and (v := member(el, arg)) is not MISSING:
                            out.append(v)
        elif kind == "wild":
            for n in nodes:
                out.extend(children(n))
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
                out.extend(c for c in children(n) if arg(c, ctx))
        else:  # SQL/JSON filter, lax mode: arrays are unwrapped
            for n in nodes:
                out.extend(c for c in (n if isinstance(n, list) else [n]) if arg(c, ctx))
        nodes = out[:_MAX_NODES_PER_STEP]
        if not nodes:
            break
        if len(nodes) > 256:
            budget.check()          # a walk over many nodes is charged to the request's work budget
    return nodes
