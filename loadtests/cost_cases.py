"""Costly discover requests (geometries, routes, huge numbers and dates), one at a time against a `cds serve --demo` this starts (docs/decisions.md §24).

    python -m loadtests.cost_cases [--write]

For each case: the HTTP status, the answer time (request -> HTTP reply of a synchronous GET discover), the
server's CPU time for it, the worst `/health/live` delay while it ran (polled every 10 ms over HTTP) and the
longest event-loop callback meanwhile (CPU time of the loop thread: `loadtests.serve_monitored`). A baseline
row (no request, only the polling) shows what the machine adds by itself. `--write` records the table in the
BENCHMARKS.md fuzz section.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from loadtests.bench_procs import PY, Service, cpu_seconds, free_port, loadavg, rss_mb, wait_http
from loadtests.bench_report import write_block
from loadtests.costly import circle, poll_health, random_polygon, route, signed_discover, spatial_message, star, zigzag

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Fuzz: bounded cost of any signed request"
BEGIN, END = "<!-- cost_cases:begin", "<!-- cost_cases:end -->"


def flt(expr: str) -> dict:
    return {"filters": {"type": "jsonpath", "expression": expr}}


def cases() -> list[tuple[str, dict | None]]:
    w = "$[?(@.beckn:availabilityWindow.schema:startTime <= '{}' && @.beckn:availabilityWindow.schema:endTime >= '{}')]"
    return [
        ("baseline: no request, health polling only", None),
        ("151-point self-intersecting star (4 KB)", spatial_message(star(151))),
        ("random polygon, 100 vertices", spatial_message(random_polygon(100, 1))),
        ("random polygon, 400 vertices", spatial_message(random_polygon(400, 3))),
        ("two random polygons of 9,000 vertices (1 MB)", spatial_message(random_polygon(9000, 1), random_polygon(9000, 2))),
        ("8 routes of 9,000 points, 5 km corridor", spatial_message(*(route(9000, i) for i in range(8)), op="s_dwithin", d=5000)),
        ("8 zig-zag routes of 1,250 points across India, 5 km", spatial_message(*(zigzag(1250, i) for i in range(8)),
                                                                   op="s_dwithin", d=5000)),
        ("2,000 km around a 10,000-vertex polygon", spatial_message(circle(9999), op="s_dwithin", d=2_000_000)),
        ("JSONPath integer of 309 digits", flt("$[?(@.beckn:itemAttributes.maxPowerKW >= " + "9" * 309 + ")]")),
        ("window ending 9999-12-31T23:59:59Z", flt(w.format("2025-01-01T00:00:00Z", "9999-12-31T23:59:59Z"))),
        ("window at 0001-01-01", flt(w.format("0001-01-01T00:00:00+05:30", "0001-01-01T00:00:00Z"))),
        ("radius 10 km (an ordinary discover)", spatial_message({"type": "Point", "coordinates": [77.59, 12.94]},
                                                   op="s_dwithin", d=10_000)),
    ]


async def measure(base: str, svc: Service, key: Any, message: dict | None) -> dict[str, Any]:
    delays: list[float] = []
    stop = asyncio.Event()
    res: dict[str, Any] = {"status": "-", "wall_ms": 0.0, "cpu_ms": 0.0, "reply": ""}
    async with aiohttp.ClientSession() as hs, aiohttp.ClientSession() as s:
        poll = asyncio.create_task(poll_health(hs, base, stop, delays))
        await asyncio.sleep(0.2)
        since = time.time()
        if message is None:
            await asyncio.sleep(1.0)
        else:
            raw, headers = signed_discover(key, message)
            c0, t0 = cpu_seconds(svc.pid) or 0.0, time.perf_counter()
            async with s.get(f"{base}/beckn/discover", data=raw, headers=headers) as r:
                reply = await r.read()
                res["status"] = r.status
            res["wall_ms"] = (time.perf_counter() - t0) * 1000
            res["cpu_ms"] = ((cpu_seconds(svc.pid) or 0.0) - c0) * 1000
            res["bytes"] = len(raw)
            try:
                d = orjson.loads(reply)
                res["reply"] = (d.get("error") or {}).get("message", "") if r.status != 200 else \
                    f"{sum(len(c.get('beckn:items', [])) for c in d['message']['catalogs'])} items"
            except (orjson.JSONDecodeError, KeyError, TypeError):
                res["reply"] = reply[:80].decode("utf-8", "replace")
        await asyncio.sleep(0.3)
        stop.set()
        await poll
    res["health_ms"] = max(delays) * 1000
    res["rss_mb"] = rss_mb(svc.pid) or 0.0
    await asyncio.sleep(1.2)                          # the monitor writes every second
    res["hold_cpu_ms"] = 0.0
    try:
        top = orjson.loads(Path(svc.hold_file).read_bytes())["top"]           # type: ignore[attr-defined]
        res["hold_cpu_ms"] = max((t["cpu_ms"] for t in top if t["at"] >= since), default=0.0)
    except (OSError, orjson.JSONDecodeError, KeyError):
        pass
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = ap.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="cds-cost-")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env.update(CDS_DATA_DIR=tmp, CDS_LOG_LEVEL="WARNING", CDS_BENCH_LOOPHOLD_OUT=str(Path(tmp) / "hold.json"))
    svc = Service("cds", [PY, "-m", "loadtests.serve_monitored", "serve", "--demo", "--port", str(port)], env, Path(tmp))
    svc.hold_file = env["CDS_BENCH_LOOPHOLD_OUT"]                             # type: ignore[attr-defined]
    rows = []
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/health/ready", svc, 120)
        from cds.demo.seed import demo_key

        key = demo_key("bap", tmp)
        for name, message in cases():
            r = asyncio.run(measure(base, svc, key, message))
            rows.append((name, r))
            print(f"{name}: {r}", file=sys.stderr)
        alive = svc.alive()
    finally:
        svc.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    lines = [f"{BEGIN} (generated by python -m loadtests.cost_cases --write; edits inside are overwritten) -->",
             f"Command: `python -m loadtests.cost_cases` ({time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, "
             f"{os.cpu_count()} cores, load average {loadavg()}; `cds serve --demo`, 2,003 connectors; "
             f"server alive after: {'yes' if alive else 'NO'})",
             "",
             "| request (synchronous GET discover) | status | answer | server CPU | worst `/health/live` | "
             "longest loop hold (CPU) | server RSS after | reply |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in rows:
        hold = f"{r['hold_cpu_ms']:.0f} ms" if r["hold_cpu_ms"] else "< 10 ms"
        lines.append(f"| {name} | {r['status']} | {r['wall_ms']:.0f} ms | {r['cpu_ms']:.0f} ms | "
                     f"{r['health_ms']:.0f} ms | {hold} | {r['rss_mb']:.0f} MB | {str(r['reply'])[:90]} |")
    lines.append(END)
    block = "\n".join(lines)
    print(block)
    if args.write:
        write_block(args.out, block, heading=SECTION, begin=BEGIN, end=END)
    bad = [n for n, r in rows if isinstance(r["status"], int) and r["status"] >= 500]
    return 1 if bad or not alive else 0


if __name__ == "__main__":
    sys.exit(main())
