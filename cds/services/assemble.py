"""Matched items (hits) -> wire catalogs (the reply bodies around them: `cds.core.replies`).

`assemble_catalogs` keeps the order of `hits` (already ordered and capped by the matcher): one catalog per
(BPP, catalog id) in order of first appearance, items in hit order (docs/decisions.md §8, §20). Each catalog holds only
the matched items and the offers that cover at least one of them and are live now (TTL, docs/decisions.md §S). A live
status older than `status_fresh_s` is shown as "Unknown", never as what was last published.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson

from cds.config import Settings
from cds.core.dialects import convert_catalog
from cds.core.models import DIALECT_A, DIALECT_B
from cds.core.matching import offer_live
from cds.core.documents import CatalogMeta, Hit, ItemDoc, status_stale
from cds.core.jsoncache import JsonCache
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


def _catalog(meta: CatalogMeta, items: list[ItemDoc], *, now: float, settings: Settings, tz: Any, splice: bool,
             cache: JsonCache) -> dict:
    header = dict(_decoded_header(meta.header)) if meta.header else {}     # only top-level keys change
    wrap = orjson.Fragment if splice else orjson.loads
    json_of = cache.json
    fresh_s = settings.status_fresh_s
    body: list[Any] = []
    offers: list[Any] = []
    seen: set[str] = set()
    for it in items:            # one pass: items in hit order, offers in order of their first showing item
        raw = it.raw
        stale = it.status is not None and status_stale(it.status_at, now, fresh_s)
        body.append(wrap(_status_unknown_json(raw) if stale else json_of(raw)))
        if not it.offers:
            continue
        item_id = it.item_id
        for off in it.offers:
            # an offer is shown only through an item it names (empty item_ids: attached by its item alone)
            oid = off.id
            if oid in seen or (off.item_ids and item_id not in off.item_ids):
                continue
            seen.add(oid)               # shown or not, decided: liveness does not depend on the item
            if offer_live(off, now, tz):
                offers.append(wrap(json_of(off.raw)))
    if meta.dialect == DIALECT_B:
        header.setdefault("id", meta.catalog_id)
        header["bppId"] = meta.bpp_id
        if meta.bpp_uri:
            header["bppUri"] = meta.bpp_uri
        header["resources"], header["offers"] = body, offers
    else:
        header.setdefault("beckn:id", meta.catalog_id)
        header["beckn:bppId"] = meta.bpp_id
        if meta.bpp_uri:
            header["beckn:bppUri"] = meta.bpp_uri
        header["beckn:items"], header["beckn:offers"] = body, offers
    return header


def assemble_catalogs(hits: list[Hit], *, dialect: str, now: float, settings: Settings,
                      splice: bool = False, cache: JsonCache | None = None) -> list[dict]:
    """Wire catalogs in the requested dialect for ordered, capped hits; `[]` for no hits. `splice`: stored
    JSON goes in as `orjson.Fragment`s where no conversion is needed (only orjson can serialise the result).
    `cache`: the caller's cache of unpacked JSON (docs/decisions.md §G); without one every document is unpacked."""
    cache = cache if cache is not None else _NO_CACHE
    groups: dict[tuple[str, str], tuple[CatalogMeta, list[ItemDoc]]] = {}
    for h in hits:
        key = (h.item.bpp_id, h.item.catalog_id)
        if key not in groups:
            groups[key] = (h.catalog, [])
        groups[key][1].append(h.item)
    tz = settings.tz
    out = []
    for meta, items in groups.values():
        cat = _catalog(meta, items, now=now, settings=settings, tz=tz, splice=splice and meta.dialect == dialect,
                       cache=cache)
        # a dialect-A catalog is A already (its "beckn:bppId" says so): converting it would return it as it is
        out.append(cat if meta.dialect == dialect == DIALECT_A else convert_catalog(cat, dialect))
    return out
