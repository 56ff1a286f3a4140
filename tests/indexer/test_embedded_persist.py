"""EmbeddedStorage durability: close/reopen, WAL replay without snapshot, torn tails, snapshots
combined with later logs, durable deletes and purges, group commit, and a real SIGKILL."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

import pytest

from cds.core import matching
from cds.core.query import Query
from cds.core.documents import CatalogMeta, CatalogRecord, ItemDoc, OfferDoc, plain_json
from indexer.embedded import EmbeddedStorage
from indexer.embedded import persist
from indexer.embedded.persist import StorageCorrupt, list_generations
from tests.crash_child import crash_record, spawn_and_kill
from tests.indexer.test_embedded_store import NOW, dataset, final_records, keys, make_record, populated, random_query


async def crash(store: EmbeddedStorage) -> None:
    """Stop without the closing snapshot, as a killed process would (everything ACKed is in the log)."""
    await store._wal.close()
    store._lock.release()


async def reopen(d: Path, **kw) -> EmbeddedStorage:
    store = EmbeddedStorage(d, fsync=False, **kw)
    await store.open()
    return store


def files(d: Path, prefix: str, suffix: str) -> list[int]:
    return [g for g, _ in list_generations(d, prefix, suffix)]


async def assert_state(store: EmbeddedStorage, records: list[CatalogRecord], seed: int = 0) -> None:
    """Same answers as brute force over `records`, for many queries, plus identical metas."""
    r = random.Random(seed)
    for _ in range(40):
        q = random_query(r)
        assert keys(await store.search(q, NOW)) == keys(matching.brute_force(q, records, NOW)), q
    everything = Query(limit=100_000)
    stored = await store.search(everything, NOW - 10_000)
    want = [(it.key, it) for rec in records for it in rec.items
            if matching.matches(everything, it, rec.meta, NOW - 10_000)]
    assert sorted((h.item.key, h.item) for h in stored) == sorted(want, key=lambda kv: kv[0])
    for rec in records:
        assert await store.get_catalog(rec.meta.bpp_id, rec.meta.catalog_id) == rec.meta
    assert (await store.stats()).catalogs == len(records)


async def test_close_and_reopen_gives_the_same_answers(tmp_path):
    recs, deletions, replace = dataset(21)
    store = await populated(tmp_path, recs, deletions, replace)
    await store.close()
    assert files(tmp_path, "snapshot-", ".bin")                 # close wrote a snapshot
    store = await reopen(tmp_path)
    await assert_state(store, final_records(recs, deletions, replace))
    await store.close()


async def test_wal_replay_without_snapshot(tmp_path):
    recs, deletions, replace = dataset(22)
    store = await populated(tmp_path, recs, deletions, replace)
    await crash(store)
    assert not files(tmp_path, "snapshot-", ".bin")
    store = await reopen(tmp_path)
    await assert_state(store, final_records(recs, deletions, replace))
    await store.close()


def _five(tag: str = "") -> list[CatalogRecord]:
    return [CatalogRecord(meta=CatalogMeta(bpp_id="b", catalog_id=f"c{i}{tag}"),
                          items=[ItemDoc(bpp_id="b", catalog_id=f"c{i}{tag}", item_id="x", lon=77.0, lat=12.0,
                                         raw=b"r" * 300)]) for i in range(5)]


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
async def test_torn_tail_is_ignored_and_later_writes_survive(tmp_path, damage):
    store = await reopen(tmp_path)
    recs = _five()
    for rec in recs:
        await store.replace_catalog(rec)
    await crash(store)
    wal = list_generations(tmp_path, "wal-", ".log")[-1][1]
    size = os.path.getsize(wal)
    with open(wal, "r+b") as f:
        if damage == "truncate":
            f.truncate(size - 7)                    # the process died in the middle of the last frame
        elif damage == "flip":
            f.seek(size - 3)
            f.write(b"\xff\xfe\xfd")                # the last frame's bytes never fully hit the disk
        else:
            f.seek(size)
            f.write(os.urandom(5))                  # a header fragment of a frame that never completed
    store = await reopen(tmp_path)
    survivors = recs if damage == "garbage" else recs[:4]
    await assert_state(store, survivors)
    later = _five("-later")
    for rec in later:
        await store.replace_catalog(rec)
    await crash(store)
    store = await reopen(tmp_path)
    await assert_state(store, survivors + later)
    await store.close()


async def test_snapshots_plus_later_logs(tmp_path):
    store = await reopen(tmp_path, snapshot_bytes=4000)       # a snapshot every few writes
    r = random.Random(4)
    state: dict = {}
    for i in range(40):
        rec = make_record(r, f"bpp{i % 2}", f"cat{i % 9}", r.randint(0, 12), tag=f"w{i}")
        await store.replace_catalog(rec)
        state[rec.meta.key] = rec
        if i % 7 == 3:
            key = next(iter(state))
            assert await store.delete_catalog(*key)
            del state[key]
        await asyncio.sleep(0)                                   # let a scheduled snapshot run
    await asyncio.sleep(0.1)
    await crash(store)
    snaps = files(tmp_path, "snapshot-", ".bin")
    assert len(snaps) == 1                                       # older ones were deleted
    assert all(g >= snaps[0] for g in files(tmp_path, "wal-", ".log"))   # logs before it too
    store = await reopen(tmp_path)
    await assert_state(store, list(state.values()))
    await store.close()


async def test_purge_is_durable(tmp_path):
    store = await reopen(tmp_path)
    old, live = OfferDoc(id="old", valid_to=NOW - 5), OfferDoc(id="live", valid_to=NOW + 5)
    keep = CatalogRecord(meta=CatalogMeta(bpp_id="b", catalog_id="keep"),
                         items=[ItemDoc(bpp_id="b", catalog_id="keep", item_id=f"i{k}", offers=[old, live])
                                for k in range(3)])
    gone = CatalogRecord(meta=CatalogMeta(bpp_id="b", catalog_id="gone", expires_at=NOW - 1))
    await store.replace_catalog(keep)
    await store.replace_catalog(gone)
    assert (await store.purge_expired(NOW)).catalogs == 1
    await crash(store)
    store = await reopen(tmp_path)
    assert await store.get_catalog("b", "gone") is None
    hits = await store.search(Query(limit=10), NOW)
    assert len(hits) == 3 and all([o.id for o in h.item.offers] == ["live"] for h in hits)
    # Republished with the old offer: replaying the earlier purge record must not strip it again.
    await store.replace_catalog(keep)
    await crash(store)
    store = await reopen(tmp_path)
    hits = await store.search(Query(limit=10), NOW)
    assert all([o.id for o in h.item.offers] == ["old", "live"] for h in hits)
    await store.close()


@pytest.mark.parametrize("size", [0, 2_000, 600_000])
async def test_catalog_raw_round_trips(tmp_path, size):
    # The whole catalog (for MERGE) is kept compressed; get_catalog must return it byte for byte.
    raw = os.urandom(size // 2) + b'{"x":1}' * (size // 14)
    rec = CatalogRecord(meta=CatalogMeta(bpp_id="b", catalog_id="c", raw=raw, header=b"{}"),
                        items=[ItemDoc(bpp_id="b", catalog_id="c", item_id="i")])
    store = await reopen(tmp_path)
    await store.replace_catalog(rec)
    assert rec.meta.raw == raw                                  # the caller's record is left alone
    assert (await store.get_catalog("b", "c")).raw == raw
    await crash(store)
    store = await reopen(tmp_path)                              # from the log
    assert (await store.get_catalog("b", "c")) == rec.meta
    await store.close()
    store = await reopen(tmp_path)                              # from the snapshot
    assert (await store.get_catalog("b", "c")) == rec.meta
    await store.close()


async def test_damaged_snapshot_refuses_to_start(tmp_path):
    store = await reopen(tmp_path)
    for rec in _five():
        await store.replace_catalog(rec)
    await store.close()
    snap = list_generations(tmp_path, "snapshot-", ".bin")[-1][1]
    with open(snap, "r+b") as f:
        f.truncate(os.path.getsize(snap) - 10)
    with pytest.raises(StorageCorrupt, match="snapshot"):
        await reopen(tmp_path)


async def test_one_writer_per_directory(tmp_path):
    store = await reopen(tmp_path)
    with pytest.raises(RuntimeError, match="locked"):
        await reopen(tmp_path)
    await store.close()
    store = await reopen(tmp_path)            # free again after close
    await store.close()


async def test_concurrent_replaces_share_fsyncs(tmp_path, monkeypatch):
    store = EmbeddedStorage(tmp_path, fsync=True)
    await store.open()
    calls = 0
    real = os.fsync

    def counting(fd):
        nonlocal calls
        calls += 1
        real(fd)

    monkeypatch.setattr(persist.os, "fsync", counting)
    recs = [make_record(random.Random(i), "b", f"c{i}", 3) for i in range(40)]
    await asyncio.gather(*(store.replace_catalog(x) for x in recs))
    assert 1 <= calls <= 5, calls
    assert (await store.stats()).catalogs == 40
    await store.close()


@pytest.mark.parametrize("cut_off", [True, False])
async def test_disk_error_fails_the_write_and_keeps_earlier_state(tmp_path, monkeypatch, cut_off):
    store = await reopen(tmp_path)
    first, second, third = _five()[:3]
    await store.replace_catalog(first)

    def broken(fd, data):
        os.write(fd, bytes(data)[:10])                 # part of the batch reached the file
        raise OSError(28, "No space left on device")

    def no_truncate(fd, size):
        raise OSError(5, "I/O error")

    monkeypatch.setattr(persist, "write_all", broken)
    if not cut_off:
        monkeypatch.setattr(persist.os, "ftruncate", no_truncate)
    with pytest.raises(OSError, match="No space"):
        await store.replace_catalog(second)
    monkeypatch.undo()
    await assert_state(store, [first])                 # not applied: it was never durable
    if cut_off:
        # The torn batch was cut off: the log is clean and takes writes again.
        assert await store.ready()
        await store.replace_catalog(third)
        survivors = [first, third]
    else:
        # The file may now hold a torn frame: refuse further writes and report not ready.
        assert not await store.ready()
        with pytest.raises(OSError, match="unusable"):
            await store.replace_catalog(third)
        survivors = [first]
    await assert_state(store, survivors)
    await crash(store)
    store = await reopen(tmp_path)
    await assert_state(store, survivors)
    await store.close()


async def test_a_record_that_fails_to_apply_does_not_fail_its_batch(tmp_path, monkeypatch):
    from indexer.embedded.index import Index

    real_put = Index.put

    def put(self, p):
        if p.record.meta.catalog_id == "c2":
            raise ValueError("bad record")
        real_put(self, p)

    monkeypatch.setattr(Index, "put", put)
    store = await reopen(tmp_path)
    recs = _five()
    results = await asyncio.gather(*(store.replace_catalog(x) for x in recs), return_exceptions=True)
    assert [type(r) for r in results] == [type(None)] * 2 + [ValueError] + [type(None)] * 2
    good = recs[:2] + recs[3:]
    await assert_state(store, good)
    await crash(store)
    store = await reopen(tmp_path)                     # replay skips it (logged) instead of refusing to start
    await assert_state(store, good)
    await store.close()


@pytest.mark.slow
async def test_sigkill_loses_no_acked_catalog(tmp_path):
    lines = await asyncio.to_thread(
        spawn_and_kill, "store", tmp_path, lambda ls: sum(x.startswith("ACKED") for x in ls) >= 80)
    acked = [x.split()[1] for x in lines if x.startswith("ACKED")]
    assert len(acked) >= 80
    store = await reopen(tmp_path)
    for cid in acked:
        meta = await store.get_catalog("bpp.crash", cid)
        assert meta is not None, f"ACKed catalog {cid} lost"
    # Nothing damaged: every stored catalog (ACKed or written just before the kill) is exactly what was sent.
    hits = await store.search(Query(limit=1_000_000), NOW)
    by_cat: dict[str, list] = {}
    for h in hits:
        by_cat.setdefault(h.item.catalog_id, []).append(h.item)
    assert set(acked) <= set(by_cat)
    for cid, items in by_cat.items():
        want = crash_record(cid)
        assert sorted(map(plain_json, items), key=lambda i: i.item_id) == sorted(want.items, key=lambda i: i.item_id)
        assert (await store.get_catalog("bpp.crash", cid)).header == cid.encode()
    await store.close()


async def test_failed_log_switch_keeps_the_writes_before_it(tmp_path, monkeypatch):
    store = await reopen(tmp_path)
    real_open = persist.FrameLog._open_gen

    def no_new_file(self, gen):
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(persist.FrameLog, "_open_gen", no_new_file)
    a, b = _five()[:2]
    # Queued in one batch: put a, the snapshot's log switch, put b.
    results = await asyncio.gather(store.replace_catalog(a), store._snapshot(), store.replace_catalog(b),
                                   return_exceptions=True)
    assert results[0] is None and results[2] is None        # both writes are durable and confirmed
    assert isinstance(results[1], OSError)                 # only the snapshot failed
    assert await store.ready()
    await assert_state(store, [a, b])
    monkeypatch.setattr(persist.FrameLog, "_open_gen", real_open)
    await crash(store)
    store = await reopen(tmp_path)
    await assert_state(store, [a, b])
    await store.close()
