"""Server CPU per synchronous discover, in process: the request edge next to the stages (docs/decisions.md §G
"CPU per discover").

    python -m loadtests.bench_edge --work /tmp/edge-work --port 18671 --seconds 10

`--work` is laid out as `loadtests.bench_workers` lays out its own (`data/index` built for the generated
network, the marker `built-N-SEED`); copy an existing one rather than opening it while a server may use it.
The app of `cds serve --single-process` (`create_app` on that data directory, the bench registry, logs at
WARNING as `bench_workers` runs it) listens on `--port` in this process's event loop; wrk sends the generator's
400 pre-signed GET discovers (`bench_workers.prepare`, `bench_workers.LUA`) over `--connections` keep-alive
connections. Printed: the event-loop thread's CPU time per request (`time.thread_time` around the run: the
load generator runs in its own process, so nothing else is counted) and the whole process's (work pool threads
included), each next to wall time and load average. Subtract the stages' sum (`loadtests.bench_stages`, same
mix) to get the edge: HTTP, handler glue, signature, registry, budget, metrics, logging, the Response.
`--profile N` prints cProfile's N costliest functions of the loop thread over the run instead (slower: timings
inflated, proportions roughly right).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import os
import pstats
import re
import sys
import time
from pathlib import Path

from aiohttp import web

from cds.api.app import create_app
from cds.api.server import runner_options
from cds.config import load_settings
from cds.logs import setup_logging
from loadtests.bench_procs import loadavg
from loadtests.bench_workers import LUA, prepare


async def run(args: argparse.Namespace) -> dict[str, float]:
    env, reqs, _ = prepare(args.work, args.connectors, args.seed)
    (args.work / "requests.bin").write_bytes(b"\x01".join(reqs))
    (args.work / "discover.lua").write_text(LUA)
    settings = load_settings({k: v for k, v in env.items() if k.startswith("CDS_")})
    setup_logging(settings.log_level)
    runner = web.AppRunner(create_app(settings), **runner_options(settings))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port)
    await site.start()
    try:
        wrk_env = {**os.environ, "BENCH_REQS": str(args.work / "requests.bin"), "BENCH_METHOD": "GET",
                   "BENCH_DELAY_MS": "0", "BENCH_THREADS": "1"}

        async def wrk(seconds: int) -> str:
            p = await asyncio.create_subprocess_exec(
                "wrk", "-t1", f"-c{args.connections}", f"-d{seconds}s", "-s", str(args.work / "discover.lua"),
                f"http://127.0.0.1:{args.port}", env=wrk_env, stdout=asyncio.subprocess.PIPE)
            out, _ = await p.communicate()
            return out.decode()

        await wrk(2)                                     # warm: JSON cache, key cache, allocator
        profiler = cProfile.Profile() if args.profile else None
        la = loadavg()
        t0, p0, w0 = time.thread_time(), time.process_time(), time.perf_counter()
        if profiler is not None:
            profiler.enable()
        out = await wrk(args.seconds)
        if profiler is not None:
            profiler.disable()
        t1, p1, w1 = time.thread_time(), time.process_time(), time.perf_counter()
    finally:
        await runner.cleanup()
    n = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad:
        raise SystemExit(f"{bad.group(1)} of {n} requests were not answered 200:\n{out}")
    if profiler is not None:
        stats = pstats.Stats(profiler)
        if args.profile_out:
            stats.dump_stats(args.profile_out)
        stats.sort_stats("tottime").print_stats(args.profile)
    return {"requests": n, "loop_ms": (t1 - t0) * 1000 / n, "process_ms": (p1 - p0) * 1000 / n,
            "rps": n / (w1 - w0), "load": la}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtests.bench_edge", description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, required=True, help="a work directory laid out as bench_workers's")
    p.add_argument("--port", type=int, default=18671)
    p.add_argument("--connectors", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--profile", type=int, default=0, help="print cProfile's N costliest functions instead")
    p.add_argument("--profile-out", help="with --profile: also write the pstats file here")
    args = p.parse_args(argv)
    logging.getLogger("asyncio").setLevel(logging.WARNING)
    r = asyncio.run(run(args))
    print(f"Command: `python -m loadtests.bench_edge {' '.join(argv if argv is not None else sys.argv[1:])}` "
          f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {r['load']}): "
          f"{r['requests']:.0f} GET discovers, {r['rps']:.0f}/s; CPU per request: event-loop thread "
          f"{r['loop_ms']:.3f} ms, process {r['process_ms']:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
