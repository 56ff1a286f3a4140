"""Benchmark runner: a generated national network, a real `cds serve`, locust scenarios, one results table.

    python -m loadtests.bench [--connectors 100000] [--duration 30] [--users 20] [--smoke] [--out BENCHMARKS.md]
    make bench          # the same, 100k connectors, writes BENCHMARKS.md (< 10 min on the 2-core dev VM)
    make bench-smoke    # ~1k connectors, a few seconds per scenario; exit 1 on any request error
    python -m loadtests.bench --gc-freeze    # experiment: the same with gc.freeze() in the CDS after seeding

What one run does (every process is a real subprocess on loopback; locust always runs as its own process):
 1. generate the network (cds.demo.generator, seeded) and write registry.json (BAP, BPPs and a freshly
    generated CDS key; callback URLs point at the sink), participants.json and queries.jsonl;
 2. start the callback sink (loadtests.callback_sink: the BAP's and BPPs' callback endpoints), the hello-world
    baseline (loadtests.hello) and the CDS (`cds serve --single-process` on the embedded default with a temporary
    data dir, through loadtests.profile_serve, which only adds GC timing and an on-demand cProfile switch; one
    process, so that its signals, CPU and RSS are the server's: `loadtests.bench_workers` measures the
    supervised server, any worker count);
 3. seed: send every catalog as a signed publish over HTTP (4 in flight), wait for every on_catalog_publish;
    read the CDS's RSS (VmRSS);
 4. publish → searchable: re-publish single catalogs, each with one new item, and poll a signed sync discover
    for that item id from the ACK until it is returned;
 5. locust scenarios, identical client settings for the two throughput runs:
      hello                 the discover locustfile (sync mode, same signed bodies) against hello-world
      discover_sync         GET /beckn/discover, closed loop: throughput (ratio to hello) and saturated latency
      discover_sync_paced   the same at half the measured throughput: the latency figure
      discover_async_paced  POST /beckn/discover at that rate: ACK latency, and ACK → on_discover from the
                            sink's receipt times joined on message_id
      publish               signed re-publishes of the smallest catalogs (ACK latency), then the ingest drain
      profile               a closed-loop sync run with cProfile switched on inside the CDS (--profile 0: off)
                            (and, after step 6, the same for the fan-out scenario)
 6. fan-out (--fanout-bpps 0: off): restart the CDS on the same data dir (restart time, items after reload)
    with 20 mock live BPPs (loadtests.mock_bpp, 20–100 ms reply delays) added to the registry, so every
    discover fans out to them; a paced sync scenario measures the answer time minus the slowest BPP's reply;
 7. write the markdown table into --out (between generated markers; the rest of the file is kept).

Request errors, non-200 answers, NACKed or rejected publishes, lost callbacks and never-searchable probes are
errors: the run exits 1 (the CI smoke relies on this). Slowness never fails a run.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import pstats
import shlex
import shutil
import signal
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import orjson

from cds.keys import generate_keypair
from loadtests.bench_procs import (
    PY, Service, check_scenario, free_port, http_json, loadavg, locust_available, machine_info, rss_mb, run_locust,
    wait_http)
from loadtests.bench_report import Fanout, Latency, Run, Scenario, render, write_section
from loadtests.bench_seed import Seeder, index_items
from cds.demo.generator import Network, generate_network
from loadtests.mock_bpp import mock_bpps, registry_records

CDS_ID, CDS_KEY_ID = "cds.bench.local", "bench-key-1"
FANOUT_DELAY_MS = (20.0, 100.0)


class Config(msgspec.Struct, kw_only=True):
    connectors: int
    duration: float
    users: int
    seed: int
    smoke: bool
    probes: int
    queries: int
    publish_users: int
    publish_duration: float
    profile: float                     # seconds of profiled sync load; 0 = off
    fanout_bpps: int                   # mock live BPPs of the fan-out phase; 0 = off
    fanout_rate: float                 # discovers/s (all users together) in the fan-out phase
    gc_freeze: bool                    # experiment: gc.freeze() in the CDS after seeding (and after the restart)
    es_url: str | None
    redis_url: str | None
    keep: bool


def write_inputs(work: Path, net: Network, *, sink: str, cds_public_key: str, queries: int, seed: int) -> None:
    """registry.json (callback URLs on the sink; the CDS key), participants.json, queries.jsonl."""
    records = net.registry_records()
    for r in records:
        r["url"] = f"{sink}/{'bap' if r['type'] == 'BAP' else 'bpp'}"
    records.append({**records[-1], "subscriber_id": CDS_ID, "key_id": CDS_KEY_ID, "type": "CDS",
                    "url": "http://127.0.0.1/beckn", "signing_public_key": cds_public_key})
    (work / "registry.json").write_bytes(orjson.dumps(records))
    (work / "participants.json").write_bytes(orjson.dumps({"bap": net.bap, "bpps": net.bpps},
                                                          default=msgspec.to_builtins))
    lines = [orjson.dumps({"kind": k, "body": b}) for k, b in net.labeled_query_mix(queries, seed=seed)]
    (work / "queries.jsonl").write_bytes(b"\n".join(lines) + b"\n")


# ---------------------------------------------------------------- joins of client, sink and mock timings


def join_callbacks(run: Run, sc: Scenario, raw: dict, sink: str, timeout: float) -> None:
    """ACK → on_discover per message id: the locust record's ACK times against the sink's receipt times."""
    acks = raw.get("tracked", [])
    deadline = time.monotonic() + timeout
    times: dict[str, float] = {}
    while time.monotonic() < deadline:
        times = http_json(f"{sink}/_sink/times/on_discover")
        if all(mid in times for mid, _, _ in acks):
            break
        time.sleep(0.25)
    got = [(times[mid] - acked, times[mid] - sent) for mid, sent, acked in acks if mid in times]
    sc.callbacks = Latency.of([a * 1000 for a, _ in got])
    sc.send_to_callback = Latency.of([s * 1000 for _, s in got])
    sc.callbacks_missing = len(acks) - len(got)
    if sc.callbacks_missing:
        run.errors.append(f"{sc.name}: {sc.callbacks_missing} of {len(acks)} ACKed discovers got no on_discover "
                          f"within {timeout:.0f} s")
    stats = http_json(f"{sink}/_sink/stats")
    if stats["unsigned"]:
        run.errors.append(f"{stats['unsigned']} callbacks reached the sink without an Authorization header")


def join_fanout(run: Run, sc: Scenario, raw: dict, mock: str, bpps: int, dump: Path | None = None) -> Fanout:
    """Per sync discover: answer time at the BAP − the slowest BPP's own latency (reply sent − discover received,
    at the mock), i.e. everything the CDS adds: sending the fan-out, taking the replies in, merging, answering."""
    replies: dict[str, list[list[Any]]] = http_json(f"{mock}/_mock/replies")
    stats = http_json(f"{mock}/_mock/stats")
    if dump is not None:   # per discover: (sent, answered) and every reply's (bpp, received, sent), for --keep
        dump.write_bytes(orjson.dumps([[mid, sent, done, replies.get(mid, [])]
                                       for mid, sent, done in raw.get("tracked", [])]))
    over, slowest, complete = [], [], 0
    for mid, sent, done in raw.get("tracked", []):
        rs = replies.get(mid, [])
        if len(rs) == bpps:
            complete += 1
            bpp_latency = max(out - got for _, got, out in rs)
            over.append((done - sent - bpp_latency) * 1000)
            slowest.append(bpp_latency * 1000)
    fo = Fanout(bpps=bpps, delay_ms=list(FANOUT_DELAY_MS), requests=sc.requests, complete=complete,
                overhead=Latency.of(over), slowest_reply=Latency.of(slowest), answer=sc.latency,
                mock_stats=dict(stats))
    if complete < sc.requests:
        sc.notes.append(f"{sc.requests - complete} discovers did not get all {bpps} BPP replies ACKed")
    if any(k.startswith(("reply_error", "nack")) or (k.startswith("reply_") and k != "reply_200") for k in stats):
        run.errors.append(f"fan-out: mock BPP counters {stats}")
    return fo


def attribute_gc(run: Run, paths: list[Path]) -> None:
    """The CDS's generation-2 collections (stop-the-world pauses) per scenario window (cds scenarios only);
    the totals of the first (seeded) instance."""
    full: list[list[float]] = []
    read = 0
    for i, path in enumerate(paths):
        try:
            doc = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            continue
        read += 1
        full += doc.pop("full", [])
        if i == 0:
            run.gc = doc
    if not read:
        return   # no GC record (the server did not exit cleanly): leave the column empty rather than "0"
    for sc in run.scenarios:
        if sc.target == "cds" and sc.t_start:
            pauses = [ms for t, ms in full if sc.t_start <= t <= sc.t_end]
            sc.gc_full, sc.gc_full_max_ms = len(pauses), max(pauses, default=None)


def profile_summary(path: Path, top: int = 22) -> list[str]:
    out = io.StringIO()
    pstats.Stats(str(path), stream=out).strip_dirs().sort_stats("tottime").print_stats(top)
    lines = out.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    total = next((line.strip() for line in lines if "function calls" in line), "")
    return [total, ""] + [line.rstrip() for line in lines[start:] if line.strip()]


# ---------------------------------------------------------------- the run


class Bench:
    """One run: the services, their URLs, and the phases in order."""

    def __init__(self, cfg: Config, run: Run, work: Path) -> None:
        self.cfg, self.run, self.work = cfg, run, work
        self.ports = {k: free_port() for k in ("cds", "sink", "hello", "mock")}
        self.sink = f"http://127.0.0.1:{self.ports['sink']}"
        self.hello = f"http://127.0.0.1:{self.ports['hello']}"
        self.mock = f"http://127.0.0.1:{self.ports['mock']}"
        self.cds_root = f"http://127.0.0.1:{self.ports['cds']}"
        self.cds = f"{self.cds_root}/beckn"
        self.cds_seed, self.cds_pub = generate_keypair()
        self.base_env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
        self.services: list[Service] = []
        self.gc_files: list[Path] = []
        self.cds_svc: Service | None = None

    def start(self, name: str, argv: list[str], env: dict[str, str], stop_timeout: float = 15.0) -> Service:
        svc = Service(name, argv, env, self.work, stop_timeout=stop_timeout)
        self.services.append(svc)
        return svc

    def start_cds(self, name: str) -> Service:
        gc_file = self.work / f"{name}.gc.json"
        self.gc_files.append(gc_file)
        env = {**self.base_env, "CDS_SUBSCRIBER_ID": CDS_ID, "CDS_KEY_ID": CDS_KEY_ID,
               "CDS_SIGNING_PRIVATE_KEY": self.cds_seed, "CDS_SUBSCRIBER_URL": self.cds,
               "CDS_REGISTRY_FILE": str(self.work / "registry.json"), "CDS_DATA_DIR": str(self.work / "data"),
               "CDS_ALLOW_PRIVATE_CALLBACKS": "true", "CDS_LOG_LEVEL": "WARNING",
               "CDS_BENCH_PROFILE_OUT": str(self.work / "cds.prof"), "CDS_BENCH_GC_OUT": str(gc_file)}
        if self.cfg.es_url:
            env["CDS_ES_URL"] = self.cfg.es_url
        if self.cfg.redis_url:
            env["CDS_REDIS_URL"] = self.cfg.redis_url
        # A graceful stop writes a snapshot of the whole index (GBs at 1M connectors): give it time.
        self.cds_svc = self.start(name, [PY, "-m", "loadtests.profile_serve", "serve", "--single-process", "--port",
                                   str(self.ports["cds"])],
                                  env, stop_timeout=300)
        return self.cds_svc

    def locust(self, name: str, *, mode: str = "sync", rate: float = 0, target: str = "cds",
               locustfile: str = "locustfile_discover.py", **over: Any) -> tuple[Scenario, dict]:
        assert self.cds_svc is not None
        kw: dict[str, Any] = dict(work=self.work, server_pid=self.cds_svc.pid, users=self.cfg.users,
                                  duration=self.cfg.duration, env_extra={})
        kw.update(over)
        sc, raw = run_locust(name, locustfile, self.hello if target == "hello" else self.cds_root, target=target,
                             mode=mode, rate=rate, **kw)
        self.run.scenarios.append(sc)
        check_scenario(self.run, sc)
        return sc, raw

    def execute(self) -> None:
        cfg, run = self.cfg, self.run
        t0 = time.time()
        net = generate_network(cfg.connectors, seed=cfg.seed)
        write_inputs(self.work, net, sink=self.sink, cds_public_key=self.cds_pub, queries=cfg.queries, seed=cfg.seed)
        run.generate_s = time.time() - t0
        if cfg.es_url:
            run.storage = "Elasticsearch"
        try:
            sink = self.start("sink", [PY, "-m", "loadtests.callback_sink", "--port", str(self.ports["sink"])],
                              self.base_env)
            hello = self.start("hello", [PY, "-m", "loadtests.hello", "--port", str(self.ports["hello"])],
                               self.base_env)
            cds = self.start_cds("cds")
            wait_http(f"{self.sink}/_sink/stats", sink, 30)
            wait_http(self.hello, hello, 30)
            wait_http(f"{self.cds_root}/health/ready", cds, 60)
            _progress(f"services up ({time.time() - t0:.0f} s); seeding {cfg.connectors:,} connectors")
            self.seed_and_probe(net)
            self.scenarios(hello)
            if cfg.profile:
                run.profile_top = self.profile()
            run.rss_end_mb = rss_mb(cds.pid)
            if cfg.fanout_bpps:
                self.fanout()
        finally:
            for s in reversed(self.services):
                crashed = not s.alive() and s.proc.returncode not in (0, -signal.SIGTERM)
                s.stop()
                if crashed:
                    run.errors.append(f"{s.name} died during the run (exit {s.proc.returncode}): {s.tail(800)}")
                elif s.killed:
                    run.errors.append(f"{s.name} did not stop within {s.stop_timeout:.0f} s of SIGTERM and was killed")
            attribute_gc(run, self.gc_files)

    def seed_and_probe(self, net: Network) -> None:
        run, cds = self.run, self.cds_svc
        assert cds is not None
        seeder = Seeder(run, net, self.work, cds=self.cds, sink=self.sink, probes=self.cfg.probes, smoke=self.cfg.smoke)

        async def go() -> None:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
                await seeder.seed(session)
                run.seeding.items_indexed = index_items(self.cds_root)
                run.rss_after_seed_mb = rss_mb(cds.pid)
                _progress(f"seeded in {run.seeding.indexed_s:.0f} s ({run.seeding.items_indexed} items, "
                          f"RSS {run.rss_after_seed_mb or 0:.0f} MB); probing publish → searchable")
                self.maybe_freeze()
                await seeder.probe_all(session)

        asyncio.run(go())
        run.network = net.counts()   # cached by the seeding pass
        if run.seeding.items_indexed is not None and run.seeding.items_indexed < self.cfg.connectors:
            run.errors.append(f"the index holds {run.seeding.items_indexed} items, {self.cfg.connectors} were published")

    def maybe_freeze(self) -> None:
        if self.cfg.gc_freeze and self.cds_svc is not None:
            os.kill(self.cds_svc.pid, signal.SIGHUP)
            self.run.gc_frozen = True
            time.sleep(2)   # the collect() before the freeze takes ~0.5 s at 100k

    def scenarios(self, hello: Service) -> None:
        cfg, run = self.cfg, self.run
        # hello-world and closed-loop sync discover: same locustfile, bodies, signing and users.
        _progress("scenario hello")
        self.locust("hello", target="hello", server_pid=hello.pid, env_extra={"LOADTEST_EXPECT": "Hello"})
        _progress("scenario discover_sync")
        sync, _ = self.locust("discover_sync")
        # Latency at half the measured capacity (a saturated closed loop measures queueing, not service).
        rate = round(max(1.0, sync.rps * 0.5) / cfg.users, 3)
        _progress(f"scenario discover_sync_paced ({rate:g}/s per user)")
        self.locust("discover_sync_paced", rate=rate)
        _progress("scenario discover_async_paced")
        http_json(f"{self.sink}/_sink/reset", data=b"")
        asy, raw = self.locust("discover_async_paced", mode="async", rate=rate,
                               env_extra={"LOADTEST_CALLBACK_URI": f"{self.sink}/bap"})
        if raw:
            join_callbacks(run, asy, raw, self.sink, timeout=15 if cfg.smoke else 30)
        _progress("scenario publish")
        http_json(f"{self.sink}/_sink/reset", data=b"")
        pub, _ = self.locust("publish", mode="publish", locustfile="locustfile_publish.py", users=cfg.publish_users,
                             duration=cfg.publish_duration, env_extra={"LOADTEST_CALLBACK_URI": f"{self.sink}/bpp"})
        self.drain(pub)

    def drain(self, pub: Scenario) -> None:
        """Wait until every ACKed re-publish was indexed and reported (on_catalog_publish at the sink)."""
        acked = pub.requests - pub.non_200
        t_end = time.time()
        deadline = time.monotonic() + (60 if self.cfg.smoke else 180)
        got = 0
        while time.monotonic() < deadline:
            got = http_json(f"{self.sink}/_sink/stats")["distinct"].get("on_catalog_publish", 0)
            if got >= acked:
                break
            time.sleep(0.2)
        self.run.publish_drain_s = time.time() - t_end
        self.run.publish_drain_complete = got >= acked
        if not self.run.publish_drain_complete:
            pub.notes.append(f"ingest not drained: {got} of {acked} on_catalog_publish after "
                             f"{self.run.publish_drain_s:.0f} s")
        res = http_json(f"{self.sink}/_sink/results")
        if res["statuses"].get("REJECTED"):
            self.run.errors.append(f"publish scenario: {res['statuses']['REJECTED']} catalogs REJECTED: "
                                   f"{res['rejections'][:2]}")

    def profile(self, name: str = "profile", **locust_kw: Any) -> list[str]:
        """cProfile inside the CDS during one more run of a scenario (same process, same index)."""
        assert self.cds_svc is not None
        _progress(f"{name}: cProfile on")
        prof_path = self.work / f"{name}.prof"
        os.kill(self.cds_svc.pid, signal.SIGUSR1)
        sc, _ = self.locust(name, duration=self.cfg.profile, **locust_kw)
        os.kill(self.cds_svc.pid, signal.SIGUSR2)
        out = self.work / "cds.prof"
        for _ in range(100):
            if out.exists() and out.stat().st_size:
                break
            time.sleep(0.1)
        time.sleep(0.5)   # dump_stats writes in one go; give it a moment to finish
        out.rename(prof_path)
        top = [f"({sc.requests:,} requests at {sc.rps:,.1f} req/s with the profiler on)", *profile_summary(prof_path)]
        (self.work / f"{name}.txt").write_text("\n".join(top))
        return top

    def fanout(self) -> None:
        """Restart the CDS on the same data with mock live BPPs in the registry; every discover fans out."""
        cfg, run = self.cfg, self.run
        assert self.cds_svc is not None
        _progress(f"fan-out: restarting the CDS with {cfg.fanout_bpps} mock live BPPs")
        items_before = index_items(self.cds_root)
        self.cds_svc.stop()
        bpps = mock_bpps(cfg.fanout_bpps, base_url=self.mock, seed=cfg.seed)
        registry = orjson.loads((self.work / "registry.json").read_bytes()) + registry_records(bpps)
        (self.work / "registry.json").write_bytes(orjson.dumps(registry))
        lo, hi = FANOUT_DELAY_MS
        mock = self.start("mock_bpp", [PY, "-m", "loadtests.mock_bpp", "--port", str(self.ports["mock"]),
                                       "--bpps", str(cfg.fanout_bpps), "--seed", str(cfg.seed), "--delay-ms", str(lo),
                                       "--delay-ms-max", str(hi), "--cds-public-key", self.cds_pub], self.base_env)
        t = time.time()
        cds = self.start_cds("cds_fanout")
        wait_http(f"{self.cds_root}/health/ready", cds, 300)
        run.restart_s = time.time() - t
        run.rss_after_restart_mb = rss_mb(cds.pid)
        wait_http(f"{self.mock}/_mock/stats", mock, 30)
        items_after = index_items(self.cds_root)
        self.maybe_freeze()
        if items_before is not None and items_after != items_before:
            run.errors.append(f"after a restart the index holds {items_after} items, before it held {items_before}")
        rate = round(cfg.fanout_rate / cfg.users, 3)
        _progress(f"scenario discover_fanout ({cfg.fanout_bpps} BPPs, {cfg.fanout_rate:g} discovers/s)")
        sc, raw = self.locust("discover_fanout", rate=rate, env_extra={"LOADTEST_TRACK": "1"})
        if raw:
            run.fanout = join_fanout(run, sc, raw, self.mock, cfg.fanout_bpps, self.work / "fanout_join.json")
        if cfg.profile:
            run.profile_fanout_top = self.profile("profile_fanout", rate=rate)


def _progress(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> tuple[Config, Path | None, Path | None]:
    p = argparse.ArgumentParser(prog="python -m loadtests.bench", description=__doc__.splitlines()[0])
    p.add_argument("--connectors", type=int, default=None, help="network size (default 100000; smoke 1000)")
    p.add_argument("--duration", type=float, default=None, help="seconds per scenario (default 30; smoke 3)")
    p.add_argument("--users", type=int, default=None, help="locust users (default 20; smoke 5)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--smoke", action="store_true", help="small and short; for CI: fails only on errors")
    p.add_argument("--probes", type=int, default=None, help="publish → searchable probes (default 20; smoke 3)")
    p.add_argument("--profile", type=float, default=None,
                   help="seconds of cProfile-d sync load (default 10; smoke 0 = off)")
    p.add_argument("--fanout-bpps", type=int, default=20, help="mock live BPPs in the fan-out phase (0 = skip it)")
    p.add_argument("--fanout-rate", type=float, default=None,
                   help="discovers/s of the fan-out scenario, all users together (default 5)")
    p.add_argument("--gc-freeze", action="store_true",
                   help="experiment: gc.freeze() inside the CDS once seeded (not what the service does by itself)")
    p.add_argument("--out", type=Path, default=None,
                   help="markdown file to write the results into (default BENCHMARKS.md; smoke: none)")
    p.add_argument("--json", type=Path, default=None, help="also write the raw results as JSON")
    p.add_argument("--es-url", default=None, help="run the CDS on this Elasticsearch instead of the embedded index")
    p.add_argument("--redis-url", default=None)
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, locust CSVs, profile)")
    a = p.parse_args(argv)
    s = a.smoke
    cfg = Config(connectors=a.connectors or (1000 if s else 100_000), duration=a.duration or (3 if s else 30),
                 users=a.users or (5 if s else 20), seed=a.seed, smoke=s,
                 probes=a.probes if a.probes is not None else (3 if s else 20),
                 queries=500 if s else 5000, publish_users=2 if s else 4,
                 publish_duration=a.duration or (3 if s else 15),
                 profile=a.profile if a.profile is not None else (0 if s else 10),
                 fanout_bpps=a.fanout_bpps, fanout_rate=a.fanout_rate or 5, gc_freeze=a.gc_freeze,
                 es_url=a.es_url, redis_url=a.redis_url, keep=a.keep)
    if not 10 <= cfg.connectors <= 5_000_000:
        p.error("--connectors must be within 10..5000000")
    if not 1 <= cfg.users <= 1000 or not 1 <= cfg.duration <= 3600:
        p.error("--users must be within 1..1000 and --duration within 1..3600")
    if not 0 <= cfg.fanout_bpps <= 200 or not 0 < cfg.fanout_rate <= 1000 or not 0 <= cfg.profile <= 600:
        p.error("--fanout-bpps must be within 0..200, --fanout-rate within (0, 1000], --profile within 0..600")
    out = a.out if a.out is not None else (None if s else Path(__file__).resolve().parent.parent / "BENCHMARKS.md")
    return cfg, out, a.json


def main(argv: list[str] | None = None) -> int:
    cfg, out, json_out = parse_args(argv)
    if not locust_available():
        print("locust is not installed: pip install -e '.[load]' (or pip install locust)", file=sys.stderr)
        return 2
    args = sys.argv[1:] if argv is None else argv
    run = Run(command="python -m loadtests.bench" + (" " + shlex.join(args) if args else ""),
              started=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), connectors=cfg.connectors,
              seed=cfg.seed, smoke=cfg.smoke, machine=machine_info(), load_before=loadavg())
    t0 = time.time()
    work = Path(tempfile.mkdtemp(prefix="cds-bench-"))
    try:
        Bench(cfg, run, work).execute()
    except Exception as e:  # noqa: BLE001 - report what happened, with the table so far
        run.errors.append(f"run aborted: {type(e).__name__}: {e}")
    finally:
        run.wall_s = time.time() - t0
        run.load_after = loadavg()
        if cfg.keep:
            print(f"work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    block = render(run)
    print(block)
    if out is not None:
        write_section(out, block)
    if json_out is not None:
        json_out.write_bytes(orjson.dumps(run, default=msgspec.to_builtins, option=orjson.OPT_INDENT_2))
    if run.errors:
        print(f"{len(run.errors)} error(s):\n" + "\n".join(f"  - {e}" for e in run.errors), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
