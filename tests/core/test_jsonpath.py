"""cds.core.jsonpath: parsing, dialect quirks, typed/JSON evaluation, windows, offers, pushdowns, robustness.

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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds.core import filters

from cds.core import jsonpath
from cds.core.errors import SCH_INVALID_JSONPATH, BecknError
from cds.core.filters import compile_filter
from cds.core.documents import CatalogMeta, ItemDoc, OfferDoc

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
    real = filters._decode
    monkeypatch.setattr(filters, "_decode", lambda raw: calls.append(1) or real(raw))
    docs = [make_item(f"i{n}") for n in range(5)]
    run("$[?(@.beckn:itemAttributes.connectorType == 'CCS2' && @.beckn:itemAttributes.maxPowerKW >= 50)]", docs)
    assert calls == []
    run("$[?(@.beckn:rating.beckn:ratingValue > 1 && @.beckn:itemAttributes.connectorFormat == 'CABLE')]", docs)
    assert len(calls) == 5                     # once per document, shared by both JSON paths


# --- pushdowns ---------------------------------------------------------------------------------------------


def test_pushdowns_only_from_top_level_conjunctions() -> None:
    def pd(expr: str) -> filters.Pushdowns:
        return compile_filter(expr, tz=IST, status_fresh_s=900).pushdowns
    p = pd("$[?(@.beckn:itemAttributes.connectorType == 'ccs2' && @.beckn:itemAttributes.maxPowerKW >= 50 "
           "&& @.beckn:itemAttributes.maxPowerKW < 150 && @.beckn:id in ['a', 'b'])]")
    assert p.terms == {"connector_type": frozenset({"CCS2"}), "item_id": frozenset({"a", "b"})}
    assert p.ranges == {"max_kw": (50, 150)}
    assert pd("$[?(@.beckn:itemAttributes.connectorType == 'CCS2' || @.beckn:id == 'x')]") == filters.Pushdowns()
    assert pd("$[?(!(@.beckn:id == 'x'))]") == filters.Pushdowns()
    assert pd("$[?(@.beckn:itemAttributes.stationStatus == 'Available')]") == filters.Pushdowns()
    assert pd("$.catalogs[*].offers[?(@.beckn:id == 'o1')]") == filters.Pushdowns()


def test_list_field_conjunction_keeps_a_superset() -> None:
    """`vehicleType == A && vehicleType == B` on a list field: one list can contain both, so the pushdown is
    one of the sets (never their empty intersection) and the item with both matches."""
    expr = ("$[?(@.beckn:itemAttributes.vehicleType == '2-WHEELER' "
            "&& @.beckn:itemAttributes.vehicleType == '4-WHEELER')]")
    p = compile_filter(expr, tz=IST, status_fresh_s=900).pushdowns
    assert p.terms["vehicle_types"] in (frozenset({"2-WHEELER"}), frozenset({"4-WHEELER"}))
    assert run(expr, FLEET) == {"ccs2-120"}
    assert passes_pushdowns(p, FLEET[1])
    # a scalar field still intersects: no connector is both
    scalar = ("$[?(@.beckn:itemAttributes.connectorType == 'CCS2' "
              "&& @.beckn:itemAttributes.connectorType == 'Type2')]")
    assert compile_filter(scalar, tz=IST, status_fresh_s=900).pushdowns.terms == {"connector_type": frozenset()}


CONNECTORS = ["CCS2", "Type2", "CHAdeMO", "GB_T"]
VEHICLES = ["2-WHEELER", "3-WHEELER", "4-WHEELER"]
KWS = [3.3, 7.4, 22, 30, 50, 60, 120, 150]
IDS = ["a", "b", "c", "d"]
PROVIDERS = ["p1", "p2"]

docs_st = st.lists(st.builds(
    lambda i, c, kw, vs, p: make_item(i, connector=c, kw=kw, vehicle=vs, provider=p),
    st.sampled_from(IDS), st.sampled_from(CONNECTORS), st.sampled_from(KWS),
    st.lists(st.sampled_from(VEHICLES), min_size=1, max_size=3, unique=True), st.sampled_from(PROVIDERS)),
    min_size=1, max_size=6)


def atom_st() -> st.SearchStrategy:
    """(expression text, python oracle over ItemDoc)."""
    ops = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
           "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}
    conn = st.tuples(st.sampled_from(["==", "!="]), st.sampled_from(CONNECTORS)).map(
        lambda t: (f"@.beckn:itemAttributes.connectorType {t[0]} '{t[1]}'",
                   lambda d, t=t: ops[t[0]](d.connector_type, t[1])))
    power = st.tuples(st.sampled_from(list(ops)), st.sampled_from(KWS + [0, 55, 500])).map(
        lambda t: (f"@.beckn:itemAttributes.maxPowerKW {t[0]} {t[1]}", lambda d, t=t: ops[t[0]](d.max_kw, t[1])))
    power_rev = st.tuples(st.sampled_from([">=", "<"]), st.sampled_from(KWS)).map(
        lambda t: (f"{t[1]} {t[0]} @.beckn:itemAttributes.maxPowerKW", lambda d, t=t: ops[t[0]](t[1], d.max_kw)))
    veh = st.sampled_from(VEHICLES).map(
        lambda v: (f"@.beckn:itemAttributes.vehicleType == '{v}'", lambda d, v=v: v in d.vehicle_types))
    ident = st.lists(st.sampled_from(IDS), min_size=1, max_size=3).map(
        lambda ids: ("@['beckn:id'] in [" + ", ".join(f"'{i}'" for i in ids) + "]", lambda d, ids=ids: d.item_id in ids))
    prov = st.sampled_from(PROVIDERS).map(
        lambda p: (f"@.beckn:provider.beckn:id == '{p}'", lambda d, p=p: d.provider_id == p))
    raw = st.sampled_from(KWS).map(  # the same number through the JSON path (not a typed field)
        lambda k: (f"@['beckn:itemAttributes']['maxPowerKW'] > {k}", lambda d, k=k: d.max_kw > k))
    return st.one_of(conn, power, power_rev, veh, ident, prov, raw)


def expr_st() -> st.SearchStrategy:
    def combine(children: st.SearchStrategy) -> st.SearchStrategy:
        pair = st.tuples(children, children)
        return st.one_of(
            pair.map(lambda p: (f"({p[0][0]} && {p[1][0]})", lambda d, p=p: p[0][1](d) and p[1][1](d))),
            pair.map(lambda p: (f"({p[0][0]} || {p[1][0]})", lambda d, p=p: p[0][1](d) or p[1][1](d))),
            children.map(lambda c: (f"!({c[0]})", lambda d, c=c: not c[1](d))),
        )
    tree = st.recursive(atom_st(), combine, max_leaves=5)
    # top level: a conjunction, so that pushdowns have something to work with
    return st.lists(tree, min_size=1, max_size=4).map(
        lambda xs: (" && ".join(x[0] for x in xs), lambda d, xs=xs: all(x[1](d) for x in xs)))


def passes_pushdowns(p: filters.Pushdowns, d: ItemDoc) -> bool:
    for attr, allowed in p.terms.items():
        v = getattr(d, attr)
        if not (set(v) & allowed if isinstance(v, list) else v in allowed):
            return False
    for attr, (lo, hi) in p.ranges.items():
        v = getattr(d, attr)
        if v is None or (lo is not None and v < lo) or (hi is not None and v > hi):
            return False
    return True


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(docs_st, expr_st())
def test_predicate_matches_oracle_and_pushdowns_are_supersets(docs: list[ItemDoc], ex) -> None:
    text, oracle = ex
    f = compile_filter(f"$[?({text})]", tz=IST, status_fresh_s=900)
    for d in docs:
        got = f.predicate(d, META, NOW)
        assert got == oracle(d), text
        if got:
            assert passes_pushdowns(f.pushdowns, d), text


# --- invalid input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("expr", [
    "", "   ", "$[?(@.a == 1]", "$[?(@.a == 1)", "$[?(@.a = 1)]", "$[?(@.a === 1)]", "$[?(@.a <> 1)]",
    "$[?(@.a =~ 'x')]", "$[?(@.a == 'x)]", "$[?()]", "$[?(@.a == 1)] trailing", "@.a == 1", "$..geo",
    "$[?(@.a == $.b)]", "$[?(match(@.a, 'x'))]", "$[?(@.a like_regex 'x')]", "$[?(@.a starts with 'x')]",
    "$.foo", "$[?(@.a == 1)].beckn:id", "$[?(@.a &&)]", "$[?(@.a ||| @.b)]", "$[?('x')]", "$[?(1 == )]",
    "$[?(@.a in 'x')]", "$[?(length(@.a))]", "$[?(@.a == [1])]", "$['a'", "$[?(@[0:1:0])]",
    "$.catalogs[*].providers[?(@.id == 1)]", "$[?(@.a == 1e999)]", "$[?(@.a == 'bad \\q escape')]",
    '$[?(@.a == "x")] ? ', "$[?(unknownfn(@.a))]", "$[?(@.a == nul)]",
])
def test_invalid_expressions(expr: str) -> None:
    with pytest.raises(BecknError) as e:
        compile_filter(expr, tz=IST, status_fresh_s=900)
    assert e.value.code == SCH_INVALID_JSONPATH and e.value.status == 400
    assert e.value.message


def test_bounds() -> None:
    with pytest.raises(BecknError, match="too long"):
        compile_filter("$[?(@.a == '" + "x" * 5000 + "')]", tz=IST, status_fresh_s=1)
    with pytest.raises(BecknError, match="nested too deeply"):
        compile_filter("$[?(" + "(" * 20 + "@.a == 1" + ")" * 20 + ")]", tz=IST, status_fresh_s=1)
    with pytest.raises(BecknError, match="nested too deeply"):
        compile_filter("$[?(" + "!" * 40 + "@.a)]", tz=IST, status_fresh_s=1)
    with pytest.raises(BecknError, match="too complex"):
        compile_filter("$[?(" + " || ".join(f"@.a == {i}" for i in range(120)) + ")]", tz=IST, status_fresh_s=1)
    with pytest.raises(BecknError, match="position"):
        compile_filter("$[?(@.a == 1 && )]", tz=IST, status_fresh_s=1)
    # just inside the bounds is fine
    compile_filter("$[?(" + "(" * 10 + "@.a == 1" + ")" * 10 + ")]", tz=IST, status_fresh_s=1)


ALPHABET = list("$@.[]()?*,:'\"=!<>&|-0123456789 ") + ["beckn:", "@.a", "==", "&&", "||", "in", "true", "null",
                                                       "exists(", "[?(", ")]", "'CCS2'", "availabilityWindow",
                                                       "startTime", "offers", "catalogs", "items"]


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=80), st.lists(st.sampled_from(ALPHABET), max_size=40).map("".join),
                 st.lists(st.sampled_from(ALPHABET), max_size=30).map(lambda xs: "$[?(" + "".join(xs) + ")]")))
def test_garbage_only_ever_raises_becknerror(text: str) -> None:
    try:
        f = compile_filter(text, tz=IST, status_fresh_s=900)
    except BecknError as e:
        assert e.code == SCH_INVALID_JSONPATH
        return
    for d in FLEET[:2]:
        assert f.predicate(d, META, NOW) in (True, False)
