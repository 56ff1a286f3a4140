"""cds.core.normalize: published catalogs (both dialects, legacy shapes) -> index documents."""

from __future__ import annotations

import copy
import glob
import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest

from cds.core.text import document_terms
from cds.core import errors as E
from cds.config import Settings
from cds.core.errors import BecknError
from cds.core import merge as M, normalize, normalize_docs as D, normalize_read as N
from cds.core.merge import merge_catalog
from cds.core.normalize import normalize_catalog

FIX = Path(__file__).resolve().parents[1] / "fixtures"
SETTINGS = Settings()
IST = ZoneInfo("Asia/Kolkata")
NOW = datetime(2026, 1, 4, 12, 0, tzinfo=IST).timestamp()


def epoch(s: str) -> float:
    return datetime.fromisoformat(s).timestamp()


def load(name: str) -> dict:
    return json.loads((FIX / name).read_text(encoding="utf-8"))


def catalogs_of(doc: dict) -> list:
    return (doc.get("message") or {}).get("catalogs") or doc.get("catalogs") or []


def norm(catalog, **kw):
    args = dict(publisher_id="bpp.example.com", publisher_uri="https://bpp.example.com/beckn", dialect="A",
                settings=SETTINGS, now=NOW)
    args.update(kw)
    return normalize_catalog(catalog, **args)


def ubc_catalog() -> dict:
    return catalogs_of(load("UBC_catalog_publish_ev-charging-catalog-publish.json"))[0]


def a_item(item_id: str, **attrs) -> dict:
    """A minimal dialect-A item; `attrs` go into beckn:itemAttributes, `_item` keys onto the item."""
    item_extra = attrs.pop("_item", {})
    return {
        "@context": "https://example.org/core/v2/context.jsonld", "@type": "beckn:Item", "beckn:id": item_id,
        "beckn:descriptor": {"@type": "beckn:Descriptor", "schema:name": f"Charger {item_id}"},
        "beckn:provider": {"beckn:id": "cpo-1", "beckn:descriptor": {"@type": "beckn:Descriptor", "schema:name": "CPO One"}},
        "beckn:itemAttributes": {"@context": "https://example.org/schema/EvChargingService/v1/context.jsonld",
                                 "@type": "ChargingService", "connectorType": "CCS2", "maxPowerKW": 50, **attrs},
        **item_extra,
    }


def a_offer(offer_id: str, items: list, **extra) -> dict:
    return {"@context": "https://example.org/core/v2/context.jsonld", "@type": "beckn:Offer", "beckn:id": offer_id,
            "beckn:descriptor": {"@type": "beckn:Descriptor", "schema:name": offer_id},
            "beckn:provider": "cpo-1", "beckn:items": items, **extra}


def a_catalog(items: list, offers: list | None = None, **extra) -> dict:
    cat = {"@context": "https://example.org/core/v2/context.jsonld", "@type": "beckn:Catalog", "beckn:id": "cat-1",
           "beckn:descriptor": {"@type": "beckn:Descriptor", "schema:name": "Test"}, "beckn:items": items, **extra}
    if offers is not None:
        cat["beckn:offers"] = offers
    return cat


# --- the UBC publish example, field by field -----------------------------------------------------------

def test_ubc_publish_items_match_fixture_fields():
    cat = ubc_catalog()
    rec, warnings = norm(cat)
    assert warnings == []
    assert [d.item_id for d in rec.items] == [it["beckn:id"] for it in cat["beckn:items"]]
    for doc, item in zip(rec.items, cat["beckn:items"]):
        a = item["beckn:itemAttributes"]
        station = a["chargingStation"]
        lon, lat = station["serviceLocation"]["geo"]["coordinates"]
        assert (doc.bpp_id, doc.catalog_id) == ("bpp.example.com", cat["beckn:id"])
        assert (doc.lon, doc.lat) == (lon, lat)
        assert doc.provider_id == item["beckn:provider"]["beckn:id"]
        assert doc.provider_name == item["beckn:provider"]["beckn:descriptor"]["schema:name"]
        assert doc.connector_type == a["connectorType"]
        assert doc.max_kw == float(a["maxPowerKW"]) and isinstance(doc.max_kw, float)
        assert doc.min_kw == float(a["minPowerKW"])
        assert doc.power_type == a["powerType"]
        assert doc.charging_speed == a["chargingSpeed"]
        assert doc.vehicle_types == [a["vehicleType"]]
        assert doc.reservation is a["reservationSupported"]
        assert doc.amenities == a["amenityFeature"]
        assert doc.parking_type == a["parkingType"]
        assert doc.station_id == station["id"]
        assert doc.evse_id == a["evseId"]
        assert doc.qr == a["qrIdentifier"]
        assert doc.is_active is item["beckn:isActive"]
        assert doc.pack == "EvChargingService/v1"
        assert doc.status is None and doc.status_at is None
        win = item["beckn:availabilityWindow"][0]
        assert doc.windows == [(epoch(win["schema:startTime"]), epoch(win["schema:endTime"]))]
        assert doc.daily_windows == []
        # docs/decisions.md §25: the analysed terms of every text field, amenities included
        for part in (item["beckn:descriptor"]["schema:name"], item["beckn:descriptor"]["beckn:longDesc"],
                     item["beckn:provider"]["beckn:descriptor"]["schema:name"],
                     station["serviceLocation"]["address"]["streetAddress"],
                     station["serviceLocation"]["address"]["postalCode"], station["id"],
                     *item["beckn:itemAttributes"]["amenityFeature"]):
            assert set(document_terms([part])) <= set(doc.terms), part
        assert doc.terms == sorted(set(doc.terms)) and doc.text == ""
        assert orjson.loads(doc.raw) == item  # exactly as published, no injected keys


def test_ubc_publish_offers_attached_to_their_items():
    cat = ubc_catalog()
    rec, _ = norm(cat)
    by_item = {d.item_id: d for d in rec.items}
    for offer in cat["beckn:offers"]:
        for item_id in offer["beckn:items"]:
            docs = [o for o in by_item[item_id].offers if o.id == offer["beckn:id"]]
            assert len(docs) == 1
            o = docs[0]
            assert o.item_ids == offer["beckn:items"]
            assert o.price == offer["beckn:price"]["value"]
            assert o.currency == offer["beckn:price"]["currency"]
            assert o.unit == offer["beckn:price"]["applicableQuantity"]["unitCode"]
            assert o.tariff_model == offer["beckn:offerAttributes"]["tariffModel"]
            assert o.payment_methods == offer["beckn:acceptedPaymentMethod"]
            assert o.valid_from == epoch(offer["beckn:validity"]["schema:startDate"])
            assert o.valid_to == epoch(offer["beckn:validity"]["schema:endDate"])
            assert o.daily is None and o.is_active is True
            assert orjson.loads(o.raw) == offer
    # no item carries an offer that does not name it
    for d in rec.items:
        assert all(d.item_id in o.item_ids for o in d.offers)


def test_ubc_publish_catalog_meta():
    cat = ubc_catalog()
    rec, _ = norm(cat)
    m = rec.meta
    assert (m.bpp_id, m.catalog_id, m.bpp_uri) == ("bpp.example.com", cat["beckn:id"], "https://bpp.example.com/beckn")
    assert m.dialect == "A" and m.is_active is True
    assert m.published_at == NOW
    assert m.expires_at == NOW + SETTINGS.catalog_max_age_s  # no catalog validity: max age only
    assert m.valid_from is None
    assert m.item_count == len(cat["beckn:items"])
    header = orjson.loads(m.header)
    assert header == {k: v for k, v in cat.items() if k not in ("beckn:items", "beckn:offers")}
    assert orjson.loads(m.raw) == cat


def test_bpp_uri_falls_back_to_catalog():
    rec, _ = norm(ubc_catalog(), publisher_uri=None)
    assert rec.meta.bpp_uri == ubc_catalog()["beckn:bppUri"]


# --- every catalog in the fixtures normalises -----------------------------------------------------------

FIXTURE_FILES = sorted({
    *glob.glob(str(FIX / "UBC_catalog_publish_*.json")), *glob.glob(str(FIX / "*on_discover*.json")),
    *glob.glob(str(FIX / "PSN_*.json")), *glob.glob(str(FIX / "DEG_on_discover_*.json")),
    *glob.glob(str(FIX / "ABHIMAIL_*on_discover*.json")), *glob.glob(str(FIX / "ABHIMAIL_*discover-response.json")),
    str(FIX / "spec/examples/lts-constructed/publish.json"), str(FIX / "spec/examples/lts-constructed/on_discover.json"),
    *glob.glob(str(FIX / "spec/examples/ubc/**/*.json"), recursive=True),
})


def _fixture_items(cat: dict) -> list[tuple[dict, str | None]]:
    """(item, id of its enclosing legacy provider or None)."""
    for key in ("beckn:items", "resources"):
        if key in cat:
            return [(it, None) for it in cat[key]]
    return [(it, p["id"]) for p in cat.get("providers", []) for it in p.get("items", [])]


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: Path(p).name)
def test_every_fixture_catalog_normalises(path):
    cats = catalogs_of(json.loads(Path(path).read_text(encoding="utf-8")))
    for i, cat in enumerate(cats):
        rec, warnings = norm(cat, index=i, fallback_id=f"fallback-{i}")
        items = _fixture_items(cat)
        assert [d.item_id for d in rec.items] == [it.get("beckn:id", it.get("id")) for it, _p in items]
        assert rec.meta.item_count == len(items)
        for d, (it, enclosing) in zip(rec.items, items):
            stored = orjson.loads(d.raw)
            if enclosing is not None and "provider" not in it:   # a legacy item gets its provider, nothing else
                assert stored.pop("provider")["id"] == enclosing
            assert stored == it
            if "onnectorType" in json.dumps(it):
                assert d.connector_type is not None
            if "Point" in json.dumps(it) or "geo:lat" in json.dumps(it):
                assert d.lon is not None and d.lat is not None
        assert not [w for w in warnings if w["code"] == "INVALID_LOCATION"]


def test_ubc_on_discover_two_competing_offers_on_one_item():
    cat = catalogs_of(load("UBC_on_discover_specific-item-catalog.json"))[0]
    rec, _ = norm(cat)
    [doc] = rec.items
    assert sorted(o.price for o in doc.offers) == sorted(o["beckn:price"]["value"] for o in cat["beckn:offers"])


def test_lts_catalog_resources_and_considerations():
    cat = catalogs_of(load("spec/examples/lts-constructed/on_discover.json"))[0]
    rec, _ = norm(cat, dialect="B")
    assert rec.meta.dialect == "B"
    [doc] = rec.items
    res = cat["resources"][0]
    assert doc.item_id == res["id"]
    assert (doc.lon, doc.lat) == tuple(res["availableAt"][0]["geo"]["coordinates"])
    assert doc.provider_id == cat["provider"]["id"]  # resource has none: the catalog's provider
    assert doc.qr == res["resourceAttributes"]["qrIdentifier"]
    [offer] = doc.offers
    spec = cat["offers"][0]["considerations"][0]["considerationAttributes"]
    assert (offer.price, offer.currency, offer.unit) == (spec["price"], spec["priceCurrency"], spec["unitCode"])
    assert rec.meta.valid_from == epoch(cat["validity"]["startDate"])
    assert rec.meta.expires_at == min(epoch(cat["validity"]["endDate"]), NOW + SETTINGS.catalog_max_age_s)


def test_legacy_attribute_shape_psn_examples():
    attrs = load("PSN_EvChargingService_item-example.json")
    offer_attrs = load("PSN_EvChargingService_offer-example.json")
    item = {"id": "legacy-1", "descriptor": {"name": "Legacy"},
            "resourceAttributes": {"@context": "https://x/EvChargingService/v1/context.jsonld",
                                   "@type": "ChargingService", **attrs}}
    offer = {"id": "o1", "resourceIds": ["legacy-1"],
             "offerAttributes": {"@context": "https://x/EvChargingOffer/v1/context.jsonld", "@type": "ChargingOffer",
                                 **offer_attrs}}
    rec, warnings = norm({"id": "c", "descriptor": {}, "resources": [item], "offers": [offer]}, dialect="B")
    [doc] = rec.items
    assert (doc.lon, doc.lat) == tuple(attrs["serviceLocation"]["geo"]["coordinates"])  # flat serviceLocation
    assert doc.status == attrs["stationStatus"] and doc.status_at == NOW
    assert doc.amenities == [a.upper() for a in attrs["amenityFeature"]]
    [o] = doc.offers
    ps = offer_attrs["priceSpecification"]
    assert (o.price, o.currency, o.unit) == (ps["price"], ps["priceCurrency"], "KWH")
    assert o.payment_methods == ["UPI", "CARD", "WALLET"]  # "UPI, Card, Wallet"
    assert o.tariff_model == "PER_KWH"


def test_legacy_providers_shape_with_nested_offers_and_ref_location():
    cat = catalogs_of(load("ABHIMAIL_charging_service_v1_on_discover.json"))[0]
    with pytest.raises(BecknError) as ei:
        norm(cat)  # no id and no fallback: cannot be keyed
    assert ei.value.code == E.SCH_REQUIRED_FIELD_MISSING and ei.value.paths == "catalogs[0]"
    rec, _ = norm(cat, fallback_id="legacy")
    [doc] = rec.items
    prov = cat["providers"][0]
    assert rec.meta.catalog_id == "legacy"
    assert doc.provider_id == prov["id"] and doc.provider_name == prov["descriptor"]["name"]
    assert [o.id for o in doc.offers] == [prov["items"][0]["offers"][0]["id"]]
    assert doc.offers[0].valid_to == epoch(prov["items"][0]["offers"][0]["validity"]["end"])
    assert "items" not in orjson.loads(rec.meta.header)["providers"][0]
    # the item's availableAt is a reference to the provider location: resolved when no other point exists
    item = copy.deepcopy(prov["items"][0])
    del item["itemAttributes"]["serviceLocation"]
    cat2 = {"id": "c", "providers": [{**prov, "items": [item]}]}
    rec2, _ = norm(cat2)
    assert (rec2.items[0].lon, rec2.items[0].lat) == tuple(prov["locations"][0]["geo"]["coordinates"])


def test_ev_prefixed_attribute_pack():
    doc = load("ABHIMAIL_schema-pack_discover-response.json")
    cat = catalogs_of(doc)[0]
    rec, _ = norm(cat, fallback_id="x")
    [d] = rec.items
    attrs = cat["beckn:items"][0]["beckn:attributes"]
    loc = cat["beckn:items"][0]["beckn:locations"][0]
    assert (d.connector_type, d.max_kw, d.power_type) == (attrs["ev:connectorType"], attrs["ev:maxPowerKW"], attrs["ev:currentType"])
    assert d.status == attrs["ev:availability"]
    assert (d.lon, d.lat) == (loc["geo:lng"], loc["geo:lat"])
    assert d.station_id == attrs["ev:stationId"]


# --- typed fields ----------------------------------------------------------------------------------------

def test_vocabulary_canonicalisation_and_lists():
    items = [a_item("i1", connectorType="ccs", vehicleType=["4W", "2-wheeler", "4-WHEELER"], powerType="ac_three_phase",
                    chargingSpeed="fast", amenityFeature="Wi-Fi"),
             a_item("i2", connectorType="Type 2", maxPowerKW="22", vehicleType="FOUR_WHEELER")]
    rec, _ = norm(a_catalog(items))
    d1, d2 = rec.items
    assert d1.connector_type == "CCS2" and d2.connector_type == "Type2"
    assert d1.vehicle_types == ["4-WHEELER", "2-WHEELER"] and d2.vehicle_types == ["4-WHEELER"]
    assert d1.power_type == "AC_3_PHASE" and d1.charging_speed == "FAST" and d1.amenities == ["WI-FI"]
    assert d2.max_kw == 22.0


def test_bad_numbers_and_flags_warn_not_reject():
    items = [a_item("i1", maxPowerKW="lots", _item={"beckn:isActive": "no"}), a_item("i2", _item={"beckn:isActive": False}),
             a_item("i3", maxPowerKW=True)]
    rec, warnings = norm(a_catalog(items))
    d1, d2, d3 = rec.items
    assert d1.max_kw is None and d3.max_kw is None
    assert d1.is_active is True and d2.is_active is False
    paths = {w["paths"] for w in warnings}
    assert "catalogs[0].beckn:items[0]" in paths and "catalogs[0].beckn:items[0].beckn:isActive" in paths


def test_location_sources_and_order():
    geo = lambda lon, lat: {"geo": {"type": "Point", "coordinates": [lon, lat]}}  # noqa: E731
    both = a_item("both", chargingStation={"id": "s", "serviceLocation": geo(77.1, 12.1)},
                  _item={"beckn:availableAt": [geo(78.0, 13.0)]})
    avail = a_item("avail", _item={"beckn:availableAt": [{"address": "no geo"}, geo(78.0, 13.0)]})
    flat = a_item("flat", serviceLocation=geo(76.5, 11.5))
    none = a_item("none")
    rec, warnings = norm(a_catalog([both, avail, flat, none]))
    got = {d.item_id: (d.lon, d.lat) for d in rec.items}
    assert got == {"both": (77.1, 12.1), "avail": (78.0, 13.0), "flat": (76.5, 11.5), "none": (None, None)}
    assert warnings == []


@pytest.mark.parametrize("coords", [["x", 12.0], [77.0], [True, 12.0], "77,12"])
def test_invalid_location_indexed_without_location(coords):
    item = a_item("bad", chargingStation={"id": "s", "serviceLocation": {"geo": {"type": "Point", "coordinates": coords}}})
    rec, warnings = norm(a_catalog([item, a_item("ok")]))
    assert [d.item_id for d in rec.items] == ["bad", "ok"]
    assert rec.items[0].lon is None and rec.items[0].lat is None
    assert [(w["code"], w["paths"]) for w in warnings] == [("INVALID_LOCATION", "catalogs[0].beckn:items[0]")]


def test_invalid_first_location_falls_back_with_warning():
    item = a_item("x", chargingStation={"id": "s", "serviceLocation": {"geo": {"type": "Point", "coordinates": ["x", 1]}}},
                  _item={"beckn:availableAt": [{"geo": {"type": "Point", "coordinates": [77.5, 12.5]}}]})
    rec, warnings = norm(a_catalog([item]))
    assert (rec.items[0].lon, rec.items[0].lat) == (77.5, 12.5)
    assert [w["code"] for w in warnings] == ["INVALID_LOCATION"]


# --- time windows ------------------------------------------------------------------------------------------

def _windows(*periods):
    rec, warnings = norm(a_catalog([a_item("w", _item={"beckn:availabilityWindow": list(periods)})]))
    return rec.items[0], warnings


def tp(**kw):
    return {"@type": "beckn:TimePeriod", **{f"schema:{k}": v for k, v in kw.items()}}


def test_windows_with_offsets_are_the_same_instants():
    z, _ = _windows(tp(startTime="2026-01-04T08:00:00Z", endTime="2026-01-04T14:00:00Z"))
    ist, _ = _windows(tp(startTime="2026-01-04T13:30:00+05:30", endTime="2026-01-04T19:30:00+05:30"))
    local, _ = _windows(tp(startTime="2026-01-04T13:30:00", endTime="2026-01-04T19:30:00"))  # no offset: IST
    expected = [(epoch("2026-01-04T08:00:00+00:00"), epoch("2026-01-04T14:00:00+00:00"))]
    assert z.windows == ist.windows == local.windows == expected
    assert z.daily_windows == []


def test_windows_as_times_of_day_are_daily_local_seconds():
    d, warnings = _windows(tp(startTime="06:00:00", endTime="22:00:00"), tp(startTime="13:00:00Z", endTime="18:30:00+05:30"),
                           tp(startTime="22:00", endTime="06:00"))
    assert warnings == []
    assert d.windows == []
    # 13:00Z is 18:30 IST; 18:30+05:30 is 18:30 IST; 22:00-06:00 wraps past midnight
    assert d.daily_windows == [(6 * 3600, 22 * 3600), (18 * 3600 + 1800, 18 * 3600 + 1800), (22 * 3600, 6 * 3600)]


def test_windows_from_dates_and_bad_windows():
    d, warnings = _windows(tp(startDate="2026-01-01T00:00:00Z"), tp(startDate="2026-02-01T00:00:00Z", endDate="2026-02-02"),
                           tp(startTime="06:00:00", endTime="2026-01-04T10:00:00Z"), tp(startTime="later", endTime="soon"),
                           tp(startDate="2026-03-02T00:00:00Z", endDate="2026-03-01T00:00:00Z"))
    assert d.windows == [(epoch("2026-01-01T00:00:00+00:00"), N.FAR_FUTURE),
                         (epoch("2026-02-01T00:00:00+00:00"), epoch("2026-02-03T00:00:00+05:30"))]  # bare end date: whole day
    assert [w["paths"] for w in warnings] == [f"catalogs[0].beckn:items[0].beckn:availabilityWindow[{k}]" for k in (2, 3, 4)]
    assert {w["code"] for w in warnings} == {"INVALID_WINDOW"}


def test_time_of_day_offer_lunch_promo():
    promo = a_offer("lunch", ["i1"], **{
        "beckn:validity": tp(startDate="2026-01-01T00:00:00+05:30", endDate="2026-06-30T23:59:59+05:30",
                             startTime="12:00:00", endTime="14:00:00"),
        "beckn:offerAttributes": {"@context": "https://x/EvChargingOffer/v1/context.jsonld", "@type": "ChargingOffer",
                                  "tariffModel": "time_of_day"},
        "beckn:price": {"currency": "INR", "value": 16.2, "applicableQuantity": {"unitText": "kWh"}}})
    rec, _ = norm(a_catalog([a_item("i1")], [promo]))
    [o] = rec.items[0].offers
    assert o.daily == (12 * 3600, 14 * 3600)
    assert o.valid_from == epoch("2026-01-01T00:00:00+05:30") and o.valid_to == epoch("2026-06-30T23:59:59+05:30")
    assert (o.price, o.unit, o.tariff_model) == (16.2, "KWH", "TIME_OF_DAY")


# --- offers ------------------------------------------------------------------------------------------------

def test_offer_attached_to_every_item_it_names_and_references_checked():
    offers = [a_offer("shared", ["i1", "i2"]), a_offer("partial", ["i2", "ghost"]), a_offer("orphan", ["ghost"]),
              a_offer("shared", ["i1"]), a_offer("inactive", ["i1"], **{"beckn:isActive": False})]
    rec, warnings = norm(a_catalog([a_item("i1"), a_item("i2"), a_item("i3")], offers))
    got = {d.item_id: [o.id for o in d.offers] for d in rec.items}
    assert got == {"i1": ["shared", "inactive"], "i2": ["shared", "partial"], "i3": []}
    assert [o for o in rec.items[0].offers if o.id == "inactive"][0].is_active is False
    assert [(w["code"], w["paths"]) for w in warnings] == [
        ("UNKNOWN_ITEM_REFERENCE", "catalogs[0].beckn:offers[1]"),
        ("UNKNOWN_ITEM_REFERENCE", "catalogs[0].beckn:offers[2]"),
        ("UNREFERENCED_OFFER", "catalogs[0].beckn:offers[2]"),
        ("DUPLICATE_OFFER", "catalogs[0].beckn:offers[3]"),
    ]


def test_catalog_validity_caps_expiry():
    soon = a_catalog([a_item("i")], **{"beckn:validity": tp(startDate="2026-01-01T00:00:00Z", endDate="2026-01-05T00:00:00Z")})
    late = a_catalog([a_item("i")], **{"beckn:validity": tp(endDate="2030-01-01T00:00:00Z"), "beckn:isActive": False})
    r1, _ = norm(soon)
    r2, _ = norm(late)
    assert r1.meta.expires_at == epoch("2026-01-05T00:00:00+00:00")
    assert r1.meta.valid_from == epoch("2026-01-01T00:00:00+00:00")
    assert r2.meta.expires_at == NOW + SETTINGS.catalog_max_age_s
    assert r2.meta.is_active is False


# --- rejection ------------------------------------------------------------------------------------------

def _reject(cat, **kw) -> BecknError:
    with pytest.raises(BecknError) as ei:
        norm(cat, **kw)
    assert ei.value.status == 400
    return ei.value


@pytest.mark.parametrize("mutate, code, path", [
    (lambda c: c.pop("beckn:id"), E.SCH_REQUIRED_FIELD_MISSING, "catalogs[3]"),
    (lambda c: c.update({"beckn:id": 42}), E.SCH_SCHEMA_VALIDATION_FAILED, "catalogs[3]"),
    (lambda c: c.update({"beckn:id": "x" * (N.MAX_ID_LEN + 1)}), E.SCH_SCHEMA_VALIDATION_FAILED, "catalogs[3]"),
    (lambda c: c.update({"beckn:items": {"a": 1}}), E.SCH_SCHEMA_VALIDATION_FAILED, "catalogs[3].beckn:items"),
    (lambda c: c["beckn:items"][1].pop("beckn:id"), E.SCH_REQUIRED_FIELD_MISSING, "catalogs[3].beckn:items[1]"),
    (lambda c: c["beckn:items"][1].update({"beckn:id": ""}), E.SCH_SCHEMA_VALIDATION_FAILED, "catalogs[3].beckn:items[1]"),
    (lambda c: c["beckn:items"].__setitem__(2, "item"), E.SCH_SCHEMA_VALIDATION_FAILED, "catalogs[3].beckn:items[2]"),
    (lambda c: c["beckn:items"][2].update({"beckn:id": c["beckn:items"][0]["beckn:id"]}),
     E.SCH_SCHEMA_VALIDATION_FAILED, "catalogs[3].beckn:items[2]"),
    (lambda c: c["beckn:offers"][1].pop("beckn:id"), E.SCH_REQUIRED_FIELD_MISSING, "catalogs[3].beckn:offers[1]"),
    (lambda c: c.update({"beckn:offers": "none"}), E.SCH_SCHEMA_VALIDATION_FAILED, "catalogs[3].beckn:offers"),
])
def test_invalid_catalogs_rejected_with_paths(mutate, code, path):
    cat = copy.deepcopy(ubc_catalog())
    mutate(cat)
    err = _reject(cat, index=3)
    assert (err.code, err.paths) == (code, path)


def test_lts_resource_without_id_rejected():
    cat = catalogs_of(load("spec/examples/lts-constructed/publish.json"))[0]
    cat = copy.deepcopy(cat)
    del cat["resources"][0]["id"]
    err = _reject(cat, dialect="B")
    assert (err.code, err.paths) == (E.SCH_REQUIRED_FIELD_MISSING, "catalogs[0].resources[0]")


def test_not_an_object_rejected():
    assert _reject(["catalog"]).paths == "catalogs[0]"


def test_too_many_items_rejected(monkeypatch):
    monkeypatch.setattr(normalize, "MAX_ITEMS", 2)      # read by the catalog-level normaliser
    err = _reject(ubc_catalog())
    assert (err.code, err.paths) == (E.SCH_SCHEMA_VALIDATION_FAILED, "catalogs[0].beckn:items")
    assert "2" in err.message


def test_warnings_are_capped():
    bad = {"geo": {"type": "Point", "coordinates": ["x", "y"]}}
    items = [a_item(f"i{k}", serviceLocation=bad) for k in range(N.MAX_WARNINGS + 20)]
    rec, warnings = norm(a_catalog(items))
    assert len(rec.items) == N.MAX_WARNINGS + 20
    assert len(warnings) == N.MAX_WARNINGS + 1
    assert warnings[-1]["code"] == "WARNINGS_TRUNCATED" and "20" in warnings[-1]["message"]


# --- MERGE -------------------------------------------------------------------------------------------------

def test_merge_catalog_items_and_offers_by_id():
    stored = ubc_catalog()
    first, second = stored["beckn:items"][0]["beckn:id"], stored["beckn:items"][1]["beckn:id"]
    patch = {
        "beckn:descriptor": {"schema:name": "Renamed"},
        "beckn:items": [
            {"beckn:id": first, "beckn:itemAttributes": {"maxPowerKW": 90, "qrIdentifier": None}},
            a_item("new-item"),
        ],
        "beckn:offers": [{"beckn:id": stored["beckn:offers"][0]["beckn:id"], "beckn:price": {"value": 40.0}}],
    }
    merged = merge_catalog(orjson.dumps(stored), patch)
    assert merged["beckn:descriptor"] == {**stored["beckn:descriptor"], "schema:name": "Renamed"}
    ids = [it["beckn:id"] for it in merged["beckn:items"]]
    assert ids == [it["beckn:id"] for it in stored["beckn:items"]] + ["new-item"]
    a0 = merged["beckn:items"][0]["beckn:itemAttributes"]
    assert a0["maxPowerKW"] == 90 and "qrIdentifier" not in a0
    assert a0["connectorType"] == stored["beckn:items"][0]["beckn:itemAttributes"]["connectorType"]
    assert merged["beckn:items"][1] == stored["beckn:items"][1] and second in ids
    o0 = merged["beckn:offers"][0]["beckn:price"]
    assert o0["value"] == 40.0 and o0["currency"] == stored["beckn:offers"][0]["beckn:price"]["currency"]
    assert merged["beckn:offers"][1:] == stored["beckn:offers"][1:]
    rec, _ = norm(merged)  # the merged catalog normalises like any other
    assert rec.items[0].max_kw == 90.0 and rec.items[0].qr is None


def test_merge_catalog_lts_resources_and_header_null():
    stored = catalogs_of(load("spec/examples/lts-constructed/publish.json"))[0]
    rid = stored["resources"][0]["id"]
    patch = {"validity": None, "resources": [{"id": rid, "descriptor": {"shortDesc": "now 24x7"}}]}
    merged = merge_catalog(orjson.dumps(stored), patch)
    assert "validity" not in merged
    assert merged["resources"][0]["descriptor"] == {**stored["resources"][0]["descriptor"], "shortDesc": "now 24x7"}
    assert merged["offers"] == stored["offers"]


def test_merge_patch_depth_is_bounded():
    deep: dict = {}
    node = deep
    for _ in range(M.MAX_MERGE_DEPTH + 5):
        node["x"] = {}
        node = node["x"]
    with pytest.raises(BecknError) as ei:
        merge_catalog(orjson.dumps(ubc_catalog()), {"beckn:descriptor": deep})
    assert ei.value.code == E.SCH_SCHEMA_VALIDATION_FAILED


def test_absurdly_nested_item_is_rejected_not_crashing():
    deep: list = []
    node = deep
    for _ in range(600):
        node.append([])
        node = node[0]
    err = _reject(a_catalog([a_item("i1"), a_item("i2", _item={"beckn:networkId": deep})]))
    assert (err.code, err.paths) == (E.SCH_SCHEMA_VALIDATION_FAILED, "catalogs[0].beckn:items[1]")


@pytest.mark.parametrize("parts", [
    ["Café Ünïon Station", "Straße 5", "\u0301abc", "ﬁne™ charging", "Karnāl", "ΣΑΣ", "İstanbul"],
    ["word" * 300, "x" * 999, "y" * 999, "z" * 999, "last words here"],      # over MAX_TEXT: cut as one text
])
def test_item_terms_are_the_terms_of_its_parts_joined(parts):
    # normalize analyses each text part on its own (and caches it); the terms must be the joined text's
    assert D._document_terms(parts) == document_terms((" ".join(parts)[:N.MAX_TEXT],))
