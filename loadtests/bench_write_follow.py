"""Publish → searchable in every serving worker, at store level: the embedded writer as the ingest process of
`cds serve --workers N` runs it, with N follower processes (docs/decisions.md §P). No HTTP, Redis or callback:
the write path alone (normalise, pack, log + fsync, apply, wait for every follower).

    python -m loadtests.bench_write_follow [--connectors 100000] [--followers 2] [--rate 50] [--duration 20]

This process is the ingest process: it indexes the generated network (station catalogs of 20 connectors, as
`loadtests.bench_ingest` cuts them), starts `--followers` child processes that each follow the log with a
`FollowerStorage` (as a serving worker does), then re-publishes random catalogs open loop at `--rate` per second:
each one normalised and written, timed from its start until `replace_catalog` returned (durable, and applied by
every follower). Reports p50/p95/p99/max of that, the event-loop thread's CPU per publish, and each process's RSS.
To measure another checkout: `PYTHONPATH=<checkout> python <this file> ...` (the children inherit it).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import inspect
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from loadtests.bench_procs import loadavg, rss_mb
from loadtests.bench_report import pct

_FOLLOW = """
import asyncio, sys
from pathlib import Path
from indexer.embedded.follower import FollowerStorage

async def main():
    f = FollowerStorage(Path(sys.argv[1]))
    await f.open()
    print("open", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)     # until the parent closes it
    await f.close()

asyncio.run(main())
"""


async def run(a: argparse.Namespace, d: Path) -> dict:
    from cds.config import load_settings
    from cds.core.normalize import normalize_catalog
    from indexer.embedded.positions import FollowerPositions
    from indexer.embedded.store import EmbeddedStorage
    from loadtests.bench_ingest import station_catalogs

    settings = load_settings({})
    _, work = station_catalogs(a.connectors, 20, a.seed)

    def record(who: dict, cat: bytes):
        rec, _ = normalize_catalog(orjson.loads(cat), publisher_id=who["subscriber_id"], publisher_uri="http://bpp",
                                   dialect="A", settings=settings, now=time.time(), index=0)
        return rec

    kw = {"searchable": False} if "searchable" in inspect.signature(EmbeddedStorage).parameters else {}
    writer = EmbeddedStorage(d, followers=FollowerPositions(d), **kw)
    await writer.open()
    for who, cat, _ in work:
        await writer.replace_catalog(record(who, cat))
    gc.collect()
    gc.freeze()
    children = [subprocess.Popen([sys.executable, "-c", _FOLLOW, str(d)], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, env=os.environ) for _ in range(a.followers)]
    try:
        for c in children:
            assert c.stdout is not None and c.stdout.readline().strip() == b"open"
        rng = random.Random(7)
        lat: list[float] = []
        tasks = set()

        async def one(who: dict, cat: bytes) -> None:
            t = time.perf_counter()
            await writer.replace_catalog(record(who, cat))
            lat.append((time.perf_counter() - t) * 1000)

        n = int(a.rate * a.duration)
        t0, cpu0 = time.perf_counter(), time.thread_time()
        for k in range(n):
            await asyncio.sleep(max(0.0, t0 + k / a.rate - time.perf_counter()))
            task = asyncio.ensure_future(one(*work[rng.randrange(len(work))][:2]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
        cpu = time.thread_time() - cpu0
        # (this process also holds the generated network and its catalogs: its RSS is not the ingest process's)
        rss = {"writer + workload": rss_mb(os.getpid()),
               **{f"follower-{k}": rss_mb(c.pid) for k, c in enumerate(children)}}
    finally:
        for c in children:
            if c.stdin is not None:
                c.stdin.close()
        for c in children:
            c.wait(30)
        await writer.close()
    return {"n": n, "p50": pct(lat, 50), "p95": pct(lat, 95), "p99": pct(lat, 99), "max": max(lat),
            "loop_cpu_ms": cpu / n * 1000, "rss": rss}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtests.bench_write_follow", description=__doc__.splitlines()[0])
    p.add_argument("--connectors", type=int, default=100_000)
    p.add_argument("--followers", type=int, default=2)
    p.add_argument("--rate", type=float, default=50.0)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--seed", type=int, default=42)
    a = p.parse_args(argv)
    before = loadavg()
    with tempfile.TemporaryDirectory(prefix="bench-write-follow-") as tmp:
        r = asyncio.run(run(a, Path(tmp)))
    rss = ", ".join(f"{k} {v:.0f} MB" for k, v in r["rss"].items() if v is not None)
    print(f"{r['n']} publishes of 20 connectors at {a.rate:g}/s into {a.connectors} connectors, {a.followers} followers: "
          f"normalise + write → applied by every follower p50 {r['p50']:.1f} / p95 {r['p95']:.1f} / p99 "
          f"{r['p99']:.1f} / max {r['max']:.1f} ms; loop thread CPU {r['loop_cpu_ms']:.2f} ms per publish; RSS {rss}; "
          f"load average {before} before, {loadavg()} after")
    return 0


if __name__ == "__main__":
    sys.exit(main())
