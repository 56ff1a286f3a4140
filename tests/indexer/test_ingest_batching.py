"""The worker's Redis writes per batch (real Redis): many acknowledgements in one script call behave as
many single ones, and the writes gathered in one turn share one round trip while each caller still
learns about its own write only once Redis has it (or that it failed)."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from indexer.ingest.batching import RedisBatch
from indexer.ingest.entry import IngestEntry
from indexer.ingest.stream import DONE_TTL_S, GROUP, IngestStream


async def _queue(stream: IngestStream, n: int) -> list[tuple[int, str, int]]:
    """n entries appended and delivered to one consumer: (partition, id, size) each."""
    await stream.open()
    out = []
    for k in range(n):
        entry = IngestEntry(publisher_id=f"bpp-{k}", body=b'{"k": %d}' % k, received_at=0.0)
        out.append((stream.keys.partition_of(entry.publisher_id), await stream.append(entry), 0))
    await stream.redis.xreadgroup(GROUP, "w", {s: ">" for s in stream.keys.all_streams()}, count=100)
    sizes = {}
    for name in stream.keys.all_streams():
        for entry_id, fields in await stream.redis.xrange(name):
            sizes[entry_id.decode()] = int(fields[b"n"])
    return [(i, eid, sizes[eid]) for i, eid, _ in out]


async def _pending(stream: IngestStream) -> int:
    return sum([int((await stream.redis.xpending(s, GROUP))["pending"]) for s in stream.keys.all_streams()])


async def _queued(stream: IngestStream) -> int:
    return sum([await stream.redis.xlen(s) for s in stream.keys.all_streams()])


async def test_ack_many_acknowledges_each_entry_once(redis):
    stream = IngestStream(redis, partitions=4)
    entries = await _queue(stream, 6)
    assert len({i for i, _, _ in entries}) > 1            # several partitions in one call
    for i, eid, _ in entries:
        await redis.set(stream.keys.done(i, eid), b"results")
    total = int(await redis.get(stream.keys.bytes))
    first, rest = entries[:4], entries[4:]

    await stream.ack_many(first)
    await stream.ack_many(first)                          # again: changes nothing (no double count)

    assert await _queued(stream) == 2 and await _pending(stream) == 2
    assert int(await redis.get(stream.keys.bytes)) == total - sum(n for _, _, n in first)
    for i, eid, _ in first:
        assert await redis.exists(stream.keys.done(i, eid)) == 0
    for i, eid, _ in rest:
        assert await redis.exists(stream.keys.done(i, eid)) == 1
    await stream.ack_many(rest)
    assert await _queued(stream) == 0 and int(await redis.get(stream.keys.bytes)) == 0


async def test_writes_of_one_turn_share_a_round_trip_and_each_waits_for_its_own(redis):
    stream = IngestStream(redis, partitions=4)
    entries = await _queue(stream, 5)
    batch = RedisBatch(stream, DONE_TTL_S)
    acked, recorded = entries[:3], entries[3:]

    futs = [batch.ack(i, eid, n) for i, eid, n in acked]
    futs += [batch.record(stream.keys.done(i, eid), b"r%d" % k) for k, (i, eid, _) in enumerate(recorded)]
    await asyncio.gather(*futs)

    assert batch.round_trips == 1
    assert await _queued(stream) == 2 and await _pending(stream) == 2
    for k, (i, eid, _) in enumerate(recorded):
        assert await redis.get(stream.keys.done(i, eid)) == b"r%d" % k
        assert 0 < await redis.ttl(stream.keys.done(i, eid)) <= DONE_TTL_S

    # arriving while a round trip is in flight: they go together in the next one
    first = batch.ack(*recorded[0])
    await asyncio.sleep(0)                                # the flush has started
    later = [batch.ack(*recorded[1]), batch.record("{cds-ingest}:done:x", b"y")]
    await asyncio.gather(first, *later)
    assert batch.round_trips == 3
    assert await _queued(stream) == 0 and await redis.get("{cds-ingest}:done:x") == b"y"


async def test_acks_still_land_after_redis_lost_its_scripts(redis):
    stream = IngestStream(redis, partitions=2)
    entries = await _queue(stream, 3)
    batch = RedisBatch(stream, DONE_TTL_S)
    await stream.ack_many(entries[:1])                    # the script is known ...
    await redis.script_flush()                            # ... and forgotten (a Redis restart)

    i, eid, _ = entries[2]
    await asyncio.gather(batch.ack(*entries[1]), batch.record(stream.keys.done(i, eid), b"r"))

    assert await _queued(stream) == 1 and await _pending(stream) == 1
    assert await redis.get(stream.keys.done(i, eid)) == b"r"


async def test_a_failed_round_trip_fails_every_write_in_it(redis_url, redis_server):
    down = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)   # nothing listens there
    try:
        batch = RedisBatch(IngestStream(down, partitions=2), DONE_TTL_S)
        futs = [batch.record("{cds-ingest}:done:a", b"1"), batch.ack(0, "1-0", 10)]
        results = await asyncio.gather(*futs, return_exceptions=True)
        assert all(isinstance(r, (RedisConnectionError, OSError)) for r in results), results
        with pytest.raises((RedisConnectionError, OSError)):
            await batch.record("{cds-ingest}:done:b", b"2")   # alone (plain SET), failing too
    finally:
        await down.aclose()
