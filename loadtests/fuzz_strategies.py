"""Hypothesis strategies over the grammar of what the CDS reads (docs/decisions.md §24; `python -m loadtests.fuzz`):
JSONPath filters, availability time windows, GeoJSON geometries and spatial constraints, contexts of both
dialects, and catalogs to publish. Values reach the extremes on purpose: numbers of any size (309-digit
integers, 1e308, -0, tiny), dates from year 0001 to 9999 with any offset, coordinates out of range,
self-intersecting and many-vertex polygons, long routes, deep or wide expressions, and some plain garbage.

Every strategy draws plain JSON values (dicts, lists, str, int, float, bool, None); the runner adds fresh
ids, the timestamp and the signature.
"""

from __future__ import annotations

import math
import random
from typing import Any

from hypothesis import strategies as st

LOCATION_TARGET = "$['beckn:itemAttributes.chargingStation.serviceLocation.geo']"

# ---- numbers and times ----------------------------------------------------------------------------------

huge_ints = st.one_of(
    st.integers(min_value=-(10 ** 20), max_value=10 ** 20),
    st.integers(min_value=1, max_value=400).map(lambda n: int("9" * n)),        # up to 400 digits
    st.integers(min_value=1, max_value=400).map(lambda n: -int("1" + "0" * n)),
    st.sampled_from([0, -0, 1, -1, 2 ** 53, 2 ** 53 + 1, 2 ** 63, 2 ** 64, -(2 ** 63) - 1]),
)
wide_floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e308, -1e308, 1.7976931348623157e308, 5e-324, -0.0, 1e-300, 0.1, 60.0, 1e15]),
)
numbers = st.one_of(huge_ints, wide_floats)


def number_text(draw: Any) -> str:
    """A JSONPath number literal as text (may be longer than any float, or carry a huge exponent)."""
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return str(draw(huge_ints))
    if kind == 1:
        return repr(draw(wide_floats)).replace("inf", "1e999")
    if kind == 2:
        return f"{draw(st.integers(-9, 9))}e{draw(st.integers(-500, 500))}"
    if kind == 3:
        return "1" + "0" * draw(st.integers(300, 320))
    return f"{draw(st.integers(0, 999))}.{draw(st.integers(0, 10 ** 6))}"


offsets = st.sampled_from(["Z", "z", "+05:30", "-05:30", "+14:00", "-12:00", "+23:59", "-23:59", "+0530", "+05", ""])


@st.composite
def date_times(draw: Any) -> str:
    year = draw(st.one_of(st.integers(1, 9999), st.sampled_from([1, 2, 1969, 1970, 2026, 9998, 9999])))
    month = draw(st.integers(1, 12))
    day = draw(st.integers(1, 28 if month == 2 else 30))
    if draw(st.booleans()) and draw(st.booleans()):
        return f"{year:04d}-{month:02d}-{day:02d}"
    hh = draw(st.sampled_from([0, 5, 12, 23, 24, 23]))
    mm = draw(st.sampled_from([0, 30, 59]))
    ss = draw(st.sampled_from([0, 59, 60]))
    frac = draw(st.sampled_from(["", ".5", ".999999999"]))
    return f"{year:04d}-{month:02d}-{day:02d}T{hh:02d}:{mm:02d}:{ss:02d}{frac}{draw(offsets)}"


@st.composite
def times_of_day(draw: Any) -> str:
    hh = draw(st.integers(0, 24))
    mm = draw(st.integers(0, 59))
    ss = draw(st.integers(0, 60))
    return f"{hh:02d}:{mm:02d}:{ss:02d}{draw(offsets)}"


time_texts = st.one_of(date_times(), times_of_day(), st.sampled_from(["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z",
                                                                      "0001-01-01T00:00:00+05:30",
                                                                      "9999-12-31T23:59:59-12:00", "24:00:00",
                                                                      "not-a-time", ""]))

# ---- JSONPath filters -----------------------------------------------------------------------------------

ITEM_PATHS = [
    "@.beckn:itemAttributes.connectorType", "@.beckn:itemAttributes.maxPowerKW", "@.beckn:itemAttributes.minPowerKW",
    "@.beckn:itemAttributes.powerType", "@.beckn:itemAttributes.vehicleType", "@.beckn:itemAttributes.evseId",
    "@.beckn:itemAttributes.qrIdentifier", "@.beckn:itemAttributes.chargingStation.id", "@.beckn:id",
    "@.beckn:provider.beckn:id", "@.beckn:itemAttributes.amenityFeature", "@.beckn:itemAttributes.stationStatus",
    "@.beckn:itemAttributes.reservationSupported", "@.beckn:isActive", "@.beckn:itemAttributes.parkingType",
    "@.beckn:itemAttributes.chargingSpeed", "@.beckn:rating.beckn:ratingValue", "@.beckn:descriptor.schema:name",
    "@.beckn:availabilityWindow.schema:startTime", "@.beckn:availabilityWindow.schema:endTime",
    "@.beckn:availabilityWindow[*].schema:startTime", "@.beckn:offers[*].beckn:price.value", "@.unknown.field",
    "@.beckn:itemAttributes.*", "@[*]", "@.a[0]", "@.a[-1]", "@.a[1:3]", "@.a[::2]", "@.a[9007199254740993]",
    "@.a['b','c']", "@.beckn:itemAttributes.chargingStation.serviceLocation.geo.coordinates[0]",
]
CMP_OPS = ["==", "!=", "<", "<=", ">", ">="]


@st.composite
def literals(draw: Any) -> str:
    kind = draw(st.integers(0, 6))
    if kind <= 1:
        return number_text(draw)
    if kind == 2:
        return "'" + draw(time_texts).replace("'", "") + "'"
    if kind == 3:
        return "'" + draw(st.sampled_from(["CCS2", "Type2", "CHAdeMO", "DC", "AC", "Available", "4-WHEELER", "x"])) + "'"
    if kind == 4:
        return draw(st.sampled_from(["true", "false", "null"]))
    if kind == 5:
        text = draw(st.text(max_size=12)).replace("\\", "").replace("'", "")
        return "'" + text + "'"
    vals = [draw(st.sampled_from(["'CCS2'", "'Type2'"])) if draw(st.booleans()) else number_text(draw)
            for _ in range(draw(st.integers(0, 6)))]
    return "[" + ", ".join(vals) + "]"


def _comparison(draw: Any) -> str:
    path = draw(st.sampled_from(ITEM_PATHS))
    op = draw(st.sampled_from(CMP_OPS + ["in", "nin"]))
    lit = draw(literals())
    if op in ("in", "nin") and not lit.startswith("["):
        lit = "[" + lit + "]"
    if draw(st.integers(0, 9)) == 0:
        path = f"{draw(st.sampled_from(['length', 'count', 'value']))}({path})"
    if draw(st.booleans()):
        return f"{path} {op} {lit}"
    return f"{lit} {op} {path}"


@st.composite
def predicates(draw: Any, depth: int = 0) -> str:
    kind = draw(st.integers(0, 9 if depth < 3 else 5))
    if kind <= 4:
        return _comparison(draw)
    if kind == 5:
        return draw(st.sampled_from(ITEM_PATHS))           # existence test
    if kind == 6:
        return "!(" + draw(predicates(depth + 1)) + ")"
    if kind == 7:
        # the DEG time-window pattern (start <= X && end >= Y), the interval logic path
        a, b = draw(time_texts), draw(time_texts)
        return (f"@.beckn:availabilityWindow.schema:startTime <= '{a}' && "
                f"@.beckn:availabilityWindow.schema:endTime >= '{b}'")
    parts = draw(st.lists(predicates(depth + 1), min_size=2, max_size=5))
    return "(" + draw(st.sampled_from([" && ", " || "])).join(parts) + ")"


@st.composite
def expressions(draw: Any) -> str:
    kind = draw(st.integers(0, 19))
    if kind == 0:
        return draw(st.text(max_size=60))                    # garbage
    if kind == 1:
        return "$[?(" + " || ".join(draw(predicates()) for _ in range(draw(st.integers(20, 60)))) + ")]"  # long
    if kind == 2:
        return "$.catalogs[*].offers[?(@.beckn:price.value " + draw(st.sampled_from(CMP_OPS)) + " " + \
            number_text(draw) + ")]"
    if kind == 3:
        return "$.catalogs[?(@.beckn:id == 'x')].items[?(" + draw(predicates()) + ")]"
    if kind == 4:
        return "$[?(" + "(" * 20 + "@.a == 1" + ")" * 20 + ")]"    # deep nesting
    if kind == 5:
        return "$.catalogs[*].resources[*] ? (" + draw(predicates()).replace("@.", "@.") + ")"
    return "$[?(" + draw(predicates()) + ")]"


@st.composite
def filters(draw: Any) -> Any:
    expr = draw(expressions())
    form = draw(st.integers(0, 9))
    if form == 0:
        return expr                                          # the bare-string form
    if form == 1:
        return {"type": draw(st.sampled_from(["jsonpath", "sql", "", None])), "expression": expr}
    return {"type": "jsonpath", "expression": expr}


# ---- geometries -----------------------------------------------------------------------------------------

lons = st.one_of(st.floats(68, 97, allow_nan=False), st.floats(-180, 180, allow_nan=False),
                 st.sampled_from([-180.0, 180.0, 0.0, -0.0, 181.0, 1e308, -1e308, 5e-324]))
lats = st.one_of(st.floats(8, 35, allow_nan=False), st.floats(-90, 90, allow_nan=False),
                 st.sampled_from([-90.0, 90.0, 89.9999, 91.0, 1e308]))


@st.composite
def positions(draw: Any) -> list:
    p = [draw(lons), draw(lats)]
    if draw(st.integers(0, 30)) == 0:
        p.append(draw(numbers))                              # altitude
    if draw(st.integers(0, 60)) == 0:
        return draw(st.sampled_from([[], [1], ["77", 12], [True, 12], None, [1, 2, 3, 4]]))
    return p


def _circle(cx: float, cy: float, r: float, n: int, twist: int = 1) -> list:
    """A closed ring: a regular polygon (twist 1), or a self-intersecting star {n/twist}."""
    pts = [[cx + r * math.cos(2 * math.pi * (i * twist % n) / n), cy + r * math.sin(2 * math.pi * (i * twist % n) / n)]
           for i in range(n)]
    return pts + [pts[0]]


@st.composite
def rings(draw: Any) -> list:
    kind = draw(st.integers(0, 5))
    cx, cy = draw(st.floats(70, 95)), draw(st.floats(10, 33))
    r = draw(st.sampled_from([0.001, 0.05, 0.5, 3.0]))
    if kind == 0:
        n = draw(st.integers(3, 12))
        pts = [draw(positions()) for _ in range(n)]
        return pts + [pts[0]] if draw(st.booleans()) else pts        # closed or not
    if kind == 1:
        return _circle(cx, cy, r, draw(st.sampled_from([4, 16, 16, 100, 100, 1000, 1000, 9999, 10001])))
    if kind == 2:
        n = draw(st.integers(5, 201)) | 1
        return _circle(cx, cy, r, n, n // 2)                          # star: crosses itself ~n^2/4 times
    if kind == 3:
        n = draw(st.sampled_from([20, 100, 400, 3000]))
        rnd = random.Random(draw(st.integers(0, 2 ** 32)))  # local: fast, deterministic
        pts = [[cx + rnd.uniform(-r, r), cy + rnd.uniform(-r, r)] for _ in range(n)]
        return pts + [pts[0]]                                         # random: many crossings
    if kind == 4:
        return [[cx, cy], [cx + r, cy + r], [cx + r, cy], [cx, cy + r], [cx, cy]]   # bow-tie (repaired)
    return [[cx, cy], [cx, cy], [cx, cy], [cx, cy]]                   # degenerate


@st.composite
def line_coords(draw: Any) -> list:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return [draw(positions()) for _ in range(draw(st.integers(0, 10)))]
    rnd = random.Random(draw(st.integers(0, 2 ** 32)))  # local: fast, deterministic
    n = draw(st.sampled_from([2, 2, 50, 50, 300, 1000, 5000, 9000]))
    if kind == 1:   # a plausible route: small steps
        x, y, out = rnd.uniform(70, 90), rnd.uniform(10, 30), []
        for _ in range(n):
            x += rnd.uniform(-0.01, 0.03)
            y += rnd.uniform(-0.01, 0.03)
            out.append([round(x, 5), round(y, 5)])
        return out
    if kind == 2:   # a zig-zag across the country
        return [[round(rnd.uniform(68, 97), 3), round(rnd.uniform(8, 35), 3)] for _ in range(min(n, 1500))]
    return [[77.0 + i * 1e-4, 12.0] for i in range(n)]                # collinear


@st.composite
def geometries(draw: Any) -> Any:
    kind = draw(st.integers(0, 9))
    if kind <= 2:
        return {"type": "Point", "coordinates": draw(positions())}
    if kind == 3:
        return {"type": "LineString", "coordinates": draw(line_coords())}
    if kind in (4, 5):
        return {"type": "Polygon", "coordinates": [draw(rings()) for _ in range(draw(st.integers(1, 2)))]}
    if kind == 6:
        return {"type": "MultiPoint", "coordinates": [draw(positions()) for _ in range(draw(st.integers(0, 40)))]}
    if kind == 7:
        return {"type": "MultiLineString", "coordinates": [draw(line_coords()) for _ in range(draw(st.integers(1, 3)))]}
    if kind == 8:
        return {"type": "MultiPolygon", "coordinates": [[draw(rings())] for _ in range(draw(st.integers(1, 3)))]}
    return draw(st.sampled_from([None, {}, {"type": "Circle", "coordinates": [77, 12]},
                                 {"type": "GeometryCollection", "geometries": []}, {"type": "Point"}, "POINT(77 12)"]))


@st.composite
def spatial_constraints(draw: Any) -> Any:
    c: dict[str, Any] = {"op": draw(st.sampled_from(["s_dwithin", "s_within", "s_intersects", "s_contains",
                                                      "s_disjoint", "S_DWITHIN", "s_crosses", ""])),
                         "targets": draw(st.sampled_from([LOCATION_TARGET, [LOCATION_TARGET], "$.bogus", ""])),
                         "geometry": draw(geometries())}
    if draw(st.integers(0, 4)):
        c["distanceMeters"] = draw(st.one_of(st.sampled_from([0, 1, 500, 5000, 50_000, 2_000_000, 2_000_001, -1]),
                                             numbers))
    if draw(st.integers(0, 5)) == 0:
        c["quantifier"] = draw(st.sampled_from(["any", "all", "none", "some"]))
    return c


# ---- contexts and discover bodies -------------------------------------------------------------------------

durations = st.one_of(st.just("PT30S"), st.just("PT10S"),
                      st.sampled_from(["PT1S", "PT0S", "P1D", "P9999Y", "PT999999999999S", "-PT5S", "bogus", "PT0.5S"]))


@st.composite
def discover_messages(draw: Any) -> dict:
    msg: dict[str, Any] = {}
    if draw(st.booleans()):
        msg["filters"] = draw(filters())
    if draw(st.integers(0, 2)):
        n = draw(st.sampled_from([1, 1, 1, 2, 8, 9]))
        msg["spatial"] = [draw(spatial_constraints()) for _ in range(n)]
    if draw(st.integers(0, 4)) == 0:
        msg["text_search"] = draw(st.one_of(st.text(max_size=40), st.sampled_from(["give me all charging stations",
                                                                                    "x" * 2000])))
    return msg


@st.composite
def discovers(draw: Any) -> tuple[str, dict]:
    """(dialect "A" | "B", body without ids, timestamp or caller; the runner fills those in)."""
    dialect = draw(st.sampled_from("AAAB"))
    msg = draw(discover_messages())
    ctx: dict[str, Any] = {"version": "2.0.0", "action": "discover",
                           "domain": draw(st.sampled_from(["beckn.one:deg:ev-charging", "beckn.one:deg:ev-charging:*",
                                                           "beckn.one:deg:ev-charging:2.0.0", "other:domain"])),
                           "ttl": draw(durations)}
    if draw(st.integers(0, 5)) == 0:
        ctx["schema_context"] = draw(st.sampled_from([
            ["https://example.org/schema/EvChargingService/v1/context.jsonld"], [], "x", [1]]))
    if dialect == "B":
        msg = {"intent": {("textSearch" if k == "text_search" else k): v for k, v in msg.items()}}
    return dialect, {"context": ctx, "message": msg}


# ---- catalogs -----------------------------------------------------------------------------------------------

@st.composite
def items(draw: Any, i: int) -> dict:
    lon, lat = draw(lons), draw(lats)
    attrs: dict[str, Any] = {
        "@type": "ChargingService",
        "connectorType": draw(st.sampled_from(["CCS2", "Type2", "CHAdeMO", "GB/T", "", "x" * 100])),
        "maxPowerKW": draw(numbers), "minPowerKW": draw(numbers),
        "powerType": draw(st.sampled_from(["AC", "DC", 7])),
        "chargingStation": {"id": f"st-{i}", "serviceLocation": {"geo": {"type": "Point", "coordinates": [lon, lat]}}},
        "evseId": f"IN*FZ*{i}", "qrIdentifier": f"https://fuzz.example/{i}",
        "vehicleType": draw(st.sampled_from(["4-WHEELER", ["2-WHEELER", "4-WHEELER"], []])),
        "stationStatus": draw(st.sampled_from(["Available", "Charging", "", None])),
    }
    return {"@type": "beckn:Item", "beckn:id": f"fuzz-item-{i}",
            "beckn:descriptor": {"schema:name": draw(st.text(max_size=30))},
            "beckn:isActive": draw(st.sampled_from([True, True, False])),
            "beckn:provider": {"beckn:id": "fuzz-provider", "beckn:descriptor": {"schema:name": "Fuzz"}},
            "beckn:availabilityWindow": [{"schema:startTime": draw(time_texts), "schema:endTime": draw(time_texts)}
                                         for _ in range(draw(st.integers(0, 2)))],
            "beckn:itemAttributes": attrs}


@st.composite
def offers(draw: Any, item_ids: list[str], j: int) -> dict:
    return {"@type": "beckn:Offer", "beckn:id": f"fuzz-offer-{j}", "beckn:items": item_ids,
            "beckn:price": {"currency": "INR", "value": draw(numbers), "applicableQuantity": {"unitCode": "KWH"}},
            "beckn:validity": {"schema:startDate": draw(date_times()), "schema:endDate": draw(date_times())},
            "beckn:offerAttributes": {"tariffModel": draw(st.sampled_from(["PER_KWH", "PER_MINUTE", 1]))}}


@st.composite
def catalogs(draw: Any) -> dict:
    n = draw(st.integers(0, 6))
    its = [draw(items(i)) for i in range(n)]
    ids = [it["beckn:id"] for it in its]
    cat: dict[str, Any] = {"@type": "beckn:Catalog", "beckn:id": f"fuzz-catalog-{draw(st.integers(0, 20))}",
                           "beckn:descriptor": {"schema:name": "Fuzz catalog"},
                           "beckn:items": its,
                           "beckn:offers": [draw(offers(ids[:2], j)) for j in range(draw(st.integers(0, 2)))]}
    if draw(st.integers(0, 4)) == 0:
        cat["beckn:validity"] = {"schema:startDate": draw(date_times()), "schema:endDate": draw(date_times())}
    return cat


@st.composite
def publishes(draw: Any) -> dict:
    return {"context": {"version": "2.0.0", "action": "catalog_publish", "domain": "beckn.one:deg:ev-charging",
                        "ttl": "PT30S"},
            "message": {"catalogs": [draw(catalogs()) for _ in range(draw(st.integers(1, 2)))]}}


# ---- what the runner sends ----------------------------------------------------------------------------------

@st.composite
def requests(draw: Any) -> tuple[str, str, dict]:
    """(kind "get" | "post" | "publish", dialect, body): mostly synchronous discovers (their answer is the
    HTTP reply, so its time is measured), some async ones and some publishes."""
    roll = draw(st.integers(0, 99))
    if roll < 4:
        return "publish", "A", draw(publishes())
    dialect, body = draw(discovers())
    return ("post" if roll < 20 else "get"), dialect, body
