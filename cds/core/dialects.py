"""Catalog conversion between the two Beckn v2 dialects, so a reply is in the dialect of its request.

Dialect A (v2.0.0-rc, UBC): JSON-LD compact keys (`beckn:id`, `beckn:items`, `beckn:itemAttributes`, ...), with
`@context`/`@type` required on Catalog, Item and Offer, which are `additionalProperties: false`.
Dialect B (v2.0.0 LTS): plain keys (`id`, `resources`, `resourceAttributes`, offers with `resourceIds`); Catalog,
Descriptor, Provider, Location and TimePeriod are `additionalProperties: false`, Resource and Offer are open.

Rules kept by every converter here:
- an object already in the target dialect is returned unchanged (the same object);
- only keys the target schema defines are emitted for closed objects (unknown keys are dropped, never
  injected); the required keys are filled in (`@context`, `@type`, descriptor `@type`, Item provider, Offer
  provider id and items) from the object itself or from its catalog;
- attribute packs (`itemAttributes`/`resourceAttributes`, `offerAttributes`, `providerAttributes`) are domain
  data and pass through untouched.
Conversion works on whole catalogs, because an Item or Offer may need its catalog's provider.
"""

from __future__ import annotations

from typing import Any

from cds.core.fields import Json, as_list, catalog_dialect, is_a, period_values, pick, plain
from cds.core.models import DIALECT_A, DIALECT_B

CORE_CONTEXT = ("https://raw.githubusercontent.com/beckn/protocol-specifications-v2/refs/heads/core-v2.0.0-rc/"
                "schema/core/v2/context.jsonld")
# The LTS spells a monetary consideration as a schema.org PriceSpecification (spec example on_discover.json).
SCHEMA_ORG_CONTEXT = "https://schema.org/"

EMPTY_ATTRIBUTES = {"@context": CORE_CONTEXT, "@type": "beckn:Attributes"}
PAYMENT_METHODS_A = frozenset({"UPI", "CREDIT_CARD", "DEBIT_CARD", "WALLET", "BANK_TRANSFER", "CASH", "APPLE_PAY"})
_ADDRESS_KEYS = ("streetAddress", "extendedAddress", "addressLocality", "addressRegion", "postalCode",
                 "addressCountry")


# --- helpers -----------------------------------------------------------------------------------------

def _str(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def _strip_keys(v: Any, depth: int = 0) -> Any:
    """Plain copy of a free-form value (rating, category ...): prefixes removed, JSON-LD keys dropped.
    Below 32 levels values are kept as they are (bounded recursion on untrusted JSON)."""
    if depth > 32:
        return v
    if isinstance(v, dict):
        return {plain(k): _strip_keys(x, depth + 1) for k, x in v.items() if k not in ("@type", "@context")}
    if isinstance(v, list):
        return [_strip_keys(x, depth + 1) for x in v]
    return v


# --- shared objects: descriptor, time period, location, provider ---------------------------------------

def descriptor_to_b(d: Any) -> Json:
    out: Json = {}
    if not isinstance(d, dict):
        return out
    for name in ("name", "code", "shortDesc", "longDesc"):
        v = _str(pick(d, name))
        if v is not None:
            out[name] = v
    thumb = _str(d.get("thumbnailImage"))
    images = [x for x in as_list(pick(d, "image", "images")) if isinstance(x, str)]
    if thumb or images:
        out["thumbnailImage"] = thumb or images[0]
    media = [{"uri": x} for x in images]
    media += [m for m in as_list(d.get("mediaFile")) if isinstance(m, dict)]
    if media:
        out["mediaFile"] = [{k: m[k] for k in ("label", "mimeType", "uri") if isinstance(m.get(k), str)} for m in media]
    return out


def descriptor_to_a(d: Any) -> Json:
    out: Json = {"@type": "beckn:Descriptor"}
    if not isinstance(d, dict):
        return out
    for src, dst in (("name", "schema:name"), ("shortDesc", "beckn:shortDesc"), ("longDesc", "beckn:longDesc")):
        v = _str(pick(d, src))
        if v is not None:
            out[dst] = v
    images = [x for x in as_list(pick(d, "image", "images")) if isinstance(x, str)]
    images += [m["uri"] for m in as_list(d.get("mediaFile")) if isinstance(m, dict) and isinstance(m.get("uri"), str)]
    if not images and _str(d.get("thumbnailImage")):
        images = [d["thumbnailImage"]]
    if images:
        out["schema:image"] = images
    return out


def _period_ok(vals: Json) -> bool:
    # both schemas: anyOf startDate | endDate | (startTime and endTime)
    return "startDate" in vals or "endDate" in vals or ("startTime" in vals and "endTime" in vals)


def period_to_b(p: Any) -> Json | None:
    vals = period_values(p)
    return vals if _period_ok(vals) else None


def period_to_a(p: Any) -> Json | None:
    vals = period_values(p)
    if not _period_ok(vals):
        return None
    return {"@type": "beckn:TimePeriod", **{f"schema:{k}": v for k, v in vals.items()}}


def _address(a: Any) -> Json | str | None:
    if isinstance(a, str):
        return a
    if not isinstance(a, dict):
        return None
    out = {k: a[k] for k in _ADDRESS_KEYS if isinstance(a.get(k), str)}
    return out or None


def location_to_b(loc: Any) -> Json | None:
    if not isinstance(loc, dict) or not isinstance(loc.get("geo"), dict):
        return None  # geo is required in both dialects
    out: Json = {"geo": loc["geo"]}
    addr = _address(loc.get("address"))
    if isinstance(addr, str):
        addr = {"streetAddress": addr}  # B Address is an object only
    if addr:
        out["address"] = addr
    return out


def location_to_a(loc: Any) -> Json | None:
    if not isinstance(loc, dict) or not isinstance(loc.get("geo"), dict):
        return None
    out: Json = {"geo": loc["geo"]}
    addr = _address(loc.get("address"))
    if addr:
        out["address"] = addr
    return out


def _locations(v: Any, conv) -> list:
    return [x for x in (conv(loc) for loc in as_list(v)) if x is not None]


def provider_to_b(p: Any) -> Json | None:
    if isinstance(p, str):
        return {"id": p, "descriptor": {}}
    pid = _str(pick(p, "id"))
    if pid is None:
        return None
    out: Json = {"id": pid, "descriptor": descriptor_to_b(pick(p, "descriptor"))}
    locs = _locations(pick(p, "locations", "availableAt"), location_to_b)
    if locs:
        out["availableAt"] = locs
    attrs = pick(p, "providerAttributes")
    if isinstance(attrs, dict):
        out["providerAttributes"] = attrs
    return out


def provider_to_a(p: Any) -> Json | None:
    if isinstance(p, str):
        return {"beckn:id": p, "beckn:descriptor": {"@type": "beckn:Descriptor"}}
    pid = _str(pick(p, "id"))
    if pid is None:
        return None
    out: Json = {"beckn:id": pid, "beckn:descriptor": descriptor_to_a(pick(p, "descriptor"))}
    locs = _locations(pick(p, "availableAt", "locations"), location_to_a)
    if locs:
        out["beckn:locations"] = locs
    period = period_to_a(pick(p, "validity"))
    if period:
        out["beckn:validity"] = period
    if isinstance(pick(p, "rateable"), bool):
        out["beckn:rateable"] = pick(p, "rateable")
    rating = _rating_to_a(pick(p, "rating"))
    if rating:
        out["beckn:rating"] = rating
    attrs = pick(p, "providerAttributes")
    if isinstance(attrs, dict):
        out["beckn:providerAttributes"] = attrs
    return out


def _rating_to_a(r: Any) -> Json | None:
    if not isinstance(r, dict):
        return None
    out: Json = {"@type": "beckn:Rating"}
    value, count = pick(r, "ratingValue"), pick(r, "ratingCount")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 5:
        out["beckn:ratingValue"] = value
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        out["beckn:ratingCount"] = count
    return out


def _category_to_a(c: Any) -> Json | None:
    if isinstance(c, str):
        return {"@type": "schema:CategoryCode", "schema:codeValue": c}
    code = _str(pick(c, "codeValue", "code"))
    if code is None:
        return None
    out: Json = {"@type": "schema:CategoryCode", "schema:codeValue": code}
    for n in ("name", "description"):
        v = _str(pick(c, n))
        if v is not None:
            out[f"schema:{n}"] = v
    return out


# --- items / resources -------------------------------------------------------------------------------

_ITEM_ATTRS = ("itemAttributes", "resourceAttributes", "attributes")


def item_to_b(item: Json) -> Json:
    """A `beckn:Item` as an LTS Resource (open schema: the Item's other fields keep their plain names)."""
    if not is_a(item):
        return item
    out: Json = {}
    for k, v in item.items():
        if k in ("@context", "@type"):
            continue
        name = plain(k)
        if name == "descriptor":
            out["descriptor"] = descriptor_to_b(v)
        elif name in ("itemAttributes", "attributes"):
            out["resourceAttributes"] = v
        elif name == "provider":
            p = provider_to_b(v)
            if p:
                out["provider"] = p
        elif name in ("availableAt", "locations"):
            out["availableAt"] = _locations(v, location_to_b)
        elif name == "availabilityWindow":
            out["availabilityWindow"] = [x for x in map(period_to_b, as_list(v)) if x]
        else:
            out[name] = _strip_keys(v)
    return out


def item_to_a(item: Json, provider: Json | None = None) -> Json:
    """An LTS Resource as a `beckn:Item`; `provider` (dialect A) fills the required Item provider."""
    if is_a(item):
        return item
    out: Json = {"@context": CORE_CONTEXT, "@type": "beckn:Item"}
    rid = pick(item, "id")
    if rid is not None:
        out["beckn:id"] = rid
    out["beckn:descriptor"] = descriptor_to_a(pick(item, "descriptor"))
    cat = _category_to_a(pick(item, "category"))
    if cat:
        out["beckn:category"] = cat
    locs = _locations(pick(item, "availableAt"), location_to_a)
    if locs:
        out["beckn:availableAt"] = locs
    windows = [x for x in map(period_to_a, as_list(pick(item, "availabilityWindow"))) if x]
    if windows:
        out["beckn:availabilityWindow"] = windows
    if isinstance(pick(item, "rateable"), bool):
        out["beckn:rateable"] = pick(item, "rateable")
    rating = _rating_to_a(pick(item, "rating"))
    if rating:
        out["beckn:rating"] = rating
    if isinstance(pick(item, "isActive"), bool):
        out["beckn:isActive"] = pick(item, "isActive")
    nets = [n for n in as_list(pick(item, "networkId")) if isinstance(n, str)]
    if nets:
        out["beckn:networkId"] = nets
    prov = provider_to_a(pick(item, "provider")) or provider
    if prov:
        out["beckn:provider"] = prov
    attrs = pick(item, *_ITEM_ATTRS)
    # required in A; a resource without attributes gets the smallest valid bag rather than an invalid Item
    out["beckn:itemAttributes"] = attrs if isinstance(attrs, dict) else dict(EMPTY_ATTRIBUTES)
    return out


# --- offers ------------------------------------------------------------------------------------------

def _price_from_considerations(offer: Json) -> Json | None:
    for c in as_list(offer.get("considerations")):
        attrs = c.get("considerationAttributes") if isinstance(c, dict) else None
        if not isinstance(attrs, dict):
            continue
        value = attrs.get("price", attrs.get("value"))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            price: Json = {"value": value}
            currency = _str(attrs.get("priceCurrency") or attrs.get("currency"))
            if currency:
                price["currency"] = currency
            qty = {k: attrs[k] for k in ("unitCode", "unitText") if isinstance(attrs.get(k), str)}
            if qty:
                price["applicableQuantity"] = qty
            return price
    return None


def _considerations(offer_id: Any, price: Any) -> list | None:
    if not isinstance(price, dict) or not isinstance(price.get("value"), (int, float)):
        return None
    attrs: Json = {"@context": SCHEMA_ORG_CONTEXT, "@type": "PriceSpecification", "price": price["value"]}
    if isinstance(price.get("currency"), str):
        attrs["priceCurrency"] = price["currency"]
    qty = price.get("applicableQuantity")
    if isinstance(qty, dict):
        attrs.update({k: qty[k] for k in ("unitCode", "unitText") if isinstance(qty.get(k), str)})
    return [{"id": f"{offer_id}-price", "status": {"code": "ACTIVE"}, "considerationAttributes": attrs}]


def offer_to_b(offer: Json, providers: dict[str, Json] | None = None) -> Json:
    """A `beckn:Offer` as an LTS Offer. `providers` (B, by id) expands the provider id into an object.

    The price stays under `price` (what LTS servers such as beckn-discovr publish and filter on) and is also
    given as a schema.org PriceSpecification consideration, the LTS spelling.
    """
    if not is_a(offer):
        return offer
    out: Json = {}
    add_ons: list = []
    for k, v in offer.items():
        if k in ("@context", "@type"):
            continue
        name = plain(k)
        if name == "descriptor":
            out["descriptor"] = descriptor_to_b(v)
        elif name == "items":
            out["resourceIds"] = [x for x in as_list(v) if isinstance(x, str)]
        elif name in ("addOns", "addOnItems"):
            add_ons += [{"id": x} for x in as_list(v) if isinstance(x, str)]
        elif name == "provider":
            pid = v if isinstance(v, str) else _str(pick(v, "id"))
            p = (providers or {}).get(pid) if pid else None
            p = p or provider_to_b(v)
            if p:
                out["provider"] = p
        elif name == "validity":
            period = period_to_b(v)
            if period:
                out["validity"] = period
        elif name == "eligibleRegion":
            out["eligibleRegion"] = _locations(v, location_to_b)
        elif name == "offerAttributes":
            out["offerAttributes"] = v
        else:
            out[name] = _strip_keys(v)
    if add_ons:
        out["addOns"] = add_ons
    cons = _considerations(out.get("id"), out.get("price"))
    if cons and "considerations" not in out:
        out["considerations"] = cons
    return out


def offer_to_a(offer: Json, provider_id: str | None = None) -> Json:
    """An LTS Offer as a `beckn:Offer`; `provider_id` fills the required provider when the offer has none."""
    if is_a(offer):
        return offer
    out: Json = {"@context": CORE_CONTEXT, "@type": "beckn:Offer"}
    oid = pick(offer, "id")
    if oid is not None:
        out["beckn:id"] = oid
    out["beckn:descriptor"] = descriptor_to_a(pick(offer, "descriptor"))
    prov = pick(offer, "provider")
    pid = prov if isinstance(prov, str) else _str(pick(prov, "id"))
    if pid or provider_id:
        out["beckn:provider"] = pid or provider_id
    out["beckn:items"] = [x for x in as_list(pick(offer, "resourceIds", "items")) if isinstance(x, str)]
    add_ons = [a if isinstance(a, str) else pick(a, "id") for a in as_list(pick(offer, "addOns"))]
    add_ons = [a for a in add_ons if isinstance(a, str)]
    if add_ons:
        out["beckn:addOns"] = add_ons
    if isinstance(pick(offer, "isActive"), bool):
        out["beckn:isActive"] = pick(offer, "isActive")
    period = period_to_a(pick(offer, "validity"))
    if period:
        out["beckn:validity"] = period
    price = pick(offer, "price")
    price = price if isinstance(price, dict) else _price_from_considerations(offer)
    if price:
        out["beckn:price"] = price
    regions = _locations(pick(offer, "eligibleRegion"), location_to_a)
    if regions:
        out["beckn:eligibleRegion"] = regions
    methods = [m for m in as_list(pick(offer, "acceptedPaymentMethod")) if m in PAYMENT_METHODS_A]
    if methods:
        out["beckn:acceptedPaymentMethod"] = methods
    attrs = pick(offer, "offerAttributes")
    if isinstance(attrs, dict):
        out["beckn:offerAttributes"] = attrs
    return out


# --- catalogs ----------------------------------------------------------------------------------------



def _catalog_provider_b(catalog: Json, items: list) -> Json:
    """The provider an LTS Catalog requires: the declared `beckn:providerId`, else the one provider all items
    share, else the publishing BPP itself (named after the catalog)."""
    by_id: dict[str, Any] = {}
    for it in items:
        p = pick(it, "provider")
        pid = p if isinstance(p, str) else _str(pick(p, "id"))
        if pid and (pid not in by_id or not isinstance(by_id[pid], dict)):
            by_id[pid] = p
    declared = _str(pick(catalog, "providerId"))
    if declared:
        return provider_to_b(by_id.get(declared) or declared) or {"id": declared, "descriptor": {}}
    if len(by_id) == 1:
        only = next(iter(by_id.values()))
        p = provider_to_b(only)
        if p:
            return p
    owner = _str(pick(catalog, "bppId")) or _str(pick(catalog, "id")) or "unknown"
    desc = descriptor_to_b(pick(catalog, "descriptor"))
    return {"id": owner, "descriptor": {"name": desc["name"]} if "name" in desc else {}}


def catalog_to_b(catalog: Json) -> Json:
    if catalog_dialect(catalog) == DIALECT_B:
        return catalog
    items = [x for x in as_list(catalog.get("beckn:items")) if isinstance(x, dict)]
    offers = [x for x in as_list(catalog.get("beckn:offers")) if isinstance(x, dict)]
    out: Json = {}
    cid = pick(catalog, "id")
    if cid is not None:
        out["id"] = cid
    out["descriptor"] = descriptor_to_b(pick(catalog, "descriptor"))
    for name in ("bppId", "bppUri"):
        v = _str(pick(catalog, name))
        if v:
            out[name] = v
    if isinstance(pick(catalog, "isActive"), bool):
        out["isActive"] = pick(catalog, "isActive")
    period = period_to_b(pick(catalog, "validity"))
    if period:
        out["validity"] = period
    out["provider"] = _catalog_provider_b(catalog, items)
    resources = [item_to_b(it) for it in items]
    providers = {p["id"]: p for p in (r.get("provider") for r in resources) if isinstance(p, dict)}
    providers.setdefault(out["provider"]["id"], out["provider"])
    out["resources"] = resources
    out["offers"] = [offer_to_b(o, providers) for o in offers]
    return out


def catalog_to_a(catalog: Json) -> Json:
    if catalog_dialect(catalog) == DIALECT_A:
        return catalog
    out: Json = {"@context": CORE_CONTEXT, "@type": "beckn:Catalog"}
    cid = pick(catalog, "id")
    if cid is not None:
        out["beckn:id"] = cid
    out["beckn:descriptor"] = descriptor_to_a(pick(catalog, "descriptor"))
    provider = provider_to_a(pick(catalog, "provider"))
    if provider:
        out["beckn:providerId"] = provider["beckn:id"]
    for name in ("bppId", "bppUri"):
        v = _str(pick(catalog, name))
        if v:
            out[f"beckn:{name}"] = v
    period = period_to_a(pick(catalog, "validity"))
    if period:
        out["beckn:validity"] = period
    if isinstance(pick(catalog, "isActive"), bool):
        out["beckn:isActive"] = pick(catalog, "isActive")
    items = next((catalog[k] for k in ("resources", "items") if isinstance(catalog.get(k), list)), [])
    out["beckn:items"] = [item_to_a(it, provider) for it in items if isinstance(it, dict)]
    # an offer without a provider takes the provider of the first item it covers, else the catalog's
    item_provider = {it.get("beckn:id"): it["beckn:provider"].get("beckn:id")
                     for it in out["beckn:items"] if isinstance(it.get("beckn:provider"), dict)}
    catalog_pid = provider["beckn:id"] if provider else None
    offers = []
    for o in as_list(catalog.get("offers")):
        if isinstance(o, dict):
            refs = [r for r in as_list(pick(o, "resourceIds", "items")) if isinstance(r, str)]
            fallback = next((item_provider[r] for r in refs if item_provider.get(r)), None) or catalog_pid
            offers.append(offer_to_a(o, fallback))
    out["beckn:offers"] = offers
    return out


def convert_catalog(catalog: Json, to: str) -> Json:
    """The catalog in dialect `to` ("A" or "B"); returned unchanged when it already is."""
    if to == DIALECT_B:
        return catalog_to_b(catalog)
    return catalog_to_a(catalog)
