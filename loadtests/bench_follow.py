"""Indexing phase of a huge publish, as a serving worker lives it (docs/decisions.md §P, §24).

    python -m loadtests.bench_follow --items 50000 [--runs 2]

This process is the serving worker: a `FollowerStorage` over a fresh data directory, every loop callback timed
(`loadtests.serve_monitored`, CPU and wall) and a probe that sleeps 10 ms and records how late it wakes (what a
request arriving meanwhile waits: it includes GIL holds of the follower's decode thread, which the loop thread's
CPU time does not). A child process is the ingest process: it normalises one catalog of `--items` connectors (the
publish fixture's connector, renamed) and writes it with `EmbeddedStorage` (WAL, fsync), waiting for this
follower. Reported per run: the longest loop callback (CPU, wall), the longest probe delay, and the time from the
write's start to the follower having it searchable. The receiving phase (the body, the queue) is not in here.
To measure another checkout: `PYTHONPATH=<checkout> python <this file> ...` (the child inherits it).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "UBC_catalog_publish_ev-charging-catalog-publish.json"
BPP, CATALOG = "bench.bpp", "cat-huge"


def huge_catalog(items: int) -> dict:
    """The fixture's first catalog with `items` copies of its first connector."""
    cat = orjson.loads(FIXTURE.read_bytes())["message"]["catalogs"][0]
    cat["beckn:id"] = CATALOG
    grow(cat, items)
    return cat


def grow(cat: dict, items: int) -> None:
    """Replace a publish catalog's items by `items` copies of its first one (the connector's own fields, about
    1 KB like a generated network's: 50,000 of them are ~85 MB of publish JSON), ids `huge-<k>`."""
    proto = {k: v for k, v in cat["beckn:items"][0].items() if k not in ("beckn:rating", "beckn:category")}
    many = []
    for k in range(items):
        it = copy.deepcopy(proto)
        it["beckn:id"] = f"huge-{k}"
        many.append(it)
    cat["beckn:items"] = many
    for off in cat.get("beckn:offers", []):
        off["beckn:items"] = ["huge-0"]


async def write(data_dir: Path, items: int) -> None:
    """The ingest process's part: normalise, then one durable write that returns once the follower applied it."""
    from cds.config import Settings
    from cds.core.normalize import normalize_catalog
    from indexer.embedded import EmbeddedStorage
    from indexer.embedded.positions import FollowerPositions

    cat = huge_catalog(items)
    raw = orjson.dumps(cat)
    record, _ = normalize_catalog(cat, publisher_id=BPP, publisher_uri=None, dialect="A",
                                  settings=Settings(), now=time.time())
    record.meta.raw = raw
    store = EmbeddedStorage(data_dir, followers=FollowerPositions(data_dir))
    await store.open()
    t0 = time.time()
    await store.replace_catalog(record)
    print(orjson.dumps({"write_start": t0, "write_done": time.time(), "json_mb": round(len(raw) / 1e6, 1)}).decode(),
          flush=True)
    await store.close()


async def follow(items: int) -> dict:
    from loadtests import serve_monitored as mon
    from indexer.embedded.follower import FollowerStorage

    with tempfile.TemporaryDirectory(prefix="bench-follow-") as tmp:
        data_dir = Path(tmp)
        follower = FollowerStorage(data_dir)
        await follower.open()
        lags: list[float] = []
        stop = asyncio.Event()

        async def probe() -> None:
            while not stop.is_set():
                t0 = time.perf_counter()
                await asyncio.sleep(0.01)
                lags.append(time.perf_counter() - t0 - 0.01)

        writer = await asyncio.create_subprocess_exec(sys.executable, __file__, "--writer", tmp, "--items", str(items),
                                                      stdout=subprocess.PIPE, env=os.environ.copy())
        # The child normalises first (seconds); the phase measured starts when its log grows.
        while not any(data_dir.glob("wal-*.log")) or all(p.stat().st_size == 0 for p in data_dir.glob("wal-*.log")):
            await asyncio.sleep(0.005)
        with mon._lock:
            mon._worst.clear()
            calls0 = mon._counts["callbacks"]
        prober = asyncio.ensure_future(probe())
        while (BPP, CATALOG) not in follower._index.catalogs:
            await asyncio.sleep(0.002)
        applied = time.time()
        stop.set()
        await prober
        with mon._lock:
            cpu, wall, _, what = mon._worst[0] if mon._worst else (0.0, 0.0, 0.0, "-")
            calls = mon._counts["callbacks"] - calls0
        out, _ = await writer.communicate()
        await follower.close()
        decode_ms = await asyncio.to_thread(longest_decode_call, data_dir)
    w = orjson.loads(out.splitlines()[-1])
    return {"items": items, "json_mb": w["json_mb"], "loop_callbacks": calls, "loop_max_cpu_ms": round(cpu * 1000, 1),
            "loop_max_wall_ms": round(wall * 1000, 1), "loop_max_what": what,
            "probe_max_late_ms": round(max(lags) * 1000, 1) if lags else None,
            "longest_decode_call_cpu_ms": decode_ms, "write_to_searchable_s": round(applied - w["write_start"], 2),
            "code": str(Path(FollowerStorage.__module__.replace(".", "/")).parent) + " in " +
            sys.modules[FollowerStorage.__module__].__file__.rsplit("/indexer/", 1)[0]}


def longest_decode_call(data_dir: Path) -> float:
    """CPU ms of the longest single msgspec call a follower makes decoding the logged put (each holds the GIL)."""
    from indexer.embedded import follower as fol
    from indexer.embedded.chunked import decode_chunk
    from indexer.embedded.persist import FrameScan

    # the writer's close folded the log into a snapshot, whose put record is encoded the same way
    files = [*data_dir.glob("wal-*.log"), *data_dir.glob("snapshot-*.bin")]
    payload = max((p for f in files for _, p in FrameScan(f)), key=len)
    t0 = time.thread_time()
    lazy = fol._lazy_decoder.decode(payload)
    calls = [time.thread_time() - t0]
    for chunk in getattr(lazy, "chunks", []):            # a chunked record: one call per chunk
        t0 = time.thread_time()
        decode_chunk(chunk)
        calls.append(time.thread_time() - t0)
    return round(max(calls) * 1000, 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--writer", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.writer:
        asyncio.run(write(Path(args.writer), args.items))
        return 0
    from loadtests import serve_monitored as mon
    from loadtests.bench_procs import loadavg

    mon.install(os.path.join(tempfile.gettempdir(), f"bench-follow-{os.getpid()}.json"))
    for _ in range(args.runs):
        print(orjson.dumps({**asyncio.run(follow(args.items)), "loadavg": loadavg()}).decode(), flush=True)
    return 0


if __name__ == "__main__":
    if __package__ in (None, ""):
        sys.path.append(str(Path(__file__).resolve().parents[1]))   # after PYTHONPATH: another checkout wins
    sys.exit(main())
