"""cds.core.spatial_input, through `build_spatial`: every target form in the wild resolves to the item's location
and others are refused; bad geometries, distances, ops and quantifiers are 400 NACKs; an invalid polygon that is
cheap to repair is repaired (docs/decisions.md §24)."""

from __future__ import annotations

import pytest

from cds.core import spatial
from cds.core.errors import SCH_SCHEMA_VALIDATION_FAILED, SCH_TYPE_NOT_SUPPORTED, BecknError
from tests.core.test_spatial import BENGALURU, point, spec



# --- validation -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [
    "$['beckn:itemAttributes.chargingStation.serviceLocation.geo']",
    "$['beckn:availableAt'][*]['geo']",
    "$.catalogs[*].resources[*].availableAt[*].geo",
    "$['availableAt'][*]['geo']",
    "beckn:itemAttributes.serviceLocation",
    "$.beckn:itemAttributes.serviceLocation.geo",
    "serviceLocation",
])
def test_every_target_form_resolves_to_location(target: str) -> None:
    f = spatial.build_spatial(spec(geometry=point(77.59, 12.94), targets=[target]))
    assert spatial.contains(f, *BENGALURU)


@pytest.mark.parametrize("target", ["$['beckn:itemAttributes.connectorType']", "$.beckn:id", "$[?(@.x)]",
                                    "$..geo", "", "$['unterminated"])
def test_non_location_targets_are_refused(target: str) -> None:
    with pytest.raises(BecknError) as e:
        spatial.build_spatial(spec(geometry=point(77.59, 12.94), targets=[target]))
    assert e.value.code == SCH_SCHEMA_VALIDATION_FAILED and e.value.status == 400


@pytest.mark.parametrize("geometry,distance,code", [
    (point(77.59, 95.0), 1000, SCH_SCHEMA_VALIDATION_FAILED),                 # latitude out of range
    (point(190.0, 12.0), 1000, SCH_SCHEMA_VALIDATION_FAILED),
    (point(77.59, 12.94), -1, SCH_SCHEMA_VALIDATION_FAILED),
    (point(77.59, 12.94), 2_500_000, SCH_SCHEMA_VALIDATION_FAILED),
    (point(77.59, 12.94), None, SCH_SCHEMA_VALIDATION_FAILED),               # radius needs a distance
    ({"type": "Point", "coordinates": ["77", 12]}, 1000, SCH_SCHEMA_VALIDATION_FAILED),
    ({"type": "Point", "coordinates": [True, 12]}, 1000, SCH_SCHEMA_VALIDATION_FAILED),
    ({"type": "LineString", "coordinates": [[77, 12]]}, 1000, SCH_SCHEMA_VALIDATION_FAILED),
    ({"type": "Polygon", "coordinates": [[[77, 12], [78, 12], [78, 13], [77, 13]]]}, 0,
     SCH_SCHEMA_VALIDATION_FAILED),                                            # ring not closed
    ({"type": "GeometryCollection", "geometries": []}, 1000, SCH_TYPE_NOT_SUPPORTED),
    ({"type": "Circle", "coordinates": [77, 12]}, 1000, SCH_TYPE_NOT_SUPPORTED),
    ({"type": "LineString", "coordinates": [[77 + i * 1e-4, 12.0] for i in range(10_001)]}, 1000,
     SCH_SCHEMA_VALIDATION_FAILED),                                            # too many vertices
    (None, 1000, SCH_SCHEMA_VALIDATION_FAILED),
])
def test_bad_geometries(geometry: dict | None, distance: float | None, code: str) -> None:
    with pytest.raises(BecknError) as e:
        spatial.build_spatial(spec(geometry=geometry, distance=distance))
    assert e.value.code == code


def test_ops_and_quantifiers() -> None:
    assert spatial.build_spatial(spec(op="S_DWITHIN", geometry=point(77.59, 12.94))).op == "dwithin"
    with pytest.raises(BecknError) as e:
        spatial.build_spatial(spec(op="s_crosses", geometry=point(77.59, 12.94)))
    assert e.value.code == SCH_TYPE_NOT_SUPPORTED and "s_crosses" in e.value.message
    with pytest.raises(BecknError):
        spatial.build_spatial(spec(quantifier="some", geometry=point(77.59, 12.94)))


def test_lat_lon_swapped_india_point_is_valid_but_far_away() -> None:
    f = spatial.build_spatial(spec(geometry=point(12.94, 77.59), distance=10_000))  # [lat, lon] mistake
    assert not spatial.contains(f, *BENGALURU)


def test_self_intersecting_polygon_is_repaired() -> None:
    bowtie = {"type": "Polygon", "coordinates": [[[77.0, 12.0], [78.0, 13.0], [78.0, 12.0], [77.0, 13.0], [77.0, 12.0]]]}
    f = spatial.build_spatial(spec(op="s_within", geometry=bowtie, distance=None))
    assert spatial.contains(f, 77.1, 12.5)          # inside the left triangle
    assert not spatial.contains(f, 77.5, 12.9)      # in the notch between the triangles
    g = spatial.build_spatial(spec(geometry=bowtie, distance=1_000))
    assert spatial.contains(g, 77.1, 12.5) and not spatial.contains(g, 77.5, 12.9)


# --- positions read in one loop -----------------------------------------------------------------------------


@pytest.mark.parametrize("coords", [
    [[77, 12], [77.5, 12.5]],                               # ints and floats
    [[77.0, 12.0], [77.5, 12.5, 900.0]],                    # a 3D position (its height dropped)
    ([77.0, 12.0], (77.5, 12.5)),                           # tuples (not from JSON)
    [[77.0, 12.0], [77.5, float("nan")]],
    [[77.0, 12.0], [float("inf"), 12.5]],
    [[77.0, 12.0], [180.5, 12.5]],
    [[77.0, 12.0], [77.5, -90.5]],
    [[77.0, 12.0], [True, 12.5]],
    [[77.0, 12.0], ["77.5", 12.5]],
    [[77.0, 12.0], [10 ** 400, 12.5]],                      # no float holds it
    [[77.0, 12.0], [77.5]],
    [[77.0, 12.0], None],
])
def test_positions_read_in_one_loop_as_position_by_position(coords) -> None:
    """`_positions` reads plain [lon, lat] lists without `_position`'s checks per value; anything else falls back
    to `_position`, so what is accepted, the numbers kept and the error are those of the reading one by one."""
    from cds.core.spatial_input import _position, _positions

    def each(ps):
        counter = [0, 10]
        return [_position(p, counter) for p in ps], counter[0]

    try:
        want = each(coords)
    except BecknError as e:
        with pytest.raises(BecknError) as got:
            _positions(coords, [0, 10], 2, "LineString")
        assert (got.value.code, got.value.message) == (e.code, e.message)
        return
    counter = [0, 10]
    got = _positions(coords, counter, 2, "LineString")
    assert (got, counter[0]) == want and all(type(v) is float for p in got for v in p)


def test_positions_count_towards_the_vertex_limit_of_the_geometry() -> None:
    from cds.core.spatial_input import _positions
    counter = [3, 5]
    with pytest.raises(BecknError, match="more than 5 vertices"):
        _positions([[77.0, 12.0], [77.1, 12.0], [77.2, 12.0]], counter, 2, "LineString")
    counter = [3, 5]
    assert len(_positions([[77.0, 12.0], [77.1, 12.0]], counter, 2, "LineString")) == 2 and counter[0] == 5


@pytest.mark.parametrize("coords", [
    [[77.0, 12.0], [77.0, 12.0]],
    [[77.0, 12.0], [77.0, 12.0], [77.0, 12.0]],
    [[0.0, 0.0], [0.0, -0.0]],
    [[77.0, 12.0], [77.0, 12.0], [77.1, 12.0]],
    [[77.0, 12.0], [77.1, 12.1], [77.0, 12.0]],             # back where it started
    [[77.0, 12.0], [77.1, 12.1], [77.1, 12.0], [77.0, 12.1]],   # crosses itself
])
def test_a_line_is_valid_as_geos_says_without_asking_it(coords) -> None:
    """Lines skip GEOS's validity check: two distinct positions is its whole rule for finite coordinates. A
    line that is not valid is repaired as before (to the point it is)."""
    import shapely
    from shapely.geometry import LineString

    from cds.core.spatial_input import parse_geometry

    geos_valid = shapely.is_valid(LineString(coords))
    got = parse_geometry({"type": "LineString", "coordinates": coords})
    assert (got.geom_type == "LineString") == geos_valid
    if not geos_valid:
        assert got.equals(shapely.make_valid(LineString(coords)))
