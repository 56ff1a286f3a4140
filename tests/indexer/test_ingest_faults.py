"""Fault tests of the durable ingest, all against a real Redis:

- an indexer (`python -m cds indexer`, a real process) is SIGKILLed in the middle of 1,000 catalogs and
  another takes over: every ACKed catalog is searchable exactly once and gets one on_catalog_publish
  (a second one only for a callback that was in flight at the kill, docs/decisions.md §21);
- the index is down while publishes arrive: ACKs continue, the catalogs appear once it is back;
- Redis restarts: publish NACKs clearly while it is away, discover keeps answering, and the API and the
  worker carry on by themselves.

The embedded index belongs to one process at a time (a lock file), so the kill test runs one worker at a
time on one data directory - as in production with the embedded backend - and reads the index after the
last worker stopped. (With Elasticsearch, replicas write concurrently; see the `es` variant.)
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter

import orjson
import pytest

from cds.api.app import create_app
from cds.core.query import Query
from indexer.ingest.entry import decode_entry
from cds.api.appkeys import INGEST
from indexer.embedded.store import EmbeddedStorage
from indexer.ingest.stream import GROUP, IngestStream
from tests.harness import Participant, start_client
from tests.stream_support import (FAST, ThreadedSink, callbacks, indexer_env, kill_indexer, publish_body, spawn_indexer,
                                  stop_indexer, wait_until)
from tests.api.test_api_protocol import assert_nack, discover_body

N_CATALOGS = 1000
N_PUBLISHERS = 10


def _accepted(sink) -> dict[str, list[dict]]:
    """message id -> the on_catalog_publish bodies received for it."""
    out: dict[str, list[dict]] = {}
    for doc in callbacks(sink):
        out.setdefault(doc["context"]["message_id"], []).append(doc)
    return out


async def _in_flight_with(redis, stream: IngestStream, consumer_names: set[str]) -> set[str]:
    """Message ids of publishes pending with the given (dead) consumers."""
    out = set()
    for i in range(stream.keys.partitions):
        name = stream.keys.stream(i)
        for p in await redis.xpending_range(name, GROUP, min="-", max="+", count=10_000):
            consumer = p["consumer"].decode() if isinstance(p["consumer"], bytes) else p["consumer"]
            if consumer in consumer_names:
                rows = await redis.xrange(name, p["message_id"], p["message_id"])
                if rows:
                    entry = decode_entry(rows[0][1][b"e"])
                    out.add(orjson.loads(entry.body)["context"]["message_id"])
    return out


async def _kill_mid_batch(network, redis_url, tmp_path, env: dict[str, str], *, concurrent: bool):
    """Publish N_CATALOGS through the API while indexers run; SIGKILL one in the middle. `concurrent`:
    a second indexer runs from the start (shared index); else it starts after the kill (embedded).
    Returns (sent: message id -> (publisher, catalog id), in-flight message ids at the kill)."""
    from redis.asyncio import Redis

    sink = ThreadedSink()
    publishers = [network.add(Participant(f"bpp-{k}.kill", "BPP", sink.url + f"/k{k}")) for k in range(N_PUBLISHERS)]
    settings = network.settings(redis_url=redis_url, indexer_in_api="false", **FAST)
    api = await start_client(create_app(settings))
    redis = Redis.from_url(redis_url)
    stream = IngestStream.from_settings(redis, settings)
    victim = spawn_indexer(env, tmp_path / "indexer-1.log")
    other = spawn_indexer(env, tmp_path / "indexer-2.log") if concurrent else None
    try:
        sent: dict[str, tuple[str, str]] = {}          # message id -> (publisher, catalog id)

        async def publish(n: int) -> None:
            p = publishers[n % N_PUBLISHERS]
            body = publish_body(p, [f"kc{n:04d}"], items=1)
            resp = await api.post("/beckn/catalog/publish", data=body, headers=p.sign(body))
            assert resp.status == 200, await resp.text()
            sent[orjson.loads(body)["context"]["message_id"]] = (p.subscriber_id, f"kc{n:04d}")

        async def publish_all() -> None:
            for start in range(0, N_CATALOGS, 50):
                await asyncio.gather(*(publish(n) for n in range(start, start + 50)))

        publishing = asyncio.ensure_future(publish_all())
        if concurrent:     # both must be at work before one dies
            await wait_until(lambda: _consumers(redis, stream, at_least=2), timeout=60, what="two busy indexers")
        # Kill while busy: some catalogs done, some in flight, most still queued.
        await wait_until(lambda: len(callbacks(sink)) >= 300, timeout=120, what="300 callbacks")
        before = await _consumer_names(redis, stream)
        kill_indexer(victim)
        seen_at_kill = len(callbacks(sink))
        assert seen_at_kill < N_CATALOGS
        # In flight at the kill = pending with the victim's consumer (its name carries its pid).
        victim_names = {n for n in before if n.startswith(f"{socket.gethostname()}-{victim.pid}-")}
        assert victim_names
        in_flight = await _in_flight_with(redis, stream, victim_names)
        if other is None:
            other = spawn_indexer(env, tmp_path / "indexer-2.log")
        await publishing                                   # ACKs went on regardless
        assert len(sent) == N_CATALOGS
        await wait_until(lambda: len(_accepted(sink)) >= N_CATALOGS, timeout=240,
                         what="every publish reported")
        await wait_until(lambda: _stream_empty(stream), timeout=60, what="the stream to drain")
        assert stop_indexer(other) == 0
    finally:
        kill_indexer(victim)
        if other is not None:
            kill_indexer(other)
        await api.close()
        await redis.aclose()
        sink.close()

    reports = _accepted(sink)
    assert set(reports) == set(sent)
    duplicated = {mid for mid, docs in reports.items() if len(docs) > 1}
    assert duplicated <= in_flight, "only a callback in flight at the kill may be repeated"
    for mid, docs in reports.items():
        for doc in docs:
            assert doc["message"]["results"] == [{"catalog_id": sent[mid][1], "status": "ACCEPTED", "item_count": 1}]
    print(f"\nkill at {seen_at_kill} callbacks; {len(in_flight)} entries in flight; "
          f"{len(duplicated)} callbacks repeated")
    return sent


async def _consumer_names(redis, stream: IngestStream) -> set[str]:
    return {c["name"].decode() for i in range(stream.keys.partitions)
            for c in await redis.xinfo_consumers(stream.keys.stream(i), GROUP)}


async def _consumers(redis, stream: IngestStream, at_least: int) -> bool:
    return len(await _consumer_names(redis, stream)) >= at_least


async def _assert_searchable_once(index, sent: dict[str, tuple[str, str]]) -> None:
    hits = await index.search(Query(limit=5 * N_CATALOGS), now=time.time())
    keys = Counter((h.item.bpp_id, h.item.catalog_id) for h in hits)
    assert set(keys) == set(sent.values())
    assert max(keys.values()) == 1
    assert (await index.stats()).catalogs == N_CATALOGS


@pytest.mark.slow
async def test_sigkill_indexer_mid_batch_then_another_takes_over(network, redis_url, tmp_path):
    worker_dir = tmp_path / "worker-data"
    sent = await _kill_mid_batch(network, redis_url, tmp_path, indexer_env(network, redis_url, worker_dir),
                                 concurrent=False)
    index = EmbeddedStorage(worker_dir / "index")       # the workers are gone: the index is ours to read
    await index.open()
    try:
        await _assert_searchable_once(index, sent)
    finally:
        await index.close()


@pytest.mark.slow
@pytest.mark.es
async def test_sigkill_one_of_two_indexers_on_elasticsearch(network, redis_url, tmp_path, request):
    """Production shape: two indexers write one Elasticsearch concurrently; one is killed mid-batch,
    the survivor takes over its partitions and reclaims its entries."""
    import uuid

    from cds.config import load_settings
    from indexer.elastic.store import ElasticStorage

    es_url = request.getfixturevalue("es_url")
    prefix = f"cdsk-{uuid.uuid4().hex[:10]}"
    # Leases of 2 s (production: 10 s): a survivor with 128 entries in flight on a loaded test machine must not
    # lose its own partitions to a pause of its loop; that would repeat callbacks not in flight at the kill.
    env = indexer_env(network, redis_url, tmp_path / "unused", CDS_ES_URL=es_url, CDS_ES_INDEX_PREFIX=prefix,
                      CDS_ES_REFRESH="true", CDS_INGEST_LEASE_S="2", CDS_INGEST_CLAIM_IDLE_S="1.5")
    sent = await _kill_mid_batch(network, redis_url, tmp_path, env, concurrent=True)
    index = ElasticStorage(load_settings({}, es_url=es_url, es_index_prefix=prefix))
    await index.open()
    try:
        await _assert_searchable_once(index, sent)
    finally:
        from indexer.elastic.mapping import alias_target

        for alias in (index.items_alias, index.catalogs_alias):
            target = await alias_target(index.es, alias)
            if target:
                await index.es.indices.delete(index=target)
        await index.close()


async def _stream_empty(stream: IngestStream) -> bool:
    b = await stream.backlog()
    return b.entries == 0 and b.pending == 0


class Flaky:
    """Our real storage behind a switch that makes it unreachable (an index outage), as the worker sees it."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.down = False

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def _check(self) -> None:
        if self.down:
            raise ConnectionError("index unreachable")

    async def ready(self) -> bool:
        return not self.down and await self.inner.ready()

    async def replace_catalog(self, record) -> None:
        self._check()
        await self.inner.replace_catalog(record)

    async def get_catalog(self, bpp_id: str, catalog_id: str):
        self._check()
        return await self.inner.get_catalog(bpp_id, catalog_id)


async def test_index_down_during_publishes_acks_continue_and_catalogs_appear_after(network, redis_url, tmp_path):
    storage = EmbeddedStorage(tmp_path / "index", fsync=False)
    await storage.open()
    flaky = Flaky(storage)
    settings = network.settings(redis_url=redis_url, ingest_max_attempts=1, **FAST)
    api = await start_client(create_app(settings, storage=flaky))
    try:
        flaky.down = True
        bodies = [publish_body(network.bpp, [f"down{k}"]) for k in range(5)]
        for body in bodies:
            resp = await api.post("/beckn/catalog/publish", data=body, headers=network.bpp.sign(body))
            assert resp.status == 200, await resp.text()
        metrics = api.server.app[INGEST].worker.metrics
        await wait_until(lambda: metrics.ingest_index_waits._value.get() >= 3, what="indexing attempts to fail")
        assert callbacks(network.bpp_sink) == []          # nothing reported, nothing lost, nothing dead
        stream = api.server.app[INGEST].stream
        backlog = await stream.backlog()
        assert backlog.entries == 5 and backlog.dead == 0
        flaky.down = False
        await wait_until(lambda: len(callbacks(network.bpp_sink)) >= 5, what="the queued publishes")
        assert sorted(d["message"]["results"][0]["catalog_id"] for d in callbacks(network.bpp_sink)) == \
            [f"down{k}" for k in range(5)]
        assert all(d["message"]["results"][0]["status"] == "ACCEPTED" for d in callbacks(network.bpp_sink))
        for k in range(5):
            assert await storage.get_catalog(network.bpp.subscriber_id, f"down{k}") is not None
        assert (await stream.backlog()).dead == 0
    finally:
        await api.close()
        await storage.close()


@pytest.mark.slow
@pytest.mark.parametrize("worker", ["in-api", "subprocess"])
async def test_redis_restart_publish_nacks_meanwhile_and_everything_resumes(network, redis_server, redis_url,
                                                                             tmp_path, worker):
    settings = network.settings(redis_url=redis_url, indexer_in_api="true" if worker == "in-api" else "false",
                                **FAST)
    api = await start_client(create_app(settings))
    proc = None
    if worker == "subprocess":
        proc = spawn_indexer(indexer_env(network, redis_url, tmp_path / "w"), tmp_path / "indexer.log")

    async def publish(cid: str):
        body = publish_body(network.bpp, [cid])
        resp = await api.post("/beckn/catalog/publish", data=body, headers=network.bpp.sign(body))
        return resp.status, await resp.read()

    try:
        assert (await publish("before"))[0] == 200
        await wait_until(lambda: len(callbacks(network.bpp_sink)) >= 1, timeout=30, what="the first callback")

        redis_server.stop()
        try:
            status, raw = await publish("during")
            doc = assert_nack(status, raw, 503, "NET_DOWNSTREAM_UNAVAILABLE")
            assert "ingest queue is unreachable" in doc["error"]["message"]
            q = discover_body(network, "UBC_discovery-by-QR.json", )
            resp = await api.request("GET", "/beckn/discover", data=q, headers=network.bap.sign(q))
            assert resp.status == 200                     # discover is served from the index meanwhile
        finally:
            redis_server.start()

        # No manual action: the next publishes are ACKed (the client reconnects on its own) and indexed.
        async def acked() -> bool:
            return (await publish("after"))[0] == 200
        await wait_until(acked, timeout=30, interval=0.2, what="publish to be ACKed again")
        await wait_until(lambda: any(d["message"]["results"][0]["catalog_id"] == "after"
                                     for d in callbacks(network.bpp_sink)), timeout=60, what="the worker to resume")
        ids = [d["message"]["results"][0]["catalog_id"] for d in callbacks(network.bpp_sink)]
        assert "during" not in ids and ids[0] == "before"
    finally:
        if proc is not None:
            assert stop_indexer(proc) == 0
        await api.close()
        if redis_server.proc is None:
            redis_server.start()
