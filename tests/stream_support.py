"""Helpers for the Redis-stream ingest tests: publish bodies with chosen catalog ids, in-process workers,
`python -m cds indexer` subprocesses, and reading back what a callback sink received."""

from __future__ import annotations

import asyncio
import copy
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from cds.metrics import new_metrics
from indexer.ingest.apply import CatalogIndexer
from indexer.ingest.entry import IngestEntry
from indexer.ingest.stream import IngestStream
from indexer.ingest.worker import StreamWorker
from tests.harness import Participant, fresh_context, load_fixture

PUBLISH = "UBC_catalog_publish_ev-charging-catalog-publish.json"
REPO = Path(__file__).resolve().parents[1]

# Fast leases and claims so that crash recovery happens within a test's patience.
FAST = {"ingest_lease_s": 0.6, "ingest_claim_idle_s": 0.5, "ingest_partitions": 4, "fanout_max_bpps": 0}
FAST_ENV = {"CDS_INGEST_LEASE_S": "0.6", "CDS_INGEST_CLAIM_IDLE_S": "0.5", "CDS_INGEST_PARTITIONS": "4"}


def publish_doc(publisher: Participant, catalog_ids: list[str], *, version: str = "v1",
                items: int = 3) -> dict[str, Any]:
    """A dialect-A publish of `catalog_ids` (the fixture catalog, renamed), signed context fresh.
    `version` goes into the catalog name so a test can tell versions apart; item ids stay unique per catalog."""
    doc = fresh_context(load_fixture(PUBLISH), bpp_id=publisher.subscriber_id, bpp_uri=publisher.url)
    base = doc["message"]["catalogs"][0]
    catalogs = []
    for cid in catalog_ids:
        cat = copy.deepcopy(base)
        cat["beckn:id"] = cid
        cat["beckn:bppId"], cat["beckn:bppUri"] = publisher.subscriber_id, publisher.url
        cat["beckn:descriptor"]["schema:name"] = f"{cid} {version}"
        kept = cat["beckn:items"][:items]
        for it in kept:
            it["beckn:id"] = f"{cid}/{it['beckn:id']}"
        cat["beckn:items"] = kept
        ids = {it["beckn:id"].split("/", 1)[1]: it["beckn:id"] for it in kept}
        offers = []
        for off in cat.get("beckn:offers", []):
            refs = [ids[r] for r in off.get("beckn:items", []) if r in ids]
            if refs:
                off["beckn:items"] = refs
                off["beckn:id"] = f"{cid}/{off['beckn:id']}"
                offers.append(off)
        cat["beckn:offers"] = offers
        catalogs.append(cat)
    doc["message"]["catalogs"] = catalogs
    return doc


def publish_body(publisher: Participant, catalog_ids: list[str], **kw: Any) -> bytes:
    return orjson.dumps(publish_doc(publisher, catalog_ids, **kw))


def entry_for(publisher: Participant, body: bytes) -> IngestEntry:
    """What the publish handler would queue for `body` (for tests that append directly)."""
    return IngestEntry(publisher_id=publisher.subscriber_id, publisher_uri=publisher.url,
                       callback_url=publisher.url, body=body, received_at=time.time())


def make_worker(settings, redis, storage, outbound=None, name: str | None = None) -> StreamWorker:
    metrics = new_metrics()
    return StreamWorker(IngestStream.from_settings(redis, settings),
                        CatalogIndexer(storage, settings, metrics, outbound), storage, settings, metrics, name=name)


class Running:
    """An in-process worker task; `stop()` shuts it down gracefully."""

    def __init__(self, worker: StreamWorker) -> None:
        self.worker = worker
        self.stop_event = asyncio.Event()
        self.task = asyncio.ensure_future(worker.run(self.stop_event))

    async def stop(self) -> None:
        self.stop_event.set()
        await asyncio.wait_for(self.task, 30)


class ThreadedSink:
    """A BPP callback endpoint on its own thread and event loop: it answers at once even while the test's
    loop is busy (publishing), so a crash test measures the indexer's in-flight window, not ours."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self._lock:
            self.received.append((request.path, dict(request.headers), body))
        return web.Response(body=b'{"message":{"ack":{"status":"ACK"}}}', content_type="application/json")

    def close(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def callbacks(sink, path_suffix: str = "/on_catalog_publish") -> list[dict[str, Any]]:
    return [orjson.loads(body) for path, _, body in list(sink.received) if path.endswith(path_suffix)]


def message_ids(docs: list[dict[str, Any]]) -> list[str]:
    return [d["context"]["message_id"] for d in docs]


async def wait_until(predicate, timeout: float = 30.0, interval: float = 0.02, what: str = "condition") -> None:
    """Poll `predicate` (sync or async) until true; a bounded wait, not a timing assertion."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        ok = predicate()
        if asyncio.iscoroutine(ok):
            ok = await ok
        if ok:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)


# ---- `python -m cds indexer` subprocesses ----------------------------------------------------------

def indexer_env(network, redis_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env.update({"CDS_SUBSCRIBER_ID": network.cds.subscriber_id, "CDS_KEY_ID": network.cds.key_id,
                "CDS_SIGNING_PRIVATE_KEY": network.cds_seed, "CDS_REGISTRY_FILE": str(network.registry_file),
                "CDS_REDIS_URL": redis_url, "CDS_DATA_DIR": str(data_dir), "CDS_ALLOW_PRIVATE_CALLBACKS": "true",
                "CDS_CALLBACK_RETRIES": "1", "CDS_CALLBACK_TIMEOUT_S": "5", "CDS_INDEXER_PORT": "0",
                "CDS_LOG_LEVEL": "WARNING", "PYTHONPATH": str(REPO), **FAST_ENV, **extra})
    return env


def spawn_indexer(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    log = open(log_path, "ab")
    try:
        return subprocess.Popen([sys.executable, "-m", "cds", "indexer"], env=env, cwd=str(REPO),
                                stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()


def stop_indexer(proc: subprocess.Popen, timeout: float = 30.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    return proc.returncode


def kill_indexer(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
