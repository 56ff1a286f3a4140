"""Acceptance of the discover engine: every discover example of the fixtures, sent as a signed
GET /beckn/discover over real HTTP, returns exactly the items a plain, independent evaluation expects.

Data: the UBC publish example (published by the test BPP), plus hand-made catalogs for what the UBC catalog
lacks, each with matching and non-matching items:
- `deg-bpp.test` (dialect A): the ids the DEG/UBC id examples name, daily availability windows, a Type2 for
  the DEG time-of-day example, an inactive item, an `ecopower-charging` item in Mumbai, live/expired offers;
- `lts-bpp.test` (dialect B, LTS publish): the LTS example's resource with a window, the resource id of the
  LTS QR example, and resources carrying `fulfillment.deliveryAttributes.vehicle` for the vehicle-spec
  examples. That path does not exist in rc items (ev-schema.md §6), and rc Items are closed
  (`additionalProperties: false`), so the open LTS Resource is the only schema-valid place for it;
- `abh-bpp.test`: the ABHIMAIL on_discover catalog (legacy `providers[].items[]`, pack `charging_service/v1`)
  plus items along the Bengaluru→Mysuru corridor, for the ABHIMAIL collection (whose `schema_context` names
  that pack, so UBC items must NOT answer it: docs/decisions.md §S).

The expected answer of each example comes from `expected()`: a hand-written predicate per example (table
`EXAMPLES`), haversine / point-to-segment distances computed here, the attribute-pack scope, the live check
(catalog validity, `isActive`) and the order and cap of docs/decisions.md §8/§20. None of it calls cds/indexer code.
Offers are checked too: a returned catalog holds exactly the offers live now that name a returned item.
Readings where the specs leave room: a route orders nearest-first from its first vertex; an item without
availability windows does not match a filter on them (RFC 9535: a filter on a missing member selects nothing);
the ABHIMAIL `pagination` is not honoured (the UBC schema has none; the cap is CDS_MAX_RESULTS); the
ABHIMAIL "schema-pack" request is not a Beckn body and is wrapped into one (same filter and text_search).

Longer than most test files on purpose: the hand-made data, the evaluator and the example table are read
together whenever an expectation is questioned.
"""

from __future__ import annotations

import copy
import math
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable
from zoneinfo import ZoneInfo

import orjson
import pytest

from cds.api.app import create_app
from tests.harness import Participant, fresh_context, iso, load_fixture, start_client
from tests.schemas import validate_on_discover
from tests.services.test_ttl import publish_reports

IST = ZoneInfo("Asia/Kolkata")
SPEC = "https://raw.githubusercontent.com/beckn/protocol-specifications-v2/refs/heads/core-v2.0.0-rc/schema"
CORE_CTX = f"{SPEC}/core/v2/context.jsonld"
SERVICE_CTX = f"{SPEC}/EvChargingService/v1/context.jsonld"
BOUNDARY_MARGIN_M = 100.0     # no item lies closer to a radius/corridor boundary (haversine vs geodesic < 0.5 %)
NOW = time.time()
DAY = 86400.0


def ubc_catalogs() -> list[dict]:
    return load_fixture("UBC_catalog_publish_ev-charging-catalog-publish.json")["message"]["catalogs"]


# ---- hand-made catalogs ------------------------------------------------------------------------------

def a_item(iid: str, *, provider: str, lon: float, lat: float, connector: str, kw: float, vehicle: Any,
           windows: list[tuple[str, str]] | None = None, active: bool = True, name: str | None = None) -> dict:
    """A dialect-A ChargingService item shaped like the UBC example."""
    item = {
        "@context": CORE_CTX, "@type": "beckn:Item", "beckn:id": iid,
        "beckn:descriptor": {"@type": "beckn:Descriptor", "schema:name": name or f"{connector} {kw:g} kW"},
        "beckn:isActive": active,
        "beckn:provider": {"beckn:id": provider,
                           "beckn:descriptor": {"@type": "beckn:Descriptor", "schema:name": provider.upper()}},
        "beckn:itemAttributes": {
            "@context": SERVICE_CTX, "@type": "ChargingService", "connectorType": connector, "maxPowerKW": kw,
            "chargingStation": {"id": f"st-{iid[-12:]}", "serviceLocation": {
                "@type": "beckn:Location", "geo": {"type": "Point", "coordinates": [lon, lat]}}},
            "evseId": f"IN*DEG*{iid[-10:]}", "qrIdentifier": f"https://qr.deg.test/{iid}",
            "vehicleType": vehicle},
    }
    if windows:
        item["beckn:availabilityWindow"] = [{"@type": "beckn:TimePeriod", "schema:startTime": s, "schema:endTime": e}
                                            for s, e in windows]
    return item


def a_offer(oid: str, items: list[str], start: float, end: float) -> dict:
    return {"@context": CORE_CTX, "@type": "beckn:Offer", "beckn:id": oid,
            "beckn:descriptor": {"@type": "beckn:Descriptor", "schema:name": oid}, "beckn:items": items,
            "beckn:price": {"currency": "INR", "value": 20.0,
                            "applicableQuantity": {"unitCode": "KWH", "unitQuantity": 1}},
            "beckn:validity": {"@type": "beckn:TimePeriod", "schema:startDate": iso(start), "schema:endDate": iso(end)},
            "beckn:provider": "cpo1"}


DEG_FAR_DAY = [("2026-01-04T00:00:00Z", "2026-01-04T23:59:00Z")]


def deg_catalog() -> dict:
    items = [
        a_item("IND*CPO1*cs-01*evse-01*connectorid-01", provider="cpo1", lon=77.5800, lat=12.9350, connector="CCS2",
               kw=60, vehicle="4-WHEELER", windows=[("10:00:00", "22:00:00")]),
        a_item("ev-charger-ccs2-001", provider="cpo1", lon=77.6000, lat=12.9600, connector="CCS2", kw=30,
               vehicle="4-WHEELER", windows=[("02:00:00", "06:00:00")]),
        a_item("deg-type2-allday", provider="cpo1", lon=77.5750, lat=12.9150, connector="Type2", kw=22,
               vehicle="4-WHEELER", windows=[("06:00:00", "22:00:00")]),
        a_item("deg-type2-afternoon", provider="cpo1", lon=77.5850, lat=12.9450, connector="Type2", kw=7.4,
               vehicle="4-WHEELER", windows=[("12:00:00", "20:00:00")]),
        a_item("deg-ccs2-mumbai", provider="ecopower-charging", lon=72.8777, lat=19.0760, connector="CCS2", kw=150,
               vehicle="4-WHEELER", windows=DEG_FAR_DAY),
        a_item("deg-ccs2-north-out", provider="cpo1", lon=77.5900, lat=13.0400, connector="CCS2", kw=120,
               vehicle="4-WHEELER", windows=DEG_FAR_DAY),
        a_item("deg-ccs2-inactive", provider="ecopower-charging", lon=77.5920, lat=12.9420, connector="CCS2", kw=60,
               vehicle="4-WHEELER", windows=[("00:00:00", "23:59:00")], active=False),
        a_item("deg-lev-ac001", provider="cpo1", lon=77.5950, lat=12.9380, connector="AC-001", kw=3.3,
               vehicle=["2-WHEELER", "3-WHEELER"]),
        a_item("deg-ccs2-nowindow", provider="cpo1", lon=77.5870, lat=12.9300, connector="CCS2", kw=50,
               vehicle="4-WHEELER"),
    ]
    e1, e2, e3 = items[0]["beckn:id"], items[1]["beckn:id"], items[2]["beckn:id"]
    offers = [
        a_offer("offer-e1-live", [e1], NOW - 30 * DAY, NOW + 300 * DAY),
        a_offer("offer-e1-expired", [e1], NOW - 60 * DAY, NOW - DAY),
        a_offer("offer-e1-future", [e1], NOW + 10 * DAY, NOW + 60 * DAY),
        a_offer("offer-e2-live", [e2], NOW - DAY, NOW + DAY * 30),
        a_offer("offer-e1-e3-shared", [e1, e3], NOW - DAY, NOW + DAY * 30),
    ]
    return {"@context": CORE_CTX, "@type": "beckn:Catalog", "beckn:id": "catalog-deg-extra",
            "beckn:descriptor": {"@type": "beckn:Descriptor", "schema:name": "DEG extra"},
            "beckn:validity": {"@type": "beckn:TimePeriod", "schema:startDate": iso(NOW - DAY),
                               "schema:endDate": iso(NOW + 30 * DAY)},
            "beckn:items": items, "beckn:offers": offers}


def b_resource(rid: str, *, lon: float, lat: float, connector: str, kw: float, window: tuple[str, str] | None = None,
               vehicle: tuple[str, str] | None = None, provider: str | None = None) -> dict:
    res: dict[str, Any] = {
        "id": rid, "descriptor": {"name": f"{connector} {kw:g} kW"},
        "availableAt": [{"geo": {"type": "Point", "coordinates": [lon, lat]}}],
        "resourceAttributes": {"@context": SERVICE_CTX, "@type": "ChargingService", "connectorType": connector,
                               "maxPowerKW": kw, "powerType": "DC" if connector == "CCS2" else "AC_3_PHASE",
                               "vehicleType": "4-WHEELER"},
    }
    if window:
        res["availabilityWindow"] = [{"startTime": window[0], "endTime": window[1]}]
    if vehicle:
        res["fulfillment"] = {"deliveryAttributes": {"vehicle": {"make": vehicle[0], "model": vehicle[1]}}}
    if provider:
        res["provider"] = {"id": provider, "descriptor": {"name": provider}}
    return res


def lts_catalog() -> dict:
    """The LTS on_discover example's catalog, extended (its validity moved around now)."""
    cat = copy.deepcopy(load_fixture("spec/examples/lts-constructed/on_discover.json")["message"]["catalogs"][0])
    for k in ("bppId", "bppUri"):
        cat.pop(k, None)
    cat["validity"] = {"startDate": iso(NOW - DAY), "endDate": iso(NOW + 30 * DAY)}
    cat["resources"][0]["availabilityWindow"] = [{"startTime": "2026-01-04T06:00:00Z",
                                                  "endTime": "2026-01-04T22:00:00Z"}]
    cat["resources"] += [
        b_resource("IND*ATH*umTDvSzocs*oPghrCd1o*BGaz1wgWmijwoy", lon=77.5800, lat=12.9500, connector="CCS2", kw=50,
                   window=("2026-01-04T13:00:00Z", "2026-01-04T18:00:00Z")),
        b_resource("lts-tata-nexon", lon=77.6100, lat=12.9600, connector="Type2", kw=22, vehicle=("Tata", "Nexon-EV"),
                   provider="fleet-cpo"),
        b_resource("lts-tata-punch", lon=77.6050, lat=12.9550, connector="Type2", kw=22, vehicle=("Tata", "Punch-EV"),
                   provider="fleet-cpo"),
        b_resource("lts-tata-nexon-chennai", lon=80.2700, lat=13.0800, connector="Type2", kw=22,
                   vehicle=("Tata", "Nexon-EV"), provider="fleet-cpo"),
    ]
    cat["offers"][0]["validity"] = {"startDate": iso(NOW - DAY), "endDate": iso(NOW + 30 * DAY)}
    return cat


ROUTE = ((77.5946, 12.9716), (76.6394, 12.2958))   # the ABHIMAIL Bengaluru -> Mysuru corridor


def _offset_from_route(t: float, km: float) -> tuple[float, float]:
    """A point at fraction t of the corridor, `km` to its right (planar, good to a few metres here)."""
    (x0, y0), (x1, y1) = ROUTE
    lon, lat = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
    kx = 111.32 * math.cos(math.radians(lat))
    dx, dy = (x1 - x0) * kx, (y1 - y0) * 111.32
    n = math.hypot(dx, dy)
    return round(lon + km * (dy / n) / kx, 6), round(lat + km * (-dx / n) / 111.32, 6)


def abh_catalog() -> dict:
    """The ABHIMAIL on_discover catalog (legacy providers[].items[]), with an id and more items."""
    cat = copy.deepcopy(load_fixture("ABHIMAIL_charging_service_v1_on_discover.json")["message"]["catalogs"][0])
    cat["id"] = "abh-catalog-001"
    base = cat["providers"][0]["items"][0]
    base["offers"][0]["validity"] = {"end": iso(NOW + 30 * DAY)}   # its nested offer, live (was 2025-12-31)

    def clone(iid: str, lon: float, lat: float, kw: float) -> dict:
        it = copy.deepcopy(base)
        it["id"] = iid
        it["availableAt"] = [{"geo": {"type": "Point", "coordinates": [lon, lat]}}]
        a = it["itemAttributes"]
        a["maxPowerKW"], a["evseId"] = kw, f"IN*ABH*{iid}"
        a["serviceLocation"] = {"geo": {"type": "Point", "coordinates": [lon, lat]}}
        it["offers"] = []
        return it

    cat["providers"][0]["items"].append(clone("ITEM-HSR-DC50", 77.6400, 12.9100, 50))
    cat["providers"].append({"id": "PROV-HWY", "descriptor": {"name": "Highway Charging"}, "items": [
        clone("ITEM-ROUTE-NEAR", *_offset_from_route(0.5, 1.0), 120),
        clone("ITEM-ROUTE-FAR", *_offset_from_route(0.4, -15.0), 120),
    ]})
    return cat


# ---- an independent view of the published data ---------------------------------------------------------

@dataclass
class V:
    """One published item as this test reads it (plain dict walking, no project code)."""

    bpp: str
    catalog: str
    id: str
    provider: str | None
    attrs: dict
    point: tuple[float, float] | None
    windows: list[tuple[str, str]]
    pack: str | None
    active: bool
    raw: dict
    offers: list[dict] = field(default_factory=list)

    def a(self, name: str) -> Any:
        """An attribute by its plain name (`ev:` or no prefix)."""
        for k, v in self.attrs.items():
            if k.split(":")[-1] == name:
                return v
        return None

    @property
    def vehicles(self) -> list[str]:
        v = self.a("vehicleType")
        return v if isinstance(v, list) else [v] if v else []


_PACK = re.compile(r"([^/]+)/(v[^/]+)/context\.jsonld$")


def _pack(url: Any) -> str | None:
    m = _PACK.search(url) if isinstance(url, str) else None
    return f"{m.group(1)}/{m.group(2)}" if m else None


def _geo(loc: Any) -> tuple[float, float] | None:
    g = loc.get("geo") if isinstance(loc, dict) else None
    return tuple(g["coordinates"][:2]) if isinstance(g, dict) and g.get("type") == "Point" else None


def views(bpp: str, cat: dict) -> list[V]:
    """Every item of a catalog in any of the three shapes used here."""
    out = []
    if "beckn:items" in cat:                                   # dialect A (UBC)
        for it in cat["beckn:items"]:
            a = it["beckn:itemAttributes"]
            pt = _geo(a.get("chargingStation", {}).get("serviceLocation"))
            out.append(V(bpp, cat["beckn:id"], it["beckn:id"], it["beckn:provider"]["beckn:id"], a, pt,
                         [(w["schema:startTime"], w["schema:endTime"]) for w in it.get("beckn:availabilityWindow", [])],
                         _pack(a.get("@context")), it.get("beckn:isActive", True), it))
        offers = cat.get("beckn:offers", [])
        ref = "beckn:items"
    elif "resources" in cat:                                   # dialect B (LTS)
        for it in cat["resources"]:
            a = it.get("resourceAttributes", {})
            pt = next(filter(None, map(_geo, it.get("availableAt", []))), None)
            prov = (it.get("provider") or cat.get("provider") or {}).get("id")
            out.append(V(bpp, cat["id"], it["id"], prov, a, pt,
                         [(w["startTime"], w["endTime"]) for w in it.get("availabilityWindow", [])],
                         _pack(a.get("@context")), it.get("isActive", True), it))
        offers = cat.get("offers", [])
        ref = "resourceIds"
    else:                                                      # legacy providers[].items[] (ABHIMAIL)
        offers, ref = [], "items"
        for p in cat["providers"]:
            locs = {loc["id"]: loc for loc in p.get("locations", [])}
            for it in p["items"]:
                a = it["itemAttributes"]
                pt = _geo(a.get("serviceLocation")) or next(
                    filter(None, (_geo(locs.get(x.get("refLocation"), x)) for x in it.get("availableAt", []))), None)
                out.append(V(bpp, cat["id"], it["id"], p["id"], a, pt, [], _pack(a.get("@context")),
                             it.get("isActive", True), it))
                offers += [{**o, "items": [it["id"]]} for o in it.get("offers", [])]
    for v in out:
        v.offers = [o for o in offers if v.id in (o.get(ref) or [])]
    return out


# ---- geometry and time, written out plainly ------------------------------------------------------------

R_EARTH = 6371008.8


def haversine(p: tuple[float, float], q: tuple[float, float]) -> float:
    (lon1, lat1), (lon2, lat2) = p, q
    f1, f2 = math.radians(lat1), math.radians(lat2)
    h = math.sin((f2 - f1) / 2) ** 2 + math.cos(f1) * math.cos(f2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * R_EARTH * math.asin(math.sqrt(h))


def segment_distance(p: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    """Metres from p to segment ab in a local equirectangular plane centred on p (errors < 0.5 % here)."""
    k = math.radians(1) * R_EARTH
    kx = k * math.cos(math.radians(p[1]))
    ax, ay, bx, by = (a[0] - p[0]) * kx, (a[1] - p[1]) * k, (b[0] - p[0]) * kx, (b[1] - p[1]) * k
    dx, dy = bx - ax, by - ay
    t = max(0.0, min(1.0, -(ax * dx + ay * dy) / (dx * dx + dy * dy)))
    return math.hypot(ax + t * dx, ay + t * dy)


def instant(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def is_tod(s: str) -> bool:
    return re.fullmatch(r"\d{2}:\d{2}(:\d{2})?", s) is not None


def local_days(t0: float, t1: float) -> list[datetime]:
    """Local midnights of every IST day touching [t0, t1], one day of slack on both sides."""
    d = datetime.fromtimestamp(t0, IST).date() - timedelta(days=1)
    end = datetime.fromtimestamp(t1, IST).date() + timedelta(days=1)
    out = []
    while d <= end:
        out.append(datetime(d.year, d.month, d.day, tzinfo=IST))
        d += timedelta(days=1)
    return out


def window_spans(w: tuple[str, str], around: tuple[float, float]) -> list[tuple[float, float]]:
    """A window as instants: itself, or (time-of-day window, local IST) its occurrences around `around`."""
    s, e = w
    if not is_tod(s):
        return [(instant(s), instant(e))]
    hs, he = (int(x[:2]) * 3600 + int(x[3:5]) * 60 for x in (s, e))
    return [(d.timestamp() + hs, d.timestamp() + he + (DAY if he < hs else 0)) for d in local_days(*around)]


def overlaps(v: V, q0: str, q1: str) -> bool:
    """Some availability window overlaps the instant interval [q0, q1] (closed)."""
    a, b = instant(q0), instant(q1)
    return any(s <= b and e >= a for w in v.windows for s, e in window_spans(w, (a, b)))


def contains(v: V, q0: str, q1: str) -> bool:
    """Some availability window contains [q0, q1]: instants, or a daily time-of-day slot (local IST)."""
    if is_tod(q0):
        # a recurring slot: contained if on some day the slot lies inside the window
        hs, he = (int(x[:2]) * 3600 + int(x[3:5]) * 60 for x in (q0, q1))
        for w in v.windows:
            if is_tod(w[0]):
                ws, we = (int(x[:2]) * 3600 + int(x[3:5]) * 60 for x in w)
                if ws <= hs and we >= he:
                    return True
            else:
                s, e = instant(w[0]), instant(w[1])
                if any(s <= d.timestamp() + hs and d.timestamp() + he <= e for d in local_days(s, e)):
                    return True
        return False
    a, b = instant(q0), instant(q1)
    return any(s <= a and e >= b for w in v.windows for s, e in window_spans(w, (a, b)))


# ---- the examples and their hand-written predicates ------------------------------------------------------

Pred = Callable[[V], bool]


def ccs2_50(v: V) -> bool:
    return v.a("connectorType") == "CCS2" and (v.a("maxPowerKW") or 0) >= 50


def by_id(iid: str) -> Pred:
    return lambda v: v.id == iid


def by_provider(pid: str) -> Pred:
    return lambda v: v.provider == pid


def tata_nexon(v: V) -> bool:
    ful = v.raw.get("fulfillment", v.raw.get("beckn:fulfillment", {}))
    vehicle = ful.get("deliveryAttributes", {}).get("vehicle", {})
    return vehicle.get("make") == "Tata" and vehicle.get("model") == "Nexon-EV"


UBC_WINDOW: Pred = lambda v: ("4-WHEELER" in v.vehicles and v.a("connectorType") == "CCS2"  # noqa: E731
                              and overlaps(v, "2026-01-04T08:00:00Z", "2026-01-04T20:00:00Z"))
ANY: Pred = lambda v: True  # noqa: E731

# example -> predicate (None: no filter). Spatial constraints, schema_context and text are read from the request.
EXAMPLES: dict[str, Pred] = {
    "UBC_discovery-by-QR.json": lambda v: v.a("qrIdentifier") == "https://charge.ecopower.in/cs01-ccs2",
    "UBC_discovery-by-QR_by-item-id_959998f.json": by_id("IND*CPO1*cs-01*evse-01*connectorid-01"),
    "UBC_discovery-services-by-a-cpo.json": by_provider("ecopower-charging"),
    "UBC_discovery-within-a-circular-boundary.json": ANY,
    "UBC_discovery-within-a-timerange.json": UBC_WINDOW,
    "UBC_discovery-within-boundary-with-connection-spec.json": ccs2_50,
    "UBC_discovery-within-boundary-with-vehicle-spec.json": tata_nexon,
    "DEG_discovery-by-EVSE.json": by_id("IND*CPO1*cs-01*evse-01*connectorid-01"),
    "DEG_discovery-services-by-a-cpo.json": by_provider("ecopower-charging"),
    "DEG_discovery-services-by-a-station.json": by_id("ev-charger-ccs2-001"),
    "DEG_discovery-within-a-circular-boundary.json": ANY,
    "DEG_discovery-within-a-timerange.json":
        lambda v: v.a("connectorType") == "Type2" and contains(v, "11:30:00", "14:30:00"),
    "DEG_discovery-within-boundary-with-connection-spec.json": ccs2_50,
    "DEG_discovery-within-boundary-with-vehicle-spec.json": tata_nexon,
    "spec/examples/ubc/01_discover/discovery-by-QR.json":
        lambda v: v.a("qrIdentifier") == "https://charge.ecopower.in/cs01-ccs2",
    "spec/examples/ubc/01_discover/discovery-services-by-a-cpo.json": by_provider("ecopower-charging"),
    "spec/examples/ubc/01_discover/discovery-within-a-circular-boundary.json": ANY,
    "spec/examples/ubc/01_discover/discovery-within-a-timerange.json": UBC_WINDOW,
    "spec/examples/ubc/01_discover/discovery-within-boundary-with-connection-spec.json": ccs2_50,
    "spec/examples/ubc/01_discover/discovery-within-boundary-with-vehicle-spec.json": tata_nexon,
    "spec/examples/lts-constructed/discover_qr.json": by_id("IND*ATH*umTDvSzocs*oPghrCd1o*BGaz1wgWmijwoy"),
    "spec/examples/lts-constructed/discover_radius_ccs2_window.json":
        lambda v: ccs2_50(v) and contains(v, "2026-01-04T12:30:00Z", "2026-01-04T13:30:00Z"),
    "ABH#EV charging within a circular boundary": ANY,
    "ABH#EV charging along a route": ANY,
    "ABH#EV charging within circle + connector filters": ccs2_50,
    "ABH#EV charging within circle + vehicle spec filters":
        lambda v: v.a("connectorType") == "CCS2" and (v.a("maxPowerKW") or 0) >= 60,
    "ABH#EV charging by specific CPO": by_provider("PROV-ECOPWR"),
    "ABH#View single charging station by Item id": by_id("ITEM-BTM-DC60"),
    "ABH#Fetch specific EVSE on-site by EVSE id": lambda v: v.a("evseId") == "IN*ECO*BTM*01*CCS2*A",
    "ABH-schema-pack": lambda v: (v.a("powerType") or v.a("currentType")) == "DC" and (v.a("maxPowerKW") or 0) >= 60,
}


def request_of(name: str) -> dict:
    """The example as a discover request document (the ABHIMAIL ones unwrapped / wrapped into a Beckn body)."""
    if name.startswith("ABH#"):
        title = name[4:]
        coll = load_fixture("ABHIMAIL_charging_service_v1_discover-requests_FIXED-stray-backslash-L149.json")
        return next(r["example"] for r in coll["discover_requests"] if r["title"] == title)
    if name == "ABH-schema-pack":
        src = load_fixture("ABHIMAIL_schema-pack_discover-request.json")
        ctx = {**load_fixture("UBC_discovery-by-QR.json")["context"], "schema_context": src["schema_context"]}
        return {"context": ctx, "message": {"text_search": src["text_search"], "filters": src["filters"]}}
    return load_fixture(name)


@dataclass
class Intent:
    """What the request asks, read plainly from its JSON."""

    spatial: list[dict]
    packs: set[str] | None
    words: list[str]


STOP = {"a", "an", "and", "at", "by", "for", "from", "in", "near", "of", "on", "or", "the", "to", "with"}


def intent_of(doc: dict) -> Intent:
    ctx, msg = doc["context"], doc.get("message", {})
    body = msg.get("intent", msg)
    packs = {p for p in map(_pack, ctx.get("schema_context", ctx.get("schemaContext", []))) if p}
    text = body.get("text_search") or body.get("textSearch") or ""
    words = [w for w in re.findall(r"\w+", text.lower()) if w not in STOP]
    return Intent(body.get("spatial", []), packs or None, words)


def text_of(v: V) -> str:
    d = v.raw.get("beckn:descriptor", v.raw.get("descriptor", {}))
    parts = [str(x) for k, x in d.items() if k.split(":")[-1] in ("name", "shortDesc", "longDesc")]
    loc = (v.a("chargingStation") or {}).get("serviceLocation") or v.a("serviceLocation") or {}
    parts += [str(x) for x in (loc.get("address") or {}).values()]
    prov = v.raw.get("beckn:provider", v.raw.get("provider", {}))
    if isinstance(prov, dict):
        parts += [str(x) for x in prov.get("beckn:descriptor", prov.get("descriptor", {})).values()]
    return " ".join(parts).lower()


def spatial_ok(v: V, s: dict) -> tuple[bool, float]:
    """(inside, distance to the geometry) for an s_dwithin Point/LineString; margins are asserted."""
    assert s["op"].lower() == "s_dwithin", s
    g, limit = s["geometry"], s["distanceMeters"]
    if v.point is None:
        return False, math.inf
    if g["type"] == "Point":
        d = haversine(v.point, tuple(g["coordinates"]))
    else:
        pts = [tuple(c) for c in g["coordinates"]]
        d = min(segment_distance(v.point, a, b) for a, b in zip(pts, pts[1:]))
    assert abs(d - limit) > BOUNDARY_MARGIN_M, f"test data: {v.id} is {d:.0f} m from a {limit} m boundary"
    return d <= limit, d


def origin_of(spatial: list[dict]) -> tuple[float, float] | None:
    """Nearest-first origin: the Point, or the route's start (docs/decisions.md §8)."""
    for s in spatial:
        c = s["geometry"]["coordinates"]
        return tuple(c) if s["geometry"]["type"] == "Point" else tuple(c[0])
    return None


def catalog_live(cat: dict) -> bool:
    val = cat.get("beckn:validity", cat.get("validity"))
    if not val:
        return True
    s = val.get("schema:startDate", val.get("startDate"))
    e = val.get("schema:endDate", val.get("endDate"))
    return (s is None or instant(s) <= NOW) and (e is None or instant(e) > NOW)


def offer_live(o: dict) -> bool:
    val = o.get("beckn:validity", o.get("validity")) or {}
    s = val.get("schema:startDate", val.get("startDate", val.get("start")))
    e = val.get("schema:endDate", val.get("endDate", val.get("end")))
    return (s is None or instant(s) <= time.time()) and (e is None or instant(e) >= time.time())


Expected = list[tuple[tuple[str, str], list[str], set[str]]]   # ((bpp, catalog), item ids, offer ids)


def expected(name: str, published: dict[str, list[dict]], cap: int = 100) -> Expected:
    doc = request_of(name)
    want, it = EXAMPLES[name], intent_of(doc)
    origin = origin_of(it.spatial)
    rows = []
    for bpp, cats in published.items():
        for cat in cats:
            if not catalog_live(cat):
                continue
            for v in views(bpp, cat):
                if not v.active or (it.packs is not None and v.pack not in it.packs):
                    continue
                if it.words and not set(it.words) <= set(re.findall(r"\w+", text_of(v))):
                    continue
                if not all(spatial_ok(v, s)[0] for s in it.spatial) or not want(v):
                    continue
                dist = haversine(origin, v.point) if origin else None
                rows.append((dist, v))
    rows.sort(key=lambda r: ((r[0],) if origin else ()) + (r[1].catalog, r[1].bpp, r[1].id))
    out: dict[tuple[str, str], tuple[list[str], set[str]]] = {}
    for _d, v in rows[:cap]:
        ids, offers = out.setdefault((v.bpp, v.catalog), ([], set()))
        ids.append(v.id)
        offers.update(o.get("beckn:id", o.get("id")) for o in v.offers if offer_live(o))
    return [(k, ids, offers) for k, (ids, offers) in out.items()]


def got(body: dict) -> Expected:
    out = []
    for c in body["message"]["catalogs"]:
        bpp, cid = c.get("beckn:bppId", c.get("bppId")), c.get("beckn:id", c.get("id"))
        items = c.get("beckn:items", c.get("resources", []))
        offers = c.get("beckn:offers", c.get("offers", []))
        out.append(((bpp, cid), [i.get("beckn:id", i.get("id")) for i in items],
                    {o.get("beckn:id", o.get("id")) for o in offers}))
    return out


# ---- the network: publish everything over HTTP ------------------------------------------------------------

class Seeded:
    def __init__(self, net, client) -> None:
        self.net, self.client = net, client
        self.published: dict[str, list[dict]] = {}

    async def publish_a(self, who: Participant, catalogs: list[dict]) -> None:
        doc = fresh_context(load_fixture("UBC_catalog_publish_ev-charging-catalog-publish.json"),
                            bpp_id=who.subscriber_id, bpp_uri=who.url)
        for c in catalogs:
            if "beckn:bppId" in c:
                c["beckn:bppId"], c["beckn:bppUri"] = who.subscriber_id, who.url  # the fixture names another BPP
        doc["message"]["catalogs"] = catalogs
        await self._send(who, doc, catalogs)

    async def publish_b(self, who: Participant, catalogs: list[dict]) -> None:
        doc = fresh_context(load_fixture("spec/examples/lts-constructed/publish.json"),
                            bppId=who.subscriber_id, bppUri=who.url)
        doc["message"]["catalogs"] = catalogs
        await self._send(who, doc, catalogs)

    async def _send(self, who: Participant, doc: dict, catalogs: list[dict]) -> None:
        body = orjson.dumps(doc)
        resp = await self.client.post("/beckn/catalog/publish", data=body, headers=who.sign(body))
        assert resp.status == 200, await resp.text()
        self.published[who.subscriber_id] = copy.deepcopy(catalogs)

    async def discover(self, name: str, method: str = "GET") -> tuple[dict, bytes]:
        doc = request_of(name)
        camel = "bapId" in doc["context"]
        doc = fresh_context(doc, **({"bapId": self.net.bap.subscriber_id, "bapUri": self.net.bap.url} if camel
                                    else {"bap_id": self.net.bap.subscriber_id, "bap_uri": self.net.bap.url}))
        body = orjson.dumps(doc)
        resp = await self.client.request(method, "/beckn/discover", data=body, headers=self.net.bap.sign(body))
        assert resp.status == 200, (name, await resp.text())
        return doc, await resp.read()


async def seed(network, **settings) -> Seeded:
    # Fan-out off: every registered BPP publishes here, and this file is about answers from the index.
    settings.setdefault("fanout_max_bpps", 0)
    client = await start_client(create_app(network.settings(**settings)))
    s = Seeded(network, client)
    url = network.bpp_sink.url
    deg = network.add(Participant("deg-bpp.test", "BPP", url + "/deg"))
    lts = network.add(Participant("lts-bpp.test", "BPP", url + "/lts"))
    abh = network.add(Participant("abh-bpp.test", "BPP", url + "/abh"))
    await s.publish_a(network.bpp, ubc_catalogs())
    await s.publish_a(deg, [deg_catalog()])
    await s.publish_b(lts, [lts_catalog()])
    await s.publish_a(abh, [abh_catalog()])
    for _path, _h, cb in await publish_reports(network.bpp_sink, 4):
        for r in orjson.loads(cb)["message"]["results"]:
            assert r["status"] in ("ACCEPTED", "PARTIAL"), r
    return s


ALL = list(EXAMPLES)


@pytest.fixture
async def seeded(network):
    s = await seed(network)
    yield s
    await s.client.close()


def test_example_table_covers_every_discover_fixture():
    from tests.harness import FIXTURES

    names = {p.relative_to(FIXTURES).as_posix() for pat in ("UBC_discovery-*.json", "DEG_discovery-*.json",
                                                             "spec/examples/ubc/01_discover/*.json",
                                                             "spec/examples/lts-constructed/discover_*.json")
             for p in FIXTURES.glob(pat)}
    coll = load_fixture("ABHIMAIL_charging_service_v1_discover-requests_FIXED-stray-backslash-L149.json")
    names |= {"ABH#" + r["title"] for r in coll["discover_requests"]} | {"ABH-schema-pack"}
    assert names == set(EXAMPLES)


def _published_offline() -> dict[str, list[dict]]:
    return {"example-bpp.com": ubc_catalogs(),
            "deg-bpp.test": [deg_catalog()], "lts-bpp.test": [lts_catalog()], "abh-bpp.test": [abh_catalog()]}


@pytest.mark.parametrize("name", ALL)
def test_every_example_expects_a_match_and_a_miss(name):
    """Non-vacuity: each example expects at least one item, and the published data holds items it must not
    return (so a CDS answering "everything" or "nothing" fails)."""
    pub = _published_offline()
    exp = expected(name, pub)
    n = sum(len(ids) for _k, ids, _o in exp)
    total = sum(len(views(b, c)) for b, cats in pub.items() for c in cats)
    assert 0 < n < total, (name, exp)


# Answered from the legacy providers[].items[] catalog (test_legacy_catalog_answers_validate below).
LEGACY_SHAPE = {n for n in EXAMPLES if n.startswith("ABH#")}


async def test_every_discover_example_returns_the_expected_items(seeded):
    problems = []
    for name in ALL:
        doc, raw = await seeded.discover(name)
        body = orjson.loads(raw)
        dialect = "B" if "bapId" in doc["context"] else "A"
        try:
            validate_on_discover(body, dialect)
        except AssertionError as e:
            problems.append(f"{name}: {e}")
        want = expected(name, seeded.published)
        have = got(body)
        if have != want:
            problems.append(f"{name}:\n    expected {want}\n    got      {have}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", ["UBC_discovery-within-a-timerange.json",
                                  "spec/examples/lts-constructed/discover_radius_ccs2_window.json",
                                  "DEG_discovery-within-a-timerange.json"])
async def test_async_post_delivers_the_same_answer(seeded, name):
    doc, raw = await seeded.discover(name)
    ack_doc, ack = await seeded.discover(name, method="POST")
    assert orjson.loads(ack) in ({"message": {"ack": {"status": "ACK"}}}, {"status": "ACK"})
    (_p, _h, cb), = await seeded.net.bap_sink.wait_for(1)
    cb_doc = orjson.loads(cb)
    assert cb_doc["message"] == orjson.loads(raw)["message"]
    ids = ("messageId", "transactionId") if "messageId" in doc["context"] else ("message_id", "transaction_id")
    assert [cb_doc["context"][k] for k in ids] == [ack_doc["context"][k] for k in ids]
    validate_on_discover(cb_doc, "B" if "bapId" in doc["context"] else "A")


async def test_legacy_catalog_answers_validate(seeded):
    """A legacy catalog answers in dialect A like any other (docs/decisions.md §W, "Legacy shape"): each item's
    provider is its enclosing provider, and an offer nested in an item names that item and its provider."""
    enclosing = {it["id"]: p["id"] for p in abh_catalog()["providers"] for it in p["items"]}
    nested = {o["id"]: it["id"] for p in abh_catalog()["providers"] for it in p["items"] for o in it["offers"]}
    problems, seen_offers = [], 0
    for name in sorted(LEGACY_SHAPE):
        _doc, raw = await seeded.discover(name)
        body = orjson.loads(raw)
        try:
            validate_on_discover(body, "A")
        except AssertionError as e:
            problems.append(f"{name}: {e}")
        [cat] = body["message"]["catalogs"]
        for it in cat["beckn:items"]:
            assert it["beckn:provider"]["beckn:id"] == enclosing[it["beckn:id"]], (name, it["beckn:id"])
        for o in cat["beckn:offers"]:
            assert o["beckn:items"][0] == nested[o["beckn:id"]], (name, o["beckn:id"])
            assert o["beckn:provider"] == enclosing[nested[o["beckn:id"]]], (name, o["beckn:id"])
            seen_offers += 1
    assert seen_offers            # the nested offer is live and answered
    assert not problems, "\n".join(problems)


async def test_result_cap_takes_the_first_n_by_order(network):
    """CDS_MAX_RESULTS=3: the first three by distance (radius), or by catalog then item id (no location)."""
    s = await seed(network, max_results=3)
    try:
        for name in ("UBC_discovery-within-a-circular-boundary.json", "DEG_discovery-services-by-a-cpo.json"):
            full = sum(len(ids) for _k, ids, _o in expected(name, s.published))
            assert full > 3, name  # the cap must bite
            _doc, raw = await s.discover(name)
            assert got(orjson.loads(raw)) == expected(name, s.published, cap=3), name
    finally:
        await s.client.close()
