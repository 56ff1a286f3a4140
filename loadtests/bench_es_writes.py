"""Elasticsearch write cost per catalog: the generated network cut into station-sized catalogs (as
`loadtests.bench_ingest` publishes them), normalised once (not timed), then written with
`ElasticStorage.replace_catalog`, `--in-flight` catalogs at a time, once per value given.

    python -m loadtests.bench_es_writes [--connectors 6000] [--catalog-connectors 20] [--in-flight 4 16 64]
                                        [--refresh true] [--es-url URL]

Reports, per in-flight value: the wall-clock rate, and the CPU time per catalog of this process (building
and sending the writes) and of the Elasticsearch server (indexing, refreshing; read from /proc, so the
server must run on this machine). CPU time is what a busy machine does not inflate: the CPU-bound ceiling
(connectors per second of one core's worth of both) is the figure to compare between runs. Prints markdown;
not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid

import orjson

from cds.config import load_settings
from cds.core.normalize import normalize_catalog
from indexer.elastic.store import ElasticStorage
from loadtests.bench_es import LocalEs, drop_indices, load
from loadtests.bench_ingest import station_catalogs
from loadtests.bench_procs import cpu_seconds, loadavg


async def es_pid(storage: ElasticStorage) -> int | None:
    info = await storage.es.nodes.info(node_id="_local", metric="process")
    return next(iter(info["nodes"].values()))["process"]["id"]


async def run(a: argparse.Namespace, url: str) -> list[str]:
    _net, work = station_catalogs(a.connectors, a.catalog_connectors, a.seed)
    settings = load_settings({}, es_url=url, es_refresh=a.refresh)
    now = time.time()
    records = [normalize_catalog(orjson.loads(cat), publisher_id=who["subscriber_id"], publisher_uri="http://bpp",
                                 dialect="A", settings=settings, now=now)[0] for who, cat, _ in work]
    rows = []
    for n in a.in_flight:
        prefix = f"bench-writes-{uuid.uuid4().hex[:8]}"
        storage = ElasticStorage(load_settings({}, es_url=url, es_index_prefix=prefix, es_refresh=a.refresh))
        await storage.init_indices()
        pid = await es_pid(storage)
        mine, server = time.process_time(), cpu_seconds(pid)
        ld = await load(storage, records, n)
        mine, server = time.process_time() - mine, cpu_seconds(pid) - server
        per = 1000 / ld["catalogs"]
        rows.append(f"| {n} | {ld['rate']:,.0f} connectors/s | {ld['p50_ms']:,.0f} / {ld['p99_ms']:,.0f} ms | "
                    f"{mine * per:.2f} ms | {server * per:.2f} ms | {ld['items'] / (mine + server):,.0f} connectors/s |")
        if hasattr(storage, "drain"):
            await storage.drain()
        await drop_indices(storage, prefix)
        await storage.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtests.bench_es_writes", description=__doc__.splitlines()[0])
    p.add_argument("--connectors", type=int, default=6000)
    p.add_argument("--catalog-connectors", type=int, default=20)
    p.add_argument("--in-flight", type=int, nargs="+", default=[4, 16, 64])
    p.add_argument("--refresh", default="true", choices=("wait_for", "true", "false"))
    p.add_argument("--es-url", default=None)
    p.add_argument("--heap", default="1g")
    p.add_argument("--seed", type=int, default=42)
    a = p.parse_args(argv)
    before = loadavg()
    es = None if a.es_url else LocalEs(a.heap)
    try:
        rows = asyncio.run(run(a, a.es_url or es.url))
    finally:
        if es is not None:
            es.close()
    print(f"Command: `python -m loadtests.bench_es_writes {' '.join(sys.argv[1:] if argv is None else argv)}` "
          f"(load average before {before}, after {loadavg()}); {a.catalog_connectors} connectors per catalog, "
          f"refresh `{a.refresh}`.\n")
    print("| in flight | wall rate | per catalog p50 / p99 | CPU per catalog: client | Elasticsearch | "
          "CPU-bound ceiling (one core) |")
    print("| --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
