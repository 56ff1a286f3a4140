"""Read-only followers of the embedded index (docs/decisions.md §P): a writer with follower positions, and
followers reading its write-ahead log in the same directory; plus the sliced swap that keeps every search
on a whole catalog."""

from __future__ import annotations

import asyncio
import random

import pytest

from cds.core import spatial
from cds.core.query import Query
from indexer.embedded import EmbeddedStorage
from indexer.embedded.follower import FollowerStorage, ReadOnly
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
