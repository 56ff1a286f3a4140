"""Elasticsearch backend benchmark: bulk load rate, publish → searchable, and the discover
overhead our code adds over the engine, on a real Elasticsearch server.

    python -m loadtests.bench_es --connectors 100000 [--es-url URL] [--queries 1000] [--probes 20]
                                 [--http-probes 10] [--concurrency 4] [--heap 1g] [--no-write]

1. Elasticsearch: `--es-url` reuses a running server (the bench writes under a fresh index prefix and deletes
   its indices at the end); otherwise Elastic's test distribution is started on a free port with
   scripts/elasticsearch.sh (heap `--heap`) and stopped at the end.
2. Load: the generated network (`cds.demo.generator`) is normalised (`cds.core.normalize`, timed apart) and
   written with `ElasticStorage.replace_catalog`, `--concurrency` catalogs in flight (concurrent writes are
   group-committed: one bulk, one refresh - policy `--refresh`, default `true` - and one flip per batch).
3. Discover: `labeled_query_mix` (docs/decisions.md §G: radius+connector+power, QR, time window, route) parsed and planned
   as the service does (not timed), then per query, alternately: `storage.search` ("ours"), and "raw": the very
   search request(s) our code sent for that query (captured from the client: `translate.plan`'s body, each
   `search_after` page), replayed with `client.search(...)` on the same client. ours − raw is what our code adds:
   the visible-generations list (a cached copy, re-validated by version every CDS_ES_GENERATIONS_MAX_AGE_MS), planning, the meta fetch, decoding and the exact `cds.core.matching`
   check. Wall clock, and in brackets this thread's CPU time (not inflated by a busy machine).
4. Publish → searchable, storage level: `--probes` catalogs spread over the network, each re-written with one
   new item; the time from `replace_catalog` start to the first `storage.search` (polled concurrently) that
   returns the new item.
5. Publish → searchable over HTTP (`--http-probes`, 0 = skip): `cds serve` on the same indices, a signed
   `catalog/publish` of one catalog with one new item, then a signed GET discover polled until the item
   appears (`loadtests.bench_seed.Seeder` probes; time from sending the publish).

Prints markdown and (unless --no-write) replaces the block between the bench_es markers in the
"Elasticsearch backend" section of BENCHMARKS.md (other sections are left alone).
Not a test: numbers depend on the machine; record them with the command.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from cds.config import Settings, load_settings
from cds.core.planner import build_query
from cds.core.protocol import parse_context, parse_discover, parse_json
from cds.core.query import Query
from cds.keys import generate_keypair
from cds.core.documents import CatalogRecord
from indexer.elastic.store import ElasticStorage
from cds.core.normalize import normalize_catalog
from loadtests.bench import write_inputs
from loadtests.bench_procs import PY, Service, free_port, loadavg, machine_info, wait_http
from loadtests.bench_report import Run, pct, write_block
from loadtests.bench_seed import Seeder
from cds.demo.generator import Network, _jsonpath, generate_network

KINDS = ("radius", "qr", "time_window", "route")
GOAL_SEARCHABLE_P99_MS = 1500.0
ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "elasticsearch.sh"
SECTION = "## Elasticsearch backend"
BEGIN, END = "<!-- bench_es:begin -->", "<!-- bench_es:end -->"
PROBE_TIMEOUT_S = 30.0


def progress(msg: str) -> None:
    print(f"[bench_es {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---- the server --------------------------------------------------------------------------------------

class LocalEs:
    """Elastic's test distribution on a free port (scripts/elasticsearch.sh), stopped by `close`."""

    def __init__(self, heap: str) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="bench-es-"))
        env = {**os.environ, "CDS_ES_HEAP": heap, "CDS_ES_WATCH_PID": str(os.getpid())}
        r = subprocess.run([str(SCRIPT), "start", str(free_port()), str(self.work)], capture_output=True, text=True,
                           env=env, timeout=300)
        if r.returncode != 0:
            self.close()
            raise SystemExit(f"Elasticsearch did not start:\n{r.stderr[-3000:]}")
        self.url = r.stdout.strip().splitlines()[-1]

    def close(self) -> None:
        subprocess.run([str(SCRIPT), "stop", str(self.work)], capture_output=True, timeout=120)
        shutil.rmtree(self.work, ignore_errors=True)


async def es_version(storage: ElasticStorage) -> str:
    # (`GET /` is not served by the test distribution)
    nodes = (await storage.es.nodes.info(node_id="_local", metric="_none", filter_path="nodes.*.version"))["nodes"]
    return next(iter(nodes.values()))["version"]


async def drop_indices(storage: ElasticStorage, prefix: str) -> None:
    names = list(await storage.es.indices.get(index=f"{prefix}-*", expand_wildcards="all"))
    if names:
        await storage.es.indices.delete(index=",".join(names))


# ---- load ----------------------------------------------------------------------------------------------

def normalise_all(net: Network, settings: Settings) -> tuple[list[CatalogRecord], float]:
    t0 = time.perf_counter()
    now = time.time()
    records = [normalize_catalog(cat, publisher_id=bpp.subscriber_id, publisher_uri=bpp.url, dialect="A",
                                 settings=settings, now=now)[0] for bpp, cat in net.iter_catalogs()]
    return records, time.perf_counter() - t0


async def load(storage: ElasticStorage, records: list[CatalogRecord], concurrency: int) -> dict[str, Any]:
    """Every catalog through replace_catalog, `concurrency` in flight, biggest first (shortest tail)."""
    todo = sorted(records, key=lambda r: -len(r.items))
    per_catalog: list[float] = []

    async def worker() -> None:
        while todo:
            rec = todo.pop(0)
            t0 = time.perf_counter()
            await storage.replace_catalog(rec)
            per_catalog.append((time.perf_counter() - t0) * 1000)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    items = sum(len(r.items) for r in records)
    return {"catalogs": len(records), "items": items, "wall_s": wall, "rate": items / wall,
            "p50_ms": pct(per_catalog, 50), "p99_ms": pct(per_catalog, 99), "max_ms": max(per_catalog)}


async def index_size_mb(storage: ElasticStorage) -> float:
    st = await storage.es.indices.stats(index=f"{storage.items_alias},{storage.catalogs_alias}", metric="store")
    return st["_all"]["primaries"]["store"]["size_in_bytes"] / 1e6


# ---- discover: ours vs raw ------------------------------------------------------------------------------

def plan_queries(bodies: list[tuple[str, dict]], settings: Settings) -> list[tuple[str, Query]]:
    """The service's parse → plan of each discover body (not timed)."""
    out = []
    for kind, doc in bodies:
        doc = parse_json(orjson.dumps(doc))
        # the generator stamps bodies with its `now` (today 00:00): skip the freshness check, not the parse
        ctx = parse_context(doc, expected_actions={"discover"}, clock_skew_s=10**9)
        out.append((kind, build_query(parse_discover(doc, ctx).intent, settings=settings)))
    return out


class Capture:
    """Records the client calls of one `storage.search` (search bodies kept for the raw replay)."""

    def __init__(self, storage: ElasticStorage) -> None:
        self.es = storage.es
        self.searches: list[dict[str, Any]] = []
        self.calls: dict[str, int] = defaultdict(int)

    def __enter__(self) -> "Capture":
        for name in ("search", "get", "mget"):
            real = getattr(self.es, name)

            async def call(*a: Any, _real=real, _name=name, **kw: Any) -> Any:
                self.calls[_name] += 1
                if _name == "search":
                    self.searches.append(dict(kw))
                return await _real(*a, **kw)

            setattr(self.es, name, call)
        return self

    def __exit__(self, *exc: Any) -> None:
        for name in ("search", "get", "mget"):
            delattr(self.es, name)   # back to the class's method


async def discover_bench(storage: ElasticStorage, queries: list[tuple[str, Query]], warmup: int) -> dict:
    res: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for i, (kind, query) in enumerate(queries):
        with Capture(storage) as cap:          # untimed pass: what our code sends (and a warm-up)
            await storage.search(query, time.time())
        t0, c0 = time.perf_counter(), time.thread_time()
        hits = await storage.search(query, time.time())
        t1, c1 = time.perf_counter(), time.thread_time()
        for kw in cap.searches:
            await storage.es.search(**kw)
        t2, c2 = time.perf_counter(), time.thread_time()
        if i < warmup:
            continue
        for k in (kind, "all"):
            r = res[k]
            r["ours"].append((t1 - t0) * 1000)
            r["ours_cpu"].append((c1 - c0) * 1000)
            r["raw"].append((t2 - t1) * 1000)
            r["raw_cpu"].append((c2 - c1) * 1000)
            r["hits"].append(len(hits))
            r["trips"].append(sum(cap.calls.values()))
            r["pages"].append(len(cap.searches))
    return res


# ---- publish → searchable -------------------------------------------------------------------------------

def probe_catalogs(net: Network, n: int) -> list[tuple[Any, dict]]:
    """`n` catalogs spread evenly over the network (CPOs come biggest first)."""
    total = net.counts()["catalogs"]
    picks = {int(i * total / n) for i in range(n)} if n else set()
    return [(bpp, cat) for i, (bpp, cat) in enumerate(net.iter_catalogs()) if i in picks]


def with_new_item(cat: dict) -> tuple[dict, str]:
    new_id = f"bench-probe-{uuid.uuid4().hex[:12]}"
    items = cat["beckn:items"]
    return {**cat, "beckn:items": [*items, {**items[0], "beckn:id": new_id}]}, new_id


def id_query(net: Network, item_id: str, settings: Settings) -> Query:
    body = net._discover(random.Random(item_id), {"filters": _jsonpath([f"@.beckn:id == '{item_id}'"])})
    return plan_queries([("qr", body)], settings)[0][1]


async def storage_probes(storage: ElasticStorage, net: Network, settings: Settings, n: int) -> list[dict]:
    out = []
    for bpp, cat in probe_catalogs(net, n):
        cat, new_id = with_new_item(cat)
        rec, _ = normalize_catalog(cat, publisher_id=bpp.subscriber_id, publisher_uri=bpp.url, dialect="A",
                                   settings=settings, now=time.time())
        query = id_query(net, new_id, settings)
        written: list[float] = []

        async def timed_write(rec: CatalogRecord = rec) -> None:
            await storage.replace_catalog(rec)
            written.append(time.perf_counter())

        t0 = time.perf_counter()
        write = asyncio.ensure_future(timed_write())
        found = None
        while found is None and time.perf_counter() - t0 < PROBE_TIMEOUT_S:
            if any(h.item.item_id == new_id for h in await storage.search(query, time.time())):
                found = time.perf_counter()
            elif write.done() and write.exception():
                break
            else:
                await asyncio.sleep(0.002)
        await write
        out.append({"items": len(rec.items), "searchable_ms": None if found is None else (found - t0) * 1000,
                    "replace_ms": (written[0] - t0) * 1000})
    return out


async def http_probes(net: Network, storage_settings: Settings, n: int, work: Path, seed: int) -> list[Any]:
    """Seeder probes against `cds serve` on the same indices (the catalogs were loaded directly)."""
    sink_port, cds_port = free_port(), free_port()
    sink, cds_root = f"http://127.0.0.1:{sink_port}", f"http://127.0.0.1:{cds_port}"
    seed_b64, pub = generate_keypair()
    write_inputs(work, net, sink=sink, cds_public_key=pub, queries=1, seed=seed)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    services = [Service("sink", [PY, "-m", "loadtests.callback_sink", "--port", str(sink_port)], env, work)]
    cds_env = {**env, "CDS_SUBSCRIBER_ID": "cds.bench.local", "CDS_KEY_ID": "bench-key-1",
               "CDS_SIGNING_PRIVATE_KEY": seed_b64, "CDS_SUBSCRIBER_URL": f"{cds_root}/beckn",
               "CDS_REGISTRY_FILE": str(work / "registry.json"), "CDS_DATA_DIR": str(work / "data"),
               "CDS_ALLOW_PRIVATE_CALLBACKS": "true", "CDS_LOG_LEVEL": "WARNING",
               "CDS_ES_URL": storage_settings.es_url or "", "CDS_ES_INDEX_PREFIX": storage_settings.es_index_prefix,
               "CDS_ES_REFRESH": storage_settings.es_refresh}
    services.append(Service("cds", [PY, "-m", "cds", "serve", "--workers", "1", "--port", str(cds_port)], cds_env, work))
    run = Run(command="", started="", connectors=net.connectors, seed=seed, smoke=False, machine={}, load_before="")
    try:
        wait_http(f"{sink}/_sink/stats", services[0], 30)
        wait_http(f"{cds_root}/health/ready", services[1], 60)
        seeder = Seeder(run, net, work, cds=f"{cds_root}/beckn", sink=sink, probes=n, smoke=False)
        seeder.probe_catalogs = [(bpp.subscriber_id, orjson.dumps(cat)) for bpp, cat in probe_catalogs(net, n)]
        async with aiohttp.ClientSession() as session:
            await seeder.probe_all(session)
    finally:
        for s in reversed(services):
            s.stop()
    for e in run.errors:
        progress(f"HTTP probe error: {e}")
    return run.probes


# ---- report ---------------------------------------------------------------------------------------------

def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v:,.1f} ms"


def report(args: argparse.Namespace, info: dict, ld: dict, res: dict, sprobes: dict[str, list[dict]],
           hprobes: list[Any]) -> str:
    m = info["machine"]
    cmd = (f"python -m loadtests.bench_es --connectors {args.connectors} --queries {args.queries} "
           f"--warmup {args.warmup} --probes {args.probes} --http-probes {args.http_probes} "
           f"--concurrency {args.concurrency} --heap {args.heap} --refresh {args.refresh} "
           f"--compare-refresh {' '.join(args.compare_refresh)} --seed {args.seed}"
           + (" --es-url URL" if args.es_url else ""))
    lines = [BEGIN, "", f"Command: `{cmd}` ({info['date']}, {info['wall_s']:.0f} s in all)", "",
             f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']}, Python {m['python']}, {m['os']}; "
             f"Elasticsearch {info['es_version']} ({info['es_how']}), one node, heap {args.heap}, on the same "
             f"machine as the benchmark. Load average (1/5/15 min) before: {info['load_before']}, after: "
             f"{info['load_after']}" + (" — the machine was busy with other work; expect pessimistic numbers."
                                        if info["busy"] else "."), "",
             f"Refresh policy: `CDS_ES_REFRESH={info['refresh']}`.", "",
             f"**Bulk load** ({ld['items']:,} connectors in {ld['catalogs']} catalogs through "
             f"`ElasticStorage.replace_catalog`, {args.concurrency} catalogs in flight; normalising them took "
             f"{info['normalise_s']:.1f} s before, not counted):", "",
             "| wall | rate | per catalog p50 | p99 | max | index size (primaries) |",
             "| --- | --- | --- | --- | --- | --- |",
             f"| {ld['wall_s']:.1f} s | {ld['rate']:,.0f} connectors/s | {_ms(ld['p50_ms'])} | {_ms(ld['p99_ms'])} | "
             f"{_ms(ld['max_ms'])} | {info['size_mb']:,.0f} MB |", ""]
    lines += [f"**Publish → searchable** (goal p99 ≤ {GOAL_SEARCHABLE_P99_MS / 1000:g} s). Storage: a catalog "
              "re-written with one new item, from `replace_catalog` start to the first `storage.search` "
              "(polled concurrently) returning it; `replace_catalog` = the write itself (bulk, refresh, "
              "generation flip). HTTP: signed `catalog/publish` of one catalog with one new item to `cds serve` "
              "→ first signed GET `/discover` (polled) returning it, from sending the publish.", "",
              "| path | refresh | probes | catalog size (items) | searchable p50 | p99 | max | never | "
              "`replace_catalog` p50 | p99 |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]

    def row(path: str, policy: str, sizes: list[int], found: list[float], n: int, writes: list[float]) -> str:
        def q(vals: list[float], p: float | None) -> str:
            return _ms(None if not vals else max(vals) if p is None else pct(vals, p))
        return (f"| {path} | `{policy}` | {n} | {min(sizes)}–{max(sizes)} | {q(found, 50)} | {q(found, 99)} | "
                f"{q(found, None)} | {n - len(found)} | {q(writes, 50)} | {q(writes, 99)} |")

    for policy, probes in sprobes.items():
        if probes:
            lines.append(row("storage", policy, [p["items"] for p in probes],
                             [p["searchable_ms"] for p in probes if p["searchable_ms"] is not None], len(probes),
                             [p["replace_ms"] for p in probes]))
    if hprobes:
        lines.append(row("HTTP (`cds serve`)", info["refresh"], [p.items for p in hprobes],
                         [p.ack_ms + p.searchable_ms for p in hprobes if p.searchable_ms is not None], len(hprobes),
                         []))
    acks = [p.ack_ms for p in hprobes if p.ack_ms >= 0]
    cbs = [p.callback_ms for p in hprobes if p.callback_ms is not None]
    if acks:
        lines += ["", f"HTTP probes: publish ACK p50 {_ms(pct(acks, 50))}, p99 {_ms(pct(acks, 99))}; ACK → "
                  f"`on_catalog_publish` at the sink (ingest: normalise + `replace_catalog`) p50 "
                  f"{_ms(pct(cbs, 50) if cbs else None)}, p99 {_ms(pct(cbs, 99) if cbs else None)}."]
    lines += ["", f"**Discover** ({args.queries} queries of `labeled_query_mix(seed={args.seed})` after "
              f"{args.warmup} warm-up, sequential). ours = `storage.search` (cached generations list + search page(s) + "
              "meta fetch + decode + exact match); raw = the same search request(s) our code sent, replayed "
              "directly with `client.search`; overhead = ours − raw. Wall clock, in brackets the CPU time of "
              "this thread. Round trips: ES requests per `storage.search`.", "",
              "| kind | n | mean hits | round trips | ours p50 | ours p99 | raw p50 | raw p99 | overhead p50 | "
              "overhead p99 |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]

    def cell(r: dict, series: str, p: float) -> str:
        return f"{pct(r[series], p):.2f} ({pct(r[series + '_cpu'], p):.2f}) ms"

    for kind in (*KINDS, "all"):
        r = res.get(kind)
        if not r:
            continue
        over = [a - b for a, b in zip(r["ours"], r["raw"])]
        over_cpu = [a - b for a, b in zip(r["ours_cpu"], r["raw_cpu"])]
        lines.append(f"| {kind} | {len(r['ours'])} | {statistics.mean(r['hits']):.1f} | "
                     f"{statistics.mean(r['trips']):.2f} | {cell(r, 'ours', 50)} | {cell(r, 'ours', 99)} | "
                     f"{cell(r, 'raw', 50)} | {cell(r, 'raw', 99)} | {pct(over, 50):.2f} ({pct(over_cpu, 50):.2f}) ms"
                     f" | {pct(over, 99):.2f} ({pct(over_cpu, 99):.2f}) ms |")
    lines += ["", END]
    return "\n".join(lines)


def write_markdown(block: str, path: Path) -> None:
    write_block(path, block, heading=SECTION, begin=BEGIN, end=END)


# ---- main -----------------------------------------------------------------------------------------------

async def main_async(args: argparse.Namespace) -> str:
    t_start = time.perf_counter()
    info: dict[str, Any] = {"machine": machine_info(), "load_before": loadavg(),
                            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    load0 = os.getloadavg()[0]
    local = None
    if args.es_url:
        url, info["es_how"] = args.es_url, "reused via --es-url"
    else:
        progress(f"starting Elasticsearch (heap {args.heap})")
        local = LocalEs(args.heap)
        url, info["es_how"] = local.url, "started by the benchmark with scripts/elasticsearch.sh"
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    settings = load_settings({}, es_url=url, es_index_prefix=prefix, es_refresh=args.refresh)
    info["refresh"] = settings.es_refresh
    storage = ElasticStorage(settings)
    try:
        info["es_version"] = await es_version(storage)
        await storage.init_indices()
        net = generate_network(args.connectors, seed=args.seed)
        progress(f"normalising {args.connectors:,} connectors")
        records, info["normalise_s"] = normalise_all(net, settings)
        progress(f"loading {len(records)} catalogs into {url} ({prefix}-*)")
        ld = await load(storage, records, args.concurrency)
        del records
        info["size_mb"] = await index_size_mb(storage)
        progress(f"loaded in {ld['wall_s']:.1f} s ({ld['rate']:,.0f} connectors/s); discover bench")
        queries = plan_queries(net.labeled_query_mix(args.queries + args.warmup, seed=args.seed), settings)
        res = await discover_bench(storage, queries, args.warmup)
        progress(f"discover p99 ours {pct(res['all']['ours'], 99):.1f} ms raw {pct(res['all']['raw'], 99):.1f} ms;"
                 f" {args.probes} storage probes")
        sprobes = {settings.es_refresh: await storage_probes(storage, net, settings, args.probes)}
        for policy in args.compare_refresh:
            if policy not in sprobes:   # a second client on the same indices, writing with another policy
                other = load_settings({}, es_url=url, es_index_prefix=prefix, es_refresh=policy)
                st2 = ElasticStorage(other)
                try:
                    sprobes[policy] = await storage_probes(st2, net, other, args.probes)
                finally:
                    await st2.close()
        hprobes = []
        if args.http_probes:
            progress(f"{args.http_probes} HTTP probes through cds serve")
            with tempfile.TemporaryDirectory(prefix="bench-es-http-") as work:
                hprobes = await http_probes(net, settings, args.http_probes, Path(work), args.seed)
        await drop_indices(storage, prefix)
    finally:
        await storage.close()
        if local is not None:
            local.close()
    info["load_after"] = loadavg()
    info["busy"] = max(load0, os.getloadavg()[0]) > (os.cpu_count() or 1) * 0.75
    info["wall_s"] = time.perf_counter() - t_start
    return report(args, info, ld, res, sprobes, hprobes)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connectors", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--probes", type=int, default=20, help="publish → searchable probes on the storage")
    ap.add_argument("--http-probes", type=int, default=10, help="the same through cds serve (0 = skip)")
    ap.add_argument("--concurrency", type=int, default=4, help="catalogs in flight while loading")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--es-url", default=None, help="reuse this Elasticsearch instead of starting one")
    ap.add_argument("--heap", default="1g", help="heap of the Elasticsearch started here")
    ap.add_argument("--refresh", default="true", choices=("wait_for", "true", "false"),
                    help="CDS_ES_REFRESH for the writes")
    ap.add_argument("--compare-refresh", nargs="*", default=["wait_for"], choices=("wait_for", "true", "false"),
                    help="storage probes also with these refresh policies (default: wait_for)")
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
