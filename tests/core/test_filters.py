"""cds.core.filters and cds.core.filter_compiler: dialect quirks, typed/JSON evaluation, windows, offers, lazy JSON.

Documents are built here by hand (typed fields and the published JSON side by side); expected results
are written out independently of the compiler (explicit id sets or plain Python over the typed fields).
"""

from __future__ import annotations

import glob
import json
import os
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import orjson
import pytest

from cds.core import filter_values
from cds.core.documents import CatalogMeta, ItemDoc, OfferDoc
from cds.core.filters import compile_filter


IST = ZoneInfo("Asia/Kolkata")
FIX = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures")
H = 3600
NOW = datetime(2026, 1, 4, 7, 0, tzinfo=timezone.utc).timestamp()   # 12:30 IST


def utc(*a: int) -> float:
    return datetime(*a, tzinfo=timezone.utc).timestamp()


def make_item(item_id: str, *, connector: str = "CCS2", kw: float = 60, vehicle: list[str] | None = None,
              provider: str = "ecopower-charging", windows: list[tuple[float, float]] | None = None,
              daily: list[tuple[int, int]] | None = None, raw_windows: list[dict] | None = None,
              offers: list[OfferDoc] | None = None, status: str | None = None, status_at: float | None = None,
              amenities: list[str] | None = None, extra_attrs: dict | None = None, lts: bool = False,
              catalog: str = "cat-1", bpp: str = "bpp.example.com", active: bool = True) -> ItemDoc:
    vehicle = ["4-WHEELER"] if vehicle is None else vehicle
    amenities = ["RESTAURANT", "WI-FI"] if amenities is None else amenities
    attrs = {"connectorType": connector, "maxPowerKW": kw, "vehicleType": vehicle if len(vehicle) != 1 else vehicle[0],
             "qrIdentifier": f"https://qr.example/{item_id}", "evseId": f"IN*ECO*{item_id}",
             "amenityFeature": amenities, "connectorFormat": "CABLE", "reservationSupported": True,
             "chargingStation": {"id": "ST-1", "serviceLocation": {
                 "geo": {"type": "Point", "coordinates": [77.5946, 12.9716]},
                 "address": {"addressLocality": "Bengaluru"}}}}
    if status is not None:
        attrs["stationStatus"] = status
    attrs.update(extra_attrs or {})
    if lts:
        raw = {"id": item_id, "provider": {"id": provider, "descriptor": {"name": "EcoPower"}},
               "resourceAttributes": attrs, "availabilityWindow": [
                   {k.split(":")[-1]: v for k, v in w.items()} for w in raw_windows or []],
               "availableAt": [{"geo": {"type": "Point", "coordinates": [77.5946, 12.9716]}}]}
    else:
        raw = {"beckn:id": item_id, "beckn:provider": {"beckn:id": provider,
                                                       "beckn:descriptor": {"schema:name": "EcoPower"}},
               "beckn:itemAttributes": attrs, "beckn:availabilityWindow": raw_windows or [],
               "beckn:rating": {"beckn:ratingValue": 4.5}, "beckn:isActive": active}
    return ItemDoc(bpp_id=bpp, catalog_id=catalog, item_id=item_id, provider_id=provider, provider_name="EcoPower",
                   lon=77.5946, lat=12.9716, connector_type=connector.upper() if connector.lower() == "ccs2" else connector,
                   max_kw=kw, vehicle_types=vehicle, amenities=amenities, qr=f"https://qr.example/{item_id}",
                   evse_id=f"IN*ECO*{item_id}", station_id="ST-1", reservation=True, is_active=active,
                   windows=windows or [], daily_windows=daily or [], status=status, status_at=status_at,
                   offers=offers or [], raw=orjson.dumps(raw), power_type="DC")


META = CatalogMeta(bpp_id="bpp.example.com", catalog_id="cat-1", header=orjson.dumps(
    {"beckn:id": "cat-1", "beckn:descriptor": {"schema:name": "EcoPower network"}, "beckn:bppId": "bpp.example.com"}))


def run(expr: str, docs: list[ItemDoc], now: float = NOW, meta: CatalogMeta = META, fresh: int = 900) -> set[str]:
    f = compile_filter(expr, tz="Asia/Kolkata", status_fresh_s=fresh)
    return {d.item_id for d in docs if f.predicate(d, meta, now)}


def fixture_expressions() -> list[str]:
    out: list[str] = []

    def walk(o: object) -> None:
        if isinstance(o, dict):
            for k, v in o.items():
                if k == "expression" and isinstance(v, str) or k == "filters" and isinstance(v, str):
                    out.append(v)
                else:
                    walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
    for path in glob.glob(os.path.join(FIX, "**", "*.json"), recursive=True):
        name = os.path.basename(path)
        if "discover" in name or "discovery" in name:
            with open(path, encoding="utf-8") as fh:
                walk(json.load(fh))
    return sorted(set(out))


FIXTURE_EXPRESSIONS = fixture_expressions()


def test_fixtures_have_expressions() -> None:
    assert len(FIXTURE_EXPRESSIONS) >= 15


@pytest.mark.parametrize("expr", FIXTURE_EXPRESSIONS)
def test_every_fixture_expression_compiles(expr: str) -> None:
    f = compile_filter(expr, tz=IST, status_fresh_s=900)
    f.predicate(make_item("x"), META, NOW)        # and evaluates without error


# --- real-world expressions -----------------------------------------------------------------------------

FLEET = [
    make_item("ccs2-60", kw=60),
    make_item("ccs2-120", kw=120, vehicle=["2-WHEELER", "4-WHEELER"]),
    make_item("type2-22", connector="Type2", kw=22),
    make_item("ccs2-30", kw=30),
    make_item("ccs2-lower", connector="ccs2", kw=50, provider="other-cpo"),
    make_item("chademo-50", connector="CHAdeMO", kw=50, vehicle=["3-WHEELER"]),
]


def test_connector_and_power() -> None:
    expr = "$[?(@.beckn:itemAttributes.connectorType == 'CCS2' && @.beckn:itemAttributes.maxPowerKW >= 50)]"
    expected = {d.item_id for d in FLEET if d.connector_type == "CCS2" and d.max_kw >= 50}
    assert expected == {"ccs2-60", "ccs2-120", "ccs2-lower"}
    assert run(expr, FLEET) == expected
    # the connector literal goes through the same vocabulary as the index
    assert run("$[?(@.beckn:itemAttributes.connectorType == 'ccs 2')]", FLEET) == {
        "ccs2-60", "ccs2-120", "ccs2-30", "ccs2-lower"}


@pytest.mark.parametrize("expr,expected", [
    ("$[?(@.beckn:itemAttributes.qrIdentifier == 'https://qr.example/type2-22')]", {"type2-22"}),
    ("$[?(@.beckn:id == 'ccs2-30')]", {"ccs2-30"}),
    ("$[?(@['beckn:id']=='ccs2-30')]", {"ccs2-30"}),
    ("$[?(@.beckn:provider.beckn:id == 'other-cpo')]", {"ccs2-lower"}),
    ("$[?(@['beckn:provider']['beckn:id']=='other-cpo')]", {"ccs2-lower"}),
    ("$[?(@['beckn:itemAttributes']['ev:evseId']=='IN*ECO*chademo-50')]", {"chademo-50"}),
    ("$[?(@.id == 'ccs2-30')]", {"ccs2-30"}),                                              # LTS spelling
    ("$[?(@.resourceAttributes.connectorType == 'Type2')]", {"type2-22"}),
    ("$.catalogs[*].resources[?(@.resourceAttributes.maxPowerKW > 60)]", {"ccs2-120"}),
    ("$.catalogs[*].beckn:items[?(@.beckn:id == 'ccs2-60')]", {"ccs2-60"}),
    ('$.catalogs[*].resources[*] ? (@.resourceAttributes.connectorType == "CHAdeMO")', {"chademo-50"}),
    ("$[?(@.beckn:itemAttributes.vehicleType == '2-WHEELER')]", {"ccs2-120"}),             # array any-match
    ("$[?(@.beckn:itemAttributes.vehicleType == '3W')]", {"chademo-50"}),                 # vocabulary
    ("$[?(@.beckn:itemAttributes.vehicleType in ['2W', '3-WHEELER'])]", {"ccs2-120", "chademo-50"}),
    ("$[?(@.beckn:itemAttributes.connectorType in ['Type2', 'CHAdeMO'])]", {"type2-22", "chademo-50"}),
    ("$[?('WI-FI' in @.beckn:itemAttributes.amenityFeature && @.beckn:itemAttributes.maxPowerKW < 30)]",
     {"type2-22"}),
    ("$[?(@.beckn:itemAttributes.maxPowerKW == 50 || @.beckn:itemAttributes.maxPowerKW == 22)]",
     {"ccs2-lower", "chademo-50", "type2-22"}),
    ("$[?(!(@.beckn:itemAttributes.connectorType == 'CCS2'))]", {"type2-22", "chademo-50"}),
    ("$[?(@.beckn:itemAttributes.connectorType != 'CCS2' && @.beckn:itemAttributes.maxPowerKW > 22)]",
     {"chademo-50"}),
    ("$[*]", {d.item_id for d in FLEET}),
    ("  $[?(@.beckn:id == 'ccs2-30')]\n", {"ccs2-30"}),
])
def test_item_filters(expr: str, expected: set[str]) -> None:
    assert run(expr, FLEET) == expected


def test_raw_json_paths() -> None:
    docs = [make_item("a", extra_attrs={"installedAt": "2025-01-01T00:00:00Z", "socketCount": 2}),
            make_item("b", connector="Type2", amenities=["PARKING"], extra_attrs={"socketCount": 1})]
    cases = {
        "$[?(@.beckn:rating.beckn:ratingValue >= 4)]": {"a", "b"},
        "$[?(@.beckn:itemAttributes.connectorFormat == 'CABLE' && @.beckn:itemAttributes.socketCount > 1)]": {"a"},
        "$[?(@['beckn:itemAttributes.chargingStation.serviceLocation.address.addressLocality'] == 'Bengaluru')]":
            {"a", "b"},
        "$[?(@.beckn:itemAttributes.chargingStation.serviceLocation.geo.coordinates[0] > 77)]": {"a", "b"},
        "$[?(@.beckn:itemAttributes.amenityFeature[?(@ == 'WI-FI')])]": {"a"},
        "$[?(length(@.beckn:itemAttributes.amenityFeature) == 2)]": {"a"},
        "$[?(count(@.beckn:itemAttributes.amenityFeature[*]) == 1)]": {"b"},
        "$[?(@.beckn:itemAttributes.installedAt)]": {"a"},
        # a time stored as Z compared with a +05:30 literal: the same instant
        "$[?(@.beckn:itemAttributes.installedAt >= '2025-01-01T05:30:00+05:30')]": {"a"},
        "$[?(@.beckn:itemAttributes.installedAt > '2025-01-01T05:30:00+05:30')]": set(),
        # DEG's vehicle-spec example names a path items do not have: nothing matches
        "$[?(@.beckn:fulfillment.beckn:deliveryAttributes.vehicle.make == 'Tata')]": set(),
        "$[?(@.beckn:isActive == true)]": {"a", "b"},
    }
    for expr, expected in cases.items():
        assert run(expr, docs) == expected, expr


def test_rfc_selectors_on_json() -> None:
    raw = {"a": [1, 2, 3, 4], "b": {"c": 1, "d": 2}}
    win = [{"schema:startTime": "06:00:00", "schema:endTime": "22:00:00"},
           {"schema:startTime": "23:00:00", "schema:endTime": "23:30:00"}]
    docs = [make_item("s", extra_attrs=raw, raw_windows=win, daily=[(6 * H, 22 * H), (23 * H, 23 * H + 1800)])]
    cases = {
        "@.beckn:itemAttributes.a[1:3] == 3": True, "@.beckn:itemAttributes.a[-1] == 4": True,
        "@.beckn:itemAttributes.a[::2] == 2": False, "@.beckn:itemAttributes.a[::2] == 3": True,
        "@.beckn:itemAttributes.b['c','d'] == 2": True, "@.beckn:itemAttributes.b.* == 2": True,
        "@.beckn:itemAttributes.a[9] == 1": False,
        "@.beckn:availabilityWindow[1].schema:startTime == '23:00:00'": True,
        "@.beckn:availabilityWindow[0].schema:startTime >= '23:00:00'": False,   # only the first window
        "@.beckn:availabilityWindow[*].schema:startTime >= '23:00:00'": True,
        "value(@.beckn:itemAttributes.b.c) == 1": True, "exists(@.beckn:itemAttributes.b)": True,
        "exists(@.beckn:itemAttributes.zz)": False,
    }
    for cond, expected in cases.items():
        assert run(f"$[?({cond})]", docs) == ({"s"} if expected else set()), cond


def test_rfc_typing_and_missing_fields() -> None:
    docs = [make_item("a", kw=60), make_item("b", kw=60, status="Available", status_at=NOW)]
    assert run("$[?(@.beckn:itemAttributes.maxPowerKW == '60')]", docs) == set()       # number vs string
    assert run("$[?(@.beckn:itemAttributes.maxPowerKW != '60')]", docs) == {"a", "b"}  # RFC: != is not ==
    assert run("$[?(@.beckn:itemAttributes.reservationSupported == 1)]", docs) == set()  # bool is not number
    assert run("$[?(@.beckn:itemAttributes.reservationSupported == true)]", docs) == {"a", "b"}
    assert run("$[?(@.beckn:itemAttributes.maxPowerKW < 'z')]", docs) == set()
    # a missing field never matches, not even with !=
    assert run("$[?(@.beckn:itemAttributes.stationStatus != 'Offline')]", docs) == {"b"}
    assert run("$[?(@.beckn:itemAttributes.noSuchField != 'x')]", docs) == set()


def test_station_status_expires() -> None:
    docs = [make_item("fresh", status="Available", status_at=NOW - 100),
            make_item("stale", status="Available", status_at=NOW - 2000),
            make_item("none")]
    assert run("$[?(@.beckn:itemAttributes.stationStatus == 'Available')]", docs) == {"fresh"}
    assert run("$[?(@.beckn:itemAttributes.stationStatus == 'AVAILABLE')]", docs) == {"fresh"}
    assert run("$[?(@.beckn:itemAttributes.stationStatus == 'Unknown')]", docs) == {"stale"}


# --- availability windows ------------------------------------------------------------------------------

UBC_WINDOW = ("$[?(@.beckn:itemAttributes.vehicleType == '4-WHEELER' && @.beckn:itemAttributes.connectorType == "
              "'CCS2' && @.beckn:availabilityWindow[?(@.schema:startTime <= '2026-01-04T20:00:00Z' && "
              "@.schema:endTime >= '2026-01-04T08:00:00Z')])]")


def test_ubc_overlap_window() -> None:
    docs = [
        make_item("inst-overlap", windows=[(utc(2026, 1, 4, 6), utc(2026, 1, 4, 22))]),
        make_item("inst-after", windows=[(utc(2026, 1, 4, 21), utc(2026, 1, 4, 23))]),
        make_item("inst-before", windows=[(utc(2026, 1, 4, 1), utc(2026, 1, 4, 7, 59))]),
        make_item("daily-day", daily=[(6 * H, 22 * H)]),        # 06-22 IST overlaps 13:30-01:30 IST
        make_item("daily-night-gap", daily=[(2 * H, 5 * H)]),   # 02-05 IST does not
        make_item("daily-late", daily=[(1 * H, 2 * H)]),        # 01-02 IST (next day) does
        make_item("no-windows"),
        make_item("two-wheeler", vehicle=["2-WHEELER"], daily=[(0, 0)]),
    ]
    assert run(UBC_WINDOW, docs) == {"inst-overlap", "daily-day", "daily-late"}
    f = compile_filter(UBC_WINDOW, tz=IST, status_fresh_s=900)
    assert f.time_window == (utc(2026, 1, 4, 8), utc(2026, 1, 4, 20))
    assert compile_filter("$[?(@.beckn:id == 'x')]", tz=IST, status_fresh_s=900).time_window is None


def test_offsets_are_normalised() -> None:
    # window starts 14:00Z = 19:30 IST; a string comparison with '...T19:00:00+05:30' would wrongly say <=
    docs = [make_item("w", windows=[(utc(2026, 1, 4, 14), utc(2026, 1, 4, 18))])]
    assert run("$[?(@.beckn:availabilityWindow[?(@.schema:startTime <= '2026-01-04T19:00:00+05:30')])]",
               docs) == set()
    assert run("$[?(@.beckn:availabilityWindow[?(@.schema:startTime <= '2026-01-04T19:30:00+05:30')])]",
               docs) == {"w"}
    # local date-time without offset = IST
    assert run("$[?(@.beckn:availabilityWindow[?(@.schema:startTime <= '2026-01-04T19:30:00')])]",
               docs) == {"w"}


DEG_CONTAIN = ("$[?(@.beckn:itemAttributes.connectorType == 'Type2' && @.beckn:availabilityWindow.schema:startTime "
               "<= '11:30:00' && @.beckn:availabilityWindow.schema:endTime >= '14:30:00')]")


def test_deg_containment_on_times_of_day() -> None:
    docs = [
        make_item("day", connector="Type2", daily=[(6 * H, 22 * H)]),
        make_item("afternoon", connector="Type2", daily=[(12 * H, 22 * H)]),
        make_item("split", connector="Type2", daily=[(6 * H, 12 * H), (12 * H, 22 * H)]),  # no single window
        make_item("night-wrap", connector="Type2", daily=[(10 * H, 2 * H)]),              # 10:00-02:00 wraps
        make_item("inst-contains", connector="Type2", windows=[(utc(2026, 1, 4, 5), utc(2026, 1, 4, 10))]),
        make_item("inst-short", connector="Type2", windows=[(utc(2026, 1, 4, 7), utc(2026, 1, 4, 8))]),
        make_item("ccs2-day", daily=[(6 * H, 22 * H)]),
    ]
    assert run(DEG_CONTAIN, docs) == {"day", "night-wrap", "inst-contains"}


def test_lts_window_and_dialect_independence() -> None:
    lts = ("$[?(@.resourceAttributes.connectorType == 'CCS2' && @.resourceAttributes.maxPowerKW >= 50 && "
           "@.availabilityWindow[?(@.startTime <= '2026-01-04T12:30:00Z' && @.endTime >= '2026-01-04T13:30:00Z')])]")
    ubc = lts.replace("@.resourceAttributes", "@.beckn:itemAttributes").replace(
        "@.availabilityWindow", "@.beckn:availabilityWindow").replace("@.startTime", "@.schema:startTime").replace(
        "@.endTime", "@.schema:endTime")
    for flag in (False, True):
        docs = [make_item("contains", lts=flag, windows=[(utc(2026, 1, 4, 12), utc(2026, 1, 4, 14))]),
                make_item("partial", lts=flag, windows=[(utc(2026, 1, 4, 13), utc(2026, 1, 4, 14))]),
                make_item("daily", lts=flag, daily=[(17 * H, 20 * H)]),     # 11:30Z-14:30Z local is inside
                make_item("slow", lts=flag, kw=22, windows=[(utc(2026, 1, 4, 12), utc(2026, 1, 4, 14))])]
        assert run(lts, docs) == run(ubc, docs) == {"contains", "daily"}


def test_window_fallback_to_json() -> None:
    raw = [{"@type": "beckn:TimePeriod", "schema:startTime": "06:00:00", "schema:endTime": "22:00:00"}]
    docs = [make_item("typed", raw_windows=raw, daily=[(6 * H, 22 * H)]), make_item("empty")]
    assert run("$[?(@.beckn:availabilityWindow[?(@['@type'] == 'beckn:TimePeriod')])]", docs) == {"typed"}
    assert run("$[?(@.beckn:availabilityWindow)]", docs) == {"typed"}
    assert run("$[?(@.beckn:availabilityWindow.schema:startTime == 'soon')]", docs) == set()


# --- offers ----------------------------------------------------------------------------------------------


def offer(oid: str, price: float, **kw: object) -> OfferDoc:
    raw = {"beckn:id": oid, "beckn:descriptor": {"schema:name": f"Tariff {oid}"},
           "beckn:price": {"currency": "INR", "value": price}}
    return OfferDoc(id=oid, price=price, currency="INR", unit="KWH", tariff_model=kw.pop("tariff", "PER_KWH"),
                    payment_methods=kw.pop("pay", ["UPI"]), raw=orjson.dumps(raw), **kw)  # type: ignore[arg-type]


def test_offer_predicates_honour_validity() -> None:
    docs = [
        make_item("cheap", offers=[offer("o1", 18.0, valid_from=utc(2025, 10, 1), valid_to=utc(2026, 3, 31))]),
        make_item("expired", offers=[offer("o2", 18.0, valid_to=utc(2026, 1, 1))]),
        make_item("future", offers=[offer("o3", 18.0, valid_from=utc(2026, 2, 1))]),
        make_item("inactive", offers=[offer("o4", 18.0, is_active=False)]),
        make_item("lunch", offers=[offer("o5", 16.2, daily=(12 * H, 14 * H), tariff="TIME_OF_DAY")]),
        make_item("dear", offers=[offer("o6", 45.0, pay=["UPI", "WALLET"]), offer("o7", 19.0, valid_to=utc(2025, 1, 1))]),
    ]
    expr = "$.catalogs[*].offers[?(@.beckn:price.value < 20)]"
    assert run(expr, docs) == {"cheap", "lunch"}                              # now = 12:30 IST
    assert run(expr, docs, now=utc(2026, 1, 4, 10)) == {"cheap"}             # 15:30 IST: promo over
    assert run('$.catalogs[*].offers[*] ? (@.price.value < 20)', docs) == {"cheap", "lunch"}
    assert run("$.catalogs[*].offers[?(@.beckn:offerAttributes.tariffModel == 'TIME_OF_DAY')]", docs) == {"lunch"}
    assert run("$.catalogs[*].offers[?(@.beckn:acceptedPaymentMethod == 'WALLET')]", docs) == {"dear"}
    assert run("$.catalogs[*].offers[?(@.beckn:descriptor.schema:name == 'Tariff o5')]", docs) == {"lunch"}
    assert run("$.catalogs[*].offers[*]", docs) == {"cheap", "lunch", "dear"}
    assert run("$[?(@.beckn:offers[?(@.beckn:price.value < 20)] && @.beckn:id != 'cheap')]", docs) == {"lunch"}
    assert run("$[?(@.beckn:offers.beckn:price.value >= 45)]", docs) == {"dear"}


# --- catalogs --------------------------------------------------------------------------------------------


def test_catalog_rooted_filters() -> None:
    other = CatalogMeta(bpp_id="bpp.other", catalog_id="cat-2", header=orjson.dumps({"id": "cat-2"}))
    d1, d2 = make_item("x"), make_item("y", catalog="cat-2", bpp="bpp.other")
    f = compile_filter("$.catalogs[?(@.beckn:id == 'cat-2')].beckn:items[?(@.beckn:itemAttributes.maxPowerKW > 1)]",
                       tz=IST, status_fresh_s=900)
    assert not f.predicate(d1, META, NOW) and f.predicate(d2, other, NOW)
    assert f.pushdowns.terms == {"catalog_id": frozenset({"cat-2"})}
    assert f.pushdowns.ranges == {"max_kw": (1, None)}
    g = compile_filter("$.catalogs[?(@.beckn:descriptor.schema:name == 'EcoPower network')]", tz=IST, status_fresh_s=9)
    assert g.predicate(d1, META, NOW) and not g.predicate(d2, other, NOW)


# --- lazy JSON ---------------------------------------------------------------------------------------------


def test_json_decoded_only_when_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = filter_values.decode_json
    monkeypatch.setattr(filter_values, "decode_json", lambda raw: calls.append(1) or real(raw))
    docs = [make_item(f"i{n}") for n in range(5)]
    run("$[?(@.beckn:itemAttributes.connectorType == 'CCS2' && @.beckn:itemAttributes.maxPowerKW >= 50)]", docs)
    assert calls == []
    run("$[?(@.beckn:rating.beckn:ratingValue > 1 && @.beckn:itemAttributes.connectorFormat == 'CABLE')]", docs)
    assert len(calls) == 5                     # once per document, shared by both JSON paths
