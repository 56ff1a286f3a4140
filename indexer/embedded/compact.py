"""Memory of the embedded index's documents (docs/decisions.md §P "Memory of one index copy"): before a
catalog is indexed, its item and offer JSON is packed (`cds.core.rawjson`) and equal strings, numbers, lists
and offers among its items are stored once. Values are unchanged (the JSON through `item_json` / `offer_json`).
"""

from __future__ import annotations

import sys
import zlib

from msgspec.structs import replace

from cds.core.documents import CatalogRecord, ItemDoc, OfferDoc
from cds.core.rawjson import is_packed, pack

_INTERNED_DOC = ("bpp_id", "catalog_id", "provider_id", "provider_name", "connector_type", "power_type",
                 "charging_speed", "parking_type", "status", "pack")
_INTERNED_OFFER = ("currency", "unit", "tariff_model")
_SHARED_LISTS = ("vehicle_types", "amenities", "windows", "daily_windows", "terms")
_POOLED_DOC = ("station_id", "evse_id")     # repeated among a station's connectors only
_POOLED_NUM = ("lon", "lat", "max_kw", "min_kw")   # a station's connectors share a place, power levels repeat


def _exact(b: bytes) -> bytes:
    # orjson.dumps output keeps its whole growth buffer (~8 KB for a 1.5 KB document): an exact-size
    # copy lets that buffer be freed once the caller drops its reference.
    return bytes(memoryview(b)) if b else b


def _packed(raw: bytes, copy: bool) -> bytes:
    if is_packed(raw):                  # pack_documents did it already (its bytes are exact-size)
        return raw
    packed = pack(raw)
    return _exact(packed) if copy and packed is raw else packed


class _Shared:
    """Per-catalog pools: equal strings, numbers, lists and offers are stored once and shared by the items."""

    def __init__(self) -> None:
        self.lists: dict[tuple, list] = {}
        self.offers: dict[str, tuple[bytes, OfferDoc]] = {}     # id -> (raw as given, the shared offer)
        self.strings: dict[str, str] = {}
        self.numbers: dict[float, float] = {}

    def list(self, name: str, values: list) -> list:
        if not values:
            return values
        key = (name, *values)
        hit = self.lists.get(key)
        if hit is None:
            # the slice is exact-size (a comprehension's list keeps its growth slack)
            hit = self.lists[key] = [sys.intern(v) if isinstance(v, str) else v for v in values][:]
        return hit

    def offer_list(self, offers: list[OfferDoc]) -> list[OfferDoc]:
        """Items naming the same offers share one list (the offers are already shared, so identity says it)."""
        key = ("offers", *map(id, offers))
        hit = self.lists.get(key)
        if hit is None:
            hit = self.lists[key] = offers[:]
        return hit

    def offer(self, o: OfferDoc, copy: bool) -> OfferDoc:
        given = o.raw                          # as decoded: equal offers come with equal bytes
        seen = self.offers.get(o.id)
        if seen is not None and (seen[1] is o or (seen[0] == given and replace(o, raw=seen[1].raw) == seen[1])):
            return seen[1]
        for name in _INTERNED_OFFER:
            v = getattr(o, name)
            if v is not None:
                setattr(o, name, sys.intern(v))
        if o.payment_methods:
            o.payment_methods = self.list("payment_methods", o.payment_methods)
        o.raw = _packed(given, copy)
        self.offers.setdefault(o.id, (given, o))
        return o


def pack_documents(items: list[ItemDoc]) -> None:
    """Pack the item and offer JSON in place (what `compact_record` would do), for a caller that wants this,
    the costly part (about 30 µs per document), off the event loop: zlib lets go of the GIL meanwhile."""
    done: set[int] = set()
    for doc in items:
        doc.raw = _packed(doc.raw, True)
        for o in doc.offers:
            if id(o) not in done:
                done.add(id(o))
                o.raw = _packed(o.raw, True)


PACK_THREAD_MIN = 8     # items: a smaller catalog is packed on the loop (a thread hop costs about 2-3 documents)


def pack_catalog(raw: bytes, items: list[ItemDoc], level: int) -> bytes:
    """The zlib work of indexing a catalog, all of it (zlib lets go of the GIL, so in a thread it runs beside
    the event loop): pack the item and offer JSON in place and return the catalog's raw JSON compressed."""
    pack_documents(items)
    return zlib.compress(raw, level) if raw else b""


def compact_record(record: CatalogRecord, *, copy: bool = True) -> None:
    """Intern strings, share equal lists and offers between the items of a catalog, pack the stored JSON of
    items and offers (`cds.core.rawjson`; already packed stays as is, so records stored before packing are
    upgraded here) and (with `copy`) shrink bytes to their exact size. What the accessors
    (`item_json`, `offer_json`) and fields return is unchanged; only memory use drops."""
    pool = _Shared()
    for doc in record.items:
        for name in _INTERNED_DOC:
            v = getattr(doc, name)
            if v is not None:
                setattr(doc, name, sys.intern(v))
        for name in _POOLED_DOC:
            v = getattr(doc, name)
            if v is not None:
                setattr(doc, name, pool.strings.setdefault(v, v))
        for name in _POOLED_NUM:
            v = getattr(doc, name)
            if v:                      # not None, and not 0.0, which -0.0 equals
                setattr(doc, name, pool.numbers.setdefault(v, v))
        for name in _SHARED_LISTS:
            setattr(doc, name, pool.list(name, getattr(doc, name)))
        if doc.offers:
            doc.offers = pool.offer_list([pool.offer(o, copy) for o in doc.offers])
        doc.raw = _packed(doc.raw, copy)
    if copy:
        record.meta.header = _exact(record.meta.header)
