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
