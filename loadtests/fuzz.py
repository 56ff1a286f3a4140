"""Fuzz a running CDS with signed requests (docs/decisions.md §24: no small signed request can stall or kill it).

    python -m loadtests.fuzz                       # 100,000 requests against a `cds serve --demo` it starts
    python -m loadtests.fuzz --requests 300        # a smoke run (what tests/loadtests runs)
    python -m loadtests.fuzz --url http://127.0.0.1:8080 --data-dir ./data   # a running demo server
    python -m loadtests.fuzz --write               # also record the figures in BENCHMARKS.md

Requests are drawn from the Hypothesis strategies in `loadtests.fuzz_strategies` (filters, time windows,
geometries, contexts of both dialects, catalogs to publish), given fresh ids and timestamp, signed with the
demo network's keys (the BAP's for discovers, the BPP's for publishes) and sent `--concurrency` at a time:
most as synchronous discovers (GET: the answer is the HTTP reply), some as async ones (POST; the callbacks go
to a sink in this process) and some publishes. Meanwhile `/health/live` is polled every `--health-every` s.

Reports the status counts, the 5xx count (must be 0: the exit status is 1 otherwise, or when the server died),
the slowest answer (request -> HTTP reply) and the longest `/health/live` delay, plus the seed and the
slowest request's shape so that it can be replayed. Traffic goes to loopback only, bounded in count and time.
Not part of every CI run: tests/loadtests runs a smoke-sized one.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import queue
import random
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from cds.core.timeutil import rfc3339
from cds.trust.signing import sign_request
from loadtests.bench_procs import PY, Service, free_port, loadavg, wait_http
from loadtests.bench_report import write_block

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Fuzz: bounded cost of any signed request"
BEGIN, END = "<!-- fuzz:begin", "<!-- fuzz:end -->"
CHUNK = 500                     # examples per Hypothesis run (a fresh engine each: memory stays flat)


@dataclass
class Stats:
    statuses: Counter = field(default_factory=Counter)
    codes: Counter = field(default_factory=Counter)
    samples: dict[str, str] = field(default_factory=dict)     # NACK code -> one message seen with it
    kinds: Counter = field(default_factory=Counter)
    five_xx: list[tuple[int, str, bytes]] = field(default_factory=list)
    transport_errors: Counter = field(default_factory=Counter)
    slowest: float = 0.0
    slowest_what: str = ""
    health_worst: float = 0.0
    health: list[float] = field(default_factory=list)
    answers: list[float] = field(default_factory=list)
    loop_hold: dict[str, Any] | None = None
    health_polls: int = 0
    health_failures: int = 0
    callbacks: int = 0
    sent: int = 0
    bytes_sent: int = 0


# ---- generation (a thread: Hypothesis runs synchronously) ----------------------------------------------

def _generate(n: int, seed: int, out: Any, stop: Any) -> None:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    from loadtests.fuzz_strategies import requests as strategy

    done = 0
    run = 0
    while done < n and not stop.is_set():
        size = min(CHUNK, n - done)
        produced = [0]

        @settings(max_examples=size, database=None, deadline=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck), derandomize=False)
        @hseed(seed * 100_003 + run)
        @given(strategy())
        def collect(example: Any) -> None:
            if stop.is_set() or produced[0] >= size:
                return
            out.put(example)
            produced[0] += 1

        collect()
        done += produced[0]
        run += 1
    out.put(None)


# ---- the target ---------------------------------------------------------------------------------------------

@dataclass
class Keys:
    bap: tuple[str, str, Any]
    bpp: tuple[str, str, Any]


def _keys(data_dir: str) -> Keys:
    from cds.demo.seed import demo_key

    return Keys(bap=demo_key("bap", data_dir), bpp=demo_key("ubc_bpp", data_dir))


def _stamp(kind: str, dialect: str, body: dict, keys: Keys, callback: str) -> tuple[bytes, dict[str, str]]:
    ctx = body["context"]
    sub, key_id, key = keys.bpp if kind == "publish" else keys.bap
    ids = (str(uuid.uuid4()), str(uuid.uuid4()))
    if dialect == "B":
        ctx.update(transactionId=ids[0], messageId=ids[1], timestamp=rfc3339(), bapId=sub, bapUri=callback)
    else:
        ctx.update(transaction_id=ids[0], message_id=ids[1], timestamp=rfc3339())
        if kind == "publish":
            ctx.update(bpp_id=sub, bpp_uri=callback)
            for cat in body["message"]["catalogs"]:
                cat["beckn:bppId"] = sub
        else:
            ctx.update(bap_id=sub, bap_uri=callback)
    raw = orjson.dumps(_json_safe(body))
    return raw, {"Content-Type": "application/json",
                 "Authorization": sign_request(raw, subscriber_id=sub, key_id=key_id, key=key)}


def _json_safe(v: Any) -> Any:
    """Integers beyond 64 bits as the float a JSON parser makes of them (orjson writes no bigger ones)."""
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return v if -(2 ** 63) <= v < 2 ** 64 else float(v) if abs(v) < 1e308 else (1e308 if v > 0 else -1e308)
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_json_safe(x) for x in v]
    return v


def _shape(kind: str, body: dict) -> str:
    """A short description of a request (for the slowest one)."""
    msg = body.get("message") or {}
    msg = msg.get("intent", msg) if isinstance(msg, dict) else {}
    parts = [kind]
    f = msg.get("filters") if isinstance(msg, dict) else None
    expr = f.get("expression") if isinstance(f, dict) else f
    if isinstance(expr, str):
        parts.append(f"filter {len(expr)} chars")
    for s in (msg.get("spatial") or []) if isinstance(msg, dict) and isinstance(msg.get("spatial"), list) else []:
        g = s.get("geometry") if isinstance(s, dict) else None
        if isinstance(g, dict):
            parts.append(f"{s.get('op')} {g.get('type')} {len(orjson.dumps(_json_safe(g.get('coordinates'))))} B")
    if kind == "publish":
        parts.append(f"{sum(len(c.get('beckn:items', [])) for c in msg.get('catalogs', []))} items")
    return ", ".join(parts)


async def _health(session: aiohttp.ClientSession, base: str, every: float, stats: Stats, stop: asyncio.Event) -> None:
    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            async with session.get(f"{base}/health/live", timeout=aiohttp.ClientTimeout(total=30)) as r:
                await r.read()
                if r.status != 200:
                    stats.health_failures += 1
        except (aiohttp.ClientError, asyncio.TimeoutError):
            stats.health_failures += 1
        stats.health_worst = max(stats.health_worst, time.perf_counter() - t0)
        stats.health.append(time.perf_counter() - t0)
        stats.health_polls += 1
        try:
            await asyncio.wait_for(stop.wait(), every)
        except asyncio.TimeoutError:
            pass


class _Source:
    """Examples from the generator processes; ends once every one of them has sent its end mark."""

    def __init__(self, q: Any, producers: int) -> None:
        self.q = q
        self.left = producers
        self.lock = asyncio.Lock()

    async def next(self) -> Any:
        loop = asyncio.get_running_loop()
        async with self.lock:               # one consumer at a time takes from the queue
            while self.left:
                ex = await loop.run_in_executor(None, self.q.get)
                if ex is not None:
                    return ex
                self.left -= 1
            return None


async def _worker(session: aiohttp.ClientSession, base: str, keys: Keys, callback: str, source: _Source,
                  stats: Stats, verbose: bool) -> None:
    while True:
        ex = await source.next()
        if ex is None:
            return
        try:
            await _one(session, base, keys, callback, ex, stats, verbose)
        except Exception as e:  # noqa: BLE001 - a bug of the fuzzer itself: count it, show it, go on
            stats.transport_errors[f"fuzzer {type(e).__name__}: {e}"[:120]] += 1


async def _one(session: aiohttp.ClientSession, base: str, keys: Keys, callback: str, ex: Any, stats: Stats,
               verbose: bool) -> None:
    if True:
        kind, dialect, body = ex
        raw, headers = _stamp(kind, dialect, body, keys, callback)
        path = "/beckn/catalog/publish" if kind == "publish" else "/beckn/discover"
        method = "GET" if kind == "get" else "POST"
        t0 = time.perf_counter()
        try:
            async with session.request(method, base + path, data=raw, headers=headers,
                                       timeout=aiohttp.ClientTimeout(total=120)) as r:
                reply = await r.read()
                status = r.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            stats.transport_errors[type(e).__name__] += 1
            return
        dt = time.perf_counter() - t0
        stats.sent += 1
        stats.bytes_sent += len(raw)
        stats.kinds[kind] += 1
        stats.statuses[status] += 1
        if status >= 400:
            try:
                err = orjson.loads(reply).get("error") or {}
                code = str(err.get("code") or err.get("errorCode"))
                stats.codes[code] += 1
                stats.samples.setdefault(code, str(err.get("message") or err.get("errorMessage"))[:160])
            except (orjson.JSONDecodeError, AttributeError):
                stats.codes["<not json>"] += 1
        if status >= 500:
            stats.five_xx.append((status, _shape(kind, body), raw[:2000]))
            if verbose:
                print(f"5xx {status}: {_shape(kind, body)}\n  {raw[:500]!r}\n  -> {reply[:300]!r}", file=sys.stderr)
        stats.answers.append(dt)
        if dt > stats.slowest:
            stats.slowest, stats.slowest_what = dt, f"{_shape(kind, body)} -> {status}"


async def _sink(stats: Stats) -> tuple[web.AppRunner, str]:
    async def receive(request: web.Request) -> web.Response:
        await request.read()
        stats.callbacks += 1
        return web.json_response({"message": {"ack": {"status": "ACK"}}})

    app = web.Application(client_max_size=64 << 20)
    app.router.add_post("/{tail:.*}", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/cb"


async def run(args: argparse.Namespace, base: str, keys: Keys) -> tuple[Stats, float]:
    stats = Stats()
    # Generation (Hypothesis, ~20-50 ms an example) runs in its own processes, beside the server's.
    mp = multiprocessing.get_context("spawn")
    q = mp.Queue(maxsize=4 * args.concurrency + 16)
    stop_gen = mp.Event()
    k = max(1, args.generators)
    gens = [mp.Process(target=_generate, args=(args.requests // k + (1 if i < args.requests % k else 0),
                                               args.seed * 1000 + i, q, stop_gen), daemon=True) for i in range(k)]
    source = _Source(q, k)
    sink, callback = await _sink(stats)
    t0 = time.perf_counter()
    stop = asyncio.Event()
    conn = aiohttp.TCPConnector(limit=args.concurrency + 2)
    async with aiohttp.ClientSession(connector=conn) as session, aiohttp.ClientSession() as hsession:
        health = asyncio.create_task(_health(hsession, base, args.health_every, stats, stop))
        for g in gens:
            g.start()
        workers = [asyncio.create_task(_worker(session, base, keys, callback, source, stats, args.verbose))
                   for _ in range(args.concurrency)]
        last = time.monotonic()
        try:
            while not all(w.done() for w in workers):
                await asyncio.sleep(1)
                if time.monotonic() - last >= args.progress_every:
                    last = time.monotonic()
                    print(f"  {stats.sent} sent, 5xx {sum(1 for _ in stats.five_xx)}, slowest "
                          f"{stats.slowest * 1000:.0f} ms, health worst {stats.health_worst * 1000:.0f} ms",
                          file=sys.stderr, flush=True)
                if time.perf_counter() - t0 > args.max_seconds:
                    print(f"stopping: --max-seconds {args.max_seconds} reached", file=sys.stderr)
                    break
        finally:
            stop_gen.set()
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            for g in gens:                      # they stop at their next example (or are ended)
                deadline = time.monotonic() + 10
                while g.is_alive() and time.monotonic() < deadline:
                    try:
                        q.get(timeout=0.1)          # unblock a generator waiting on a full queue
                    except queue.Empty:
                        pass
                if g.is_alive():
                    g.terminate()
                g.join(5)
            await asyncio.sleep(2)              # async callbacks still on their way
            stop.set()
            await health
            await sink.cleanup()
    return stats, time.perf_counter() - t0


def _loop_hold(path: str, since: float) -> dict[str, Any] | None:
    """The server's longest event-loop callbacks after it was ready (loadtests.serve_monitored)."""
    try:
        doc = orjson.loads(Path(path).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    top = [t for t in doc.get("top", []) if t["at"] >= since]
    return {"max_cpu_ms": max((t["cpu_ms"] for t in top), default=0.0),
            "max_wall_ms": max((t["wall_ms"] for t in top), default=0.0),
            "worst": top[0] if top else None, "over_50ms": sum(1 for t in top if t["cpu_ms"] > 50),
            "callbacks": doc.get("callbacks", 0)}


def _pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


def report(args: argparse.Namespace, stats: Stats, seconds: float, target: str, alive: bool | None) -> str:
    five = len(stats.five_xx)
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(stats.statuses.items()))
    codes = ", ".join(f"{k} {v}" for k, v in stats.codes.most_common(8))
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(stats.kinds.items()))
    cmd = "python -m loadtests.fuzz " + " ".join(a for a in sys.argv[1:] if a != "--write")
    lines = [
        f"{BEGIN} (generated by python -m loadtests.fuzz --write; edits inside are overwritten) -->",
        f"Command: `{cmd.strip()}` ({time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, {os.cpu_count()} cores, "
        f"load average {loadavg()}; target: {target}; seed {args.seed}, {args.concurrency} in flight)",
        "",
        "| requests | 5xx | slowest answer | worst `/health/live` delay (p99) | longest event-loop hold: CPU "
        "(wall) | server alive after | duration |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| {stats.sent:,} | **{five}** | {stats.slowest * 1000:.0f} ms | {stats.health_worst * 1000:.0f} ms "
        f"({_pct(stats.health, 99) * 1000:.0f} ms; {stats.health_polls:,} polls, {stats.health_failures} failed) | "
        + (f"{hold['max_cpu_ms']:.0f} ms ({hold['max_wall_ms']:.0f} ms); {hold['over_50ms']} over 50 ms CPU"
           if (hold := stats.loop_hold) else "n/a (not started by the command)")
        + f" | {'yes' if alive else 'no' if alive is not None else 'n/a'} | {seconds:.0f} s |",
        "",
        f"- answer time p50 / p99: {_pct(stats.answers, 50) * 1000:.0f} / {_pct(stats.answers, 99) * 1000:.0f} ms "
        f"(with {args.concurrency} in flight; the wall times include waiting for a core: load average above)",
        f"- sent: {kinds}; {stats.bytes_sent / 1e6:.0f} MB of bodies; {stats.callbacks:,} callbacks received",
        f"- statuses: {statuses}",
        f"- NACK codes (most frequent): {codes}",
        f"- slowest: {stats.slowest_what}",
    ]
    if stats.loop_hold and stats.loop_hold.get("worst"):
        w = stats.loop_hold["worst"]
        lines.append(f"- longest loop hold: {w['what']} ({stats.loop_hold['callbacks']:,} callbacks timed)")
    if args.verbose:
        lines += [f"- e.g. {code}: {msg}" for code, msg in sorted(stats.samples.items())]
    if stats.transport_errors:
        lines.append(f"- transport errors: {dict(stats.transport_errors)}")
    lines.append(END)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    ap.add_argument("--generators", type=int, default=2, help="processes drawing examples")
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100_000)
    ap.add_argument("--url", default=None, help="a running CDS (default: start `cds serve --demo` here)")
    ap.add_argument("--data-dir", default=None, help="with --url: the demo server's CDS_DATA_DIR (its keys)")
    ap.add_argument("--health-every", type=float, default=0.05, help="seconds between /health/live polls")
    ap.add_argument("--max-seconds", type=float, default=6 * 3600, help="stop after this long whatever the count")
    ap.add_argument("--progress-every", type=float, default=30.0)
    ap.add_argument("--verbose", action="store_true", help="print every 5xx request")
    ap.add_argument("--write", action="store_true", help="record the figures in BENCHMARKS.md")
    ap.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    ap.add_argument("--keep", action="store_true", help="keep the temporary data dir and the server log")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    args = ap.parse_args(argv)

    random.seed(args.seed)
    # SIGTERM ends the run like Ctrl-C: the server and the generator processes are stopped, not orphaned
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    svc: Service | None = None
    tmp: str | None = None
    if args.url:
        base = args.url.rstrip("/").removesuffix("/beckn")
        keys = _keys(args.data_dir or os.environ.get("CDS_DATA_DIR") or "./data")
        target = base
    else:
        tmp = tempfile.mkdtemp(prefix="cds-fuzz-")
        port = free_port()
        env = {**os.environ, "CDS_DATA_DIR": tmp, "CDS_LOG_LEVEL": "WARNING", "CDS_CALLBACK_RETRIES": "0",
               "CDS_CALLBACK_TIMEOUT_S": "2"}
        hold_file = str(Path(tmp) / "loophold.json")
        env["CDS_BENCH_LOOPHOLD_OUT"] = hold_file
        svc = Service("cds", [PY, "-m", "loadtests.serve_monitored", "serve", "--demo", "--host", "127.0.0.1",
                              "--port", str(port)], env, Path(tmp))
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/health/ready", svc, 120)
        ready_at = time.time()
        keys = _keys(tmp)
        target = "`cds serve --demo` (embedded index, 2,003 demo connectors) started by the command"
    alive: bool | None = None
    try:
        stats, seconds = asyncio.run(run(args, base, keys))
        if svc is not None:
            alive = svc.alive()
            time.sleep(1.5)                       # the monitor writes every second
            stats.loop_hold = _loop_hold(hold_file, ready_at)
    finally:
        if svc is not None:
            svc.stop()
            if args.keep:
                print(f"server log and data: {tmp}", file=sys.stderr)
            elif tmp:
                shutil.rmtree(tmp, ignore_errors=True)
    block = report(args, stats, seconds, target, alive)
    print(block)
    for status, shape, raw in stats.five_xx[:5]:
        print(f"\n5xx {status}: {shape}\n{raw[:600]!r}", file=sys.stderr)
    if args.json:
        args.json.write_bytes(orjson.dumps({
            "requests": stats.sent, "five_xx": len(stats.five_xx), "statuses": {str(k): v for k, v in stats.statuses.items()},
            "slowest_ms": stats.slowest * 1000, "health_worst_ms": stats.health_worst * 1000,
            "health_p99_ms": _pct(stats.health, 99) * 1000, "health_polls": stats.health_polls,
            "health_failures": stats.health_failures, "loop_hold": stats.loop_hold, "alive": alive,
            "transport_errors": dict(stats.transport_errors), "seconds": seconds}, option=orjson.OPT_INDENT_2))
    if args.write:
        write_block(args.out, block, heading=SECTION, begin=BEGIN, end=END)
        print(f"updated {args.out}", file=sys.stderr)
    ok = not stats.five_xx and alive is not False and stats.sent > 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
