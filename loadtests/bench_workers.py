"""Multi-process serving benchmark (docs/decisions.md §G, §P): `cds serve --workers N` against a bare aiohttp
hello-world, driven by wrk (Debian package `wrk`) with pre-signed synchronous GET discovers.

    python -m loadtests.bench_workers --connectors 100000 --workers 1,2 --duration 20

Builds (once, reused from --work) an embedded index of the generated network, starts each server as its
own process tree, and per configuration reports: saturation throughput (wrk closed loop), server CPU per
request (user+system time of every process of the server tree / requests), latency percentiles, and the
same at ~70 % of the measured saturation (each wrk connection paced with a Lua `delay`, calibrated by four 2 s
runs; the table gives the share of the saturation reached). Requests are the
generator's query mix, signed once with a long validity (a synchronous GET discover is not replay-checked).

With `--post`, each configuration also gets two asynchronous phases: POST discovers, every one with its own
message id and signature (a POST is replay-checked, so none repeats), answered to a callback sink
(`loadtests.callback_sink`). First 10 s offered at 1.3x the GET saturation: the answers the sink receives per
second are the POST saturation (the server refuses the excess with 503s); again 10 s at 1.15x that estimate
(refusing a large excess costs CPU the answers then lack). Then, paced at ~70 % of that (`--post-fraction`):
wrk's latency is the ACK latency.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson

from cds.config import Settings
from cds.core.timeutil import rfc3339
from cds.demo.generator import generate_network
from cds.keys import generate_keypair
from cds.trust.signing import sign_request
from loadtests.bench_engine import build
from loadtests.bench_procs import loadavg, stat_cpu_s
from loadtests.looptrace import traced_env

REPO = Path(__file__).resolve().parents[1]
# `--pin`: the server's process tree and the load side (wrk, callback sink) on disjoint CPUs (`taskset -c`)
SERVER_PREFIX: list[str] = []
CLIENT_PREFIX: list[str] = []


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            kids = []
        todo += [int(k) for k in kids]
    return out


def cpu_s(pids: list[int]) -> float:
    total = 0.0
    for p in pids:
        try:
            total += stat_cpu_s(Path(f"/proc/{p}/stat"))
        except OSError:
            continue
    return total


def prepare(work: Path, connectors: int, seed: int, *, sink: str = "http://127.0.0.1:9",
            posts: int = 0) -> tuple[dict[str, str], list[bytes], list[bytes]]:
    """Index, registry (the BAP's callbacks go to `sink`), keys; returns the server env, the GET requests
    and `posts` distinct signed POST requests (body NUL Authorization)."""
    net = generate_network(connectors, seed=seed)
    data = work / "data"
    marker = work / f"built-{connectors}-{seed}"
    if not marker.exists():
        shutil.rmtree(data, ignore_errors=True)
        settings = Settings(data_dir=str(data))

        async def go() -> None:
            storage, info = await build(net, data / "index", settings, fsync=False)
            await storage.close()
            print(f"index built: {info}", file=sys.stderr)
        asyncio.run(go())
        marker.touch()
    records = net.registry_records()
    for r in records:
        if r["type"] == "BAP":
            r["url"] = f"{sink}/bap"
    (work / "registry.json").write_bytes(orjson.dumps(records))
    seed_b64, _pub = generate_keypair()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env.update({"CDS_DATA_DIR": str(data), "CDS_REGISTRY_FILE": str(work / "registry.json"),
                "CDS_SIGNING_PRIVATE_KEY": seed_b64, "CDS_LOG_LEVEL": "WARNING", "CDS_FANOUT_MAX_BPPS": "0",
                "CDS_ALLOW_PRIVATE_CALLBACKS": "true", "PYTHONPATH": str(REPO)})
    key = net.bap.signing_key()
    now = time.time()

    def signed(doc: dict) -> bytes:
        body = orjson.dumps(doc)
        auth = sign_request(body, subscriber_id=net.bap.subscriber_id, key_id=net.bap.key_id, key=key, ttl_s=3300)
        return body + b"\x00" + auth.encode()

    mix = net.labeled_query_mix(400, seed=seed)
    reqs = []
    for _kind, doc in mix:
        doc["context"].update(timestamp=rfc3339(now), ttl="PT1H", bap_uri=f"{sink}/bap")
        reqs.append(signed(doc))
    posts_out, run = [], int(now)
    for i in range(posts):
        doc = mix[i % len(mix)][1]
        # never seen by a server before, even one whose Redis (and its replay records) outlived an earlier run
        ids = {"message_id": f"bench-{seed}-{run}-{i}", "transaction_id": f"bench-tx-{seed}-{run}-{i}"}
        posts_out.append(signed({**doc, "context": {**doc["context"], **ids}}))
    return env, reqs, posts_out


LUA = r"""
local reqs = {}
local i = 0
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
local method = os.getenv("BENCH_METHOD") or "GET"
local threads = tonumber(os.getenv("BENCH_THREADS") or "1")
local next_id = 0
setup = function(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
end
init = function(args)
  local f = assert(io.open(os.getenv("BENCH_REQS"), "rb"))
  local data = f:read("*a")
  f:close()
  local n = 0
  for rec in string.gmatch(data, "([^\1]+)") do
    -- POSTs are replay-checked: each thread sends its own share, none twice
    if method == "GET" or n % threads == (tid or 0) then
      local body, auth = string.match(rec, "^(.-)%z(.*)$")
      reqs[#reqs + 1] = wrk.format(method, "/beckn/discover",
        {["Content-Type"] = "application/json", ["Authorization"] = auth}, body)
    end
    n = n + 1
  end
  i = method == "GET" and math.random(#reqs) or 0
end
request = function()
  i = i % #reqs + 1
  return reqs[i]
end
delay = function()
  if pause > 0 then return pause end
  return 0
end
"""


def run_wrk(url: str, lua: Path, reqs: Path, *, duration: int, connections: int, threads: int,
            delay_ms: float = 0, method: str = "GET") -> dict[str, float]:
    env = {**os.environ, "BENCH_REQS": str(reqs), "BENCH_DELAY_MS": str(int(delay_ms)), "BENCH_METHOD": method,
           "BENCH_THREADS": str(threads)}
    args = [*CLIENT_PREFIX, "wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--latency", "-s", str(lua), url]
    out = subprocess.run(args, env=env, capture_output=True, text=True, check=True).stdout
    res: dict[str, float] = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
                             "requests": float(re.search(r"(\d+) requests in", out).group(1))}
    for p in ("50", "75", "90", "99"):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        if m:
            v = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
            res[f"p{p}"] = v
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non2xx"] = float(non2xx.group(1)) if non2xx else 0.0
    return res


def wait_ready(url: str, workers: int, timeout: float = 180.0) -> None:
    seen: set[str] = set()
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url + "/health/ready", timeout=2) as r:
                seen.add(r.headers.get("X-CDS-Worker") or "single")
                if len(seen) >= workers:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url}: not ready")


def settle(pid: int, *, busy: float = 0.05, timeout: float = 180.0) -> float:
    """Wait until the server's process tree is idle (under `busy` cores over a second): after /health/ready the
    ingest process still loads its copy of the index for several seconds, which would share the cores with the
    first measurements. Returns the seconds waited."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        pids = _tree(pid)
        c0 = cpu_s(pids)
        time.sleep(1.0)
        if cpu_s(pids) - c0 < busy:
            break
    return time.time() - t0


def _answered(sink_url: str) -> int:
    with urllib.request.urlopen(sink_url + "/_sink/stats", timeout=10) as r:
        return int(orjson.loads(r.read())["distinct"].get("on_discover", 0))


def _drain(sink_url: str, timeout: float = 60.0) -> None:
    """Wait until the answers stop arriving (the backlog of an overload phase is answered)."""
    last, deadline = -1, time.time() + timeout
    while time.time() < deadline:
        time.sleep(1.0)
        now_answered = _answered(sink_url)
        if now_answered == last:
            return
        last = now_answered


def write_wrk_inputs(work: Path, reqs: list[bytes]) -> tuple[Path, Path]:
    """The wrk script (`LUA`) and its pre-signed requests, written into `work`: (script, requests)."""
    lua, reqs_file = work / "discover.lua", work / "requests.bin"
    lua.write_text(LUA)
    reqs_file.write_bytes(b"\x01".join(reqs))
    return lua, reqs_file


def _paced_delay(connections: int, rate: float, latency_ms: float = 1.0) -> float:
    """wrk's per-connection delay (ms) for about `rate` requests/s in all (each connection: reply, then delay)."""
    return max(0.0, connections / max(rate, 1.0) * 1000 - latency_ms)


def _calibrated_delay(url: str, lua: Path, reqs: Path, args, target: float, latency_ms: float,
                      probes: int = 4) -> float:
    """wrk's per-connection delay (ms) for about `target` GET requests/s. A first guess from a latency (at
    saturation the latency is mostly queueing, far above what it is at the target: that guess alone paced
    at ~90-100 % of saturation), then short runs, each correcting the latency by the rate it gave."""
    delay = _paced_delay(args.connections, target, latency_ms)
    for _ in range(probes):
        got = run_wrk(url, lua, reqs, duration=2, connections=args.connections, threads=args.threads,
                      delay_ms=delay)
        # wrk's delay is whole milliseconds (run_wrk): the latency is measured against the delay it applied
        latency_ms = args.connections / max(got["rps"], 1.0) * 1000 - int(delay)
        delay = _paced_delay(args.connections, target, latency_ms)
    return delay


def measure_posts(url: str, lua: Path, args, get_rps: float) -> dict[str, float]:
    """POST discovers (asynchronous). First their saturation: the answers the sink receives per second
    (distinct message ids) while more are offered than the server answers (beyond CDS_MAX_PENDING_ANSWERS
    waiting, the excess is refused with a 503, which wrk counts as non-2xx). Then, after the backlog drained,
    the ACK latency at --post-fraction of that saturation."""
    sink = f"http://127.0.0.1:{args.sink_port}"
    over_s = min(args.duration, 10)
    capacity, over = 1.3 * get_rps, {}
    for step, files in enumerate((args.posts_over_file, args.posts_over2_file)):
        # first offered at 1.3x the GET saturation; then at 1.15x the answers/s that gave (refusing a large
        # excess costs CPU that the answers then lack, so the second estimate is the closer one)
        before = _answered(sink)
        over = run_wrk(url, lua, files, duration=over_s, connections=args.connections, threads=args.threads,
                       delay_ms=_paced_delay(args.connections, capacity if step == 0 else 1.15 * capacity),
                       method="POST")
        capacity = (_answered(sink) - before) / over_s
        _drain(sink)
    paced = run_wrk(url, lua, args.posts_file, duration=args.duration, connections=args.connections,
                    threads=args.threads, delay_ms=_paced_delay(args.connections, args.post_fraction * capacity),
                    method="POST")
    out = {"post_capacity": capacity, "post_over_rps": over["rps"], "post_over_non2xx": over["non2xx"]}
    out.update({f"post_{k}": v for k, v in paced.items()})
    return out


def measure(name: str, argv: list[str], env: dict[str, str], port: int, workers: int, args, lua: Path,
            reqs: Path, hello: bool = False, cwd: Path = REPO) -> dict[str, float]:
    proc = subprocess.Popen([*SERVER_PREFIX, *argv], env=env, cwd=str(cwd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, 1 if hello else workers)
        if not hello:
            # new connections until every worker answered (SO_REUSEPORT hashes connections)
            wait_ready(url, workers)
            print(f"{name}: settled {settle(proc.pid):.0f} s after ready", file=sys.stderr)
        run_wrk(url, lua, reqs, duration=3, connections=args.connections, threads=args.threads)   # warm-up
        pids = _tree(proc.pid)
        c0 = cpu_s(pids)
        res = run_wrk(url, lua, reqs, duration=args.duration, connections=args.connections, threads=args.threads)
        res["cpu_ms_per_req"] = (cpu_s(pids) - c0) * 1000 / max(1.0, res["requests"])
        if not hello:
            # ~70 % of saturation: each connection waits so that C / (latency + delay) = 0.7 x saturation
            delay = _calibrated_delay(url, lua, reqs, args, 0.7 * res["rps"], res["p50"])
            paced = run_wrk(url, lua, reqs, duration=args.duration, connections=args.connections,
                            threads=args.threads, delay_ms=delay)
            res.update({f"paced_{k}": v for k, v in paced.items()})
            if args.post:
                res.update(measure_posts(url, lua, args, res["rps"]))
        print(f"{name}: {res}", file=sys.stderr)
        return res
    finally:
        stop_group(proc)


def stop_group(proc: subprocess.Popen) -> None:
    """Stop a server started with `start_new_session=True` and every process it started (SIGKILL after 30 s)."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtests.bench_workers", description=__doc__.splitlines()[0])
    p.add_argument("--connectors", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--workers", default="1,2")
    p.add_argument("--duration", type=int, default=20)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--port", type=int, default=18640)
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "cds-bench-workers")
    p.add_argument("--post", action="store_true",
                   help="also measure the POST saturation and the ACK latency paced at --post-fraction of it")
    p.add_argument("--post-fraction", type=float, default=0.7,
                   help="paced POST rate as a fraction of the configuration's POST saturation (default 0.7)")
    p.add_argument("--posts", type=int, default=25_000, help="distinct signed POSTs per configuration and phase")
    p.add_argument("--sink-port", type=int, default=18641)
    p.add_argument("--trace", type=Path, default=None,
                   help="trace every serving process's event loop into this directory (loadtests.looptrace)")
    p.add_argument("--baseline", type=Path, default=None,
                   help="a checkout of an older version (e.g. a git worktree of main): its one-process `cds serve` "
                        "is measured in the same run, as the 'before'")
    p.add_argument("--pin", default=None, metavar="SERVER:CLIENT",
                   help="CPU lists for `taskset -c`, e.g. 1:0: the server's processes on CPU 1, wrk and the callback "
                        "sink on CPU 0 (the load side then never takes the server's core)")
    args = p.parse_args(argv)
    if args.pin:
        server_cpus, client_cpus = args.pin.split(":")
        SERVER_PREFIX[:] = ["taskset", "-c", server_cpus]
        CLIENT_PREFIX[:] = ["taskset", "-c", client_cpus]
    if shutil.which("wrk") is None:
        print("wrk is needed: apt-get install -y wrk", file=sys.stderr)
        return 2
    args.work.mkdir(parents=True, exist_ok=True)
    sink_url = f"http://127.0.0.1:{args.sink_port}"
    configs = [int(x) for x in args.workers.split(",")]
    labels = (["before"] if args.baseline is not None else []) + configs
    env, reqs, posts = prepare(args.work, args.connectors, args.seed, sink=sink_url,
                               posts=3 * args.posts * len(labels) if args.post else 0)
    lua, reqs_file = write_wrk_inputs(args.work, reqs)
    post_files = {}
    for k, label in enumerate(labels):   # every server gets message ids none saw before
        mine = posts[3 * k * args.posts:3 * (k + 1) * args.posts]
        post_files[label] = tuple(args.work / f"posts-{k}-{phase}.bin" for phase in ("over", "over2", "paced"))
        for j, path in enumerate(post_files[label]):
            path.write_bytes(b"\x01".join(mine[j * args.posts:(j + 1) * args.posts]))
    sink = None
    if args.post:
        sink = subprocess.Popen([*CLIENT_PREFIX, sys.executable, "-m", "loadtests.callback_sink", "--port", str(args.sink_port)],
                                env=env, cwd=str(REPO), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if args.trace is not None:
        env = traced_env(env, args.trace)
    load_before = loadavg()
    rows = []
    hello = measure("hello", [sys.executable, "-m", "loadtests.hello", "--port", str(args.port)], env, args.port, 1,
                    args, lua, reqs_file, hello=True)
    if args.baseline is not None:
        benv = {**env, "PYTHONPATH": str(args.baseline.resolve())}
        args.posts_over_file, args.posts_over2_file, args.posts_file = post_files["before"]
        rows.append(("before", measure("before", [sys.executable, "-m", "cds", "serve", "--workers", "1",
                                                  "--port", str(args.port)],
                                       benv, args.port, 1, args, lua, reqs_file, cwd=args.baseline)))
    for n in configs:
        args.posts_over_file, args.posts_over2_file, args.posts_file = post_files[n]
        argv_ = [sys.executable, "-m", "cds", "serve", "--workers", str(n), "--port", str(args.port)]
        rows.append((n, measure(f"cds x{n}", argv_, env, args.port, n, args, lua, reqs_file)))
    if sink is not None:
        sink.terminate()
        sink.wait(10)
    # "× 1 worker" needs a one-worker row; without one, the first configuration measured is the reference
    base = next((r["rps"] for n, r in rows if n == 1), rows[0][1]["rps"])
    print(f"\nCommand: `python -m loadtests.bench_workers {' '.join(argv if argv is not None else sys.argv[1:])}` "
          f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}); load average before {load_before}, after "
          f"{loadavg()}; wrk -t{args.threads} -c{args.connections} -d{args.duration}s on the same machine.\n")
    print("| server | req/s | × 1 worker | × hello | CPU per request | p50 | p99 | at ~70 %: req/s | p50 | p99 | non-2xx |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print(f"| aiohttp hello-world, 1 process | {hello['rps']:,.0f} | — | 1 | {hello['cpu_ms_per_req']:.3f} ms | "
          f"{hello['p50']:.2f} ms | {hello['p99']:.2f} ms | — | — | — | {hello['non2xx']:.0f} |")
    for n, r in rows:
        label = f"before ({args.baseline})" if n == "before" else f"cds serve --workers {n}"
        print(f"| {label} | {r['rps']:,.0f} | {r['rps'] / base:.2f} | {r['rps'] / hello['rps']:.3f} | "
              f"{r['cpu_ms_per_req']:.3f} ms | {r['p50']:.2f} ms | {r['p99']:.2f} ms | {r['paced_rps']:,.0f} ({r['paced_rps'] / r['rps']:.0%}) | "
              f"{r['paced_p50']:.2f} ms | {r['paced_p99']:.2f} ms | {r['non2xx'] + r['paced_non2xx']:.0f} |")
    if args.post:
        print(f"\n| server | POST saturation (answers/s) | × GET saturation | POST discovers/s at ~{args.post_fraction:.0%} "
              "of it | ACK p50 | ACK p90 | ACK p99 | non-2xx |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for n, r in rows:
            label = f"before ({args.baseline})" if n == "before" else f"cds serve --workers {n}"
            print(f"| {label} | {r['post_capacity']:,.0f} | {r['post_capacity'] / r['rps']:.2f} | {r['post_rps']:,.0f} | "
                  f"{r['post_p50']:.2f} ms | {r['post_p90']:.2f} ms | {r['post_p99']:.2f} ms | {r['post_non2xx']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
