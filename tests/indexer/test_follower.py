"""Read-only followers of the embedded index (docs/decisions.md §P): a writer with follower positions, and
followers reading its write-ahead log in the same directory; plus the sliced swap that keeps every search
on a whole catalog."""

from __future__ import annotations

import asyncio
import contextlib
import random

import msgspec
import pytest

from cds.core import spatial
from cds.core.query import Query
from indexer.embedded import EmbeddedStorage
from indexer.embedded import follower as follower_mod
from indexer.embedded import positions as positions_mod
from indexer.embedded import store as store_mod
from indexer.embedded.chunked import PUT_CHUNK, PutChunks, chunked
from indexer.embedded.follower import FollowerStorage, ReadOnly
from indexer.embedded.persist import FrameScan
from indexer.embedded.positions import FollowerPositions
from tests.indexer.test_embedded_store import CITIES, NOW, make_record
from shapely.geometry import Point


def _everything(limit: int = 10_000) -> Query:
    return Query(limit=limit)


def _ids(hits) -> set[str]:
    return {h.item.item_id for h in hits}


async def test_a_write_returns_once_the_follower_applied_it(tmp_path):
    writer = EmbeddedStorage(tmp_path, fsync=False, followers=FollowerPositions(tmp_path))
    await writer.open()
    follower = FollowerStorage(tmp_path)
    await follower.open()
    try:
        r = random.Random(3)
        for n in range(5):
            rec = make_record(r, "bppA", f"c{n}", 30, tag=f"v{n}")
            await writer.replace_catalog(rec)
            # no waiting here: replace_catalog returned only after the follower reported it applied
            assert _ids(await follower.search(_everything(), NOW)) == _ids(writer.search_now(_everything(), NOW))
            assert any(h.item.catalog_id == f"c{n}" for h in await follower.search(_everything(), NOW))
        assert await writer.delete_catalog("bppA", "c0")
        assert not any(h.item.catalog_id == "c0" for h in await follower.search(_everything(), NOW))
        with pytest.raises(ReadOnly):
            await follower.replace_catalog(rec)
    finally:
        await follower.close()
        await writer.close()


async def test_doorbells_wake_the_follower_and_the_writer_without_polling(tmp_path, monkeypatch):
    # Both sides poll an hour apart here: only the rings (positions.Doorbell) let these writes return.
    monkeypatch.setattr(positions_mod, "RUNG_POLL_S", 3600.0)
    writer = EmbeddedStorage(tmp_path, fsync=False, followers=FollowerPositions(tmp_path))
    await writer.open()
    follower = FollowerStorage(tmp_path, poll_s=3600.0)
    await follower.open()
    try:
        assert follower.positions.bell.listening
        r = random.Random(4)
        for n in range(3):
            await asyncio.wait_for(writer.replace_catalog(make_record(r, "bppR", f"c{n}", 5, tag=f"v{n}")), 10)
            assert any(h.item.catalog_id == f"c{n}" for h in await follower.search(_everything(), NOW))
        # a second listener under the same name (another follower in this process) cannot take the rings:
        # it polls instead, and still follows (its position file is the first one's: same pid, so no waiting on it)
        other = FollowerStorage(tmp_path, poll_s=0.005)
        await other.open()
        try:
            assert not other.positions.bell.listening
            await asyncio.wait_for(writer.delete_catalog("bppR", "c0"), 10)

            async def caught_up() -> None:
                while any(h.item.catalog_id == "c0" for h in await other.search(_everything(), NOW)):
                    await other.applied.wait()
            await asyncio.wait_for(caught_up(), 10)
        finally:
            await other.close()
    finally:
        await follower.close()
        await writer.close()


async def test_a_follower_keeps_up_across_snapshots_and_a_late_one_loads_them(tmp_path):
    writer = EmbeddedStorage(tmp_path, fsync=False, snapshot_bytes=16 << 10, followers=FollowerPositions(tmp_path))
    await writer.open()
    early = FollowerStorage(tmp_path)
    await early.open()
    r = random.Random(5)
    try:
        for n in range(40):       # small snapshot threshold: the log rotates and old files go while we follow
            await writer.replace_catalog(make_record(r, "bppB", f"c{n % 7}", 10 + n % 5, tag=f"v{n}"))
        late = FollowerStorage(tmp_path)
        await late.open()
        try:
            want = _ids(writer.search_now(_everything(), NOW))
            assert _ids(await early.search(_everything(), NOW)) == want
            assert _ids(await late.search(_everything(), NOW)) == want
        finally:
            await late.close()
    finally:
        await early.close()
        await writer.close()


async def test_a_dead_follower_does_not_hold_the_writer(tmp_path):
    positions = FollowerPositions(tmp_path)
    positions.report((0, 0), pid=2 ** 22 + 12345)      # no such process
    writer = EmbeddedStorage(tmp_path, fsync=False, followers=positions)
    await writer.open()
    try:
        await asyncio.wait_for(writer.replace_catalog(make_record(random.Random(1), "b", "c", 3)), 30)
        assert positions.read() == {}
    finally:
        await writer.close()


def test_between_slices_a_search_sees_the_whole_old_catalog_then_the_whole_new_one(tmp_path):
    store = EmbeddedStorage(tmp_path, fsync=False)
    idx = store._index
    r = random.Random(8)
    old = make_record(r, "bppC", "cat", 40, tag="old")
    new = make_record(r, "bppC", "cat", 50, tag="new")
    idx.put(idx.prepare(old, b""))
    near = Query(spatial=(spatial.prepare("dwithin", Point(*CITIES["BLR"]), 5_000_000),), limit=10_000,
                 origin=CITIES["BLR"])
    old_ids, new_ids = {d.item_id for d in old.items}, {d.item_id for d in new.items}
    steps = idx.put_steps(idx.prepare(new, b""), slice_items=7)
    seen = []
    for _ in steps:
        for q in (_everything(), near):
            got = _ids(store.search_now(q, NOW))
            assert got and (got <= old_ids or got <= new_ids)
            seen.append("old" if got and got <= old_ids else "new")
    assert seen[0] == "old" and seen[-1] == "new"
    assert _ids(store.search_now(_everything(), NOW)) == new_ids
    assert idx.sizes()["items"] == 50 and idx.sizes()["live_slots"] == 50


async def test_a_big_catalog_is_logged_in_chunks_and_followed_as_one_catalog(tmp_path, monkeypatch):
    """More than PUT_CHUNK items: one `putc` log record (docs/decisions.md §P); the follower decodes it chunk
    by chunk and swaps it in over many loop turns, and a search meanwhile sees the old or the new catalog
    whole. Replay at open and a snapshot read the chunked record back."""
    monkeypatch.setattr(follower_mod, "SWAP_TURN_S", 0.0)     # yield after every step: many turns to look at
    monkeypatch.setattr(store_mod, "SEARCH_SLICE_S", 0.0)     # and searches pause after every candidate
    writer = EmbeddedStorage(tmp_path, fsync=False, followers=FollowerPositions(tmp_path))
    await writer.open()
    follower = FollowerStorage(tmp_path, slice_items=50)
    await follower.open()
    r = random.Random(11)
    live = {"expires_at": NOW + 3600, "is_active": True}
    old, new = (make_record(r, "bppD", "big", n, tag=tag) for n, tag in ((60, "old"), (2 * PUT_CHUNK + 17, "new")))
    old.meta, new.meta = (msgspec.structs.replace(rec.meta, **live) for rec in (old, new))
    await writer.replace_catalog(old)
    old_ids = _ids(writer.search_now(_everything(), NOW))
    seen: list[str] = []

    async def watch() -> None:
        while True:
            version = follower._version
            got = _ids(await follower.search(_everything(), NOW))
            assert got == old_ids or all(i.endswith("new") for i in got)
            seen.append("across" if follower._version != version else "old" if got == old_ids else "new")
            await asyncio.sleep(0)

    try:
        watcher = asyncio.create_task(watch())
        await writer.replace_catalog(new)       # returns once the follower applied it
        new_ids = _ids(writer.search_now(_everything(), NOW))
        await asyncio.sleep(0)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        assert "across" in seen         # searches ran across swap steps (and saw a whole catalog)
        assert len(new_ids) > PUT_CHUNK and _ids(await follower.search(_everything(), NOW)) == new_ids
        tags = [msgspec.msgpack.decode(p)[0] for _, p in FrameScan(next(tmp_path.glob("wal-*.log")))]
        assert tags == ["put", "putc"]
    finally:
        await follower.close()
        await writer.close()                   # writes a snapshot: the big catalog in chunks again
    for reopened in (EmbeddedStorage(tmp_path, fsync=False), FollowerStorage(tmp_path)):
        await reopened.open()
        try:
            assert _ids(await reopened.search(_everything(), NOW)) == new_ids
        finally:
            await reopened.close()
    rec = chunked(new, b"z")
    assert rec is not None and len(rec.chunks) == -(-len(new.items) // PUT_CHUNK)
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(rec), type=PutChunks).record() == new
