"""Rendering a CPO's stations as UBC catalogs (dialect A, the shape of the UBC publish example): one item per
connector with ChargingService attributes, offers (tariffs by connector band, validity around `now`)
referencing the items. Returned dicts share constant sub-objects: treat them as read-only.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from cds.demo.geography import STATES
from cds.demo.market import (
    CATEGORY, CONNECTORS, CORE_CONTEXT, OFFER_CONTEXT, PARKING_SITE, SERVICE_CONTEXT, UNIT_KWH, UNIT_MIN,
    ConnectorSpec, charging_speed,
)
from cds.demo.planning import Cpo
from cds.demo.stations import Station, iso_time


def _price_band(spec: ConnectorSpec) -> tuple[float, float]:
    """INR per kWh by power band (CEEW average ₹16/kWh; UBC examples ₹15-45)."""
    if spec.kw <= 3.3:
        return 9, 13
    if spec.power_type != "DC":
        return 12, 18
    if spec.kw <= 15:
        return 14, 17
    if spec.kw <= 60:
        return 17, 22
    return (20, 25) if spec.kw <= 150 else (23, 28)


def _period(start: datetime, end: datetime, times: tuple[str, str] | None = None) -> dict[str, str]:
    out = {"@type": "beckn:TimePeriod", "schema:startDate": iso_time(start), "schema:endDate": iso_time(end)}
    if times:
        out["schema:startTime"], out["schema:endTime"] = times
    return out


def _offer(cpo: Cpo, oid: str, name: str, items: list[str], price: dict, validity: dict, attrs: dict) -> dict:
    return {"@context": CORE_CONTEXT, "@type": "beckn:Offer", "beckn:id": oid,
            "beckn:descriptor": {"@type": "beckn:Descriptor", "schema:name": name}, "beckn:items": items,
            "beckn:price": price, "beckn:validity": validity, "beckn:acceptedPaymentMethod": list(cpo.payments),
            "beckn:offerAttributes": {"@context": OFFER_CONTEXT, "@type": "ChargingOffer", **attrs},
            "beckn:provider": cpo.bpp.provider_id}


def _station_offers(rng: random.Random, cpo: Cpo, st: Station, now: datetime) -> list[dict]:
    groups: dict[str, list[str]] = {}
    for c in st.connectors:
        groups.setdefault(c.spec, []).append(c.item_id)
    promo = rng.random() < 0.15
    day = timedelta(days=1)
    out = []
    for key, items in groups.items():
        spec = CONNECTORS[key]
        tag = f"{st.id}-{key.replace('/', '-').replace('.', '_').lower()}"
        label = f"{spec.connector_type} {spec.kw:g}kW"
        lo, hi = _price_band(spec)
        kwh = round(rng.uniform(lo, hi) * cpo.price_factor * 2) / 2
        start, end = now - day * rng.randint(1, 180), now + day * rng.randint(60, 365)
        attrs: dict[str, Any] = {"tariffModel": "PER_KWH"}
        if rng.random() < (0.7 if spec.power_type == "DC" else 0.35):
            attrs["idleFeePolicy"] = {"currency": "INR", "value": rng.choice((1, 2, 3)), "applicableQuantity": {
                "unitCode": "MIN", "unitText": "minutes", "unitQuantity": rng.choice((1, 5, 10, 15))}}
        out.append(_offer(cpo, f"{tag}-kwh", f"Per-kWh Tariff - {label}", items,
                          {"currency": "INR", "value": kwh, "applicableQuantity": UNIT_KWH}, _period(start, end), attrs))
        if rng.random() < (0.05 if spec.power_type == "DC" else 0.12):
            per_min = round(spec.kw * kwh / 60 * 0.85, 2)
            out.append(_offer(cpo, f"{tag}-min", f"Per-Minute Tariff - {label}", items,
                              {"currency": "INR", "value": per_min, "applicableQuantity": UNIT_MIN},
                              _period(start, end), {"tariffModel": "PER_MINUTE"}))
        if promo:  # the UBC lunch-hour promo: 10 % off 12:00-14:00; a few expired or not yet started
            r = rng.random()
            p_start = now - day * 7 if r > 0.05 else now - day * 60
            p_end = now + day * rng.randint(14, 90) if r > 0.05 else now - day * rng.randint(1, 20)
            if 0.05 < r < 0.10:
                p_start, p_end = now + day * rng.randint(2, 10), now + day * rng.randint(30, 60)
            out.append(_offer(cpo, f"{tag}-lunch", f"Lunch-Hour Promo - 10% off {label} 12:00-14:00", items,
                              {"currency": "INR", "value": round(kwh * 0.9, 2), "applicableQuantity": UNIT_KWH},
                              _period(p_start, p_end, ("12:00:00", "14:00:00")), {"tariffModel": "TIME_OF_DAY"}))
    return out


def _items(cpo: Cpo, st: Station, provider: dict) -> list[dict]:
    location = {"@type": "beckn:Location", "geo": {"type": "Point", "coordinates": [st.lon, st.lat]},
                "address": {"streetAddress": f"{PARKING_SITE[st.parking]}, {st.street}",
                            "addressLocality": st.city, "addressRegion": STATES.get(st.state, st.state),
                            "addressCountry": "IN"}}
    station = {"id": st.id, "serviceLocation": location}
    windows = [{"@type": "beckn:TimePeriod", "schema:startTime": a, "schema:endTime": b} for a, b in st.windows]
    rating = {"@type": "beckn:Rating", "beckn:ratingValue": st.rating, "beckn:ratingCount": st.rating_count}
    out = []
    for con in st.connectors:
        spec = CONNECTORS[con.spec]
        attrs: dict[str, Any] = {
            "@context": SERVICE_CONTEXT, "@type": "ChargingService", "connectorType": spec.connector_type,
            "maxPowerKW": spec.kw, "minPowerKW": spec.min_kw, "reservationSupported": st.reservation,
            "chargingStation": station}
        if st.amenities:
            attrs["amenityFeature"] = st.amenities
        attrs.update({"evseId": con.evse_id, "qrIdentifier": con.qr, "parkingType": st.parking,
                      "powerType": spec.power_type, "connectorFormat": spec.connector_format,
                      "chargingSpeed": charging_speed(spec.kw),
                      "vehicleType": list(spec.vehicles) if len(spec.vehicles) > 1 else spec.vehicles[0]})
        if con.status:
            attrs["stationStatus"] = con.status  # legacy live-status field, still sent by some BPPs
        item = {"@context": CORE_CONTEXT, "@type": "beckn:Item", "beckn:id": con.item_id,
                "beckn:descriptor": {"@type": "beckn:Descriptor", "schema:name": f"{spec.title} - {st.name}",
                                     "beckn:shortDesc": f"{spec.connector_type} {spec.kw:g} kW {spec.power_type} "
                                                        f"charging at {st.name}"},
                "beckn:category": CATEGORY}
        if windows:
            item["beckn:availabilityWindow"] = windows
        item.update({"beckn:rateable": True, "beckn:rating": rating, "beckn:isActive": con.active,
                     "beckn:provider": provider, "beckn:itemAttributes": attrs})
        out.append(item)
    return out


def render_catalogs(cpo: Cpo, stations: list[Station], seed: int, now: datetime) -> list[dict]:
    rng = random.Random(f"ubc-loadtest:{seed}:offers:{cpo.index}")
    bpp = cpo.bpp
    provider = {"beckn:id": bpp.provider_id, "beckn:descriptor": {"@type": "beckn:Descriptor", "schema:name": bpp.name}}
    cats = []
    for k in range(bpp.catalogs):
        mine = [s for s in stations if s.catalog == k]
        items = [it for s in mine for it in _items(cpo, s, provider)]
        offers = [o for s in mine for o in _station_offers(rng, cpo, s, now)]
        regions = sorted({STATES.get(s.state, s.state) for s in mine})
        where = ", ".join(regions[:3]) + (f" +{len(regions) - 3} more" if len(regions) > 3 else "")
        cats.append({
            "@context": CORE_CONTEXT, "@type": "beckn:Catalog", "beckn:id": f"{bpp.provider_id}-catalog-{k:02d}",
            "beckn:descriptor": {"@type": "beckn:Descriptor", "schema:name": f"{bpp.name} charging network",
                                 "beckn:shortDesc": f"{len(items)} connectors at {len(mine)} stations in {where}"},
            "beckn:providerId": bpp.provider_id, "beckn:bppId": bpp.subscriber_id, "beckn:bppUri": bpp.url,
            "beckn:validity": _period(now - timedelta(days=1), now + timedelta(days=180)),
            "beckn:isActive": True, "beckn:items": items, "beckn:offers": offers})
    return cats
