"""One item's and one offer's index document (`ItemDoc`, `OfferDoc`), for `cds.core.normalize`: the typed fields
read from the item's attribute bag, provider, descriptor and availability windows, and from the offer's price,
validity and payment methods. The raw JSON is kept exactly as published.
"""

from __future__ import annotations

from typing import Any

from cds.core import vocab
from cds.core.bounds import OverBound, check_json
from cds.core.documents import ItemDoc, OfferDoc
from cds.core.fields import as_list, read
from cds.core.normalize_read import (_DESCRIPTOR, _ID, _LONG, _METHODS, _NAME, _OFFER_ATTRS, _OPERATOR, _PRICE,
                                     _PROVIDER, _PROVIDER_ATTRS, _SERVICE_LOC, _SHORT, _VALIDITY, _WINDOW,
                                     FAR_FUTURE, MAX_ID_LEN, MAX_LIST, MAX_TEXT, MAX_TEXT_PART, MAX_WINDOWS,
                                     STATUS_KEYS, _Warnings, _dumps, _flag, _key, _listed, _location, _num, _text,
                                     attributes_of, plain_attributes)
from cds.core.packs import pack_of_attributes
from cds.core.periods import period_in
from cds.core.text import document_terms

_UNIT_TEXT = {"kwh": "KWH", "kilowatt hour": "KWH", "kilowatt hours": "KWH", "minute": "MIN", "minutes": "MIN",
              "min": "MIN", "hour": "H", "hours": "H", "h": "H", "month": "MON", "months": "MON"}


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
