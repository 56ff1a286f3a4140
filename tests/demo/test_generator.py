"""The load-test network generator: determinism, exact counts, schema validity, placement, mix, ids,
offers, registry keys, publish splitting and the discover query mix."""

from __future__ import annotations

import base64
import csv
import math
import re
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import nacl.exceptions
import nacl.signing
import numpy as np
import orjson
import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from cds.demo import generator as g
from cds.demo import geography, market
from tests.schemas import RC_API_URI, _registry, errors, validate_catalog_publish

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CSV = Path(g.__file__).parent / "cities" / "in_cities_geonames_pop15000.csv"
NOW = datetime(2026, 1, 4, tzinfo=timezone.utc)
ITEM_ID = re.compile(r"^IND\*[A-Z0-9]{3}\*[A-Za-z0-9]{10}\*[A-Za-z0-9]{10}\*[A-Za-z0-9]{14}$")
LEV_CONNECTORS = {"AC-001", "Type6", "15A"}
DC_CONNECTORS = {"CCS2", "CHAdeMO", "DC-001"}


@pytest.fixture(scope="module")
def net() -> g.Network:
    return g.generate_network(4000, seed=7, now=NOW)


def _items(net: g.Network) -> list[dict]:
    return [it for _, cat in net.iter_catalogs() for it in cat["beckn:items"]]


def _catalog_bytes(net: g.Network) -> bytes:
    return b"\n".join(orjson.dumps(cat) for _, cat in net.iter_catalogs())


def _km(lon1, lat1, lon2, lat2):
    """Haversine distance in km (numpy-broadcasting)."""
    lon1, lat1, lon2, lat2 = map(np.radians, (lon1, lat1, lon2, lat2))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 6371.0 * 2 * np.arcsin(np.sqrt(a))


def _seg_km(lon, lat, a, b):
    """Distance from points to segment a-b in km (local equirectangular projection)."""
    k = math.cos(math.radians((a[1] + b[1]) / 2)) * 111.32
    px, py = (np.asarray(lon) - a[0]) * k, (np.asarray(lat) - a[1]) * 111.32
    bx, by = (b[0] - a[0]) * k, (b[1] - a[1]) * 111.32
    t = np.clip((px * bx + py * by) / (bx * bx + by * by), 0, 1)
    return np.hypot(px - t * bx, py - t * by)


def _csv_cities():
    with open(CSV, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return (np.array([float(r["longitude"]) for r in rows]), np.array([float(r["latitude"]) for r in rows]),
            np.array([int(r["population"]) for r in rows]), [r["name"] for r in rows])


def _corridor_segments():
    lon, lat, _, names = _csv_cities()
    at = {n: (lon[names.index(n)], lat[names.index(n)]) for c in geography.CORRIDORS for n in (c.a, c.b)}
    return [(at[c.a], at[c.b]) for c in geography.CORRIDORS]


# ---------------------------------------------------------------- determinism and counts


def test_same_seed_gives_identical_bytes_and_other_seed_differs():
    a = g.generate_network(1500, seed=11, now=NOW)
    b = g.generate_network(1500, seed=11, now=NOW)
    c = g.generate_network(1500, seed=12, now=NOW)
    assert _catalog_bytes(a) == _catalog_bytes(b)
    assert orjson.dumps(a.registry_records()) == orjson.dumps(b.registry_records())
    assert orjson.dumps(a.query_mix(50, seed=3)) == orjson.dumps(b.query_mix(50, seed=3))
    assert _catalog_bytes(a) != _catalog_bytes(c)
    assert {r["signing_public_key"] for r in a.registry_records()}.isdisjoint(
        r["signing_public_key"] for r in c.registry_records())
    assert orjson.dumps(a.query_mix(50, seed=3)) != orjson.dumps(a.query_mix(50, seed=4))


@pytest.mark.parametrize("n, cpos", [(1, None), (2, None), (3, None), (17, None), (2500, None), (4003, 9), (30, 40)])
def test_connector_count_is_exact(n, cpos):
    net = g.generate_network(n, seed=5, cpos=cpos, now=NOW)
    items = _items(net)
    assert len(items) == n
    stations = Counter(it["beckn:itemAttributes"]["chargingStation"]["id"] for it in items)
    if n > 1:
        assert all(2 <= k <= 10 for k in stations.values())
    counts = net.counts()
    assert counts["items"] == counts["connectors"] == n
    assert counts["stations"] == len(stations)
    assert counts["offers"] == sum(len(cat["beckn:offers"]) for _, cat in net.iter_catalogs())
    assert counts["bpps"] == len(net.bpps) == len({cat["beckn:bppId"] for _, cat in net.iter_catalogs()})
    if cpos is not None:
        assert len(net.bpps) == min(cpos, n // 2)
    assert sum(b.connectors for b in net.bpps) == n


def test_default_cpo_count_scales_with_size():
    assert len(g.generate_network(1000, now=NOW).bpps) == 5
    assert len(g.generate_network(100_000, now=NOW).bpps) == 250  # planning only: catalogs are lazy
    assert len(g.generate_network(1_000_000, now=NOW).bpps) == 600


def test_bad_arguments_are_refused():
    for bad in (0, -5, market.MAX_CONNECTORS + 1):
        with pytest.raises(ValueError):
            g.generate_network(bad)
    with pytest.raises(ValueError):
        g.generate_network(100, cpos=0)
    net = g.generate_network(100, now=NOW)
    with pytest.raises(ValueError):
        net.query_mix(-1)
    with pytest.raises(ValueError):
        net.query_mix(5, weights={"bogus": 1.0})


def test_streaming_does_not_materialise_and_matches_the_dict(net):
    fresh = g.generate_network(4000, seed=7, now=NOW)
    streamed = [(b.subscriber_id, cat) for b, cat in fresh.iter_catalogs()]
    assert "catalogs" not in fresh.__dict__
    assert streamed == [(sub, cat) for sub, cats in net.catalogs.items() for cat in cats]


# ---------------------------------------------------------------- schema validity


def test_fixture_passes_and_broken_body_fails_the_publish_validator():
    body = orjson.loads((FIXTURES / "UBC_catalog_publish_ev-charging-catalog-publish.json").read_bytes())
    validate_catalog_publish(body, "A")
    del body["message"]["catalogs"][0]["beckn:bppId"]
    assert errors(body, "catalog_publish", "A")


def test_every_publish_body_validates_against_the_rc_schema(net):
    bodies = list(net.publish_payloads(timestamp=NOW, id_seed=1))
    assert sum(len(cat["beckn:items"]) for _, b in bodies for cat in b["message"]["catalogs"]) == 4000
    for _, body in bodies:
        validate_catalog_publish(body, "A")


def _pack_validator(folder: str, name: str, strip: tuple[str, ...] = ()):
    core = yaml.safe_load((FIXTURES / "spec/openapi/core-v2-attributes-rc.yaml").read_text())
    pack = yaml.safe_load((FIXTURES / f"spec/schemas/{folder}/attributes.yaml").read_text())
    core_uri = ("https://raw.githubusercontent.com/beckn/protocol-specifications-v2/refs/tags/"
                "core-2.0.0-rc-eos-release/schema/core/v2/attributes.yaml")
    reg = Registry().with_resources([(core_uri, Resource.from_contents(core, DRAFT202012)),
                                     ("urn:pack", Resource.from_contents(pack, DRAFT202012))])
    v = Draft202012Validator({"$ref": f"urn:pack#/components/schemas/{name}"}, registry=reg)
    return lambda obj: list(v.iter_errors({k: x for k, x in obj.items() if k not in strip}))


def test_item_and_offer_attributes_validate_against_the_ev_packs(net):
    service = _pack_validator("EvChargingService-v1", "ChargingService")
    offer = _pack_validator("EvChargingOffer-v1", "ChargingOffer", strip=("@context", "@type"))
    assert service({"connectorType": "SCHUKO", "maxPowerKW": 7})  # the validator does check enums
    for _, cat in net.iter_catalogs():
        for it in cat["beckn:items"]:
            assert not service(it["beckn:itemAttributes"]), it["beckn:id"]
        for o in cat["beckn:offers"]:
            assert not offer(o["beckn:offerAttributes"]), o["beckn:id"]


# ---------------------------------------------------------------- placement and mix


def test_locations_are_in_india_near_cities_or_on_corridors(net):
    pts = {}
    for it in _items(net):
        st = it["beckn:itemAttributes"]["chargingStation"]
        pts[st["id"]] = st["serviceLocation"]["geo"]["coordinates"]
    lon, lat = np.array([p[0] for p in pts.values()]), np.array([p[1] for p in pts.values()])
    assert ((lon >= 68.0) & (lon <= 97.5) & (lat >= 6.5) & (lat <= 37.5)).all()
    c_lon, c_lat, c_pop, _ = _csv_cities()
    near_city = _km(lon[:, None], lat[:, None], c_lon[None, :], c_lat[None, :]).min(axis=1) <= 40
    on_road = np.zeros(len(lon), bool)
    for a, b in _corridor_segments():
        on_road |= _seg_km(lon, lat, a, b) <= 2
    assert (near_city | on_road).all()
    assert 0.03 < on_road.mean() < 0.3  # a share of stations along the corridors, not most of them
    # Population weighting: the ten biggest cities hold ~19 % of the CSV's people and get a like share.
    top = np.argsort(-c_pop)[:10]
    pop_share = c_pop[top].sum() / c_pop.sum()
    near_top = (_km(lon[:, None], lat[:, None], c_lon[top][None, :], c_lat[top][None, :]) <= 25).any(axis=1)
    assert near_top.mean() > 0.7 * pop_share


def test_connector_mix_is_roughly_as_configured(net):
    items = _items(net)
    seen = Counter(f"{it['beckn:itemAttributes']['connectorType']}/{it['beckn:itemAttributes']['maxPowerKW']:g}"
                   for it in items)
    f = net.counts()["corridor_stations"] / net.counts()["stations"]
    expected = Counter()
    for table, share in ((market.CITY_ARCHETYPES, 1 - f), (market.CORRIDOR_ARCHETYPES, f)):
        for arche, w in table.items():
            for key, x in market.ARCHETYPES[arche].items():
                expected[key] += share * w * x
    assert set(seen) <= set(market.CONNECTORS)
    for key in market.CONNECTORS:
        assert abs(seen[key] / len(items) - expected[key]) < 0.03, key
    lev = sum(v for k, v in seen.items() if k.split("/")[0] in LEV_CONNECTORS) / len(items)
    ultra = (seen["CCS2/240"] + seen["CCS2/360"]) / len(items)
    assert 0.2 < lev < 0.45 and 0 < ultra < 0.05


def test_power_type_speed_and_vehicle_type_are_consistent(net):
    rank = {"SLOW": 0, "NORMAL": 1, "FAST": 2, "ULTRAFAST": 3}
    by_kw = {}
    for it in _items(net):
        a = it["beckn:itemAttributes"]
        kw, ctype = a["maxPowerKW"], a["connectorType"]
        assert (a["powerType"] == "DC") == (ctype in DC_CONNECTORS)
        if a["powerType"] != "DC":
            assert kw <= 22 and a["powerType"] == ("AC_3_PHASE" if kw > 7.4 else "AC_SINGLE_PHASE")
        assert 0 < a["minPowerKW"] < kw
        by_kw.setdefault(kw, set()).add(a["chargingSpeed"])
        if ctype in LEV_CONNECTORS:
            assert a["vehicleType"] == ["2-WHEELER", "3-WHEELER"] and kw == 3.3
        else:
            assert a["vehicleType"] == "4-WHEELER"
    assert all(len(s) == 1 for s in by_kw.values())  # one band per power level
    bands = [rank[next(iter(by_kw[k]))] for k in sorted(by_kw)]
    assert bands == sorted(bands)  # bands never go down as power goes up
    # Anchors from the UBC on_discover example: 22 kW AC NORMAL, 60 kW DC FAST, 120 kW DC ULTRAFAST.
    assert by_kw[22] == {"NORMAL"} and by_kw[60] == {"FAST"} and by_kw[120] == {"ULTRAFAST"}


def test_item_shape_variety(net):
    items = _items(net)
    windows = [it.get("beckn:availabilityWindow") for it in items]
    assert any(w is None for w in windows)  # 24x7
    assert any(w and w[0]["schema:startTime"] == "06:00:00" for w in windows)  # daily times of day
    assert any(w and "T" in w[0]["schema:startTime"] for w in windows)  # UBC date-time windows
    status = Counter(it["beckn:itemAttributes"].get("stationStatus") for it in items)
    assert status[None] and status["Available"] and status["Occupied"] and status["OutOfService"]
    assert 0 < sum(not it["beckn:isActive"] for it in items) < 0.05 * len(items)
    assert {it["beckn:itemAttributes"]["parkingType"] for it in items} >= {"Mall", "FuelStation", "OnStreet"}
    assert any(it["beckn:itemAttributes"]["reservationSupported"] for it in items)
    assert any(not it["beckn:itemAttributes"]["reservationSupported"] for it in items)


# ---------------------------------------------------------------- ids and offers


def test_ids_are_unique_and_follow_the_ubc_nomenclature(net):
    items, qrs, codes = set(), set(), {}
    for bpp, cat in net.iter_catalogs():
        assert cat["beckn:bppId"] == bpp.subscriber_id and cat["beckn:bppUri"] == bpp.url
        offer_ids = [o["beckn:id"] for o in cat["beckn:offers"]]
        assert len(offer_ids) == len(set(offer_ids))
        for it in cat["beckn:items"]:
            iid, a = it["beckn:id"], it["beckn:itemAttributes"]
            assert ITEM_ID.match(iid), iid
            _, code, station, _, _ = iid.split("*")
            assert code == bpp.code and station == a["chargingStation"]["id"]
            assert it["beckn:provider"]["beckn:id"] == bpp.provider_id
            assert iid not in items and a["qrIdentifier"] not in qrs
            items.add(iid)
            qrs.add(a["qrIdentifier"])
        codes[bpp.code] = bpp.subscriber_id
    assert len(codes) == len(net.bpps)
    catalog_ids = [(b.subscriber_id, cat["beckn:id"]) for b, cat in net.iter_catalogs()]
    assert len(catalog_ids) == len(set(catalog_ids))


def _valid_at(period: dict, at: datetime) -> bool:
    start = datetime.fromisoformat(period["schema:startDate"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(period["schema:endDate"].replace("Z", "+00:00"))
    return start <= at <= end


def test_offers_reference_existing_items_and_every_item_has_a_current_tariff(net):
    models = Counter()
    for bpp, cat in net.iter_catalogs():
        ids = {it["beckn:id"] for it in cat["beckn:items"]}
        priced = set()
        for o in cat["beckn:offers"]:
            assert o["beckn:items"] and set(o["beckn:items"]) <= ids
            assert o["beckn:provider"] == bpp.provider_id
            assert o["beckn:price"]["currency"] == "INR" and o["beckn:price"]["value"] > 0
            assert "UPI" in o["beckn:acceptedPaymentMethod"]
            attrs, validity = o["beckn:offerAttributes"], o["beckn:validity"]
            models[attrs["tariffModel"]] += 1
            if attrs["tariffModel"] == "PER_KWH":
                assert o["beckn:price"]["applicableQuantity"]["unitCode"] == "KWH"
                assert 5 <= o["beckn:price"]["value"] <= 35
                if _valid_at(validity, NOW):
                    priced.update(o["beckn:items"])
            if attrs["tariffModel"] == "TIME_OF_DAY":
                assert (validity["schema:startTime"], validity["schema:endTime"]) == ("12:00:00", "14:00:00")
            if "idleFeePolicy" in attrs:
                models["idle"] += 1
                assert attrs["idleFeePolicy"]["applicableQuantity"]["unitCode"] == "MIN"
        assert priced == ids
        assert _valid_at(cat["beckn:validity"], NOW)
    assert models["PER_KWH"] and models["PER_MINUTE"] and models["TIME_OF_DAY"] and models["idle"]


# ---------------------------------------------------------------- registry and publish requests


def test_registry_keys_verify_the_bpps_signatures(net):
    records = {r["subscriber_id"]: r for r in net.registry_records()}
    assert set(records) == {b.subscriber_id for b in net.bpps} | {net.bap.subscriber_id}
    msg = b"(created): 1641287875\n(expires): 1641291475\ndigest: BLAKE-512=abc"
    for b in [*net.bpps, net.bap]:
        r = records[b.subscriber_id]
        assert (r["type"], r["status"], r["domain"], r["key_id"], r["url"]) == (
            "BAP" if b is net.bap else "BPP", "SUBSCRIBED", market.DOMAIN, b.key_id, b.url)
        assert r["valid_from"] < r["valid_until"]
        sig = b.signing_key().sign(msg).signature
        nacl.signing.VerifyKey(base64.b64decode(r["signing_public_key"])).verify(msg, sig)
    other = nacl.signing.VerifyKey(base64.b64decode(records[net.bpps[1].subscriber_id]["signing_public_key"]))
    with pytest.raises(nacl.exceptions.BadSignatureError):
        other.verify(msg, net.bpps[0].signing_key().sign(msg).signature)
    assert [r["subscriber_id"] for r in net.registry_records(include_bap=False)] == [b.subscriber_id for b in net.bpps]


def test_publish_requests_are_split_under_the_limit():
    net = g.generate_network(5000, seed=3, cpos=1, now=NOW)  # one CPO, three catalogs of ~1.7k connectors
    limit = 5 * 1024 * 1024
    raw = list(net.publish_payload_bytes(limit, timestamp=NOW, id_seed=9))
    dicts = list(net.publish_payloads(limit, timestamp=NOW, id_seed=9))
    assert len(raw) == len(dicts) == 3 == net.counts()["catalogs"]
    assert [body for _, body in raw] == [orjson.dumps(d) for _, d in dicts]
    assert all(len(body) <= limit for _, body in raw)
    seen = [cat["beckn:id"] for _, d in dicts for cat in d["message"]["catalogs"]]
    assert sorted(seen) == sorted(cat["beckn:id"] for _, cat in net.iter_catalogs())
    ids = set()
    for bpp, d in dicts:
        ctx = d["context"]
        assert (ctx["version"], ctx["action"], ctx["ttl"]) == ("2.0.0", "catalog_publish", "PT30S")
        assert ctx["domain"] == market.DOMAIN
        assert ctx["bpp_id"] == bpp.subscriber_id == d["message"]["catalogs"][0]["beckn:bppId"]
        ids.add(ctx["message_id"])
    assert len(ids) == 3
    # Default ids are fresh on every call.
    first = [d["context"]["message_id"] for _, d in g.generate_network(20, now=NOW).publish_payloads()]
    again = [d["context"]["message_id"] for _, d in g.generate_network(20, now=NOW).publish_payloads()]
    assert set(first).isdisjoint(again)


# ---------------------------------------------------------------- discover query mix

_LITERAL = re.compile(r"@\.beckn:(id|itemAttributes\.qrIdentifier|itemAttributes\.evseId) == '([^']+)'")
_WINDOW = re.compile(r"startTime <= '([^']+)' && @\.schema:endTime >= '([^']+)'")


def test_query_mix_references_existing_items_and_areas(net):
    discover = Draft202012Validator(
        {"$ref": f"{RC_API_URI}#/paths/~1beckn~1discover/get/requestBody/content/application~1json/schema"},
        registry=_registry())
    items = [it for it in _items(net) if it["beckn:isActive"]]
    lookup = {"id": {it["beckn:id"] for it in items},
              "itemAttributes.qrIdentifier": {it["beckn:itemAttributes"]["qrIdentifier"] for it in items},
              "itemAttributes.evseId": {it["beckn:itemAttributes"]["evseId"] for it in items}}
    pts = np.array([it["beckn:itemAttributes"]["chargingStation"]["serviceLocation"]["geo"]["coordinates"]
                    for it in items])
    labeled = net.labeled_query_mix(300, seed=2)
    kinds = Counter(k for k, _ in labeled)
    assert set(kinds) == set(market.QUERY_KINDS) and len(labeled) == 300
    hits = Counter()
    for kind, body in labeled:
        assert not list(discover.iter_errors(body)), kind
        assert body["context"]["bap_id"] == net.bap.subscriber_id
        expr = body["message"].get("filters", {}).get("expression", "")
        spatial = body["message"].get("spatial", [])
        if kind == "qr":
            field, value = _LITERAL.search(expr).groups()
            assert value in lookup[field]  # every QR/id lookup names an existing, active connector
        elif kind == "route":
            line = spatial[0]["geometry"]["coordinates"]
            assert spatial[0]["op"] == "s_dwithin" and 2000 <= spatial[0]["distanceMeters"] <= 5000
            lon, lat = np.array(line).T
            assert any((_seg_km(lon, lat, a, b) < 0.1).all() for a, b in _corridor_segments())
            near = min(_seg_km(pts[:, 0], pts[:, 1], line[i], line[i + 1]).min() for i in range(len(line) - 1))
            hits[kind] += near * 1000 <= spatial[0]["distanceMeters"]
        else:
            (lon, lat), radius = spatial[0]["geometry"]["coordinates"], spatial[0]["distanceMeters"]
            assert 5000 <= radius <= 15000
            hits[kind] += (_km(pts[:, 0], pts[:, 1], lon, lat) * 1000 <= radius).any()
            if kind == "time_window":
                end, start = _WINDOW.search(expr).groups()
                assert datetime.fromisoformat(start.replace("Z", "+00:00")) < datetime.fromisoformat(
                    end.replace("Z", "+00:00"))
            if kind == "radius":
                assert "connectorType ==" in expr
    # Queries land where the stations are (a route sub-segment may miss in a small network).
    assert hits["radius"] >= 0.9 * kinds["radius"] and hits["time_window"] >= 0.9 * kinds["time_window"]
    assert hits["route"] >= 0.5 * kinds["route"]


# ---------------------------------------------------------------- CLI


def test_cli_writes_reproducible_outputs(tmp_path, capsys):
    args = ["--connectors", "1200", "--seed", "4", "--queries", "40", "--now", "2026-01-04T00:00:00Z"]
    assert g.main([*args, "--out", str(tmp_path / "a")]) == 0
    assert g.main([*args, "--out", str(tmp_path / "b")]) == 0
    assert '"items": 1200' in capsys.readouterr().out
    a, b = tmp_path / "a", tmp_path / "b"
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.name != "manifest.json")
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file() and p.name != "manifest.json")
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    net = g.generate_network(1200, seed=4, now=NOW)
    assert orjson.loads((a / "registry.json").read_bytes()) == net.registry_records()
    bodies = [orjson.loads(p.read_bytes()) for p in sorted((a / "publish").glob("*.json"))]
    assert sum(len(c["beckn:items"]) for body in bodies for c in body["message"]["catalogs"]) == 1200
    lines = (a / "queries.jsonl").read_bytes().splitlines()
    assert len(lines) == 40 and {orjson.loads(x)["kind"] for x in lines} <= set(market.QUERY_KINDS)
    keys = orjson.loads((a / "participants.json").read_bytes())
    assert keys["bap"]["subscriber_id"] == net.bap.subscriber_id and len(keys["bpps"]) == len(net.bpps)


def test_default_now_is_today_midnight_utc():
    net = g.generate_network(10)
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    assert net.now in (today, today - timedelta(days=1))  # tolerate a run across midnight
