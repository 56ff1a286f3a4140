"""Publish ingest through Redis Streams (real Redis): the API appends before the ACK, workers index in
per-publisher order, acknowledge only after the callback, reclaim a dead worker's entries, set poison
aside in the dead-letter stream, and the queue refuses to grow beyond its bound."""

from __future__ import annotations

import asyncio
import time

import msgspec
import orjson
import pytest

from cds.api.app import create_app
from indexer.ingest.entry import encode_entry
from cds.api.appkeys import INGEST
from indexer.embedded.store import EmbeddedStorage
from indexer.ingest.stream import GROUP, IngestStream
from tests.harness import Participant, start_client
from tests.stream_support import (FAST, Running, callbacks, entry_for, make_worker, message_ids, publish_body,
                                  wait_until)
from tests.api.test_api_protocol import assert_nack, discover_body


@pytest.fixture
async def storage(tmp_path):
    st = EmbeddedStorage(tmp_path / "index", fsync=False)
    await st.open()
    yield st
    await st.close()


class Recording:
    """Our real storage, with the order of catalog writes noted (a spy, not a mock: it writes through)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.writes: list[tuple[str, str, bytes]] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def replace_catalog(self, record) -> None:
        await self.inner.replace_catalog(record)
        self.writes.append((record.meta.bpp_id, record.meta.catalog_id, record.meta.header))


async def post_publish(cds, publisher: Participant, body: bytes):
    resp = await cds.post("/beckn/catalog/publish", data=body, headers=publisher.sign(body))
    return resp.status, await resp.read()


async def test_publish_through_stream_is_acked_indexed_reported_and_searchable(network, redis_url):
    cds = await start_client(create_app(network.settings(redis_url=redis_url, **FAST)))
    try:
        body = publish_body(network.bpp, ["cat-a"])
        status, raw = await post_publish(cds, network.bpp, body)
        assert status == 200, raw
        (doc,) = [orjson.loads(b) for _, _, b in await network.bpp_sink.wait_for(1)]
        assert doc["context"]["message_id"] == orjson.loads(body)["context"]["message_id"]
        assert doc["message"]["results"] == [{"catalog_id": "cat-a", "status": "ACCEPTED", "item_count": 3}]
        q = discover_body(network, "UBC_discovery-by-QR.json")
        resp = await cds.request("GET", "/beckn/discover", data=q, headers=network.bap.sign(q))
        items = [i["beckn:id"] for c in orjson.loads(await resp.read())["message"]["catalogs"] for i in c["beckn:items"]]
        assert items == ["cat-a/IND*ecopower-charging*cs-01*IN*ECO*BTM*01*CCS2*A*CCS2-A"]
        ingest = cds.server.app[INGEST]
        await ingest.drain()
        backlog = await ingest.stream.backlog()
        assert (backlog.entries, backlog.bytes, backlog.pending, backlog.dead) == (0, 0, 0, 0)
    finally:
        await cds.close()


async def test_backlog_bound_nacks_overloaded_and_the_retry_is_not_a_replay(network, redis_url, redis):
    # No consumer anywhere (an ES deployment whose indexers are down): the queue fills up to its bound.
    settings = network.settings(redis_url=redis_url, indexer_in_api="false", ingest_max_backlog=2, **FAST)
    cds = await start_client(create_app(settings))
    try:
        bodies = [publish_body(network.bpp, [f"c{i}"]) for i in range(3)]
        assert (await post_publish(cds, network.bpp, bodies[0]))[0] == 200
        assert (await post_publish(cds, network.bpp, bodies[1]))[0] == 200
        status, raw = await post_publish(cds, network.bpp, bodies[2])
        doc = assert_nack(status, raw, 503, "NET_OVERLOADED")
        assert "full" in doc["error"]["message"]
        stream = IngestStream.from_settings(redis, settings)
        assert (await stream.backlog()).entries == 2
        # An indexer comes up and drains the queue; the refused publish, sent again with the same
        # message id and signature, is now accepted and processed (not swallowed as a replay).
        run = Running(make_worker(settings, redis, EmbeddedStorage(network.tmp / "w", fsync=False)))
        await run.worker.storage.open()
        try:
            await wait_until(lambda: _empty(stream), what="the queue to drain")
            assert (await post_publish(cds, network.bpp, bodies[2]))[0] == 200
            await wait_until(lambda: _empty(stream), what="the retried publish")
            assert await run.worker.storage.get_catalog(network.bpp.subscriber_id, "c2") is not None
        finally:
            await run.stop()
            await run.worker.storage.close()
    finally:
        await cds.close()


async def _empty(stream: IngestStream) -> bool:
    return (await stream.backlog()).entries == 0


async def test_byte_bound_refuses_but_an_empty_queue_takes_any_publish(redis):
    net_bpp = Participant("bpp.bytes", "BPP", "http://127.0.0.1:1/bpp")
    big = entry_for(net_bpp, publish_body(net_bpp, ["big"]))
    size = len(encode_entry(big))
    stream = IngestStream(redis, partitions=2, max_backlog=100, max_backlog_bytes=size + 10)
    await stream.open()
    await stream.append(big)                       # larger than the bound minus nothing: allowed when empty
    second = entry_for(net_bpp, publish_body(net_bpp, ["second"]))
    with pytest.raises(Exception) as err:
        await stream.append(second)
    assert getattr(err.value, "code", None) == "NET_OVERLOADED" and err.value.status == 503
    assert (await stream.backlog()).bytes == size


async def test_append_is_idempotent_for_the_same_publish(redis):
    p = Participant("bpp.dedup", "BPP", "http://127.0.0.1:1/bpp")
    stream = IngestStream(redis, partitions=2)
    await stream.open()
    entry = entry_for(p, publish_body(p, ["x"]))
    first = await stream.append(entry)
    assert await stream.append(entry) == first       # e.g. the API timed out and the BPP retried
    other = await stream.append(entry_for(p, publish_body(p, ["x"])))   # a new message id: a new publish
    assert other != first
    assert (await stream.backlog()).entries == 2


async def test_one_publishers_versions_are_indexed_in_order_by_competing_workers(network, redis, storage):
    settings = network.settings(redis_url="redis://unused", **{**FAST, "ingest_batch": 3})
    stream = IngestStream.from_settings(redis, settings)
    await stream.open()
    publishers = [network.bpp] + [Participant(f"bpp-{k}.test", "BPP", network.bpp_sink.url + f"/p{k}") for k in range(5)]
    for v in range(12):                    # 12 versions of one catalog per publisher, interleaved
        for p in publishers:
            await stream.append(entry_for(p, publish_body(p, ["same"], version=f"v{v:02d}", items=1 + v % 3)))
    rec = Recording(storage)
    runs = [Running(make_worker(settings, redis, rec, name=f"w{k}")) for k in range(3)]
    try:
        await wait_until(lambda: _empty(stream), what="all versions indexed")
    finally:
        for r in runs:
            await r.stop()
    for p in publishers:
        versions = [_version(h) for bpp, cid, h in rec.writes if bpp == p.subscriber_id]
        assert versions == [f"v{v:02d}" for v in range(12)], p.subscriber_id
        meta = await storage.get_catalog(p.subscriber_id, "same")
        assert meta is not None and _version(meta.header) == "v11" and meta.item_count == 1 + 11 % 3
    # The partitions were shared: more than one worker indexed something.
    assert sum(1 for r in runs if r.worker.metrics.publish_catalogs.labels("ACCEPTED")._value.get() > 0) > 1


class Gated(Recording):
    """Writes of the gated catalog wait until the test opens the gate (a slow index write)."""

    def __init__(self, inner, gated: str) -> None:
        super().__init__(inner)
        self.gated = gated
        self.gate = asyncio.Event()

    async def replace_catalog(self, record) -> None:
        if record.meta.catalog_id == self.gated:
            await self.gate.wait()
        await super().replace_catalog(record)


async def test_per_catalog_order_across_multi_catalog_publishes_and_no_head_of_line_blocking(network, redis, storage):
    """One publisher: A1 = {A}, AB2 = {A, B}, B3 = {B}, C4 = {C}. While A1's write hangs, C4 (another
    catalog) goes through, but AB2 and B3 wait: B3 must not overtake AB2, which must not overtake A1."""
    settings = network.settings(redis_url="redis://unused", **FAST)
    stream = IngestStream.from_settings(redis, settings)
    await stream.open()
    p = network.bpp
    for cats, v in ((["A"], "v1"), (["A", "B"], "v2"), (["B"], "v3"), (["C"], "v4")):
        await stream.append(entry_for(p, publish_body(p, cats, version=v, items=1)))
    gated = Gated(storage, "A")
    run = Running(make_worker(settings, redis, gated))
    try:
        await wait_until(lambda: any(cid == "C" for _, cid, _ in gated.writes), what="C to be written")
        assert [(cid, _version(h)) for _, cid, h in gated.writes] == [("C", "v4")]
        gated.gate.set()
        await wait_until(lambda: _empty(stream), what="the rest")
    finally:
        await run.stop()
    order = [(cid, _version(h)) for _, cid, h in gated.writes]
    assert order.index(("A", "v1")) < order.index(("A", "v2"))
    assert order.index(("B", "v2")) < order.index(("B", "v3"))
    assert sorted(order) == [("A", "v1"), ("A", "v2"), ("B", "v2"), ("B", "v3"), ("C", "v4")]


def _version(header: bytes) -> str:
    name = orjson.loads(header)["beckn:descriptor"]["schema:name"]
    return name.rsplit(" ", 1)[1]


async def test_workers_split_the_partitions_and_take_over_when_one_stops(network, redis, storage):
    settings = network.settings(redis_url="redis://unused", **{**FAST, "ingest_partitions": 6})
    a = Running(make_worker(settings, redis, storage, name="a"))
    b = Running(make_worker(settings, redis, storage, name="b"))
    try:
        await wait_until(lambda: len(a.worker.held) == 3 and len(b.worker.held) == 3, what="a fair split")
        assert a.worker.held.isdisjoint(b.worker.held)
        await b.stop()
        await wait_until(lambda: len(a.worker.held) == 6, what="the survivor to take every partition")
    finally:
        await a.stop()
        if not b.task.done():
            await b.stop()


async def test_dead_workers_entries_are_reclaimed_and_processed(network, redis, storage):
    settings = network.settings(redis_url="redis://unused", **FAST)
    stream = IngestStream.from_settings(redis, settings)
    await stream.open()
    p = network.bpp
    await stream.append(entry_for(p, publish_body(p, ["orphan"])))
    # A worker read it and died: the entry is pending with a consumer that will never ack it.
    part = stream.keys.stream(stream.keys.partition_of(p.subscriber_id))
    got = await redis.xreadgroup(GROUP, "ghost", {part: ">"}, count=10)
    assert len(got[0][1]) == 1
    run = Running(make_worker(settings, redis, storage))
    try:
        await wait_until(lambda: _empty(stream), what="the orphan to be reclaimed")
    finally:
        await run.stop()
    assert await storage.get_catalog(p.subscriber_id, "orphan") is not None
    assert run.worker.metrics.ingest_reclaimed._value.get() == 1
    consumers = {c["name"] for c in await redis.xinfo_consumers(part, GROUP)}
    assert b"ghost" in consumers or "ghost" in consumers        # kept until idle for long (not deleted early)


async def test_poison_entries_go_to_the_dead_letter_stream_with_a_reason(network, redis, storage):
    settings = network.settings(redis_url="redis://unused", **{**FAST, "ingest_max_deliveries": 2})
    stream = IngestStream.from_settings(redis, settings)
    await stream.open()
    p = network.bpp
    part_i = stream.keys.partition_of(p.subscriber_id)
    part = stream.keys.stream(part_i)
    # 1. an entry that killed two workers already (delivered twice, never acknowledged)
    await stream.append(entry_for(p, publish_body(p, ["killer"])))
    await redis.xreadgroup(GROUP, "ghost1", {part: ">"}, count=1)         # delivery 1
    (pending,) = await redis.xpending_range(part, GROUP, min="-", max="+", count=10)
    await redis.xclaim(part, GROUP, "ghost2", 0, [pending["message_id"]])  # delivery 2
    # 2. bytes that are no IngestEntry at all
    await redis.xadd(part, {"e": b"\x00garbage", "p": p.subscriber_id, "n": 9})
    # 3. a well-formed entry whose body is not a publish
    await stream.append(msgspec.structs.replace(entry_for(p, b"{}"), body=b'{"context": 1}'))
    # 4. a good one after them: the partition must not stall behind poison
    await stream.append(entry_for(p, publish_body(p, ["good"])))
    run = Running(make_worker(settings, redis, storage, outbound=None))
    try:
        await wait_until(lambda: _empty(stream), what="poison set aside")
    finally:
        await run.stop()
    dead = await stream.dead_letters()
    # In the order the entries were queued (their source ids): entries of a partition are handled
    # concurrently, so the order they are set aside in is not theirs (the killer waits on the index check).
    by_source = sorted(dead, key=lambda d: tuple(int(x) for x in d["source"].split("-")))
    reasons = [d["reason"] for d in by_source]
    assert len(reasons) == 3, reasons
    assert reasons[0].startswith("delivered 3 times without completing")
    assert reasons[1].startswith("undecodable entry")
    assert reasons[2].startswith("unparsable publish: CTX_")
    assert {d["partition"] for d in dead} == {part_i}
    assert await storage.get_catalog(p.subscriber_id, "good") is not None
    assert await storage.get_catalog(p.subscriber_id, "killer") is None
    assert (await stream.backlog()).dead == 3


async def test_failing_entry_with_the_index_up_is_dead_lettered_and_reported(network, redis, storage):
    """Indexing keeps failing while the index is healthy: after the bounded attempts the entry is set
    aside and the publisher hears REJECTED instead of waiting forever."""
    settings = network.settings(redis_url="redis://unused", **{**FAST, "ingest_max_attempts": 2})
    stream = IngestStream.from_settings(redis, settings)
    await stream.open()

    class Broken(Recording):
        async def replace_catalog(self, record) -> None:
            if record.meta.catalog_id == "bad":
                raise ValueError("normaliser produced something the store cannot take")
            await super().replace_catalog(record)

    from cds.trust.outbound import Outbound, Signer, make_session

    session = make_session(settings)
    out = Outbound(session, Signer(settings), settings)
    p = network.bpp
    bad, good = publish_body(p, ["bad"]), publish_body(p, ["fine"])
    await stream.append(entry_for(p, bad))
    await stream.append(entry_for(p, good))
    run = Running(make_worker(settings, redis, Broken(storage), outbound=out))
    try:
        await wait_until(lambda: len(callbacks(network.bpp_sink)) >= 2, what="both callbacks")
        await wait_until(lambda: _empty(stream), what="the queue to empty")
    finally:
        await run.stop()
        await session.close()
    by_id = {d["context"]["message_id"]: d for d in callbacks(network.bpp_sink)}
    rejected = by_id[orjson.loads(bad)["context"]["message_id"]]["message"]["results"]
    assert rejected[0]["status"] == "REJECTED" and rejected[0]["catalog_id"] == "bad"
    assert "ValueError" in rejected[0]["error"]["message"]
    accepted = by_id[orjson.loads(good)["context"]["message_id"]]["message"]["results"]
    assert accepted[0]["status"] == "ACCEPTED"
    (dead,) = await stream.dead_letters()
    assert dead["reason"].startswith("indexing failed 2 times")


async def test_redelivery_after_indexing_resends_the_same_results_without_reindexing(network, redis, storage):
    """A worker died after indexing an entry but before acknowledging it: the next one re-sends the
    stored results (same ids, same results; docs/decisions.md §21) and does not write the catalog again."""
    settings = network.settings(redis_url="redis://unused", **FAST)
    stream = IngestStream.from_settings(redis, settings)
    await stream.open()
    p = network.bpp
    body = publish_body(p, ["once"])
    entry_id = await stream.append(entry_for(p, body))
    i = stream.keys.partition_of(p.subscriber_id)
    await redis.xreadgroup(GROUP, "ghost", {stream.keys.stream(i): ">"}, count=1)
    from cds.core.models import CatalogResult
    stored = [CatalogResult(catalog_id="once", status="ACCEPTED", item_count=7)]
    await redis.set(stream.keys.done(i, entry_id), msgspec.msgpack.encode(stored))
    rec = Recording(storage)
    from cds.trust.outbound import Outbound, Signer, make_session

    session = make_session(settings)
    run = Running(make_worker(settings, redis, rec, outbound=Outbound(session, Signer(settings), settings)))
    try:
        await wait_until(lambda: len(callbacks(network.bpp_sink)) >= 1, what="the callback")
        await wait_until(lambda: _empty(stream), what="the ack")
    finally:
        await run.stop()
        await session.close()
    (doc,) = callbacks(network.bpp_sink)
    assert doc["context"]["message_id"] == orjson.loads(body)["context"]["message_id"]
    assert doc["message"]["results"] == [{"catalog_id": "once", "status": "ACCEPTED", "item_count": 7}]
    assert rec.writes == []
    assert await redis.exists(stream.keys.done(i, entry_id)) == 0


async def test_partition_count_is_fixed_by_the_first_process(redis):
    first = IngestStream(redis, partitions=4)
    await first.open()
    second = IngestStream(redis, partitions=8)
    await second.open()
    assert second.keys.partitions == 4
    assert second.keys.partition_of("bpp.x") == first.keys.partition_of("bpp.x")


async def test_stream_metrics_are_exported(network, redis_url):
    settings = network.settings(redis_url=redis_url, indexer_in_api="false", **FAST)
    cds = await start_client(create_app(settings))
    try:
        for k in range(2):
            body = publish_body(network.bpp, [f"m{k}"])
            assert (await post_publish(cds, network.bpp, body))[0] == 200
        await cds.server.app[INGEST].refresh()
        text = await (await cds.get("/metrics")).text()
        values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
                  if line.startswith("cds_ingest") and not line.startswith("#")}
        assert values["cds_ingest_pending"] == 2
        assert values["cds_ingest_consumer_lag"] == 2
        assert values["cds_ingest_stream_pending"] == 0
        assert values["cds_ingest_backlog_bytes"] > 0
        assert values["cds_ingest_dead_letters"] == 0
    finally:
        await cds.close()


async def test_concurrent_publishes_all_land_once(network, redis_url):
    """Many publishers at once through one API: every ACKed publish is reported exactly once."""
    cds = await start_client(create_app(network.settings(redis_url=redis_url, **FAST)))
    pubs = [network.bpp] + [network.add(Participant(f"bpp-c{k}.test", "BPP", network.bpp_sink.url + f"/c{k}"))
                            for k in range(4)]
    try:
        bodies = [(p, publish_body(p, [f"cc{n}"])) for n in range(10) for p in pubs]
        statuses = await asyncio.gather(*(post_publish(cds, p, b) for p, b in bodies))
        assert [s for s, _ in statuses] == [200] * len(bodies)
        await network.bpp_sink.wait_for(len(bodies), timeout=30)
        await cds.server.app[INGEST].drain()
        got = message_ids(callbacks(network.bpp_sink))
        assert sorted(got) == sorted(orjson.loads(b)["context"]["message_id"] for _, b in bodies)
    finally:
        await cds.close()


@pytest.mark.parametrize("env, needs", [({}, "CDS_REDIS_URL"),
                                        ({"CDS_REDIS_URL": "redis://127.0.0.1:1/0"}, "CDS_SIGNING_PRIVATE_KEY")])
def test_cds_indexer_refuses_to_start_without_redis_or_key(monkeypatch, capsys, env, needs):
    from cds.cli.main import main

    for k in [k for k in __import__("os").environ if k.startswith("CDS_")]:
        monkeypatch.delenv(k)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert main(["indexer"]) == 2
    assert needs in capsys.readouterr().err


@pytest.fixture
async def es_storage(es_url):
    import uuid

    from indexer.elastic.mapping import alias_target
    from indexer.elastic.store import ElasticStorage
    from cds.config import load_settings

    st = ElasticStorage(load_settings({}, es_url=es_url, es_index_prefix=f"cdsw-{uuid.uuid4().hex[:12]}"),
                        retire_grace_s=0.0)
    await st.init_indices()
    yield st
    await st.drain()
    for alias in (st.items_alias, st.catalogs_alias):
        if target := await alias_target(st.es, alias):
            await st.es.indices.delete(index=target)
    await st.close()


@pytest.mark.es
async def test_elasticsearch_batches_many_publishers_and_reports_each_catalog_on_its_own(network, redis, es_storage):
    """One worker on Elasticsearch: the publishes of several publishers are written in shared batches (one
    bulk, one refresh, one flip); the one invalid catalog is rejected alone, every other is ACCEPTED and
    searchable, and each publisher's versions of a catalog land in order (the last one wins)."""
    from cds.core.query import Query
    from cds.trust.outbound import Outbound, Signer, make_session

    settings = network.settings(redis_url="redis://unused", **FAST)
    stream = IngestStream.from_settings(redis, settings)
    await stream.open()
    batches: list[int] = []
    flush = es_storage._commit._flush

    async def spy(records):
        batches.append(len(records))
        return await flush(records)

    es_storage._commit._flush = spy
    publishers = [network.bpp] + [Participant(f"bpp-{k}.test", "BPP", network.bpp_sink.url + f"/p{k}") for k in range(5)]
    bodies: dict[str, bytes] = {}
    for v in range(3):
        for p in publishers:
            body = publish_body(p, ["same", f"own-{v}"], version=f"v{v}", items=2)
            if p is publishers[2] and v == 1:         # one invalid catalog: a duplicate item id
                doc = orjson.loads(body)
                items = doc["message"]["catalogs"][1]["beckn:items"]
                items[1]["beckn:id"] = items[0]["beckn:id"]
                body = orjson.dumps(doc)
            bodies[orjson.loads(body)["context"]["message_id"]] = body
            await stream.append(entry_for(p, body))
    session = make_session(settings)
    run = Running(make_worker(settings, redis, es_storage, outbound=Outbound(session, Signer(settings), settings)))
    try:
        await wait_until(lambda: len(callbacks(network.bpp_sink)) >= len(bodies), what="every callback")
        await wait_until(lambda: _empty(stream), what="the queue to empty")
    finally:
        await run.stop()
        await session.close()
    results = {d["context"]["message_id"]: d["message"]["results"] for d in callbacks(network.bpp_sink)}
    assert results.keys() == bodies.keys()
    rejected = [(mid, r["catalog_id"]) for mid, rs in results.items() for r in rs if r["status"] != "ACCEPTED"]
    assert len(rejected) == 1 and rejected[0][1] == "own-1"
    assert "duplicate item id" in next(r for r in results[rejected[0][0]] if r["catalog_id"] == "own-1")["error"]["message"]
    assert max(batches) > 1 and sum(batches) == 6 * 6 - 1       # shared batches; everything valid was written
    for p in publishers:
        meta = await es_storage.get_catalog(p.subscriber_id, "same")
        assert _version(meta.header) == "v2"                   # the last version of each publisher's catalog
        own = {h.item.catalog_id for h in await es_storage.search(Query(limit=100, terms={"bpp_id": frozenset({p.subscriber_id})}), time.time())}
        assert own == {"same", "own-0", "own-2"} | ({"own-1"} if p is not publishers[2] else set())
