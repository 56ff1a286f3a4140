"""Matched items (hits) -> wire catalogs (the reply bodies around them: `cds.core.replies`).

`assemble_catalogs` keeps the order of `hits` (already ordered and capped by the matcher): one catalog per
(BPP, catalog id) in order of first appearance, items in hit order (docs/decisions.md §8, §20). Each catalog holds only
the matched items and the offers that cover at least one of them and are live now (TTL, docs/decisions.md §S). A live
status older than `status_fresh_s` is shown as "Unknown", never as what was last published.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable

import orjson

from cds.config import Settings
from cds.core.dialects import convert_catalog
from cds.core.fields import catalog_dialect
from cds.core.models import DIALECT_A, DIALECT_B
from cds.core.matching import offer_bounds, offer_live
from cds.core.documents import CatalogMeta, Hit, ItemDoc, OfferDoc, status_stale
from cds.core.jsoncache import ENTRY_OVERHEAD, JsonCache
from cds.core.normalize_read import STATUS_KEYS, attributes_of
from cds.core.rawjson import unpack

UNKNOWN_STATUS = "Unknown"


def _mark_status_unknown(item: dict) -> None:
    """Overwrite the published live-status field(s) of a decoded item with "Unknown" (upper case when the
    vocabulary is upper case, e.g. `ev:availability: AVAILABLE`)."""
    attrs = attributes_of(item)
    if attrs is None:
        return
    for key, value in attrs.items():
        if key.rsplit(":", 1)[-1] not in STATUS_KEYS:
            continue
        if isinstance(value, str):
            attrs[key] = UNKNOWN_STATUS.upper() if value.isupper() else UNKNOWN_STATUS
        elif isinstance(value, dict) and isinstance(value.get("code"), str):
            attrs[key] = {**value, "code": UNKNOWN_STATUS.upper() if value["code"].isupper() else UNKNOWN_STATUS}


# Rewrites and decodes are pure functions of the stored bytes, so they are cached by those bytes (the same bytes
# objects every time: a bytes object caches its hash), bounded (docs/decisions.md §G). Callers copy before changing.
_CACHED = 8192            # entries: at most a few MB of JSON


@lru_cache(maxsize=_CACHED)
def _status_unknown_json(stored: bytes) -> bytes:
    """An item's JSON, from its stored (possibly packed) bytes, with its live status shown as "Unknown"."""
    obj = orjson.loads(unpack(stored))
    _mark_status_unknown(obj)
    return orjson.dumps(obj)


@lru_cache(maxsize=_CACHED)
def _decoded_header(raw: bytes) -> dict:
    return orjson.loads(raw)


_NO_CACHE = JsonCache(0)
# Bytes a part holds besides its JSON (whose object header ENTRY_OVERHEAD counts): the part and its tuple (the
# document it holds, kept alive as long as the part, is counted by its stored bytes, the cache's key), and per
# offer shown its entry (a 6-tuple and its slot).
_PART_OVERHEAD = 110
_OFFER_OVERHEAD = 100

_Siblings = dict[int, tuple[list[OfferDoc], tuple]]     # id(doc.offers) -> (offers shown, their entries)


class _ItemPart:
    """What an item brings to any answer, derived once per document and kept in the JSON cache by its stored
    bytes (docs/decisions.md §G): its JSON and, per offer shown through it (one that names it, or names no
    item), `(id, lo, hi, exact, JSON, stored JSON)`. Live at `now` is `not (now < lo or now > hi)`
    (`matching.offer_bounds`) unless `exact` holds the offer, whose liveness `offer_live` decides (inactive,
    daily window). An offer's JSON is the cache's own entry, shared by the items that show it (`refresh`).
    `json` is the item's JSON as shown: with its live status rewritten to "Unknown" when `stale` (a part serves
    either: an item's status goes stale once, as time passes)."""

    __slots__ = ("doc", "stale", "json", "offers", "size", "held")

    def __init__(self, doc: ItemDoc, stale: bool, json_of: Callable[[bytes], bytes],
                 siblings: _Siblings) -> None:
        self.doc = doc              # a part serves only this document (equal bytes may be another one's)
        self.stale = stale
        self.json = _status_unknown_json(doc.raw) if stale else unpack(doc.raw)
        item_id = doc.item_id
        shown = [off for off in doc.offers if not off.item_ids or item_id in off.item_ids]
        # Items that show the very same offers (a station's connectors share their offer list, indexer.embedded
        # .compact) share one tuple, which an answer then reads once (`_contents`): by the list, among the
        # parts derived in one answer.
        same = siblings.get(id(doc.offers))
        if same is not None and len(same[0]) == len(shown) and all(a is b for a, b in zip(same[0], shown)):
            self.offers = same[1]
        else:
            self.offers = tuple(_offer_entry(off, json_of) for off in shown)
            siblings[id(doc.offers)] = (shown, self.offers)
        self.size = len(self.json) + _PART_OVERHEAD + _OFFER_OVERHEAD * len(shown)
        self.held = sum(len(js) + len(stored) + ENTRY_OVERHEAD for *_, js, stored in self.offers)

    def refresh(self, json_of: Callable[[bytes], bytes]) -> None:
        jsons = [json_of(entry[5]) for entry in self.offers]
        if any(js is not entry[4] for js, entry in zip(jsons, self.offers)):
            self.offers = tuple((*entry[:4], js, entry[5]) for entry, js in zip(self.offers, jsons))


def _offer_entry(off: OfferDoc, json_of: Callable[[bytes], bytes]) -> tuple:
    bounds = offer_bounds(off)
    lo, hi = bounds or (0.0, 0.0)
    return (off.id, lo, hi, off if bounds is None else None, json_of(off.raw), off.raw)


# The wire names of a catalog's fields that assembly sets, per dialect: its id, publisher id and URI, items, offers.
_FIELDS = {DIALECT_A: ("beckn:id", "beckn:bppId", "beckn:bppUri", "beckn:items", "beckn:offers"),
           DIALECT_B: ("id", "bppId", "bppUri", "resources", "offers")}


def _fields(dialect: str) -> tuple[str, str, str, str, str]:
    return _FIELDS[DIALECT_B if dialect == DIALECT_B else DIALECT_A]


def _framed(meta: CatalogMeta) -> dict:
    """The catalog's header (a fresh dict: only top-level keys change) with its id, publisher id and URI set."""
    header = dict(_decoded_header(meta.header)) if meta.header else {}
    id_key, bpp_key, uri_key, _, _ = _fields(meta.dialect)
    header.setdefault(id_key, meta.catalog_id)
    header[bpp_key] = meta.bpp_id
    if meta.bpp_uri:
        header[uri_key] = meta.bpp_uri
    return header


@lru_cache(maxsize=_CACHED)
def _frame(header: bytes, catalog_id: str, bpp_id: str, bpp_uri: str | None, dialect: str
           ) -> tuple[bytes, bytes] | None:
    """A catalog's serialised JSON around its items and offers, cut where they go: `head` ends with the opening
    of the item list, `middle` closes it and opens the offer list (the answer's only varying parts, each
    element's stored JSON, go between, comma-separated: docs/decisions.md §G). None when the header holds
    either list's key itself (the key would keep its place there), or when its keys make a stored B catalog
    read as A (`convert_catalog` would convert it): such a catalog is assembled as a dict."""
    framed = _framed(CatalogMeta(bpp_id=bpp_id, catalog_id=catalog_id, bpp_uri=bpp_uri, dialect=dialect,
                                 header=header))
    _, _, _, items_key, offers_key = _fields(dialect)
    if items_key in framed or offers_key in framed:
        return None
    if dialect == DIALECT_B and catalog_dialect({**framed, items_key: [], offers_key: []}) != DIALECT_B:
        return None
    # orjson writes a dict's keys in order and nothing else between them: this is exactly how it would write
    # the header with both lists assigned last (as `_catalog` does)
    head = orjson.dumps(framed)[:-1] + b",%s:[" % orjson.dumps(items_key)
    return head, b"],%s:[" % orjson.dumps(offers_key)


def _contents(items: list[ItemDoc], *, now: float, fresh_s: float, tz: Any, cache: JsonCache,
              siblings: _Siblings) -> tuple[list[bytes], list[bytes]]:
    """The JSON of a catalog's matched items (in hit order) and of the live offers they show (in order of
    their first showing item)."""
    body: list[bytes] = []
    offers: list[bytes] = []
    seen: set[str] = set()
    derived, json_of = cache.derived, cache.json
    last: tuple = ()
    for it in items:
        raw = it.raw
        stale = it.status is not None and status_stale(it.status_at, now, fresh_s)
        part = derived(raw)
        if part is None or part.doc is not it or part.stale is not stale:
            part = _ItemPart(it, stale, json_of, siblings)
            cache.keep(raw, part)
        body.append(part.json)
        if part.offers is last:         # the previous item's very offers: all seen already
            continue
        last = part.offers
        for oid, lo, hi, exact, js, _ in last:
            if oid in seen:
                continue
            seen.add(oid)               # shown or not, decided: liveness does not depend on the item
            if not (now < lo or now > hi) if exact is None else offer_live(exact, now, tz):
                offers.append(js)
    return body, offers


def _catalog(meta: CatalogMeta, body: list[bytes], offers: list[bytes], splice: bool) -> dict:
    header = _framed(meta)
    wrap = orjson.Fragment if splice else orjson.loads
    _, _, _, items_key, offers_key = _fields(meta.dialect)
    header[items_key], header[offers_key] = [wrap(b) for b in body], [wrap(b) for b in offers]
    return header


def assemble_catalogs(hits: list[Hit], *, dialect: str, now: float, settings: Settings,
                      splice: bool = False, cache: JsonCache | None = None) -> list[Any]:
    """Wire catalogs in the requested dialect for ordered, capped hits; `[]` for no hits. `splice`: a catalog
    that needs no conversion is returned as one `orjson.Fragment`, its serialised JSON built from the stored
    bytes (the same bytes as serialising it as a dict; only orjson can serialise the result).
    `cache`: the caller's cache of unpacked JSON (docs/decisions.md §G); without one every document is unpacked."""
    cache = cache if cache is not None else _NO_CACHE
    groups: dict[tuple[str, str], tuple[CatalogMeta, list[ItemDoc]]] = {}
    for h in hits:
        key = (h.item.bpp_id, h.item.catalog_id)
        if key not in groups:
            groups[key] = (h.catalog, [])
        groups[key][1].append(h.item)
    tz = settings.tz
    fresh_s = settings.status_fresh_s
    siblings: _Siblings = {}     # for parts derived now (_ItemPart)
    out: list[Any] = []
    for meta, items in groups.values():
        body, offers = _contents(items, now=now, fresh_s=fresh_s, tz=tz, cache=cache, siblings=siblings)
        same = meta.dialect == dialect
        frame = _frame(meta.header, meta.catalog_id, meta.bpp_id, meta.bpp_uri, meta.dialect) if splice and same \
            else None
        if frame is not None:
            out.append(orjson.Fragment(b"".join((frame[0], b",".join(body), frame[1], b",".join(offers), b"]}"))))
            continue
        cat = _catalog(meta, body, offers, splice and same)
        # a dialect-A catalog is A already (its "beckn:bppId" says so): converting it would return it as it is
        out.append(cat if same and dialect == DIALECT_A else convert_catalog(cat, dialect))
    return out
