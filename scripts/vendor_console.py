"""Rebuild the console's vendored static files (run by a developer, never at run time).

    python3 scripts/vendor_console.py          # needs `npm` (the npm registry) and nothing else

- Leaflet (BSD-2-Clause) from npm: dist/leaflet.js, dist/leaflet.css and its LICENSE.
- The India outline: the country with ISO numeric id 356 from world-atlas's countries-50m TopoJSON (ISC;
  the data is Natural Earth's, public domain), decoded to GeoJSON, simplified (Douglas-Peucker, ~2 km) and
  rounded to 3 decimals. It is Natural Earth's de-facto boundary, drawn only as a backdrop for the map.
Outputs go to cds/api/console/static/vendor/ and are committed (no node_modules, no build step at run time).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

LEAFLET = "leaflet@1.9.4"
WORLD_ATLAS = "world-atlas@2.0.2"
INDIA_ID = "356"
TOLERANCE_DEG = 0.02
OUT = Path(__file__).resolve().parent.parent / "cds" / "api" / "console" / "static" / "vendor"


def _unpack(spec: str, work: Path) -> Path:
    name = subprocess.run(["npm", "pack", spec, "--silent"], cwd=work, check=True, capture_output=True,
                          text=True).stdout.strip().splitlines()[-1]
    dest = work / spec.split("@")[0]
    with tarfile.open(work / name) as tar:
        tar.extractall(dest, filter="data")
    return dest / "package"


def _arcs(topo: dict) -> list[list[tuple[float, float]]]:
    (sx, sy), (tx, ty) = topo["transform"]["scale"], topo["transform"]["translate"]
    out = []
    for arc in topo["arcs"]:
        x = y = 0
        pts = []
        for dx, dy in arc:
            x, y = x + dx, y + dy
            pts.append((x * sx + tx, y * sy + ty))
        out.append(pts)
    return out


def _ring(indexes: list[int], arcs: list[list[tuple[float, float]]]) -> list[tuple[float, float]]:
    pts: list[tuple[float, float]] = []
    for i in indexes:
        arc = arcs[i] if i >= 0 else arcs[~i][::-1]
        pts.extend(arc if not pts else arc[1:])
    return pts


def _simplify_ring(pts: list[tuple[float, float]], tol: float) -> list[tuple[float, float]]:
    """A closed ring starts and ends on one point: simplify its two halves separately."""
    mid = len(pts) // 2
    return _simplify(pts[:mid + 1], tol)[:-1] + _simplify(pts[mid:], tol)


def _simplify(pts: list[tuple[float, float]], tol: float) -> list[tuple[float, float]]:
    if len(pts) < 3:
        return pts
    keep = [False] * len(pts)
    keep[0] = keep[-1] = True
    stack = [(0, len(pts) - 1)]
    while stack:
        a, b = stack.pop()
        (x1, y1), (x2, y2) = pts[a], pts[b]
        dx, dy = x2 - x1, y2 - y1
        norm = (dx * dx + dy * dy) ** 0.5 or 1e-12
        best, idx = 0.0, -1
        for i in range(a + 1, b):
            d = abs(dy * (pts[i][0] - x1) - dx * (pts[i][1] - y1)) / norm
            if d > best:
                best, idx = d, i
        if best > tol:
            keep[idx] = True
            stack += [(a, idx), (idx, b)]
    return [p for p, k in zip(pts, keep) if k]


def india_geojson(topo: dict) -> dict:
    arcs = _arcs(topo)
    geom = next(g for g in topo["objects"]["countries"]["geometries"] if g.get("id") == INDIA_ID)
    polys = geom["arcs"] if geom["type"] == "MultiPolygon" else [geom["arcs"]]
    out = []
    for poly in polys:
        rings = [[[round(x, 3), round(y, 3)] for x, y in _simplify_ring(_ring(r, arcs), TOLERANCE_DEG)] for r in poly]
        rings = [r for r in rings if len(r) >= 4]
        if rings:
            out.append(rings)
    return {"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"name": "India", "source": "Natural Earth via world-atlas 2.0.2"},
        "geometry": {"type": "MultiPolygon", "coordinates": out}}]}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        leaflet = _unpack(LEAFLET, work)
        for f in ("dist/leaflet.js", "dist/leaflet.css"):
            # without the source map reference: the map is not shipped, and nothing is fetched for it
            text = (leaflet / f).read_text()
            (OUT / Path(f).name).write_text(re.sub(r"\n//# sourceMappingURL=\S+\s*$", "\n", text))
        shutil.copy(leaflet / "LICENSE", OUT / "LICENSE.leaflet")
        atlas = _unpack(WORLD_ATLAS, work)
        topo = json.loads((atlas / "countries-50m.json").read_text())
        (OUT / "india.geojson").write_text(json.dumps(india_geojson(topo), separators=(",", ":")) + "\n")
        shutil.copy(atlas / "LICENSE", OUT / "LICENSE.world-atlas")
    print(f"wrote {', '.join(sorted(p.name for p in OUT.iterdir()))} to {OUT}")


if __name__ == "__main__":
    main()
