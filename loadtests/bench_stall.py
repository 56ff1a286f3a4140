"""Serving-loop stalls while one huge catalog is published (docs/decisions.md §24, §P).

    python -m loadtests.bench_stall [--items 50000] [--workers 2]

Starts `cds serve --workers N` (embedded default, fresh data directory) and the callback sink
(`loadtests.callback_sink`, the publisher's on_catalog_publish endpoint), opens kept-alive probe connections
until every worker has at least two, and polls `GET /health/live` on each every 5 ms. Then one signed publish
of one catalog with `--items` connector items (cloned from a generated station, ~1.7 KB each) is sent.

The publish is sent by `curl` (another process, so the probes' loop is not the sender's). Per worker it reports the longest and the p99 probe answer in two phases: receiving (publish sent → ACK) and
indexing (ACK → on_catalog_publish, which goes out once every worker applied the catalog). A probe answer is
a trivial request, so its time is how long that worker's loop was held (plus, on a busy machine, the time
the process waited for a core: note the load average). `--trace DIR` tells the two apart: every server process
records its loop's callbacks (`loadtests.looptrace`), and per worker and phase the longest callback is reported in
CPU time (the loop held) and wall time (with the waits for a core inside it), with the longest collection.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

from cds.demo.generator import generate_network
from cds.keys import generate_keypair
from cds.trust.signing import sign_request
from loadtests.bench_follow import grow
from loadtests.bench_procs import loadavg
from loadtests.looptrace import traced_env

REPO = Path(__file__).resolve().parents[1]
PROBE_EVERY_S = 0.005


def huge_publish(net, items: int, callback: str) -> tuple[object, bytes]:
    """(bpp, body): one catalog of `items` items cloned from the network's first catalog (`bench_follow.grow`);
    on_catalog_publish goes to `callback`."""
    bpp, cat = next(iter(net.iter_catalogs()))
    grow(cat, items)
    cat["beckn:id"] = "cat-huge"
    ctx = {"version": "2.0.0", "action": "catalog_publish", "domain": "beckn.one:deg:ev-charging",
           "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "message_id": f"huge-{time.time()}",
           "transaction_id": "huge-tx", "bpp_id": bpp.subscriber_id, "bpp_uri": callback, "ttl": "PT30S"}
    return bpp, orjson.dumps({"context": ctx, "message": {"catalogs": [cat]}})


async def probe(session: aiohttp.ClientSession, url: str, stop: asyncio.Event,
                samples: list[tuple[float, float, str]]) -> None:
    while not stop.is_set():
        t0 = time.perf_counter()
        async with session.get(url + "/health/live") as r:
            await r.read()
            pid = r.headers.get("X-CDS-Worker", "?")
        samples.append((t0, time.perf_counter() - t0, pid))
        await asyncio.sleep(PROBE_EVERY_S)


async def pinned_sessions(url: str, workers: int, per_worker: int = 2) -> list[aiohttp.ClientSession]:
    """Sessions of one kept-alive connection each, at least `per_worker` on every worker."""
    kept: dict[str, list[aiohttp.ClientSession]] = {}
    spare = []
    for _ in range(2000):                 # a worker may still be loading: new connections until both answer
        s = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
        async with s.get(url + "/health/live") as r:
            pid = r.headers.get("X-CDS-Worker", "single")
        if len(kept.setdefault(pid, [])) < per_worker:
            kept[pid].append(s)
        else:
            spare.append(s)
        if len(kept) >= workers and all(len(v) >= per_worker for v in kept.values()):
            break
        await asyncio.sleep(0.01)
    for s in spare:
        await s.close()
    return [s for v in kept.values() for s in v]


def phase(samples: list[tuple[float, float, str]], t0: float, t1: float) -> dict[str, tuple[float, float, int]]:
    by: dict[str, list[float]] = {}
    for sent, took, pid in samples:
        if t0 <= sent < t1 or (sent < t0 and sent + took > t0):
            by.setdefault(pid, []).append(took * 1000)
    out = {}
    for pid, v in by.items():
        v.sort()
        out[pid] = (v[-1], v[min(len(v) - 1, int(len(v) * 0.99))], len(v))
    return out


async def run(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="cds-bench-stall-"))
    net = generate_network(200, seed=args.seed)
    sink_port, port = args.port + 1, args.port
    sink_url = f"http://127.0.0.1:{sink_port}"
    records = net.registry_records()
    for r in records:
        r["url"] = f"{sink_url}/{'bap' if r['type'] == 'BAP' else 'bpp'}"
    (work / "registry.json").write_bytes(orjson.dumps(records))
    seed_b64, _ = generate_keypair()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env.update({"CDS_DATA_DIR": str(work / "data"), "CDS_REGISTRY_FILE": str(work / "registry.json"),
                "CDS_SIGNING_PRIVATE_KEY": seed_b64, "CDS_LOG_LEVEL": "WARNING", "CDS_FANOUT_MAX_BPPS": "0",
                "CDS_ALLOW_PRIVATE_CALLBACKS": "true", "CDS_MAX_PUBLISH_BYTES": str(512 << 20),
                "PYTHONPATH": str(REPO)})
    if args.trace is not None:      # every process of the server records its loop's callbacks
        env = traced_env(env, args.trace)
    bpp, body = huge_publish(net, args.items, f"{sink_url}/bpp")
    auth = sign_request(body, subscriber_id=bpp.subscriber_id, key_id=bpp.key_id, key=bpp.signing_key())
    sink = subprocess.Popen([sys.executable, "-m", "loadtests.callback_sink", "--port", str(sink_port)], env=env,
                            cwd=str(REPO), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    serve_log = open(work / "serve.log", "wb")
    cds = subprocess.Popen([sys.executable, "-m", "cds", "serve", "--workers", str(args.workers), "--port", str(port)],
                           env=env, cwd=str(REPO), stdout=serve_log, stderr=subprocess.STDOUT, start_new_session=True)
    print(f"server log: {work / 'serve.log'}", file=sys.stderr)
    url = f"http://127.0.0.1:{port}"
    load_before = loadavg()
    opened: list[aiohttp.ClientSession] = []
    try:
        async with aiohttp.ClientSession() as s:
            for _ in range(900):
                try:
                    async with s.get(url + "/health/ready") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        sessions = await pinned_sessions(url, args.workers)
        opened.extend(sessions)
        stop, samples = asyncio.Event(), []
        probes = [asyncio.ensure_future(probe(s, url, stop, samples)) for s in sessions]
        await asyncio.sleep(1.0)
        # sent by curl, another process: a client sending 86 MB from this loop would delay the probes itself
        (work / "body.json").write_bytes(body)
        t_sent = time.perf_counter()
        curl = await asyncio.create_subprocess_exec(
            "curl", "-s", "-o", str(work / "reply.json"), "-w", "%{http_code}", "-H", "Content-Type: application/json",
            "-H", f"Authorization: {auth}", "--data-binary", f"@{work / 'body.json'}",
            url + "/beckn/catalog/publish", stdout=asyncio.subprocess.PIPE)
        out, _ = await curl.communicate()
        status, reply = int(out or 0), (work / "reply.json").read_bytes()
        t_ack = time.perf_counter()
        if status != 200:
            print(f"publish refused: {status} {reply[:300]!r}", file=sys.stderr)
            return 1
        async with aiohttp.ClientSession() as s:
            while True:
                async with s.get(f"{sink_url}/_sink/stats") as r:
                    if (orjson.loads(await r.read())["distinct"].get("on_catalog_publish") or 0) >= 1:
                        break
                await asyncio.sleep(0.02)
        t_cb = time.perf_counter()
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*probes, return_exceptions=True)
    finally:
        for s in opened:
            await s.close()
        os.killpg(cds.pid, signal.SIGTERM)
        sink.terminate()
        cds.wait(60)
        sink.wait(10)
    recv, idx = phase(samples, t_sent, t_ack), phase(samples, t_ack, t_cb)
    print(f"\nCommand: `python -m loadtests.bench_stall {args.command}` "
          f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}); body {len(body) / 1e6:.1f} MB; load average "
          f"before {load_before}, after {loadavg()}.\n")
    print(f"publish sent → ACK {1000 * (t_ack - t_sent):,.0f} ms; ACK → on_catalog_publish "
          f"{1000 * (t_cb - t_ack):,.0f} ms\n")
    print("| worker | receiving: longest / p99 probe (n) | indexing: longest / p99 probe (n) |")
    print("| --- | --- | --- |")
    workers = sorted(set(recv) | set(idx))
    for pid in workers:
        a, b = recv.get(pid, (0, 0, 0)), idx.get(pid, (0, 0, 0))
        print(f"| {pid} | {a[0]:.1f} / {a[1]:.1f} ms ({a[2]}) | {b[0]:.1f} / {b[1]:.1f} ms ({b[2]}) |")
    if args.trace is not None:
        print(holds_table(args.trace, workers, (t_sent, t_ack), (t_ack, t_cb)))
    return 0


def longest_holds(trace: dict, t0: float, t1: float) -> tuple[float, float, str, float]:
    """In [t0, t1): the loop callback that held the loop longest in CPU (its CPU and wall ms, what ran) and the
    longest garbage collection (CPU ms). A probe's answer adds to these the time the process waited for a core."""
    import numpy as np

    start, cpu, wall = trace["cb_start"], trace["cb_cpu"], trace["cb_wall"]
    inside = np.flatnonzero((start >= t0) & (start < t1))
    if not len(inside):
        return 0.0, 0.0, "-", 0.0
    i = inside[np.argmax(cpu[inside])]
    what = str(trace["names"][trace["cb_what"][i]])
    gc = (trace["gc_start"] >= t0) & (trace["gc_start"] < t1)
    return 1000 * cpu[i], 1000 * wall[i], what, 1000 * float(trace["gc_cpu"][gc].max(initial=0.0))


def holds_table(trace_dir: Path, pids: list[str], receiving: tuple[float, float], indexing: tuple[float, float]) -> str:
    """Per worker and phase: the longest loop callback (CPU / wall) and the longest collection, from the trace."""
    import numpy as np

    lines = ["", "| worker | phase | longest loop callback: CPU / wall | what ran | longest GC (CPU) |",
             "| --- | --- | --- | --- | --- |"]
    for pid in pids:
        path = trace_dir / f"{pid}.npz"
        if not path.exists():
            continue
        trace = dict(np.load(path, allow_pickle=True))
        for name, (t0, t1) in (("receiving", receiving), ("indexing", indexing)):
            cpu, wall, what, gc = longest_holds(trace, t0, t1)
            lines.append(f"| {pid} | {name} | {cpu:.1f} / {wall:.1f} ms | {what[:80]} | {gc:.1f} ms |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtests.bench_stall", description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=50_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--port", type=int, default=18680)
    p.add_argument("--trace", type=Path, default=None,
                   help="record every server process's loop (loadtests.looptrace) into this directory and report "
                        "the longest callback per worker and phase: a loop hold, apart from waiting for a core")
    args = p.parse_args(argv)
    args.command = " ".join(argv if argv is not None else sys.argv[1:])     # echoed with the results
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
