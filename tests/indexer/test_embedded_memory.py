"""The embedded index's compact storage (docs/decisions.md §P): item and offer JSON kept packed
(cds.core.rawjson), also when loading snapshots and logs written before it was (plain JSON); equal values
shared within a catalog; postings of a few ids kept as tuples."""

from __future__ import annotations

import copy
import random

import orjson
import pytest

from cds.core import rawjson
from cds.core.documents import CatalogMeta, CatalogRecord, ItemDoc, OfferDoc, item_json, offer_json
from cds.core.query import Query
from indexer.embedded import EmbeddedStorage
from indexer.embedded.follower import FollowerStorage
from indexer.embedded.compact import PACK_THREAD_MIN
from indexer.embedded.index import _post_add, _post_remove
from indexer.embedded.narrow import _as_set
from indexer.embedded.persist import frame, gen_path, list_generations
from indexer.embedded.store import _SNAP, _SUFFIX_SNAP, _SUFFIX_WAL, _WAL, _encode, _Put, _SnapEnd, _SnapHead

NOW = 1_800_000_000.0


def _record(catalog_id: str, n: int) -> CatalogRecord:
    """A catalog as normalisation makes it: plain compact JSON, offers shared by the items they name."""
    ids = [f"{catalog_id}-i{k}" for k in range(n)]
    offer = OfferDoc(id=f"{catalog_id}-o", item_ids=ids, price=18.0, currency="INR", raw=orjson.dumps(
        {"beckn:id": f"{catalog_id}-o", "beckn:items": ids, "beckn:descriptor": {"schema:name": "Per-kWh tariff"},
         "beckn:price": {"currency": "INR", "value": 18.0}}))
    items = [ItemDoc(bpp_id="bpp", catalog_id=catalog_id, item_id=i, lon=77.0 + k / 100, lat=float("12.0"), offers=[offer],
                     raw=orjson.dumps({"beckn:id": i, "beckn:descriptor": {"schema:name": f"DC Fast Charger {k}"},
                                       "beckn:itemAttributes": {"connectorType": "CCS2", "maxPowerKW": 60}}))
             for k, i in enumerate(ids)]
    return CatalogRecord(meta=CatalogMeta(bpp_id="bpp", catalog_id=catalog_id, header=b'{"beckn:id":"x"}'),
                         items=items)


def _published(records: list[CatalogRecord]) -> dict[str, tuple[bytes, list[bytes]]]:
    return {d.item_id: (d.raw, [o.raw for o in d.offers]) for r in records for d in r.items}


def _write_old_files(directory, snap: list[CatalogRecord], logged: list[CatalogRecord]) -> None:
    """A snapshot (generation 1) and a later log, as versions before packing wrote them: same frames and
    records, plain JSON in ItemDoc.raw / OfferDoc.raw."""
    directory.mkdir(parents=True, exist_ok=True)
    head = [frame(_encode(_SnapHead(version=1, catalogs=len(snap))))]
    body = [frame(_encode(_Put(record=r))) for r in snap]
    tail = [frame(_encode(_SnapEnd(catalogs=len(snap))))]
    gen_path(directory, _SNAP, _SUFFIX_SNAP, 1).write_bytes(b"".join(head + body + tail))
    gen_path(directory, _WAL, _SUFFIX_WAL, 1).write_bytes(b"".join(frame(_encode(_Put(record=r))) for r in logged))


async def _assert_served(storage, want: dict[str, tuple[bytes, list[bytes]]]) -> None:
    hits = await storage.search(Query(limit=1000), NOW)
    assert {h.item.item_id for h in hits} == set(want)
    for h in hits:
        raw, offers = want[h.item.item_id]
        assert rawjson.is_packed(h.item.raw)                         # held packed in memory ...
        assert item_json(h.item) == raw                              # ... read back as published
        assert [offer_json(o) for o in h.item.offers] == offers


async def test_old_plain_snapshot_and_log_load_packed_and_the_next_snapshot_keeps_them_packed(tmp_path):
    snap, logged = [_record("c1", 30), _record("c2", 5)], [_record("c3", 12)]
    want = _published(snap + logged)
    _write_old_files(tmp_path, copy.deepcopy(snap), copy.deepcopy(logged))
    follower = FollowerStorage(tmp_path)            # a serving worker loads the same old files
    await follower.open()
    store = EmbeddedStorage(tmp_path, fsync=False)
    await store.open()
    try:
        await _assert_served(store, want)
        await _assert_served(follower, want)
        hits = await store.search(Query(limit=1000), NOW)
        shared = {id(o) for h in hits if h.item.catalog_id == "c1" for o in h.item.offers}
        assert len(shared) == 1                     # one offer object per catalog, as before packing
    finally:
        await follower.close()
        await store.close()
    newest = list_generations(tmp_path, _SNAP, _SUFFIX_SNAP)[-1][1]
    assert b"DC Fast Charger" not in newest.read_bytes()     # rewritten packed
    store = EmbeddedStorage(tmp_path, fsync=False)
    await store.open()
    await _assert_served(store, want)
    await store.close()


@pytest.mark.parametrize("n", [1, PACK_THREAD_MIN - 1, PACK_THREAD_MIN, 300])   # packed on the loop or in a thread
async def test_a_publish_is_stored_packed_and_answers_as_published(tmp_path, n):
    rec = _record("c1", n)
    want = _published([rec])
    raw = rec.meta.raw = orjson.dumps({"beckn:id": "c1", "beckn:items": [orjson.loads(d.raw) for d in rec.items]})
    store = EmbeddedStorage(tmp_path, fsync=False)
    await store.open()
    try:
        await store.replace_catalog(rec)
        await _assert_served(store, want)
        assert (await store.get_catalog(rec.meta.bpp_id, rec.meta.catalog_id)).raw == raw     # what MERGE reads
    finally:
        await store.close()


def test_postings_hold_exactly_the_added_ids_across_every_form():
    rng = random.Random(11)
    post: dict = {}
    want: dict[str, set[int]] = {}
    for _ in range(5000):
        value, i = f"v{rng.randrange(4)}", rng.randrange(24)
        if rng.random() < 0.55 and i not in want.get(value, set()):
            _post_add(post, value, i)
            want.setdefault(value, set()).add(i)
        else:
            _post_remove(post, value, i)
            want.get(value, set()).discard(i)
        want = {v: ids for v, ids in want.items() if ids}
        assert {v: set(_as_set(p)) for v, p in post.items()} == want
        for p in post.values():           # one id is an int, a few a tuple (no duplicates), many a set
            assert isinstance(p, int) or 1 < len(p) and len(set(p)) == len(p)


async def test_items_share_equal_offer_lists_and_numbers(tmp_path):
    rec = _record("c1", 6)
    store = EmbeddedStorage(tmp_path, fsync=False)
    await store.open()
    try:
        await store.replace_catalog(rec)
        docs = [h.item for h in await store.search(Query(limit=100), NOW)]
        assert len({id(d.offers) for d in docs}) == 1
        assert len({id(d.lat) for d in docs}) == 1 and {d.lat for d in docs} == {12.0}
    finally:
        await store.close()
