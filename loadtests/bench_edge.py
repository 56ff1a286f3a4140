"""Server CPU per synchronous discover, measured on the serving thread (docs/decisions.md §G "CPU per discover").

    python -m loadtests.bench_edge --work /tmp/edge-work --port 18671 --seconds 10 [--repo /work/main]

`--work` is laid out as `loadtests.bench_workers` lays out its own (`data/index` built for the generated
network, the marker `built-N-SEED`); copy an existing one rather than opening it while a server may use it.
`cds serve --single-process` (through `loadtests.profile_serve`, logs at WARNING as `bench_workers` runs it)
serves that data directory on `--port`: one process, whose main thread is the event loop. wrk sends the
generator's 400 pre-signed GET discovers (`bench_workers.prepare`, `bench_workers.LUA`) over `--connections`
keep-alive connections, first `--warm` seconds uncounted. Printed: the loop thread's CPU time per request (user
+ system, from /proc: HTTP, handler, signature, registry, budget, metrics, the stages, the Response and its
send) and the whole process's, with wall time and load average. `--repo` runs another checkout's code on the same
data (an A/B: run both in turn, more than once). `--profile FILE` writes cProfile's pstats of the loop thread over
the counted run (timings inflated, proportions roughly right). `--stages` serves through `loadtests.stage_cpu`
instead and splits the loop thread's CPU per request in place: parse, plan, search, assemble (catalogs and the
on_discover body), signature, and the rest, the edge (serialising and sending the answer included, with the
split's own clock reads, 18 per request, ~0.03 ms). `loadtests.bench_stages` names its stages alike, but its
`dump` (the on_discover body and orjson) is part of assemble and the edge here. `--stub answer,plan,verify,...`
takes parts of the discover out of the same server (`loadtests.edge_stubs`): the difference between runs with and
without is what they cost in place, no clock reads added.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from loadtests.bench_procs import loadavg, stat_cpu_s
from loadtests.bench_workers import REPO, cpu_s, prepare, run_wrk, settle, stop_group, wait_ready, write_wrk_inputs


def thread_cpu_s(pid: int) -> float:
    """User + system CPU seconds of the process's main thread (its event loop)."""
    return stat_cpu_s(Path(f"/proc/{pid}/task/{pid}/stat"))


def wrk(args: argparse.Namespace, seconds: int) -> dict[str, float]:
    lua, reqs = args.work / "discover.lua", args.work / "requests.bin"     # bench_workers.write_wrk_inputs
    return run_wrk(f"http://127.0.0.1:{args.port}", lua, reqs, duration=seconds, connections=args.connections,
                   threads=1)


def _wait_for(path: Path, timeout: float = 10.0) -> None:
    """Until the server has written `path` (there, not empty, the same size twice 0.1 s apart)."""
    deadline, size = time.monotonic() + timeout, -1
    while not (path.exists() and 0 < path.stat().st_size == size):
        if time.monotonic() > deadline:
            raise SystemExit(f"the server wrote no {path.name} within {timeout:.0f} s")
        size = path.stat().st_size if path.exists() else -1
        time.sleep(0.1)


def run(args: argparse.Namespace) -> dict[str, float | str]:
    env, reqs, _ = prepare(args.work, args.connectors, args.seed)
    write_wrk_inputs(args.work, reqs)
    repo = args.repo.resolve()
    env["PYTHONPATH"] = str(repo)
    if args.profile:
        env["CDS_BENCH_PROFILE_OUT"] = str(args.profile)
    if args.stub:
        env["CDS_BENCH_STUB"] = args.stub
    stages_out = args.work / "stage_cpu.json"
    env["CDS_BENCH_STAGE_CPU_OUT"] = str(stages_out)
    # `--stages`: this checkout's stage_cpu (run by path) serving the `--repo` checkout's code
    script = (["-c", "import runpy, sys; runpy.run_path(sys.argv.pop(1), run_name='__main__')",
               str(Path(__file__).with_name("stage_cpu.py"))] if args.stages else ["-m", "loadtests.profile_serve"])
    # this interpreter and its packages, the checkout's code (as bench_workers --baseline runs one)
    server = subprocess.Popen([sys.executable, *script, "serve",
                               "--single-process", "--host", "127.0.0.1", "--port", str(args.port)],
                              env=env, cwd=repo, stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_ready(f"http://127.0.0.1:{args.port}", 1)
        settle(server.pid)
        wrk(args, args.warm)                    # JSON cache, key cache, allocator
        la = loadavg()
        if args.profile or args.stages:
            os.kill(server.pid, signal.SIGUSR1)
        t0, p0, w0 = thread_cpu_s(server.pid), cpu_s([server.pid]), time.perf_counter()
        out = wrk(args, args.seconds)
        t1, p1, w1 = thread_cpu_s(server.pid), cpu_s([server.pid]), time.perf_counter()
        if args.profile or args.stages:
            written = stages_out if args.stages else args.profile
            written.unlink(missing_ok=True)
            os.kill(server.pid, signal.SIGUSR2)
            _wait_for(written)
    finally:
        stop_group(server)
    n = int(out["requests"])
    if out["non2xx"]:
        raise SystemExit(f"{out['non2xx']:.0f} of {n} requests were not answered 200")
    stages = json.loads(stages_out.read_text()) if args.stages else {}
    return {"requests": n, "loop_ms": (t1 - t0) * 1000 / n, "process_ms": (p1 - p0) * 1000 / n,
            "rps": n / (w1 - w0), "load": la, "stages": {k: v * 1000 / n for k, v in stages.items()}}


STAGES = ("parse", "plan", "search", "assemble", "signature")


def stage_table(ms: dict[str, float]) -> str:
    """The loop thread's CPU per request, split (ms): the stages, the rest (the edge), all."""
    rest = ms["thread"] - sum(ms.get(s, 0.0) for s in STAGES)
    return ("| " + " | ".join((*STAGES, "edge (rest)", "thread")) + " |\n" + "| --- " * (len(STAGES) + 2) + "|\n| "
            + " | ".join(f"{v:.3f}" for v in (*(ms.get(s, 0.0) for s in STAGES), rest, ms["thread"])) + " |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtests.bench_edge", description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, required=True, help="a work directory laid out as bench_workers's")
    p.add_argument("--port", type=int, default=18671)
    p.add_argument("--repo", type=Path, default=REPO, help="the checkout whose code serves (with this interpreter and its packages)")
    p.add_argument("--connectors", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--warm", type=int, default=3)
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--profile", type=Path, help="write the loop thread's cProfile pstats here")
    p.add_argument("--stages", action="store_true", help="split the loop thread's CPU into stages and the edge")
    p.add_argument("--stub", default="", help="comma-separated parts of a discover to take out "
                   "(loadtests.edge_stubs: answer, plan, verify, dumps); compare with a run without")
    args = p.parse_args(argv)
    if args.profile and args.stages:
        p.error("--profile and --stages each serve through their own script: choose one")
    if args.stub and args.stages:
        p.error("--stub serves through loadtests.profile_serve, --stages through its own script: choose one")
    if args.stub and args.repo.resolve() != REPO:
        # the other checkout's profile_serve serves it, and may not know $CDS_BENCH_STUB: it would stub nothing
        p.error("--stub takes parts out of this checkout's server only: compare two checkouts without it")
    r = run(args)
    print(f"Command: `python -m loadtests.bench_edge {' '.join(argv if argv is not None else sys.argv[1:])}` "
          f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {r['load']}): "
          f"{r['requests']:.0f} GET discovers, {r['rps']:.0f}/s; CPU per request: event-loop thread "
          f"{r['loop_ms']:.3f} ms, process {r['process_ms']:.3f} ms")
    if args.stages:
        print("\n" + stage_table(r["stages"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
