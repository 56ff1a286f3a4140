"""Protocol-core micro-benchmarks: the cost of one signature verify and one sign, and the ACK
latency of signed POST discover against a real `cds serve --demo` process over loopback.

    python -m loadtests.bench_protocol [--requests 2000]

Prints a markdown table. Not a test: numbers depend on the machine (record them with the command)."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
import urllib.request
from pathlib import Path

import aiohttp
import orjson

from loadtests.bench_report import pct


def crypto_costs(n: int = 5000) -> tuple[float, float]:
    from cds.keys import generate_keypair, load_private_key
    from cds.trust.signing import parse_authorization, sign_request, verify_request

    seed, pub = generate_keypair()
    key = load_private_key(seed)
    body = (Path(__file__).resolve().parent.parent / "tests" / "fixtures" /
            "UBC_discovery-within-a-timerange.json").read_bytes()
    header = sign_request(body, subscriber_id="bap.example", key_id="k1", key=key)
    sign_s = timeit.timeit(lambda: sign_request(body, subscriber_id="bap.example", key_id="k1", key=key), number=n) / n
    verify_s = timeit.timeit(lambda: verify_request(parse_authorization(header), body, pub), number=n) / n
    return sign_s * 1e6, verify_s * 1e6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def ack_latencies(base: str, data_dir: str, n: int) -> list[float]:
    from cds.cli.request import refresh_context
    from cds.demo.seed import demo_key
    from cds.trust.signing import sign_request

    sub, key_id, key = demo_key("bap", data_dir)
    template = orjson.loads((Path(__file__).resolve().parent.parent / "tests" / "fixtures" /
                             "UBC_discovery-within-boundary-with-connection-spec.json").read_bytes())
    sink = aiohttp.web.Application()
    sink.router.add_post("/{tail:.*}", lambda r: aiohttp.web.json_response({"message": {"ack": {"status": "ACK"}}}))
    runner = aiohttp.web.AppRunner(sink)
    await runner.setup()
    port = _free_port()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", port).start()
    out: list[float] = []
    async with aiohttp.ClientSession() as s:
        for i in range(n):
            doc = orjson.loads(orjson.dumps(template))
            refresh_context(doc, subscriber_id=sub, callback_uri=f"http://127.0.0.1:{port}/bap")
            body = orjson.dumps(doc)
            headers = {"Content-Type": "application/json",
                       "Authorization": sign_request(body, subscriber_id=sub, key_id=key_id, key=key)}
            t0 = time.perf_counter()
            async with s.post(base + "/discover", data=body, headers=headers) as r:
                await r.read()
                assert r.status == 200
            out.append((time.perf_counter() - t0) * 1000)
    await runner.cleanup()
    return out[min(100, n // 10):]  # drop warm-up


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    args = ap.parse_args()
    sign_us, verify_us = crypto_costs()
    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
        env.update(CDS_DATA_DIR=tmp, CDS_LOG_LEVEL="WARNING")
        proc = subprocess.Popen([sys.executable, "-m", "cds", "serve", "--demo", "--workers", "1", "--port", str(port)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(200):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=1)
                    break
                except OSError:
                    time.sleep(0.2)
            lat = asyncio.run(ack_latencies(f"http://127.0.0.1:{port}/beckn", tmp, args.requests))
        finally:
            proc.terminate()
            proc.wait(10)
    print("| figure | value |\n| --- | --- |")
    print(f"| sign one request (Ed25519 + BLAKE2b-512) | {sign_us:.1f} µs |")
    print(f"| parse + verify one signature | {verify_us:.1f} µs |")
    print(f"| POST discover ACK latency p50 / p99 (n={len(lat)}, sequential, loopback) | "
          f"{statistics.median(lat):.2f} ms / {pct(lat, 99):.2f} ms |")


if __name__ == "__main__":
    main()
