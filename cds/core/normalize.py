"""A published catalog -> index documents (`CatalogRecord`: CatalogMeta + one ItemDoc per item).

Reads both dialects (A: `beckn:items`, `beckn:itemAttributes` ...; B: `resources`, `resourceAttributes`, offers
with `resourceIds`) and the legacy attribute shapes still seen in the wild (flat `serviceLocation`,
`stationStatus`, `ev:`-prefixed attribute keys, Beckn-1.x-like `providers[].items[]` with nested offers).
The raw item/offer/catalog JSON is kept exactly as published (only the typed fields are derived), except that
a legacy item states its provider and a nested offer its item (docs/decisions.md §W, "Legacy shape").

A catalog that cannot be indexed raises `BecknError` (the caller rejects that catalog and keeps the others);
an item or offer over a content bound (`cds.core.bounds`, docs/decisions.md §27) is left out with an
`INVALID_ITEM` / `INVALID_OFFER` notice, listed first; anything that only degrades one field (a malformed
location, an unreadable window) is a warning.
"""

from __future__ import annotations

from datetime import tzinfo
from typing import Any, Protocol

from cds.core import errors as E
from cds.core.bounds import ITEM_REJECTED, OFFER_REJECTED, BoundsConfig, OverBound, check_item_total, check_json
from cds.core.dialects import provider_to_a, provider_to_b
from cds.core.documents import CatalogMeta, CatalogRecord, ItemDoc
from cds.core.fields import Json, as_list, catalog_dialect, is_a, pick, spelled
from cds.core.normalize_docs import _item_doc, _offer_doc
from cds.core.normalize_read import (ITEM_CONTAINERS, MAX_ITEMS, MAX_OFFERS, MAX_PROVIDERS, OFFER_CONTAINERS,
                                     _dumps, _flag, _id, _key, _reject, _text, _Warnings)
from cds.core.periods import parse_period

__all__ = ["NormalizeConfig", "normalize_catalog"]


class NormalizeConfig(BoundsConfig, Protocol):
    """The values normalisation needs (the service's settings provide them)."""

    @property
    def tz(self) -> tzinfo: ...

    catalog_max_age_s: float


# --- catalogs ----------------------------------------------------------------------------------------

def _offer_entries(catalog: dict, base: str, items: list) -> list[tuple[str, Any, str | None]]:
    """(path, offer, owning item id for offers nested in a legacy item) for every offer of the catalog."""
    entries: list[tuple[str, Any, str | None]] = []
    for key in OFFER_CONTAINERS:
        if key in catalog:
            v = catalog[key]
            if not isinstance(v, list):
                raise _reject(E.SCH_SCHEMA_VALIDATION_FAILED, f"{key} must be a list", f"{base}.{key}")
            if len(v) > MAX_OFFERS:
                raise _reject(E.SCH_SCHEMA_VALIDATION_FAILED, f"at most {MAX_OFFERS} offers per catalog",
                              f"{base}.{key}")
            entries += [(f"{base}.{key}[{k}]", o, None) for k, o in enumerate(v)]
            break
    for path, item, _prov in items:
        nested = item.get("offers")
        if isinstance(nested, list):
            entries += [(f"{path}.offers[{k}]", o, _id(item, path, "item")) for k, o in enumerate(nested)]
        if len(entries) > MAX_OFFERS:
            raise _reject(E.SCH_SCHEMA_VALIDATION_FAILED, f"at most {MAX_OFFERS} offers per catalog", base)
    return entries


def _item_entries(catalog: dict, base: str) -> list[tuple[str, Any, Any]]:
    """(path, item, legacy provider) for every item/resource of the catalog."""
    for key in ITEM_CONTAINERS:
        if key in catalog:
            v = catalog[key]
            if not isinstance(v, list):
                raise _reject(E.SCH_SCHEMA_VALIDATION_FAILED, f"{key} must be a list", f"{base}.{key}")
            if len(v) > MAX_ITEMS:
                raise _reject(E.SCH_SCHEMA_VALIDATION_FAILED, f"at most {MAX_ITEMS} items per catalog", f"{base}.{key}")
            return [(f"{base}.{key}[{j}]", it, None) for j, it in enumerate(v)]
    entries: list[tuple[str, Any, Any]] = []
    providers = catalog.get("providers")  # legacy Beckn-1.x-like shape: providers[].items[]
    if isinstance(providers, list):
        if len(providers) > MAX_PROVIDERS:
            raise _reject(E.SCH_SCHEMA_VALIDATION_FAILED, f"at most {MAX_PROVIDERS} providers", f"{base}.providers")
        for p_i, p in enumerate(providers):
            its = p.get("items") if isinstance(p, dict) else None
            if its is None:
                continue
            path = f"{base}.providers[{p_i}].items"
            if not isinstance(its, list):
                raise _reject(E.SCH_SCHEMA_VALIDATION_FAILED, "items must be a list", path)
            entries += [(f"{path}[{j}]", it, p) for j, it in enumerate(its)]
            if len(entries) > MAX_ITEMS:
                raise _reject(E.SCH_SCHEMA_VALIDATION_FAILED, f"at most {MAX_ITEMS} items per catalog", path)
    return entries


# --- legacy providers[].items[]: what an item's place says, made explicit (docs/decisions.md §W, "Legacy shape")

def _shaped(provider: Any, a: bool, memo: dict) -> Json | None:
    """The enclosing provider as an item's own, in the item's dialect (A: `beckn:Provider`, B: LTS Provider),
    once per provider object and dialect of a catalog."""
    key = (id(provider), a)
    if key not in memo:
        memo[key] = provider_to_a(provider) if a else provider_to_b(provider)
    return memo[key]


def _legacy_item(item: dict, provider: Any, memo: dict) -> dict:
    """A legacy item as stored: with its enclosing provider when it names none. A shallow copy gets the key: the
    published item is not changed."""
    if pick(item, "provider") is not None:
        return item
    a = is_a(item)
    p = _shaped(provider, a, memo)
    return item if p is None else {**item, ("beckn:provider" if a else "provider"): p}


_REF_KEYS = (*spelled("items"), *spelled("resourceIds"))      # in the order the normaliser reads them


def _nested_offer(offer: dict, owner: str, provider: Any, memo: dict) -> dict:
    """An offer nested in an item (the legacy shape) as stored: naming that item (first), and with the item's
    enclosing provider when it names none (A: its id, B: the LTS Provider); a shallow copy, in the offer's own
    spelling."""
    a = is_a(offer)
    out = offer
    key = next((k for k in _REF_KEYS if offer.get(k) is not None), "beckn:items" if a else "resourceIds")
    refs = as_list(offer.get(key))
    if owner not in refs:
        out = {**offer, key: [owner, *refs]}
    p = _shaped(provider, a, memo) if pick(offer, "provider") is None else None
    if p is not None:
        out = {**out, "beckn:provider": p["beckn:id"]} if a else {**out, "provider": p}
    return out


def _header(catalog: dict) -> dict:
    header = {k: v for k, v in catalog.items() if k not in ITEM_CONTAINERS and k not in OFFER_CONTAINERS}
    if isinstance(header.get("providers"), list):
        header["providers"] = [{k: v for k, v in p.items() if k != "items"} if isinstance(p, dict) else p
                               for p in header["providers"]]
    return header


def normalize_catalog(catalog: dict, *, publisher_id: str, publisher_uri: str | None, dialect: str,
                      settings: NormalizeConfig, now: float, index: int = 0,
                      fallback_id: str | None = None) -> tuple[CatalogRecord, list[dict]]:
    """Index documents for one catalog plus warnings `{code, message, paths}`.

    `index` is the catalog's position in the request (for error paths `catalogs[i]…`). `fallback_id` names a
    catalog that carries no id (legacy fan-out replies); without it such a catalog is rejected. The stored
    dialect is the catalog's own shape when recognisable, else `dialect`.
    Raises BecknError (SCH_REQUIRED_FIELD_MISSING / SCH_SCHEMA_VALIDATION_FAILED, 400, paths) when the catalog
    cannot be indexed.
    """
    base = f"catalogs[{index}]"
    if not isinstance(catalog, dict):
        raise _reject(E.SCH_SCHEMA_VALIDATION_FAILED, "a catalog must be an object", base)
    if pick(catalog, "id") is None and fallback_id is not None:
        catalog_id = fallback_id
    else:
        catalog_id = _id(catalog, base, "catalog")
    warns = _Warnings()
    tz = settings.tz
    header_obj = _header(catalog)
    header = _dumps(header_obj, base)
    try:   # the header is served with every item of the catalog: the same bounds as an item
        check_json(header_obj, len(header), settings, "catalog header (the catalog without its items and offers)")
    except OverBound as e:
        raise _reject(E.SCH_SCHEMA_VALIDATION_FAILED, e.reason, base) from None
    entries = _item_entries(catalog, base)
    for path, item, _p in entries:
        if not isinstance(item, dict):
            raise _reject(E.SCH_SCHEMA_VALIDATION_FAILED, "an item must be an object", path)
    fallbacks = [None, pick(catalog, "provider"), pick(catalog, "providerId")]   # [0]: the legacy provider
    ctx = {"bpp_id": publisher_id, "catalog_id": catalog_id, "tz": tz, "now": now, "bounds": settings,
           "periods": {}, "packs": {}, "lists": {},
           # check_json passes any JSON up to this size: below it the check (and its message) is skipped
           "json_floor": min(settings.max_item_string_bytes, settings.max_item_bytes)}
    docs: dict[str, ItemDoc] = {}
    where: dict[str, tuple[str, dict]] = {}          # item id -> (path, item as published)
    rejected: set[str] = set()                       # ids of items left out (offers naming them are not "unknown")
    dropped: set[int] = set()                        # id() of the item/offer objects left out of the stored raw
    shaped: dict = {}                                # legacy providers as items' own (`_shaped`)
    legacy_of: dict[str, Any] = {}                   # legacy item id -> its enclosing provider
    for path, item, legacy_provider in entries:
        item_id = _id(item, path, "item")
        if item_id in docs or item_id in rejected:
            raise _reject(E.SCH_SCHEMA_VALIDATION_FAILED, f"duplicate item id {item_id[:80]!r}", path)
        ctx["legacy_provider"] = fallbacks[0] = legacy_provider
        ctx["provider_fallbacks"] = fallbacks
        stored = item
        if legacy_provider is not None:
            legacy_of[item_id] = legacy_provider
            stored = _legacy_item(item, legacy_provider, shaped)
        try:
            docs[item_id] = _item_doc(stored, item_id, path, ctx, warns)
        except OverBound as e:
            warns.reject(ITEM_REJECTED, f"{e.reason}; the item is not indexed", path)
            rejected.add(item_id)
            dropped.add(id(item))
            continue
        where[item_id] = (path, item)

    seen_offers: set[str] = set()
    nested: set[str] = set()                         # offers inside a legacy item: already in the item's JSON
    for path, offer, owner in _offer_entries(catalog, base, entries):
        if not isinstance(offer, dict):
            raise _reject(E.SCH_SCHEMA_VALIDATION_FAILED, "an offer must be an object", path)
        offer_id = _id(offer, path, "offer")
        if offer_id in seen_offers:
            warns.add("DUPLICATE_OFFER", f"offer id {offer_id[:80]!r} repeated; the first one is kept", path)
            continue
        seen_offers.add(offer_id)
        refs_raw = as_list(pick(offer, "items", "resourceIds"))
        if len(refs_raw) > MAX_ITEMS:
            raise _reject(E.SCH_SCHEMA_VALIDATION_FAILED, f"an offer may name at most {MAX_ITEMS} items", path)
        refs = [r for r in refs_raw if isinstance(r, str)]
        if owner is not None and owner not in refs:
            refs.insert(0, owner)
        unknown = [r for r in refs if r not in docs and r not in rejected]
        if unknown or len(refs) < len(refs_raw):
            warns.add("UNKNOWN_ITEM_REFERENCE",
                      f"offer names {len(unknown) + len(refs_raw) - len(refs)} item(s) not in this catalog", path)
        targets = [docs[r] for r in dict.fromkeys(refs) if r in docs]
        if not targets:
            if not any(r in rejected for r in refs):
                warns.add("UNREFERENCED_OFFER", "offer applies to no item of this catalog and is not indexed", path)
            continue
        stored = offer if owner is None else _nested_offer(offer, owner, legacy_of.get(owner), shaped)
        try:
            doc = _offer_doc(stored, offer_id, refs, path, ctx, warns)
        except OverBound as e:
            warns.reject(OFFER_REJECTED, f"{e.reason}; the offer is not indexed", path)
            dropped.add(id(offer))
            continue
        if owner is not None:
            nested.add(offer_id)
        for item_doc in targets:
            item_doc.offers.append(doc)

    for item_id, d in list(docs.items()):
        lens = [len(o.raw) for o in d.offers if o.id not in nested]
        if len(d.raw) + sum(lens) <= settings.max_item_bytes:     # within the bound: no message to build
            continue
        try:
            check_item_total(len(d.raw), lens, settings, f"item {item_id[:80]!r}")
        except OverBound as e:
            path, item = where[item_id]
            warns.reject(ITEM_REJECTED, f"{e.reason}; the item is not indexed", path)
            del docs[item_id]
            dropped.add(id(item))

    valid_from, valid_to, _daily, problem = parse_period(pick(catalog, "validity"), tz, now)
    if problem:
        warns.add("INVALID_VALIDITY", f"catalog validity partly ignored: {problem}",
                  f"{base}.{_key(catalog, 'validity')}")
    max_age_end = now + settings.catalog_max_age_s
    meta = CatalogMeta(
        bpp_id=publisher_id, catalog_id=catalog_id,
        bpp_uri=publisher_uri or _text(pick(catalog, "bppUri"), 2048),
        dialect=catalog_dialect(catalog, default=dialect),
        published_at=now,
        expires_at=min(valid_to, max_age_end) if valid_to is not None else max_age_end,
        valid_from=valid_from,
        is_active=_flag(catalog, base, warns),
        item_count=len(docs),
        header=header,
        raw=_dumps(_without(catalog, dropped) if dropped else catalog, base),
    )
    return CatalogRecord(meta=meta, items=list(docs.values())), warns.result()


def _without(catalog: dict, dropped: set[int]) -> dict:
    """The catalog without the item and offer objects left out (kept for MERGE, so nothing over a bound is
    stored)."""
    out = dict(catalog)
    for key in (*ITEM_CONTAINERS, *OFFER_CONTAINERS):
        if isinstance(out.get(key), list):
            out[key] = [x for x in out[key] if id(x) not in dropped]
    if isinstance(out.get("providers"), list):
        out["providers"] = [{**p, "items": [x for x in p["items"] if id(x) not in dropped]}
                            if isinstance(p, dict) and isinstance(p.get("items"), list) else p
                            for p in out["providers"]]
    return out
