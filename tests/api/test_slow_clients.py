"""Slow and vanished clients (docs/decisions.md §28), over real sockets: against a real `cds serve` process, and
against the same server (`cds.api.server.start_site`) started in-process where the test needs to reach inside.

A stalled head or body is closed within CDS_READ_TIMEOUT_S; an idle keep-alive connection within
CDS_KEEPALIVE_TIMEOUT_S; a client that leaves is one log line and `outcome="aborted"`, never a 500 or a
traceback; connections beyond CDS_MAX_CONNECTIONS get a 503 and the service stays up. The bounds on how
soon a connection is closed are generous (the issue asks for "within the timeout"; slack for a busy machine)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request

import orjson
import pytest

from cds.api.app import create_app
from cds.api.server import start_site
from cds.keys import generate_keypair

READ_TIMEOUT_S = 1.0
SLACK_S = 4.0
STALLED_PUBLISH = (b"POST /beckn/catalog/publish HTTP/1.1\r\nHost: cds\r\nContent-Type: application/json\r\n"
                   b"Content-Length: 100000\r\n\r\n{\"context\": {")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(READ_TIMEOUT_S + SLACK_S)
    return s


def _closed_after(s: socket.socket) -> float:
    """Seconds until the server closes the connection (reads and drops anything it says first)."""
    t0 = time.monotonic()
    with s:
        while s.recv(65536):
            pass
    return time.monotonic() - t0


def _requests_total(port: int) -> dict[tuple[str, str], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("cds_requests_total{"):
            labels, value = line[len("cds_requests_total{"):].split("} ")
            kv = dict(p.split("=") for p in labels.split(","))
            out[(kv["action"].strip('"'), kv["outcome"].strip('"'))] = float(value)
    return out


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`cds serve` as an operator starts it, with CDS_READ_TIMEOUT_S=1; yields (port, process)."""
    tmp = tmp_path_factory.mktemp("slow")
    seed, _pub = generate_keypair()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env.update(CDS_SIGNING_PRIVATE_KEY=seed, CDS_DATA_DIR=str(tmp / "data"), CDS_READ_TIMEOUT_S=str(READ_TIMEOUT_S),
               CDS_KEEPALIVE_TIMEOUT_S="30")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cds", "serve", "--port", str(port)], env=env, cwd=tmp,
                            stdout=subprocess.DEVNULL, stderr=open(tmp / "stderr.log", "wb"))
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=1)
            break
        except OSError:
            assert proc.poll() is None and time.time() < deadline, (tmp / "stderr.log").read_text()
            time.sleep(0.2)
    yield port, proc, tmp / "stderr.log"
    proc.terminate()
    proc.wait(15)


def test_a_stalled_body_is_closed_within_the_read_timeout(served):
    port, proc, _log = served
    s = _connect(port)
    s.sendall(STALLED_PUBLISH)
    waited = _closed_after(s)
    assert READ_TIMEOUT_S * 0.5 <= waited < READ_TIMEOUT_S + SLACK_S
    assert proc.poll() is None


def test_a_stalled_head_is_closed_within_the_read_timeout(served):
    port, _proc, _log = served
    s = _connect(port)
    s.sendall(b"POST /beckn/discover HTTP/1.1\r\nHost: cds\r\nContent-Type: appl")
    assert _closed_after(s) < READ_TIMEOUT_S + SLACK_S     # although CDS_KEEPALIVE_TIMEOUT_S is 30


def test_many_stalled_uploads_leave_the_service_reachable(served):
    port, _proc, _log = served
    stalled = [_connect(port) for _ in range(50)]
    for s in stalled:
        s.sendall(STALLED_PUBLISH)
    assert urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=5).status == 200
    for s in stalled:
        assert _closed_after(s) < READ_TIMEOUT_S + SLACK_S


def test_a_client_disconnect_is_aborted_and_one_log_line(served):
    port, _proc, log_path = served
    before = _requests_total(port)
    log_size = log_path.stat().st_size
    s = _connect(port)
    s.sendall(STALLED_PUBLISH)
    time.sleep(0.2)
    s.close()
    deadline = time.time() + 5
    while _requests_total(port).get(("catalog_publish", "aborted"), 0) == before.get(("catalog_publish", "aborted"), 0):
        assert time.time() < deadline, _requests_total(port)
        time.sleep(0.05)
    after = _requests_total(port)
    assert after.get(("catalog_publish", "error"), 0) == before.get(("catalog_publish", "error"), 0)
    with open(log_path, "rb") as f:
        f.seek(log_size)
        new = f.read().decode()
    assert "Traceback" not in new and "unhandled" not in new
    lines = [orjson.loads(line) for line in new.splitlines() if line.startswith("{")]
    aborted = [line for line in lines if line.get("outcome") == "aborted"]
    assert len(aborted) == 1 and len(lines) == 1, new
    assert aborted[0]["action"] == "catalog_publish" and "connection lost" in aborted[0]["reason"]


# ---- in-process: the same server, with limits the test controls ------------------------------------------

async def _serve(network, **over):
    settings = network.settings(read_timeout_s=READ_TIMEOUT_S, **over)
    app = create_app(settings)
    runner, site = await start_site(app, settings, host="127.0.0.1", port=0)
    return app, runner, site.address[1]


async def _exchange(port: int, request: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1])
    return reader, writer, head + await reader.readexactly(length)


LIVE = b"GET /health/live HTTP/1.1\r\nHost: cds\r\n\r\n"


async def test_an_idle_keepalive_connection_is_closed(network):
    _app, runner, port = await _serve(network, keepalive_timeout_s=0.5)
    try:
        reader, writer, reply = await _exchange(port, LIVE)
        assert reply.startswith(b"HTTP/1.1 200")
        t0 = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 0.5 + SLACK_S) == b""
        assert time.monotonic() - t0 >= 0.25
        writer.close()
    finally:
        await runner.cleanup()


async def test_connections_beyond_the_cap_get_a_503_and_the_service_stays_up(network):
    app, runner, port = await _serve(network, max_connections=3, keepalive_timeout_s=5)
    try:
        held = [await _exchange(port, LIVE) for _ in range(3)]      # three keep-alive connections stay open
        reader, writer, reply = await _exchange(port, LIVE)
        assert reply.startswith(b"HTTP/1.1 503")
        assert orjson.loads(reply.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "NET_OVERLOADED"
        assert await asyncio.wait_for(reader.read(), 5) == b""      # and closed
        writer.close()
        held[0][1].close()
        await asyncio.sleep(0.2)
        _r, w, reply = await _exchange(port, LIVE)                  # a slot is free again
        assert reply.startswith(b"HTTP/1.1 200")
        w.close()
        from cds.api.appkeys import METRICS
        assert app[METRICS].connections_refused._value.get() == 1
        for _r, w, _ in held[1:]:
            w.close()
    finally:
        await runner.cleanup()


async def test_a_client_leaving_before_the_reply_is_aborted_but_the_publish_is_kept(network):
    """The body arrived, the publish is queued (the client may retry: a replay is ACKed), but nobody read the
    ACK: `aborted`, and the catalog is still indexed and reported."""
    from tests.api.test_api_protocol import publish_body
    from cds.api.appkeys import METRICS

    app, runner, port = await _serve(network)
    try:
        body = publish_body(network)
        head = (b"POST /beckn/catalog/publish HTTP/1.1\r\nHost: cds\r\nContent-Length: " + str(len(body)).encode()
                + b"\r\n" + b"".join(f"{k}: {v}\r\n".encode() for k, v in network.bpp.sign(body).items()) + b"\r\n")
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head + body)
        await writer.drain()
        writer.transport.abort()
        (path, _h, _cb), = await network.bpp_sink.wait_for(1)
        assert path == "/bpp/on_catalog_publish"
        counts = {s.labels["outcome"]: s.value for m in app[METRICS].requests.collect() for s in m.samples
                  if s.name == "cds_requests_total" and s.labels["action"] == "catalog_publish"}
        assert counts.get("error", 0) == 0 and counts.get("ack", 0) + counts.get("aborted", 0) == 1
    finally:
        await runner.cleanup()


async def test_running_out_of_descriptors_in_accept_is_one_line_not_a_traceback_storm(caplog):
    from cds.api.server import quiet_accept_errors

    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    quiet_accept_errors(loop)
    try:
        with caplog.at_level("WARNING"):
            for _ in range(500):     # what asyncio reports for every accept() of one wake-up at the fd limit
                loop.call_exception_handler({"message": "socket.accept() out of system resource",
                                             "exception": OSError(24, "Too many open files")})
            loop.call_exception_handler({"message": "something else", "exception": ValueError("kept")})
    finally:
        loop.set_exception_handler(previous)
    accept_lines = [r for r in caplog.records if "file descriptors" in r.getMessage()]
    assert len(accept_lines) == 1 and accept_lines[0].exc_info is None
    assert any("something else" in r.getMessage() for r in caplog.records)     # other errors still reported
