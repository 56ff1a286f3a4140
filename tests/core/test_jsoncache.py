"""cds.core.jsoncache: unpacked JSON of stored documents, by their stored bytes, within a byte budget."""

from __future__ import annotations

import orjson

from cds.core import rawjson
from cds.core.jsoncache import ENTRY_OVERHEAD, JsonCache


def _doc(i: int) -> bytes:
    return orjson.dumps({"beckn:id": f"item-{i}", "beckn:descriptor": {"schema:name": "Connector " * 20 + str(i)}})


def test_cached_json_is_the_unpacked_json_and_a_second_read_is_a_hit():
    cache = JsonCache(1 << 20)
    raw = _doc(1)
    packed = rawjson.pack(raw)
    assert rawjson.is_packed(packed)
    assert cache.json(packed) == raw and (cache.hits, cache.misses) == (0, 1)
    assert cache.json(packed) == raw and (cache.hits, cache.misses) == (1, 1)
    # equal bytes (another object, e.g. read back from a snapshot) unpack equal: the same entry serves them
    assert cache.json(bytes(bytearray(packed))) == raw and cache.hits == 2


def test_plain_stored_json_is_returned_as_it_is_and_never_held():
    cache = JsonCache(1 << 20)
    raw = _doc(2)
    assert cache.json(raw) is raw
    assert len(cache) == 0


def test_a_republished_document_reads_its_new_json():
    cache = JsonCache(1 << 20)
    old, new = rawjson.pack(_doc(3)), rawjson.pack(_doc(3).replace(b"Connector", b"Socket"))
    assert cache.json(old) == _doc(3)
    assert cache.json(new) == _doc(3).replace(b"Connector", b"Socket")


def test_memory_stays_within_the_budget_and_recent_documents_stay():
    packed = [rawjson.pack(_doc(i)) for i in range(2000)]
    entry = len(packed[0]) + len(_doc(0)) + ENTRY_OVERHEAD
    budget = 100 * entry
    cache = JsonCache(budget)
    for p in packed:
        cache.json(p)
        assert cache.size_bytes <= budget
    assert 0 < len(cache) <= 100
    misses = cache.misses
    for p in packed[-40:]:              # the most recent documents are still there
        cache.json(p)
    assert cache.misses == misses


def test_a_document_read_again_survives_a_generation_change():
    packed = [rawjson.pack(_doc(i)) for i in range(1000)]
    entry = len(packed[0]) + len(_doc(0)) + ENTRY_OVERHEAD
    cache = JsonCache(40 * entry)
    hot = packed[0]
    for p in packed[1:]:
        cache.json(hot)                 # a popular station, read between every other one
        cache.json(p)
    misses = cache.misses
    cache.json(hot)
    assert cache.misses == misses


def test_zero_budget_caches_nothing():
    cache = JsonCache(0)
    packed = rawjson.pack(_doc(4))
    assert cache.json(packed) == _doc(4) and cache.json(packed) == _doc(4)
    assert len(cache) == 0
