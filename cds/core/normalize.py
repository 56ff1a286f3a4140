"""A published catalog -> index documents (`CatalogRecord`: CatalogMeta + one ItemDoc per item).

Reads both dialects (A: `beckn:items`, `beckn:itemAttributes` ...; B: `resources`, `resourceAttributes`, offers
with `resourceIds`) and the legacy attribute shapes still seen in the wild (flat `serviceLocation`,
`stationStatus`, `ev:`-prefixed attribute keys, Beckn-1.x-like `providers[].items[]` with nested offers).
The raw item/offer/catalog JSON is kept exactly as published; only the typed fields are derived.

A catalog that cannot be indexed raises `BecknError` (the caller rejects that catalog and keeps the others);
an item or offer over a content bound (`cds.core.bounds`, docs/decisions.md §27) is left out with an
`INVALID_ITEM` / `INVALID_OFFER` notice, listed first; anything that only degrades one field (a malformed
location, an unreadable window) is a warning.
"""

from __future__ import annotations

import math
from datetime import tzinfo
from typing import Any, Callable, Protocol

import orjson

from cds.core import errors as E
from cds.core.bounds import (ITEM_REJECTED, OFFER_REJECTED, BoundsConfig, OverBound, check_item_total, check_json,
                             out_of_range)
from cds.core.dialects import as_list, catalog_dialect, pick, read, spelled
from cds.core.errors import BecknError
from cds.core.periods import parse_period, period_in
from cds.core import vocab
from cds.core.packs import pack_of_attributes
from cds.core.text import document_terms
from cds.core.documents import CatalogMeta, CatalogRecord, ItemDoc, OfferDoc

MAX_ITEMS = 100_000          # items per catalog
MAX_OFFERS = 100_000         # offers per catalog
MAX_PROVIDERS = 10_000       # legacy providers[] entries
MAX_ID_LEN = 512             # catalog, item, offer ids
MAX_VALUE_LEN = 1024         # any other indexed string (longer ones are not indexed)
MAX_TEXT_PART = 1000         # chars of one text_search source
MAX_TEXT = 4000
MAX_WINDOWS = 64             # availability windows per item
MAX_LIST = 64                # amenities, vehicle types, payment methods, locations per item
MAX_WARNINGS = 100
FAR_FUTURE = 253402300799.0  # 9999-12-31T23:59:59Z: the end of an open-ended window

ITEM_CONTAINERS = ("beckn:items", "resources", "items")
OFFER_CONTAINERS = ("beckn:offers", "offers")
ATTRIBUTE_KEYS = ("beckn:itemAttributes", "resourceAttributes", "itemAttributes", "beckn:attributes", "attributes")
# Live-status fields, by preference (legacy ChargingService, OCPP-style, ABH `ev:availability`).
STATUS_KEYS = ("stationStatus", "connectorStatus", "status", "availability")

_UNIT_TEXT = {"kwh": "KWH", "kilowatt hour": "KWH", "kilowatt hours": "KWH", "minute": "MIN", "minutes": "MIN",
              "min": "MIN", "hour": "H", "hours": "H", "h": "H", "month": "MON", "months": "MON"}
_INVALID = "invalid"
# The spellings of the fields read per item and offer, taken once (`read`, docs/decisions.md §P).
_ID, _PROVIDER, _DESCRIPTOR, _NAME, _SHORT, _LONG, _ACTIVE, _WINDOW, _LOCATED, _LOCATIONS, _SERVICE_LOC, \
    _PROVIDER_ATTRS, _OPERATOR, _VALIDITY, _OFFER_ATTRS, _PRICE, _METHODS = map(spelled, (
        "id", "provider", "descriptor", "name", "shortDesc", "longDesc", "isActive", "availabilityWindow",
        "availableAt", "locations", "serviceLocation", "providerAttributes", "operatorName", "validity",
        "offerAttributes", "price", "acceptedPaymentMethod"))
_NOT_POINT = "not-point"


class _Warnings(list):
    """Warning list capped at MAX_WARNINGS (one summary entry says how many were dropped). Rejections of
    items and offers come first, so that a capped list still shows them."""

    dropped = 0

    def __init__(self) -> None:
        super().__init__()
        self.rejections: list[dict] = []

    def add(self, code: str, message: str, paths: str) -> None:
        if len(self) + len(self.rejections) < MAX_WARNINGS:
            self.append({"code": code, "message": message, "paths": paths})
        else:
            self.dropped += 1

    def reject(self, code: str, message: str, paths: str) -> None:
        if len(self.rejections) < MAX_WARNINGS:
            self.rejections.append({"code": code, "message": message, "paths": paths})
            if len(self) + len(self.rejections) > MAX_WARNINGS:
                self.pop()
                self.dropped += 1
        else:
            self.dropped += 1

    def result(self) -> list[dict]:
        out = [*self.rejections, *self]
        if self.dropped:
            out.append({"code": "WARNINGS_TRUNCATED", "message": f"{self.dropped} more warnings not shown",
                        "paths": ""})
        return out



class NormalizeConfig(BoundsConfig, Protocol):
    """The values normalisation needs (the service's settings provide them)."""

    @property
    def tz(self) -> tzinfo: ...

    catalog_max_age_s: float

def _key(obj: Any, name: str) -> str:
    """The spelling of field `name` present in `obj` (`beckn:isActive` or `isActive`), for warning paths."""
    if isinstance(obj, dict):
        for k in (f"beckn:{name}", f"schema:{name}"):
            if k in obj:
                return k
    return name


def _reject(code: str, message: str, path: str) -> BecknError:
    return BecknError(code, message, 400, path)


# --- small readers -----------------------------------------------------------------------------------

def _text(v: Any, limit: int = MAX_VALUE_LEN) -> str | None:
    if isinstance(v, str):
        v = v.strip()
        if v and len(v) <= limit:
            return v
    return None


def _num(v: Any) -> float | None:
    if v.__class__ is float:             # the usual case, first
        return v if math.isfinite(v) else None
    if isinstance(v, bool):
        return None
    if isinstance(v, str) and len(v) <= 32:
        try:
            v = float(v)
        except ValueError:
            return None
    if isinstance(v, (int, float)) and math.isfinite(v):
        return float(v)
    return None


def _flag(obj: dict, path: str, warns: _Warnings) -> bool:
    """`isActive` of `obj` (at `path`): missing = true; a non-boolean is read as true with a warning."""
    v = read(obj, _ACTIVE)
    if v is None or v.__class__ is bool:
        return v is not False
    if isinstance(v, str) and v.strip().lower() in ("true", "false"):
        return v.strip().lower() == "true"
    warns.add("INVALID_VALUE", "isActive must be a boolean; read as true", f"{path}.{_key(obj, 'isActive')}")
    return True


def _strings(v: Any, canon=lambda s: s) -> list[str]:
    """A string or list of strings (comma-separated strings split), canonicalised, deduplicated, bounded."""
    raw: list = []
    for x in as_list(v)[:MAX_LIST]:
        if isinstance(x, str):
            raw += x.split(",") if "," in x else [x]
    out: list[str] = []
    for x in raw[:MAX_LIST]:
        t = _text(x, 64)
        c = canon(t) if t else None
        if c and c not in out:
            out.append(c)
    return out


def _listed(v: Any, canon: Callable[[str], str | None], ctx: dict) -> list[str]:
    """_strings, once per distinct string or list of a catalog (amenities, vehicle types, payment methods). Equal
    keys hold equal strings at the same places (other values are skipped), so they have equal results."""
    if isinstance(v, str):
        key: tuple = (canon, v)          # the same result as [v]
    elif isinstance(v, list) and len(v) <= MAX_LIST:
        key = (canon, *v)
    else:
        return _strings(v, canon)
    memo = ctx["lists"]
    try:
        got = memo.get(key)
    except TypeError:                    # the list holds objects
        return _strings(v, canon)
    if got is None:
        got = memo[key] = _strings(v, canon)
    return list(got)


def plain_attributes(attrs: Any) -> dict[str, Any]:
    """An attribute bag with vocabulary prefixes removed (`ev:connectorType` -> `connectorType`): the bag
    itself when no key has a prefix (read it, never change it)."""
    if not isinstance(attrs, dict):
        return {}
    for k in attrs:
        if ":" in k:
            break
    else:
        return attrs
    out: dict[str, Any] = {}
    for k, v in attrs.items():
        out.setdefault(k if k.startswith("@") else k.rsplit(":", 1)[-1], v)
    return out


def attributes_of(item: Any) -> dict | None:
    """The item's attribute bag, whichever key carries it."""
    if isinstance(item, dict):
        for k in ATTRIBUTE_KEYS:
            if isinstance(item.get(k), dict):
                return item[k]
    return None


def _dumps(obj: Any, path: str) -> bytes:
    try:
        return orjson.dumps(obj)
    except (TypeError, orjson.JSONEncodeError) as e:
        raise _reject(E.SCH_SCHEMA_VALIDATION_FAILED, f"value cannot be serialised: {e}", path) from None


def _id(obj: dict, path: str, what: str) -> str:
    v = read(obj, _ID)
    if v is None:
        raise _reject(E.SCH_REQUIRED_FIELD_MISSING, f"{what} has no id", path)
    if not isinstance(v, str) or not v.strip() or len(v) > MAX_ID_LEN:
        raise _reject(E.SCH_SCHEMA_VALIDATION_FAILED,
                      f"{what} id must be a non-empty string of at most {MAX_ID_LEN} characters", path)
    return v


# --- location ----------------------------------------------------------------------------------------

def _lonlat(lon: Any, lat: Any) -> tuple[float, float] | str:
    x, y = _num(lon), _num(lat)
    if x is None or y is None:
        return _INVALID
    if out_of_range(x, y):
        raise OverBound(f"coordinates [{x:g}, {y:g}] are outside WGS84 (longitude -180..180, latitude -90..90)")
    return (x, y)


def _point(loc: Any) -> tuple[float, float] | str | None:
    """(lon, lat) of a Location (GeoJSON Point, `lat`/`lng` keys or a `gps` "lat,lon" string); None when the
    location carries no geometry, _NOT_POINT for other geometries, _INVALID for a malformed one. Numbers
    outside WGS84 raise OverBound (the item is rejected, docs/decisions.md §27)."""
    if not isinstance(loc, dict):
        return None
    geo = loc.get("geo") if "geo" in loc else (loc if "coordinates" in loc else None)
    if isinstance(geo, dict):
        if geo.get("type") != "Point":
            return _NOT_POINT
        c = geo.get("coordinates")
        if not isinstance(c, list) or not 2 <= len(c) <= 3:
            return _INVALID
        return _lonlat(c[0], c[1])
    if geo is not None:
        return _INVALID
    keys = {k.rsplit(":", 1)[-1].lower(): v for k, v in loc.items()}
    lat = keys.get("lat", keys.get("latitude"))
    lon = keys.get("lng", keys.get("lon", keys.get("longitude")))
    if lat is not None or lon is not None:
        return _lonlat(lon, lat)
    gps = keys.get("gps")
    if isinstance(gps, str) and gps.count(",") == 1:
        la, lo = gps.split(",")
        return _lonlat(lo.strip(), la.strip())
    return None


def _location(item: dict, a: dict, provider: Any, path: str, warns: _Warnings) -> tuple[float, float] | None:
    """The station point: chargingStation.serviceLocation, else the first Point of availableAt (references to
    provider locations resolved), else the flat legacy serviceLocation, else legacy `locations`."""
    sources: list[tuple[str, Any]] = []
    station = a.get("chargingStation")
    if isinstance(station, dict):
        sources.append(("chargingStation.serviceLocation", read(station, _SERVICE_LOC)))
    provider_locs = {}
    if isinstance(provider, dict):
        provider_locs = {loc.get("id"): loc for loc in as_list(pick(provider, "locations", "availableAt"))[:MAX_LIST]
                         if isinstance(loc, dict) and isinstance(loc.get("id"), str)}
    for k, loc in enumerate(as_list(read(item, _LOCATED))[:MAX_LIST]):
        ref = loc.get("refLocation") if isinstance(loc, dict) else None
        sources.append((f"availableAt[{k}]", provider_locs.get(ref) if isinstance(ref, str) else loc))
    sources.append(("serviceLocation", a.get("serviceLocation")))
    located = read(item, _LOCATIONS)
    if located is not None:
        sources += [(f"locations[{k}]", loc) for k, loc in enumerate(as_list(located)[:MAX_LIST])]
    bad: list[str] = []
    found: tuple[float, float] | None = None
    for where, loc in sources:       # every source, so that none carries coordinates outside WGS84
        try:
            pt = _point(loc)
        except OverBound as e:
            raise OverBound(f"{where}: {e.reason}") from None
        if found is not None:
            continue
        if isinstance(pt, tuple):
            found = pt
        elif pt is not None:
            bad.append(where + (" (not a Point)" if pt == _NOT_POINT else ""))
    if found is not None:
        if bad:
            warns.add("INVALID_LOCATION", f"ignored invalid location at {', '.join(bad)}", path)
        return found
    if bad:
        warns.add("INVALID_LOCATION", "no valid GeoJSON Point [lon, lat] (" + ", ".join(bad)
                  + "); item indexed without a location", path)
    return None


# --- items -------------------------------------------------------------------------------------------

def _status(a: dict) -> str | None:
    for k in STATUS_KEYS:
        v = a.get(k)
        if v is None:
            continue
        if isinstance(v, dict):
            v = v.get("code") or v.get("name")
        t = _text(v, 64)
        if t:
            return t
    return None


def _provider(item: dict, fallbacks: list) -> tuple[str | None, str | None, str | None]:
    """(id, name, operator name) of the item's provider, else of its legacy provider/catalog provider."""
    for p in (read(item, _PROVIDER), *fallbacks):
        if isinstance(p, str):
            return _text(p, MAX_ID_LEN), None, None
        if isinstance(p, dict):
            d = read(p, _DESCRIPTOR)
            name = _text(read(d, _NAME)) if isinstance(d, dict) else None
            pa = read(p, _PROVIDER_ATTRS)
            operator = _text(read(pa, _OPERATOR)) if isinstance(pa, dict) else None
            return _text(read(p, _ID), MAX_ID_LEN), name, operator
    return None, None, None


def _address_parts(a: dict) -> list:
    parts: list = []
    station = a.get("chargingStation")
    for loc in (read(station, _SERVICE_LOC) if isinstance(station, dict) else None, a.get("serviceLocation")):
        addr = loc.get("address") if isinstance(loc, dict) else None
        if isinstance(addr, dict):
            parts += [v for v in addr.values() if isinstance(v, str)]
        elif isinstance(addr, str):
            parts.append(addr)
    return parts


def _item_doc(item: dict, item_id: str, path: str, ctx: dict, warns: _Warnings) -> ItemDoc:
    """The item's index document; OverBound when it is over a content bound (checked before any other work)."""
    raw = _dumps(item, path)
    if len(raw) > ctx["json_floor"]:
        check_json(item, len(raw), ctx["bounds"], f"item {item_id[:80]!r}")
    attrs = attributes_of(item)
    a = plain_attributes(attrs)
    provider_id, provider_name, operator = _provider(item, ctx["provider_fallbacks"])
    try:
        loc = _location(item, a, ctx["legacy_provider"], path, warns)
    except OverBound as e:
        raise OverBound(f"item {item_id[:80]!r}: {e.reason}") from None
    station = a.get("chargingStation")
    if not isinstance(station, dict):
        station = None
    station_id = _text(a.get("stationId") if station is None else read(station, _ID), MAX_ID_LEN)
    windows: list[tuple[float, float]] = []
    daily: list[tuple[int, int]] = []
    periods = as_list(read(item, _WINDOW))
    if len(periods) > MAX_WINDOWS:
        warns.add("TOO_MANY_WINDOWS", f"only the first {MAX_WINDOWS} availability windows are indexed", path)
    for k, p in enumerate(periods[:MAX_WINDOWS]):
        start, end, dwin, problem = period_in(p, ctx["periods"], ctx["tz"], ctx["now"])
        if problem:
            warns.add("INVALID_WINDOW", f"availability window ignored: {problem}",
                      f"{path}.{_key(item, 'availabilityWindow')}[{k}]")
            continue
        if dwin is not None:
            daily.append(dwin)
        if start is not None or end is not None:
            windows.append((start if start is not None else 0.0, end if end is not None else FAR_FUTURE))

    reservation = a.get("reservationSupported")
    status = _status(a)
    d = read(item, _DESCRIPTOR)
    if not isinstance(d, dict):
        d = {}
    amenities = _listed(a.get("amenityFeature", a.get("amenities")), str.upper, ctx)
    # The text fields of docs/decisions.md §25, analysed once here (cds.core.text).
    text_parts = [read(d, _NAME), read(d, _SHORT), read(d, _LONG), provider_name, operator,
                  None if station is None else read(station, _NAME), *_address_parts(a), station_id, *amenities]
    pieces = [t[:MAX_TEXT_PART] for t in text_parts if isinstance(t, str) and t.strip()]
    return ItemDoc(
        bpp_id=ctx["bpp_id"], catalog_id=ctx["catalog_id"], item_id=item_id,
        provider_id=provider_id, provider_name=provider_name,
        lon=loc[0] if loc else None, lat=loc[1] if loc else None,
        connector_type=vocab.connector_type(_text(a.get("connectorType"), 64)),
        max_kw=_kw(a, "maxPowerKW", path, warns), min_kw=_kw(a, "minPowerKW", path, warns),
        power_type=vocab.power_type(_text(a.get("powerType") or a.get("currentType"), 64)),
        charging_speed=(_text(a.get("chargingSpeed"), 64) or "").upper() or None,
        vehicle_types=_listed(a.get("vehicleType"), vocab.vehicle_type, ctx),
        reservation=reservation if isinstance(reservation, bool) else None,
        amenities=amenities,
        parking_type=_text(a.get("parkingType"), 64),
        station_id=station_id,
        evse_id=_text(a.get("evseId"), MAX_ID_LEN),
        qr=_text(a.get("qrIdentifier"), 2048),
        is_active=_flag(item, path, warns),
        windows=windows, daily_windows=daily,
        status=status, status_at=ctx["now"] if status else None,
        terms=_document_terms(pieces), pack=_pack(attrs, ctx),
        raw=raw,
    )


def _kw(a: dict, name: str, path: str, warns: _Warnings) -> float | None:
    v = a.get(name)
    if v is None:
        return None
    n = _num(v)
    if n is None or not 0 <= n <= 10_000:
        warns.add("INVALID_VALUE", f"{name} must be a number of kW", path)
        return None
    return n


def _document_terms(pieces: list[str]) -> list[str]:
    """The terms of `pieces` joined by spaces and cut to MAX_TEXT (docs/decisions.md §25). Uncut, they are
    analysed piece by piece (each piece's terms cached): folding works character by character and no word
    spans the joining space, so the terms are the same."""
    if sum(map(len, pieces)) + len(pieces) - 1 <= MAX_TEXT:
        return document_terms(pieces)
    return document_terms((" ".join(pieces)[:MAX_TEXT],))


def _pack(attrs: Any, ctx: dict) -> str | None:
    """pack_of_attributes, once per distinct `@context` URL of a catalog."""
    url = attrs.get("@context") if isinstance(attrs, dict) else None
    if not isinstance(url, str):
        return pack_of_attributes(attrs)
    memo = ctx["packs"]
    if url not in memo:
        memo[url] = pack_of_attributes(attrs)
    return memo[url]


# --- offers ------------------------------------------------------------------------------------------

def _unit(q: Any) -> str | None:
    if not isinstance(q, dict):
        return None
    code = _text(q.get("unitCode"), 16)
    if code:
        return code.upper()
    t = _text(q.get("unitText"), 64)
    return _UNIT_TEXT.get(t.lower(), t.upper()) if t else None


def _price(offer: dict, oa: dict) -> tuple[float | None, str | None, str | None]:
    """(value, currency, unit) from `beckn:price`/`price`, LTS considerations or the legacy priceSpecification
    (`oa`: the offer's plain attributes)."""
    p = read(offer, _PRICE)
    n = _num(p)
    if n is not None:
        return n, None, None
    specs = [p] if isinstance(p, dict) else []
    specs += [c.get("considerationAttributes") for c in as_list(offer.get("considerations"))[:MAX_LIST]
              if isinstance(c, dict)]
    specs.append(oa.get("priceSpecification"))
    for s in specs:
        if isinstance(s, dict):
            value = _num(s.get("value", s.get("price")))
            if value is not None:
                currency = _text(s.get("currency") or s.get("priceCurrency"), 16)
                return value, currency, _unit(s.get("applicableQuantity")) or _unit(s)
    return None, None, None


def _offer_doc(offer: dict, offer_id: str, refs: list[str], path: str, ctx: dict, warns: _Warnings) -> OfferDoc:
    """The offer's document; OverBound when it is over a content bound (checked before any other work)."""
    raw = _dumps(offer, path)
    if len(raw) > ctx["json_floor"]:
        check_json(offer, len(raw), ctx["bounds"], f"offer {offer_id[:80]!r}")
    start, end, daily, problem = period_in(read(offer, _VALIDITY), ctx["periods"], ctx["tz"], ctx["now"])
    if problem:
        warns.add("INVALID_VALIDITY", f"offer validity partly ignored: {problem}", f"{path}.{_key(offer, 'validity')}")
        if start is not None and end is not None and start > end:
            start = end = None
    oa = plain_attributes(read(offer, _OFFER_ATTRS))
    price, currency, unit = _price(offer, oa)
    methods = read(offer, _METHODS) or oa.get("paymentAccepted")
    return OfferDoc(
        id=offer_id, item_ids=refs,
        is_active=_flag(offer, path, warns),
        valid_from=start, valid_to=end, daily=daily,
        price=price, currency=currency, unit=unit,
        tariff_model=(_text(oa.get("tariffModel"), 64) or "").upper() or None,
        payment_methods=_listed(methods, vocab.upper, ctx),
        raw=raw,
    )


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


# --- catalogs ----------------------------------------------------------------------------------------

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
    for path, item, legacy_provider in entries:
        item_id = _id(item, path, "item")
        if item_id in docs or item_id in rejected:
            raise _reject(E.SCH_SCHEMA_VALIDATION_FAILED, f"duplicate item id {item_id[:80]!r}", path)
        ctx["legacy_provider"] = fallbacks[0] = legacy_provider
        ctx["provider_fallbacks"] = fallbacks
        try:
            docs[item_id] = _item_doc(item, item_id, path, ctx, warns)
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
        try:
            doc = _offer_doc(offer, offer_id, refs, path, ctx, warns)
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


# --- LTS updateMode MERGE ----------------------------------------------------------------------------

MAX_MERGE_DEPTH = 64


def merge_patch(target: Any, patch: Any, _depth: int = 0) -> Any:
    """RFC 7396 JSON Merge Patch: objects merge recursively, `null` deletes a member, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    if _depth > MAX_MERGE_DEPTH:
        raise _reject(E.SCH_SCHEMA_VALIDATION_FAILED, f"merge patch nested deeper than {MAX_MERGE_DEPTH} levels",
                      "catalogs")
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v, _depth + 1)
    return out


def _merge_by_id(stored: list, patch: list) -> list:
    out = list(stored)
    where = {pick(x, "id"): i for i, x in enumerate(out) if isinstance(x, dict) and isinstance(pick(x, "id"), str)}
    for p in patch:
        pid = pick(p, "id") if isinstance(p, dict) else None
        if isinstance(pid, str) and pid in where:
            out[where[pid]] = merge_patch(out[where[pid]], p)
        elif isinstance(p, dict):
            where[pid] = len(out)
            out.append(merge_patch({}, p))
    return out


def merge_catalog(stored_raw: bytes, patch: dict) -> dict:
    """LTS `updateMode: MERGE` of `patch` into the stored catalog (its `CatalogMeta.raw`).

    The catalog header follows RFC 7396. Items/resources and offers merge by id: a patch entry whose id is
    stored is RFC-7396-merged into that entry, a new id is appended, stored entries absent from the patch are
    kept. Entries cannot be deleted by MERGE: publish them with `isActive: false`, or publish FULL. The patch
    is read in the stored catalog's container keys (`beckn:items` or `resources`) whichever it uses.
    Normalise the result with `normalize_catalog` (which also applies every bound).
    """
    stored = orjson.loads(stored_raw)
    if not isinstance(stored, dict) or not isinstance(patch, dict):
        raise _reject(E.SCH_SCHEMA_VALIDATION_FAILED, "a catalog must be an object", "catalogs")
    containers = (ITEM_CONTAINERS, OFFER_CONTAINERS)
    flat = {k for group in containers for k in group}
    merged = merge_patch({k: v for k, v in stored.items() if k not in flat},
                         {k: v for k, v in patch.items() if k not in flat})
    for group in containers:
        stored_key = next((k for k in group if k in stored), None)
        patch_key = next((k for k in group if isinstance(patch.get(k), list)), None)
        key = stored_key or patch_key
        if key is None:
            continue
        base = stored.get(stored_key) if isinstance(stored.get(stored_key), list) else []
        merged[key] = _merge_by_id(base, patch[patch_key]) if patch_key else base
    return merged
