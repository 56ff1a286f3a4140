"""The normaliser's readers (`cds.core.normalize`): its bounds, its capped warning list, small value readers
(strings, numbers, flags, lists of strings once per distinct value, docs/decisions.md §P), attribute bags, ids,
and the station location.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import orjson

from cds.core import errors as E
from cds.core.bounds import OverBound, out_of_range
from cds.core.errors import BecknError
from cds.core.fields import as_list, pick, read, spelled

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
