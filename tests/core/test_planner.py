"""cds.core.planner: discover intent -> Query."""

from __future__ import annotations

import json
import os

import pytest

from cds.config import Settings
from cds.core.errors import SCH_INVALID_JSONPATH, SCH_TYPE_NOT_SUPPORTED, BecknError
from cds.core.models import DiscoverIntent, SpatialSpec
from cds.core.packs import pack_name, schema_packs
from cds.core.planner import build_query, text_tokens

FIX = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures")
SETTINGS = Settings(max_results=50)


def intent_from_fixture(name: str) -> DiscoverIntent:
    """A minimal dialect-A reading of a fixture (the protocol parser is another module's job)."""
    with open(os.path.join(FIX, name), encoding="utf-8") as fh:
        body = json.load(fh)
    msg = body["message"]
    flt = msg.get("filters")
    expr = flt.get("expression") if isinstance(flt, dict) else flt
    spatial = [SpatialSpec(op=s["op"], targets=[s["targets"]] if isinstance(s["targets"], str) else s["targets"],
                           geometry=s.get("geometry"), distance_m=s.get("distanceMeters"))
               for s in msg.get("spatial", [])]
    return DiscoverIntent(text_search=msg.get("text_search"), expression=expr, spatial=spatial,
                          schema_context=body["context"].get("schema_context", []))


def test_ubc_time_range_request() -> None:
    q = build_query(intent_from_fixture("UBC_discovery-within-a-timerange.json"), settings=SETTINGS)
    assert len(q.spatial) == 1 and q.spatial[0].op == "dwithin" and q.spatial[0].distance_m == 10_000
    assert q.origin == (77.59, 12.94)
    assert q.terms == {"vehicle_types": frozenset({"4-WHEELER"}), "connector_type": frozenset({"CCS2"})}
    assert q.time_window is not None and q.time_window[1] - q.time_window[0] == 12 * 3600
    assert q.packs == frozenset({"EvChargingService/v1"})
    assert q.predicate is not None and q.limit == 50
    assert q.expression and q.expression.startswith("$[?(")


def test_spatial_only_request_has_no_predicate() -> None:
    q = build_query(intent_from_fixture("UBC_discovery-within-a-circular-boundary.json"), settings=SETTINGS)
    assert q.predicate is None and q.terms == {} and q.origin == (77.59, 12.94)


def test_origin_for_routes_and_areas() -> None:
    route = SpatialSpec(op="s_dwithin", geometry={"type": "LineString", "coordinates": [[77.59, 12.97], [76.64, 12.3]]},
                        distance_m=5000)
    area = SpatialSpec(op="s_within", geometry={"type": "Polygon", "coordinates": [
        [[77.0, 12.0], [78.0, 12.0], [78.0, 13.0], [77.0, 13.0], [77.0, 12.0]]]})
    pt = SpatialSpec(op="s_dwithin", geometry={"type": "Point", "coordinates": [77.1, 12.5]}, distance_m=100)
    assert build_query(DiscoverIntent(spatial=[route]), settings=SETTINGS).origin == (77.59, 12.97)
    assert build_query(DiscoverIntent(spatial=[area]), settings=SETTINGS).origin == (77.5, 12.5)
    # the first Point wins over an earlier route
    assert build_query(DiscoverIntent(spatial=[route, pt]), settings=SETTINGS).origin == (77.1, 12.5)
    assert build_query(DiscoverIntent(text_search="ccs2"), settings=SETTINGS).origin is None


@pytest.mark.parametrize("requested,expected", [(None, 50), (10, 10), (500, 50), (0, 50)])
def test_limit(requested: int | None, expected: int) -> None:
    assert build_query(DiscoverIntent(text_search="x"), settings=SETTINGS, limit=requested).limit == expected


def test_text_tokens() -> None:
    # docs/decisions.md §25: analysed (folded, stemmed), stop and filler words dropped, distinct, bounded
    assert text_tokens("Fast DC charging near Koramangala, please!") == ("fast", "dc", "charg", "koramangala")
    assert text_tokens("Give me all charging stations.") == ("charg", "station")
    assert text_tokens("ccs2 CCS2 ccs2") == ("ccs2",)
    assert text_tokens("Café CAFE") == ("cafe",)
    assert len(text_tokens(" ".join(f"w{i}" for i in range(100)))) == 16
    assert text_tokens(None) == () and text_tokens("near me") == ()
    with pytest.raises(BecknError):
        text_tokens("x" * 5000)


def test_packs_compare_on_the_trailing_pack_name() -> None:
    urls = [
        "https://raw.githubusercontent.com/beckn/protocol-specifications-v2/refs/heads/core-v2.0.0-rc/schema/EvChargingService/v1/context.jsonld",
        "https://raw.githubusercontent.com/beckn/protocol-specifications-new/refs/heads/main/schema/EvChargingService/v1/context.jsonld",
        "https://raw.githubusercontent.com/beckn/protocol-specifications-v2/refs/heads/core-v2.0.0-rc/schema/core/v2/context.jsonld",
    ]
    assert {pack_name(u) for u in urls} == {"EvChargingService/v1", None}
    assert schema_packs(urls) == frozenset({"EvChargingService/v1"})
    assert schema_packs([urls[2]]) is None and schema_packs([]) is None


def test_errors() -> None:
    with pytest.raises(BecknError) as e:
        build_query(DiscoverIntent(expression="$[?(@.a ==)]"), settings=SETTINGS)
    assert e.value.code == SCH_INVALID_JSONPATH
    with pytest.raises(BecknError) as e:
        build_query(DiscoverIntent(expression="$.a", filter_type="sql"), settings=SETTINGS)
    assert e.value.code == SCH_TYPE_NOT_SUPPORTED
    many = [SpatialSpec(op="s_dwithin", geometry={"type": "Point", "coordinates": [77, 12]}, distance_m=1)] * 9
    with pytest.raises(BecknError):
        build_query(DiscoverIntent(spatial=many), settings=SETTINGS)
