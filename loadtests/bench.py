"""Benchmark runner: a generated national network, a real `cds serve`, locust scenarios, one results table.

    python -m loadtests.bench [--connectors 100000] [--duration 30] [--users 20] [--smoke] [--out BENCHMARKS.md]
    make bench          # the same, 100k connectors, writes BENCHMARKS.md (< 10 min on the 2-core dev VM)
    make bench-smoke    # ~1k connectors, a few seconds per scenario; exit 1 on any request error

What one run does (every process is a real subprocess on loopback; locust always runs as its own process):
 1. generate the network (loadtests.generator, seeded) and write registry.json (BAP, BPPs and a freshly
    generated CDS key; callback URLs point at the sink), participants.json and queries.jsonl;
 2. start the callback sink (loadtests.callback_sink: the BAP's and BPPs' callback endpoints), the hello-world
    baseline (loadtests.hello) and the CDS (`cds serve` on the embedded default with a temporary data dir,
    through loadtests.profile_serve, which only adds an on-demand cProfile switch);
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
      profile (--profile)   a closed-loop sync run with cProfile switched on inside the CDS
 6. write the markdown table into --out (between generated markers; the rest of the file is kept).

Request errors, non-200 answers, NACKed or rejected publishes, lost callbacks and never-searchable probes are
errors: the run exits 1 (the CI smoke relies on this). Slowness never fails a run.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import importlib.util
import os
import platform
import pstats
import resource
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import orjson

from cds.outbound import now_rfc3339
from cds.signing import generate_keypair, load_private_key, sign_request
from loadtests.bench_report import Latency, Probe, Run, Scenario, render, write_section
from loadtests.generator import Network, generate_network

HERE = Path(__file__).resolve().parent
PY = sys.executable
CDS_ID, CDS_KEY_ID = "cds.bench.local", "bench-key-1"
SEED_CONCURRENCY = 4
PUBLISH_POOL = 16                      # smallest publish requests re-sent by the publish scenario
_CTX_SPLIT = b',"message":{"catalogs":['


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
    es_url: str | None
    redis_url: str | None
    keep: bool


# ---------------------------------------------------------------- processes


# ---------------------------------------------------------------- inputs


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


# ---------------------------------------------------------------- locust


def locust_available() -> bool:
    return importlib.util.find_spec("locust") is not None


def _csv_aggregate(prefix: Path) -> tuple[int | None, int | None]:
    try:
        import csv

        with open(f"{prefix}_stats.csv", newline="") as f:
            for row in csv.DictReader(f):
                if row.get("Name") == "Aggregated":
                    return int(row["Request Count"]), int(row["Failure Count"])
    except (OSError, KeyError, ValueError):
        pass
    return None, None


def run_locust(name: str, locustfile: str, host: str, *, target: str, mode: str, users: int, duration: float,
               rate: float, work: Path, server_pid: int, env_extra: dict[str, str]) -> tuple[Scenario, dict]:
    """One headless locust process; returns the scenario summary and the raw record (timings, acks...)."""
    record = work / f"{name}.record.json"
    prefix = work / name
    env = {**os.environ, "LOADTEST_DIR": str(work), "LOADTEST_MODE": mode, "LOADTEST_RATE": str(rate),
           "LOADTEST_RECORD": str(record), **env_extra}
    argv = [PY, "-m", "locust", "-f", str(HERE / locustfile), "--headless", "-u", str(users), "-r", str(users),
            "-t", f"{max(1, round(duration))}s", "--host", host, "--csv", str(prefix), "--only-summary",
            "--loglevel", "WARNING", "--exit-code-on-error", "1"]
    sc = Scenario(name=name, target=target, locustfile=locustfile, mode=mode, users=users, rate_per_user=rate,
                  duration_s=duration)
    with open(work / f"{name}.locust.log", "wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=HERE.parent)
        sampler = CpuSampler({"server": server_pid, "client": proc.pid})
        sampler.start()
        try:
            sc.locust_exit = proc.wait(duration + 120)
        except subprocess.TimeoutExpired:
            proc.kill()
            sc.locust_exit = proc.wait()
            sc.notes.append("locust did not stop in time and was killed")
        finally:
            sampler.stop()
    if not record.exists():
        sc.notes.append(f"no timing record: locust failed (see {name}.locust.log): "
                        + (work / f"{name}.locust.log").read_text("utf-8", "replace")[-1500:])
        return sc, {}
    raw = orjson.loads(record.read_bytes())
    t0, t1 = raw["window"]
    sc.window_s = t1 - t0 if t0 else 0.0
    sc.t_start, sc.t_end = t0 or 0.0, t1
    all_ms = [v for vs in raw["timings_ms"].values() for v in vs]
    sc.latency = Latency.of(all_ms)
    sc.by_kind = {k: Latency.of(v) for k, v in raw["timings_ms"].items()}
    sc.statuses = raw["status"]
    sc.requests = len(all_ms)
    sc.non_200 = sum(n for code, n in sc.statuses.items() if code != "200")
    sc.hits = raw.get("hits", {})
    sc.csv_requests, sc.csv_failures = _csv_aggregate(prefix)
    ok = sum(h[1] for h in sc.hits.values()) if mode == "sync" else len(raw.get("acks", [])) \
        if mode == "async" else sc.requests - sc.non_200
    sc.failures = max(sc.csv_failures or 0, sc.requests - ok)
    sc.rps = ok / sc.window_s if sc.window_s else 0.0
    if t0:
        sc.server_cpu_pct = sampler.percent("server", t0, t1)
        sc.client_cpu_pct = sampler.percent("client", t0, t1)
        if sc.server_cpu_pct is not None and sc.requests:
            sc.server_cpu_ms_per_req = sc.server_cpu_pct / 100 * sc.window_s * 1000 / sc.requests
    return sc, raw


def check_scenario(run: Run, sc: Scenario) -> None:
    if sc.requests == 0:
        run.errors.append(f"{sc.name}: no requests were made ({'; '.join(sc.notes) or 'see its locust log'})")
    if sc.failures or sc.non_200:
        run.errors.append(f"{sc.name}: {sc.failures} failed requests, {sc.non_200} non-200 answers "
                          f"(status counts {sc.statuses})")
    if sc.locust_exit not in (0, None) and not (sc.failures or sc.non_200):
        run.errors.append(f"{sc.name}: locust exited with {sc.locust_exit}")


def join_callbacks(run: Run, sc: Scenario, raw: dict, sink: str, timeout: float) -> None:
    """ACK → on_discover per message id: the locust record's ACK times against the sink's receipt times."""
    acks = raw.get("acks", [])
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


def attribute_gc(run: Run, path: Path) -> None:
    """The CDS's generation-2 collections (stop-the-world pauses) per scenario window (cds scenarios only)."""
    try:
        run.gc = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return
    for sc in run.scenarios:
        if sc.target == "cds" and sc.t_start:
            pauses = [ms for t, ms in run.gc.get("full", []) if sc.t_start <= t <= sc.t_end]
            sc.gc_full, sc.gc_full_max_ms = len(pauses), max(pauses, default=None)
    run.gc.pop("full", None)


def profile_summary(path: Path, top: int = 22) -> list[str]:
    import io

    out = io.StringIO()
    st = pstats.Stats(str(path), stream=out)
    st.strip_dirs().sort_stats("tottime").print_stats(top)
    lines = out.getvalue().splitlines()
    start = next((i for i, l in enumerate(lines) if "ncalls" in l), 0)
    total = next((l.strip() for l in lines if "function calls" in l), "")
    return [total, ""] + [l.rstrip() for l in lines[start:] if l.strip()]


# ---------------------------------------------------------------- the run


def execute(cfg: Config, run: Run, work: Path) -> None:
    t0 = time.time()
    net = generate_network(cfg.connectors, seed=cfg.seed)
    ports = {k: free_port() for k in ("cds", "sink", "hello")}
    sink, hello = f"http://127.0.0.1:{ports['sink']}", f"http://127.0.0.1:{ports['hello']}"
    cds_root = f"http://127.0.0.1:{ports['cds']}"
    cds = f"{cds_root}/beckn"
    seed_b64, pub_b64 = generate_keypair()
    write_inputs(work, net, sink=sink, cds_public_key=pub_b64, queries=cfg.queries, seed=cfg.seed)
    run.generate_s = time.time() - t0
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    cds_env = {**base_env, "CDS_SUBSCRIBER_ID": CDS_ID, "CDS_KEY_ID": CDS_KEY_ID, "CDS_SIGNING_PRIVATE_KEY": seed_b64,
               "CDS_SUBSCRIBER_URL": cds, "CDS_REGISTRY_FILE": str(work / "registry.json"),
               "CDS_DATA_DIR": str(work / "data"), "CDS_ALLOW_PRIVATE_CALLBACKS": "true", "CDS_LOG_LEVEL": "WARNING",
               "CDS_BENCH_PROFILE_OUT": str(work / "cds.prof"), "CDS_BENCH_GC_OUT": str(work / "gc.json")}
    if cfg.es_url:
        cds_env["CDS_ES_URL"] = cfg.es_url
        run.storage = "Elasticsearch"
    if cfg.redis_url:
        cds_env["CDS_REDIS_URL"] = cfg.redis_url
    services: list[Service] = []
    try:
        services.append(Service("sink", [PY, "-m", "loadtests.callback_sink", "--port", str(ports["sink"])],
                                base_env, work))
        services.append(Service("hello", [PY, "-m", "loadtests.hello", "--port", str(ports["hello"])], base_env, work))
        cds_svc = Service("cds", [PY, "-m", "loadtests.profile_serve", "serve", "--port", str(ports["cds"])],
                          cds_env, work)
        services.append(cds_svc)
        wait_http(f"{sink}/_sink/stats", services[0], 30)
        wait_http(hello, services[1], 30)
        wait_http(f"{cds_root}/health/ready", cds_svc, 60)
        _progress(f"network generated, services up ({time.time() - t0:.0f} s); seeding {cfg.connectors:,} connectors")

        seeder = Seeder(cfg, run, net, work, cds, sink)

        async def seed_and_probe() -> None:
            timeout = aiohttp.ClientTimeout(total=300)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                await seeder.seed(session)
                run.seeding.items_indexed = index_items(cds_root)
                run.rss_after_seed_mb = rss_mb(cds_svc.pid)
                _progress(f"seeded in {run.seeding.indexed_s:.0f} s ({run.seeding.items_indexed} items, "
                          f"RSS {run.rss_after_seed_mb:.0f} MB); probing publish → searchable")
                await seeder.probe_all(session)

        asyncio.run(seed_and_probe())
        run.network = net.counts()   # cached by the seeding pass
        if run.seeding.items_indexed is not None and run.seeding.items_indexed < cfg.connectors:
            run.errors.append(f"the index holds {run.seeding.items_indexed} items, {cfg.connectors} were published")

        common = dict(work=work, server_pid=cds_svc.pid, users=cfg.users, duration=cfg.duration)
        # 1-2: hello-world and closed-loop sync discover: same locustfile, same bodies, same signing, same users.
        _progress("scenario hello")
        sc, _ = run_locust("hello", "locustfile_discover.py", hello, target="hello", mode="sync", rate=0,
                           env_extra={"LOADTEST_EXPECT": "Hello"}, **{**common, "server_pid": services[1].pid})
        run.scenarios.append(sc)
        check_scenario(run, sc)
        _progress("scenario discover_sync")
        sync, _ = run_locust("discover_sync", "locustfile_discover.py", cds_root, target="cds", mode="sync", rate=0,
                             env_extra={}, **common)
        run.scenarios.append(sync)
        check_scenario(run, sync)
        # 3-4: latency at half the measured capacity (a saturated closed loop measures queueing, not service).
        rate = round(max(1.0, sync.rps * 0.5) / cfg.users, 3)
        _progress(f"scenario discover_sync_paced ({rate:g}/s per user)")
        paced, _ = run_locust("discover_sync_paced", "locustfile_discover.py", cds_root, target="cds", mode="sync",
                              rate=rate, env_extra={}, **common)
        run.scenarios.append(paced)
        check_scenario(run, paced)
        _progress("scenario discover_async_paced")
        http_json(f"{sink}/_sink/reset", data=b"")
        asy, raw = run_locust("discover_async_paced", "locustfile_discover.py", cds_root, target="cds", mode="async",
                              rate=rate, env_extra={"LOADTEST_CALLBACK_URI": f"{sink}/bap"}, **common)
        run.scenarios.append(asy)
        check_scenario(run, asy)
        if raw:
            join_callbacks(run, asy, raw, sink, timeout=15 if cfg.smoke else 30)
        # 5: publish load, then the ingest drain.
        _progress("scenario publish")
        http_json(f"{sink}/_sink/reset", data=b"")
        pub, raw = run_locust("publish", "locustfile_publish.py", cds_root, target="cds", mode="publish", rate=0,
                              env_extra={"LOADTEST_CALLBACK_URI": f"{sink}/bpp"},
                              **{**common, "users": cfg.publish_users, "duration": cfg.publish_duration})
        run.scenarios.append(pub)
        check_scenario(run, pub)
        acked = pub.requests - pub.non_200
        t_end = time.time()
        deadline = time.monotonic() + (60 if cfg.smoke else 180)
        got = 0
        while time.monotonic() < deadline:
            got = http_json(f"{sink}/_sink/stats")["counts"].get("on_catalog_publish", 0)
            if got >= acked:
                break
            time.sleep(0.2)
        run.publish_drain_s = time.time() - t_end
        run.publish_drain_complete = got >= acked
        if not run.publish_drain_complete:
            pub.notes.append(f"ingest not drained: {got} of {acked} on_catalog_publish after {run.publish_drain_s:.0f} s")
        res = http_json(f"{sink}/_sink/results")
        if res["statuses"].get("REJECTED"):
            run.errors.append(f"publish scenario: {res['statuses']['REJECTED']} catalogs REJECTED: {res['rejections'][:2]}")
        # 6: optional profile of the sync discover hot path (the same server process).
        if cfg.profile:
            _progress("profiling sync discover")
            os.kill(cds_svc.pid, signal.SIGUSR1)
            prof, _ = run_locust("profile", "locustfile_discover.py", cds_root, target="cds", mode="sync", rate=0,
                                 env_extra={}, **{**common, "duration": cfg.profile})
            os.kill(cds_svc.pid, signal.SIGUSR2)
            prof_path = work / "cds.prof"
            for _ in range(100):
                if prof_path.exists() and prof_path.stat().st_size:
                    break
                time.sleep(0.1)
            time.sleep(0.5)
            run.profile_top = [f"({prof.requests:,} requests at {prof.rps:,.0f} req/s with the profiler on)"] + \
                profile_summary(prof_path)
            (work / "profile.txt").write_text("\n".join(run.profile_top))
        run.rss_end_mb = rss_mb(cds_svc.pid)
    finally:
        for s in reversed(services):
            crashed = not s.alive()
            s.stop()
            if crashed:
                run.errors.append(f"{s.name} died during the run (exit {s.proc.returncode}): {s.tail(800)}")
        attribute_gc(run, work / "gc.json")


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
                   help="seconds of cProfile-d sync load at the end (default 10; smoke 0 = off)")
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
                 es_url=a.es_url, redis_url=a.redis_url, keep=a.keep)
    if not 10 <= cfg.connectors <= 5_000_000:
        p.error("--connectors must be within 10..5000000")
    if not 1 <= cfg.users <= 1000 or not 1 <= cfg.duration <= 3600:
        p.error("--users must be within 1..1000 and --duration within 1..3600")
    out = a.out if a.out is not None else (None if s else HERE.parent / "BENCHMARKS.md")
    return cfg, out, a.json


def main(argv: list[str] | None = None) -> int:
    cfg, out, json_out = parse_args(argv)
    if not locust_available():
        print("locust is not installed: pip install -e '.[load]' (or pip install locust)", file=sys.stderr)
        return 2
    run = Run(command="python -m loadtests.bench " + shlex.join(sys.argv[1:] if argv is None else argv),
              started=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), connectors=cfg.connectors,
              seed=cfg.seed, smoke=cfg.smoke, machine=machine_info(), load_before=loadavg())
    t0 = time.time()
    work = Path(tempfile.mkdtemp(prefix="cds-bench-"))
    try:
        execute(cfg, run, work)
    except Exception as e:  # noqa: BLE001 - report what happened, with the table so far
        run.errors.append(f"run aborted: {type(e).__name__}: {e}")
    finally:
        run.wall_s = time.time() - t0
        run.load_after = loadavg()
        if cfg.keep:
            print(f"work directory kept: {work}", file=sys.stderr)
        else:
            import shutil

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
