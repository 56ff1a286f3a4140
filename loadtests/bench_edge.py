"""Server CPU per synchronous discover, measured on the serving thread (docs/decisions.md §G "CPU per discover").

    python -m loadtests.bench_edge --work /tmp/edge-work --port 18671 --seconds 10 [--repo /work/main]

`--work` is laid out as `loadtests.bench_workers` lays out its own (`data/index` built for the generated
network, the marker `built-N-SEED`); copy an existing one rather than opening it while a server may use it.
`cds serve --single-process` (through `loadtests.profile_serve`, logs at WARNING as `bench_workers` runs it)
serves that data directory on `--port`: one process, whose main thread is the event loop. wrk sends the
generator's 400 pre-signed GET discovers (`bench_workers.prepare`, `bench_workers.LUA`) over `--connections`
keep-alive connections, first `--warm` seconds uncounted. Printed: the loop thread's CPU time per request (user
+ system, from /proc: HTTP, handler, signature, registry, budget, metrics, the stages, the Response and its
send) and the whole process's, with wall time and load average. Subtract the stages' sum
(`loadtests.bench_stages`, same mix) to get the request edge. `--repo` runs another checkout's code on the same
data (an A/B: run both in turn, more than once). `--profile FILE` writes cProfile's pstats of the loop thread over
the counted run (timings inflated, proportions roughly right). `--stages` serves through `loadtests.stage_cpu`
instead and splits the loop thread's CPU per request in place: parse, plan, search, assemble, signature, and the
rest, the edge (with the split's own clock reads, 18 per request, ~0.03 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from loadtests.bench_procs import loadavg
from loadtests.bench_workers import CLK, LUA, REPO, cpu_s, prepare, settle, wait_ready


def thread_cpu_s(pid: int) -> float:
    """User + system CPU seconds of the process's main thread (its event loop)."""
    f = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / CLK


def wrk(args: argparse.Namespace, seconds: int) -> str:
    env = {**os.environ, "BENCH_REQS": str(args.work / "requests.bin"), "BENCH_METHOD": "GET",
           "BENCH_DELAY_MS": "0", "BENCH_THREADS": "1"}
    return subprocess.run(["wrk", "-t1", f"-c{args.connections}", f"-d{seconds}s", "-s",
                           str(args.work / "discover.lua"), f"http://127.0.0.1:{args.port}"],
                          env=env, capture_output=True, text=True, check=True).stdout


def run(args: argparse.Namespace) -> dict[str, float | str]:
    env, reqs, _ = prepare(args.work, args.connectors, args.seed)
    (args.work / "requests.bin").write_bytes(b"\x01".join(reqs))
    (args.work / "discover.lua").write_text(LUA)
    repo = args.repo.resolve()
    env["PYTHONPATH"] = str(repo)
    if args.profile:
        env["CDS_BENCH_PROFILE_OUT"] = str(args.profile)
    stages_out = args.work / "stage_cpu.json"
    env["CDS_BENCH_STAGE_CPU_OUT"] = str(stages_out)
    # `--stages`: this checkout's stage_cpu (run by path) serving the `--repo` checkout's code
    script = (["-c", "import runpy, sys; runpy.run_path(sys.argv.pop(1), run_name='__main__')",
               str(Path(__file__).with_name("stage_cpu.py"))] if args.stages else ["-m", "loadtests.profile_serve"])
    server = subprocess.Popen([str(repo / ".venv/bin/python"), *script, "serve",
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
            stages_out.unlink(missing_ok=True)
            os.kill(server.pid, signal.SIGUSR2)
            time.sleep(2)
    finally:
        server.terminate()
        server.wait(30)
    n = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad:
        raise SystemExit(f"{bad.group(1)} of {n} requests were not answered 200:\n{out}")
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
    p.add_argument("--repo", type=Path, default=REPO, help="the checkout whose code serves (its .venv)")
    p.add_argument("--connectors", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--warm", type=int, default=3)
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--profile", type=Path, help="write the loop thread's cProfile pstats here")
    p.add_argument("--stages", action="store_true", help="split the loop thread's CPU into stages and the edge")
    args = p.parse_args(argv)
    if args.profile and args.stages:
        p.error("--profile and --stages each serve through their own script: choose one")
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
