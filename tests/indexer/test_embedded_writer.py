"""The writer without a searchable copy (`EmbeddedStorage(searchable=False)`, indexer/embedded/writer.py), as the
ingest process of `cds serve --workers N` runs it: what its followers serve, what MERGE reads, what purges
remove and what its snapshots and logs reload must be exactly what a searchable writer gives."""

from __future__ import annotations

import random

import msgspec
import orjson

from cds.core.documents import item_json, offer_json
from cds.core.query import Query
from indexer.embedded import EmbeddedStorage
from indexer.embedded.follower import FollowerStorage
from indexer.embedded.positions import FollowerPositions
from indexer.embedded.writer import CatalogTable
from tests.indexer.test_embedded_store import NOW, make_record


def _records(seed: int) -> list:
    r = random.Random(seed)
    recs = [make_record(r, f"bpp{c % 2}", f"cat{c}", r.randint(1, 300), tag="v1") for c in range(8)]
    for x in recs:
        x.meta.raw = orjson.dumps({"beckn:id": x.meta.catalog_id, "n": len(x.items)})
    recs[4].meta.expires_at = NOW - 1        # purged whole (make_record's offers include expired ones too)
    return recs


async def _served(follower: FollowerStorage) -> dict:
    hits = await follower.search(Query(limit=100_000), NOW - 10)     # (before anything expires)
    return {h.item.key: (item_json(h.item), [offer_json(o) for o in h.item.offers], h.catalog.header) for h in hits}


async def _run(d, searchable: bool, recs: list) -> list:
    """Publish, republish, delete and purge through a writer with a follower; what is served at each step."""
    writer = EmbeddedStorage(d, fsync=False, followers=FollowerPositions(d), searchable=searchable)
    await writer.open()
    follower = FollowerStorage(d)
    await follower.open()
    seen = []
    try:
        for x in recs:
            await writer.replace_catalog(msgspec.structs.replace(x, items=list(x.items)))
        seen.append(await _served(follower))
        newer = make_record(random.Random(9), recs[1].meta.bpp_id, recs[1].meta.catalog_id, 5, tag="v2")
        await writer.replace_catalog(newer)
        assert await writer.delete_catalog(recs[2].meta.bpp_id, recs[2].meta.catalog_id)
        seen.append(await _served(follower))
        merge_raw = (await writer.get_catalog(recs[3].meta.bpp_id, recs[3].meta.catalog_id)).raw
        purged = await writer.purge_expired(NOW)
        seen.append(await _served(follower))
        seen.append((merge_raw, purged, await writer.stats()))
    finally:
        await follower.close()
        await writer.close()                 # a snapshot
    writer = EmbeddedStorage(d, fsync=False, searchable=searchable)
    await writer.open()
    late = FollowerStorage(d)
    await late.open()
    try:
        seen.append(await _served(late))
        seen.append(await writer.stats())
        assert isinstance(writer._index, CatalogTable) is not searchable
    finally:
        await late.close()
        await writer.close()
    return seen


async def test_a_writer_keeping_encoded_catalogs_gives_followers_what_a_searchable_one_does(tmp_path):
    recs = _records(21)
    want = await _run(tmp_path / "searchable", True, recs)
    got = await _run(tmp_path / "table", False, _records(21))
    assert want[0] and want[1] != want[0] and want[2] != want[1]      # the steps changed something
    assert want[3][1].catalogs and want[3][1].offers                  # purged catalogs and offers
    assert got == want
