"""In-process discover engine benchmark (docs/decisions.md §G): index build rate, query latency, memory.

    python -m loadtests.bench_engine --connectors 100000 [--queries 2000] [--seed 42] [--no-write]

1. Generates the network (`cds.demo.generator`), then normalises every catalog (`cds.core.normalize`) and
   writes it into an `EmbeddedStorage` in a temporary directory, one catalog at a time as the ingest
   pipeline does (WAL write + group commit + apply). Timed separately: normalise, store, both. Done twice:
   fsync on (the default configuration, used for the queries) and fsync off.
2. Runs `labeled_query_mix` (radius+connector+power, QR / item id, time window, along-route) through the
   service's path: JSON parse -> context parse -> `parse_discover` -> `planner.build_query` ->
   `storage.search` -> `assemble_catalogs` -> `build_on_discover` -> JSON serialise. Reports p50/p99 per kind
   and overall for the storage search alone ("query") and for the whole path ("full").
3. RSS (VmRSS) after loading, peak RSS, and the machine (nproc, CPU model, Python, load average).
4. If the query p99 misses the goal (5 ms at 100k connectors), profiles the slowest kind with cProfile and
   lists where the time goes.

Prints markdown and (unless --no-write) replaces the block between the bench_engine markers in the
"Discover engine (in-process)" section of BENCHMARKS.md (other sections are left alone).
Not a test: numbers depend on the machine; record them with the command.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import resource
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

from cds.core.replies import build_on_discover
from cds.services.assemble import assemble_catalogs
from cds.config import Settings
from cds.core.planner import build_query
from cds.core.protocol import parse_context, parse_discover, parse_json
from indexer.embedded import EmbeddedStorage
from cds.core.normalize import normalize_catalog
from loadtests.bench_procs import loadavg, machine_info
from loadtests.bench_report import pct, write_block
from cds.demo.generator import generate_network

GOAL_P99_MS = 5.0
KINDS = ("radius", "qr", "time_window", "route")
ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Discover engine (in-process)"
BEGIN, END = "<!-- bench_engine:begin -->", "<!-- bench_engine:end -->"


# ---- measurements --------------------------------------------------------------------------------------

def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def build(net: Any, data_dir: Path, settings: Settings, *, fsync: bool) -> tuple[EmbeddedStorage, dict]:
    """Normalise and store every catalog, one at a time; returns the open storage and timings."""
    storage = EmbeddedStorage(data_dir, fsync=fsync)
    await storage.open()
    t_norm = t_store = 0.0
    items = catalogs = 0
    t_wall = time.perf_counter()
    for bpp, cat in net.iter_catalogs():
        now = time.time()
        t0 = time.perf_counter()
        record, _warnings = normalize_catalog(cat, publisher_id=bpp.subscriber_id, publisher_uri=bpp.url,
                                              dialect="A", settings=settings, now=now)
        t1 = time.perf_counter()
        await storage.replace_catalog(record)
        t2 = time.perf_counter()
        t_norm += t1 - t0
        t_store += t2 - t1
        items += len(record.items)
        catalogs += 1
    wall = time.perf_counter() - t_wall
    return storage, {"fsync": fsync, "catalogs": catalogs, "items": items, "normalise_s": t_norm,
                     "store_s": t_store, "wall_s": wall}


def stamped(doc: dict, now: float | None = None) -> bytes:
    """The request body as a BAP would send it now, or at `now` (its context timestamp; not timed)."""
    doc["context"]["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now))
    return orjson.dumps(doc)


def run_one(body: bytes, storage: EmbeddedStorage, settings: Settings) -> tuple[float, float, float, float, int]:
    """(full wall, search wall, full CPU, search CPU) in seconds and the hit count, for one discover through
    the service's code path. CPU time (this thread) is what the work costs when the core is not shared."""
    t0, c0 = time.perf_counter(), time.thread_time()
    doc = parse_json(body)
    now = time.time()
    ctx = parse_context(doc, expected_actions={"discover"}, now=now, clock_skew_s=settings.clock_skew_s)
    req = parse_discover(doc, ctx)
    query = build_query(req.intent, settings=settings)
    t1, c1 = time.perf_counter(), time.thread_time()
    hits = storage.search_now(query, now)   # what `await storage.search` runs, without an event-loop hop
    t2, c2 = time.perf_counter(), time.thread_time()
    catalogs = assemble_catalogs(hits, dialect=ctx.dialect, now=now, settings=settings)
    orjson.dumps(build_on_discover(ctx, catalogs, settings=settings, now=now))
    t3, c3 = time.perf_counter(), time.thread_time()
    return t3 - t0, t2 - t1, c3 - c0, c2 - c1, len(hits)


SERIES = ("query", "full", "query_cpu", "full_cpu")


def run_queries(queries: list[tuple[str, dict]], storage: EmbeddedStorage,
                settings: Settings) -> dict[str, dict[str, list[float]]]:
    res: dict[str, dict[str, list[float]]] = defaultdict(lambda: {k: [] for k in (*SERIES, "hits")})
    for kind, doc in queries:
        full, search, full_cpu, search_cpu, hits = run_one(stamped(doc), storage, settings)
        for k in (kind, "all"):
            r = res[k]
            r["full"].append(full * 1000)
            r["query"].append(search * 1000)
            r["full_cpu"].append(full_cpu * 1000)
            r["query_cpu"].append(search_cpu * 1000)
            r["hits"].append(hits)
    return res


def profile_kind(kind: str, queries: list[tuple[str, dict]], storage: EmbeddedStorage, settings: Settings,
                 top: int = 14) -> list[tuple[str, int, float, float]]:
    """(file:function, calls, own ms per query, cumulative ms per query) of the heaviest functions."""
    mine = [stamped(d) for k, d in queries if k == kind]
    prof = cProfile.Profile()
    prof.enable()
    for body in mine:
        run_one(body, storage, settings)
    prof.disable()
    st = pstats.Stats(prof)
    rows = []
    for (file, line, fn), (_cc, calls, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        where = f"{_short(file)}:{fn}" if line else fn
        rows.append((where, calls, tt * 1000 / len(mine), ct * 1000 / len(mine)))
    rows.sort(key=lambda r: -r[2])
    return rows[:top]


def _short(file: str) -> str:
    p = Path(file)
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        parts = p.parts
        return "/".join(parts[parts.index("site-packages") + 1:]) if "site-packages" in parts else p.name


# ---- report ---------------------------------------------------------------------------------------------

def report(args: argparse.Namespace, info: dict, builds: list[dict], res: dict, rss: dict,
           sizes: dict, prof: tuple[str, list] | None, gen_s: float) -> str:
    m = info["machine"]
    lines = [BEGIN, "",
             f"Command: `python -m loadtests.bench_engine --connectors {args.connectors} --queries {args.queries}"
             f" --seed {args.seed}` ({info['date']})", "",
             f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']}, {m['python']}, {m['os']}. "
             f"Load average (1/5/15 min) before: {info['load_before']}, after: {info['load_after']}"
             + (" — the machine was busy with other work; expect the numbers to be pessimistic."
                if info["busy"] else "."), "",
             f"Network: {builds[0]['items']} connectors in {builds[0]['catalogs']} catalogs "
             f"(generation alone {gen_s:.1f} s, not counted below).", "",
             "**Index build** (normalise + write: WAL append, group commit, apply; one catalog at a time):", "",
             "| fsync | normalise | store (WAL + index) | total | rate |", "| --- | --- | --- | --- | --- |"]
    for b in builds:
        tot = b["normalise_s"] + b["store_s"]
        lines.append(f"| {'on' if b['fsync'] else 'off'} | {b['normalise_s']:.1f} s | {b['store_s']:.1f} s | "
                     f"{tot:.1f} s | {b['items'] / tot:,.0f} connectors/s |")
    lines += ["", f"**Query latency** ({args.queries} queries of `labeled_query_mix(seed={args.seed})` after "
              f"{args.warmup} warm-up queries, sequential, one thread; query = `storage.search`, "
              "full = parse + plan + search + assemble + serialise; wall clock, and in brackets the CPU time of "
              "the thread, which a busy machine does not inflate by preemption). Goal: query p99 ≤ "
              f"{GOAL_P99_MS:g} ms at 100k connectors.", "",
              "| kind | n | mean hits | query p50 | query p99 | full p50 | full p99 |",
              "| --- | --- | --- | --- | --- | --- | --- |"]

    def cell(r: dict, series: str, p: float) -> str:
        return f"{pct(r[series], p):.2f} ({pct(r[series + '_cpu'], p):.2f}) ms"

    for kind in (*KINDS, "all"):
        r = res.get(kind)
        if not r:
            continue
        lines.append(f"| {kind} | {len(r['full'])} | {statistics.mean(r['hits']):.1f} | {cell(r, 'query', 50)} | "
                     f"{cell(r, 'query', 99)} | {cell(r, 'full', 50)} | {cell(r, 'full', 99)} |")
    lines += ["", f"**Memory**: RSS {rss['before']:.0f} MB before loading, {rss['after']:.0f} MB after loading "
              f"{builds[0]['items']} connectors (fsync-on index, the one queried), peak {rss['peak']:.0f} MB "
              f"(includes generating the network). Index: {sizes}.", ""]
    if prof:
        kind, rows = prof
        lines += [f"**Profile of the slowest kind (`{kind}`, cProfile, per query; cProfile inflates Python-heavy "
                  "code):**", "", "| function | calls | own ms/query | cumulative ms/query |",
                  "| --- | --- | --- | --- |"]
        lines += [f"| `{w}` | {c} | {tt:.3f} | {ct:.3f} |" for w, c, tt, ct in rows]
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def write_markdown(block: str, path: Path) -> None:
    write_block(path, block, heading=SECTION, begin=BEGIN, end=END)


async def main_async(args: argparse.Namespace) -> str:
    settings = Settings()
    load0 = os.getloadavg()[0]
    info: dict[str, Any] = {"machine": machine_info(), "load_before": loadavg(),
                            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    t0 = time.perf_counter()
    net = generate_network(args.connectors, seed=args.seed)
    net.counts()   # one generation pass, so that build timings exclude it from the start
    gen_s = time.perf_counter() - t0
    queries = net.labeled_query_mix(args.queries + args.warmup, seed=args.seed)
    warm, measured = queries[:args.warmup], queries[args.warmup:]
    gc.collect()
    rss = {"before": rss_mb()}
    builds = []
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp:
        storage, b = await build(net, Path(tmp) / "fsync-on", settings, fsync=True)
        builds.append(b)
        gc.collect()
        rss["after"] = rss_mb()
        sizes = storage.index_size()
        print(f"loaded {b['items']} connectors (fsync on) in {b['wall_s']:.1f} s; RSS {rss['after']:.0f} MB",
              file=sys.stderr)
        run_queries(warm, storage, settings)
        res = run_queries(measured, storage, settings)
        prof = None
        worst = max(KINDS, key=lambda k: pct(res[k]["query_cpu"], 99) if k in res else -1)
        if args.connectors >= 100_000 and pct(res["all"]["query"], 99) > GOAL_P99_MS or args.profile:
            prof = (worst, profile_kind(worst, measured, storage, settings))
        await storage.close()
        del storage
        gc.collect()
        if not args.skip_nofsync:
            storage, b = await build(net, Path(tmp) / "fsync-off", settings, fsync=False)
            builds.append(b)
            await storage.close()
            del storage
    rss["peak"] = peak_rss_mb()
    info["load_after"] = loadavg()
    info["busy"] = max(load0, os.getloadavg()[0]) > (os.cpu_count() or 1) * 0.75
    return report(args, info, builds, res, rss, sizes, prof, gen_s)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connectors", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--profile", action="store_true", help="profile the slowest kind even if the goal is met")
    ap.add_argument("--skip-nofsync", action="store_true", help="skip the second (fsync off) build")
    ap.add_argument("--no-write", action="store_true", help="print only; do not update BENCHMARKS.md")
    ap.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = ap.parse_args(argv)
    block = asyncio.run(main_async(args))
    print(block)
    if not args.no_write:
        write_markdown(block, args.out)
        print(f"updated {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
