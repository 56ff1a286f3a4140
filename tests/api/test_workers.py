"""`cds serve --workers N` as real processes (docs/decisions.md §P): one port, every worker answering, a
publish ACKed by one worker indexed by the ingest process (never a worker, with one worker too) and
searchable through all once `on_catalog_publish` went out, replays recognised across workers, nothing lost
when a worker is SIGKILLed right after its ACK (one worker or two), metrics summed over the workers, and a
huge publish never stalling a serving loop for long."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import orjson
import pytest

from loadtests.bench_follow import grow
from tests.harness import fresh_context, load_fixture
from tests.redis_server import free_port
from tests.stream_support import REPO, callbacks, message_ids, publish_doc, wait_until

pytestmark = pytest.mark.slow

QR = "UBC_discovery-by-QR.json"


class Served:
    """`python -m cds serve --workers N` on a free port, stopped with SIGTERM."""

    def __init__(self, network, workers: int = 2, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = network.tmp / "serve.log"
        e = {k: v for k, v in os.environ.items() if not k.startswith("CDS_") and k != "PROMETHEUS_MULTIPROC_DIR"}
        e.update({"CDS_SUBSCRIBER_ID": network.cds.subscriber_id, "CDS_KEY_ID": network.cds.key_id,
                  "CDS_SIGNING_PRIVATE_KEY": network.cds_seed, "CDS_REGISTRY_FILE": str(network.registry_file),
                  "CDS_DATA_DIR": str(network.tmp / "data"), "CDS_ALLOW_PRIVATE_CALLBACKS": "true",
                  "CDS_CALLBACK_RETRIES": "1", "CDS_LOG_LEVEL": "WARNING", "PYTHONPATH": str(REPO),
                  "CDS_FANOUT_MAX_BPPS": "0", **env})
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "cds", "serve", "--workers", str(workers),
                                          "--port", str(self.port)], env=e, cwd=str(REPO), stdout=out,
                                         stderr=subprocess.STDOUT)
        self.workers = workers

    async def request(self, method: str, path: str, body: bytes | None = None,
                      headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
        """One request on a new connection (the kernel picks a worker per connection). A connection
        reset is retried, as any client would: with SO_REUSEPORT, connections the kernel had queued
        for a worker that was just killed are reset."""
        for attempt in range(5):
            try:
                async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
                    async with s.request(method, self.url + path, data=body, headers=headers) as r:
                        return r.status, r.headers.get("X-CDS-Worker", ""), await r.read()
            except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):    # incl. connection refused
                if attempt == 4:
                    raise
                await asyncio.sleep(0.2)
        raise AssertionError("unreachable")

    async def pids(self) -> set[str]:
        seen: set[str] = set()

        async def all_answer() -> bool:
            try:
                status, pid, _ = await self.request("GET", "/health/ready")
            except aiohttp.ClientError:
                return False
            if status == 200:
                seen.add(pid)
            return len(seen) >= self.workers

        await wait_until(all_answer, timeout=90, interval=0.05, what=f"{self.workers} workers ready")
        return seen

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
async def served(network, request):
    srv = Served(network, **getattr(request, "param", {}))
    try:
        await srv.pids()
        yield srv
    finally:
        srv.stop()


def _signed(participant, doc: dict) -> tuple[bytes, dict[str, str]]:
    body = orjson.dumps(doc)
    return body, participant.sign(body)


def _qr_discover(network, item_id: str) -> dict:
    doc = fresh_context(load_fixture(QR), bap_id=network.bap.subscriber_id, bap_uri=network.bap.url)
    doc["message"]["filters"]["expression"] = f"$[?(@.beckn:id == '{item_id}')]"
    return doc


def _item_ids(body: bytes) -> set[str]:
    doc = orjson.loads(body)
    return {it["beckn:id"] for cat in doc["message"]["catalogs"] for it in cat["beckn:items"]}


async def _on_every_worker(srv: Served, send, want: int) -> dict[str, list]:
    """Send until `want` different workers answered; every answer is kept, per worker pid."""
    answers: dict[str, list] = {}
    for _ in range(200):
        status, pid, body = await send()
        answers.setdefault(pid, []).append((status, body))
        if len(answers) >= want:
            return answers
    raise AssertionError(f"only workers {sorted(answers)} answered")


def _index_writer(data: Path) -> int | None:
    """The pid holding the embedded index's lock, i.e. its one writer (from /proc/locks); None while nobody does."""
    try:
        inode = os.stat(data / "index" / "index.lock").st_ino
    except FileNotFoundError:
        return None
    for line in Path("/proc/locks").read_text().splitlines():
        f = line.split()      # "1: FLOCK  ADVISORY  WRITE <pid> <major>:<minor>:<inode> 0 EOF"; waiters: "1: -> ..."
        if f[1] == "FLOCK" and int(f[5].rsplit(":", 1)[1]) == inode:
            return int(f[4])
    return None


def _parent_and_command(pid: int) -> tuple[int, bytes]:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1]), Path(f"/proc/{pid}/cmdline").read_bytes()


@pytest.mark.parametrize("served", [{"workers": 1}, {}], ids=["one worker", "two workers"], indirect=True)
async def test_every_worker_answers_and_a_publish_is_searchable_through_all(network, served):
    """With any worker count the ingest process, a sibling of the workers, writes the index (§24)."""
    workers = {int(pid) for pid in await served.pids()}
    # the workers may answer before the ingest process has opened the index (each loads it on its own)
    await wait_until(lambda: _index_writer(network.tmp / "data") is not None, timeout=60, what="the index's writer")
    writer = _index_writer(network.tmp / "data")
    parent, command = _parent_and_command(writer)
    assert writer not in workers and parent == served.proc.pid and b"cds.cli.ingest_process" in command
    assert all(_parent_and_command(pid)[0] == served.proc.pid for pid in workers)
    doc = publish_doc(network.bpp, ["cat-w1"])
    item = doc["message"]["catalogs"][0]["beckn:items"][0]["beckn:id"]
    body, headers = _signed(network.bpp, doc)
    status, _pid, reply = await served.request("POST", "/beckn/catalog/publish", body, headers)
    assert status == 200, reply
    await wait_until(lambda: callbacks(network.bpp_sink), what="on_catalog_publish")
    assert callbacks(network.bpp_sink)[0]["message"]["results"][0]["status"] == "ACCEPTED"

    async def discover():
        b, h = _signed(network.bap, _qr_discover(network, item))
        return await served.request("GET", "/beckn/discover", b, h)

    # on_catalog_publish went out only once every worker had applied it: no polling here
    answers = await _on_every_worker(served, discover, served.workers)
    for pid, replies in answers.items():
        for status, reply in replies:
            assert status == 200 and _item_ids(reply) == {item}, (pid, reply[:300])


async def test_a_replay_sent_to_another_worker_is_recognised(network, served):
    doc = _qr_discover(network, "nothing")
    body, headers = _signed(network.bap, doc)     # the very same signed request, twice

    async def post():
        return await served.request("POST", "/beckn/discover", body, headers)

    answers = await _on_every_worker(served, post, 2)
    assert all(status == 200 for replies in answers.values() for status, _ in replies)
    mid = doc["context"]["message_id"]
    await wait_until(lambda: mid in message_ids(callbacks(network.bap_sink, "/on_discover")), what="on_discover")
    await asyncio.sleep(1.0)        # room for a wrong second answer to arrive
    assert message_ids(callbacks(network.bap_sink, "/on_discover")).count(mid) == 1


@pytest.mark.parametrize("served", [{}, {"CDS_SPOOL_BYTES": "1"}, {"workers": 1}],
                         ids=["queued", "spooled", "one worker"], indirect=True)
async def test_sigkill_of_a_worker_right_after_its_ack_loses_nothing(network, served):
    """Also with every body spooled (docs/decisions.md §P): the file is durable before the ACK, and removed
    once its publish was reported."""
    sent = {}
    for n in range(2):
        await served.pids()                          # both up (the supervisor restarts a killed one)
        doc = publish_doc(network.bpp, [f"cat-k{n}"])
        body, headers = _signed(network.bpp, doc)
        status, pid, reply = await served.request("POST", "/beckn/catalog/publish", body, headers)
        assert status == 200, reply
        os.kill(int(pid), signal.SIGKILL)          # the worker that ACKed dies at once
        sent[doc["context"]["message_id"]] = doc["message"]["catalogs"][0]["beckn:items"][0]["beckn:id"]
    await wait_until(lambda: set(sent) <= set(message_ids(callbacks(network.bpp_sink))), timeout=60,
                     what="every ACKed publish reported")
    await served.pids()                              # the supervisor restarted the killed workers
    for item in sent.values():
        b, h = _signed(network.bap, _qr_discover(network, item))
        status, _, reply = await served.request("GET", "/beckn/discover", b, h)
        assert status == 200 and _item_ids(reply) == {item}
    spool = network.tmp / "data" / "spool"
    await wait_until(lambda: not spool.exists() or not any(spool.iterdir()), timeout=10, what="spool files removed")


async def test_what_a_one_process_serve_acked_and_did_not_index_is_indexed_after_the_switch(network):
    """`--single-process` (or `--workers 1` of an older version) kept ACKed publishes in its own ingest log:
    the supervisor queues them before any worker starts, so they are indexed and reported, and removes the log."""
    from indexer.ingest.entry import IngestEntry, encode_entry
    from indexer.ingest.log import IngestLog

    doc = publish_doc(network.bpp, ["cat-left"])
    item = doc["message"]["catalogs"][0]["beckn:items"][0]["beckn:id"]
    left = IngestLog(network.tmp / "data" / "ingest")
    await left.open()
    await left.append(encode_entry(IngestEntry(publisher_id=network.bpp.subscriber_id, publisher_uri=network.bpp.url,
                                               callback_url=network.bpp.url, body=orjson.dumps(doc),
                                               received_at=time.time())))
    await left.close()
    srv = Served(network, workers=1)
    try:
        await srv.pids()
        await wait_until(lambda: callbacks(network.bpp_sink), timeout=60, what="on_catalog_publish")
        (report,) = callbacks(network.bpp_sink)
        assert report["context"]["message_id"] == doc["context"]["message_id"]
        assert report["message"]["results"][0]["status"] == "ACCEPTED"
        b, h = _signed(network.bap, _qr_discover(network, item))
        status, _, reply = await srv.request("GET", "/beckn/discover", b, h)
        assert status == 200 and _item_ids(reply) == {item}
        assert not (network.tmp / "data" / "ingest").exists()
    finally:
        srv.stop()


def _counter(text: str, line_prefix: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_prefix))


async def test_one_metrics_scrape_sums_every_worker(network, served):
    async def discover():
        b, h = _signed(network.bap, _qr_discover(network, "nothing"))
        return await served.request("GET", "/beckn/discover", b, h)

    answers = await _on_every_worker(served, discover, 2)
    sent = sum(len(v) for v in answers.values())

    async def scraped() -> float:
        _, _, text = await served.request("GET", "/metrics")
        return _counter(text.decode(), 'cds_requests_total{action="discover",outcome="ack"}')

    # A worker writes a request's observations at the end of its loop turn (docs/decisions.md §G), a few µs
    # after the answer: a scrape right after may come first, then the next one sees it.
    async def all_seen() -> bool:
        return await scraped() == sent

    await wait_until(all_seen, timeout=5.0, what=f"{sent} discovers counted by a scrape")
    for _ in range(3):     # any worker's scrape sees them all, and never more
        assert await scraped() == sent


def _huge_publish(network, items: int) -> bytes:
    doc = publish_doc(network.bpp, ["cat-huge"], items=1)
    grow(doc["message"]["catalogs"][0], items)
    return orjson.dumps(doc)


async def _probe_live(url: str, stop: asyncio.Event, samples: list[tuple[float, float, str]]) -> None:
    """/health/live over one kept-alive connection (so one worker) every 10 ms: (sent at, took, worker)."""
    async with aiohttp.ClientSession() as s:
        while not stop.is_set():
            t0 = time.perf_counter()
            async with s.get(url + "/health/live") as r:
                assert r.status == 200
                pid = r.headers.get("X-CDS-Worker", "")
            samples.append((t0, time.perf_counter() - t0, pid))
            await asyncio.sleep(0.01)


async def test_indexing_a_50k_item_catalog_does_not_stall_the_serving_workers(network):
    """From the ACK on (normalising and writing in the ingest process, every worker applying the record
    in slices) no worker's loop is held for long. Receiving the body is not covered: the worker that
    takes the request still parses its JSON on its loop (BENCHMARKS.md, "Every core")."""
    srv = Served(network, CDS_MAX_PUBLISH_BYTES=str(256 << 20))
    try:
        await srv.pids()
        body = _huge_publish(network, 50_000)
        stop, samples = asyncio.Event(), []
        probes = [asyncio.ensure_future(_probe_live(srv.url, stop, samples)) for _ in range(4)]
        try:
            status, _, reply = await srv.request("POST", "/beckn/catalog/publish", body, network.bpp.sign(body))
            acked = time.perf_counter()
            assert status == 200, reply
            await wait_until(lambda: callbacks(network.bpp_sink), timeout=240, interval=0.05,
                             what="on_catalog_publish")
        finally:
            stop.set()
            await asyncio.gather(*probes, return_exceptions=True)
        result = callbacks(network.bpp_sink)[0]["message"]["results"][0]
        assert result["status"] == "ACCEPTED"
        after = [(took, pid) for sent, took, pid in samples if sent >= acked]
        assert after and srv.proc.poll() is None
        worst, pid = max(after)
        # generous: one loop used to stall 1.7 s; the slices take tens of ms even on a busy machine
        assert worst < 1.0, f"/health/live on worker {pid} took {worst * 1000:.0f} ms while the catalog was indexed"
    finally:
        srv.stop()
