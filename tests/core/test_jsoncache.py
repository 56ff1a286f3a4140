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


class _Value:
    def __init__(self, size: int, tag: str = "") -> None:
        self.size, self.tag, self.held = size, tag, 0

    def refresh(self, json) -> None:
        pass


class _Holder:
    """A value holding the JSON of other stored bytes, read through the cache (as an item part holds its offers)."""

    def __init__(self, deps: list[bytes], json) -> None:
        self.deps = deps
        self.json = [json(d) for d in deps]
        self.size = 50
        self.held = sum(len(d) + len(j) + ENTRY_OVERHEAD for d, j in zip(deps, self.json))

    def refresh(self, json) -> None:
        self.json = [json(d) for d in self.deps]


def test_a_derived_value_is_kept_by_the_stored_bytes_apart_from_their_json():
    cache = JsonCache(1 << 20)
    packed = rawjson.pack(_doc(5))
    assert cache.derived(packed) is None
    value = _Value(100)
    cache.keep(packed, value)
    assert cache.derived(packed) is value
    assert cache.json(packed) == _doc(5)                # the JSON of equal bytes is another entry
    assert cache.derived(packed) is value
    replaced = _Value(300)
    cache.keep(packed, replaced)                        # a value derived anew takes the place of the old one
    assert cache.derived(packed) is replaced
    assert cache.size_bytes == 2 * (len(packed) + ENTRY_OVERHEAD) + len(_doc(5)) + 300


def test_derived_values_share_the_budget_and_plain_bytes_keep_none():
    packed = [rawjson.pack(_doc(i)) for i in range(1000)]
    entry = len(packed[0]) + 400 + ENTRY_OVERHEAD
    budget = 60 * entry
    cache = JsonCache(budget)
    for i, p in enumerate(packed):
        cache.keep(p, _Value(400))
        cache.json(p)
        assert cache.size_bytes <= budget
    assert cache.derived(packed[-1]) is not None and cache.derived(packed[0]) is None
    plain = _doc(1)
    cache.keep(plain, _Value(10))
    assert cache.derived(plain) is None
    off = JsonCache(0)
    off.keep(packed[0], _Value(10))
    assert off.derived(packed[0]) is None and len(off) == 0


def test_a_derived_value_read_again_survives_a_generation_change():
    packed = [rawjson.pack(_doc(i)) for i in range(1000)]
    cache = JsonCache(40 * (len(packed[0]) + 500 + ENTRY_OVERHEAD))
    hot = _Value(500, "hot")
    cache.keep(packed[0], hot)
    for p in packed[1:]:
        assert cache.derived(packed[0]) is hot
        cache.keep(p, _Value(500))
    assert cache.derived(packed[0]) is hot


def test_json_a_kept_value_holds_is_always_the_cache_s_own_entry_within_the_budget():
    docs = [rawjson.pack(_doc(i)) for i in range(300)]
    keys = [rawjson.pack(_doc(i).replace(b"Connector", b"Station")) for i in range(300)]
    entry = len(docs[0]) + len(_doc(0)) + ENTRY_OVERHEAD
    budget = 30 * entry
    cache = JsonCache(budget)
    held: dict[bytes, _Holder] = {}
    for round_ in range(3):
        for i, key in enumerate(keys):
            deps = [docs[i], docs[(i + 1) % len(docs)], docs[0]]      # docs[0] is shared by every value
            value = cache.derived(key)
            if value is None:
                value = _Holder(deps, cache.json)
                cache.keep(key, value)
            held[key] = value
            assert cache.size_bytes <= budget
            # every value still in the cache holds exactly the JSON objects the cache holds for its deps
            for k in keys[max(0, i - 12):i + 1]:
                v = cache.derived(k)
                if v is not None:
                    assert all(any(j is t.get(d) for t in cache._json) for d, j in zip(v.deps, v.json))


def test_a_value_that_with_the_json_it_holds_would_not_fit_a_generation_is_not_kept():
    big = rawjson.pack(_doc(1) * 20)
    cache = JsonCache(2 * (len(big) + len(_doc(1) * 20) + ENTRY_OVERHEAD) - 10)
    key = rawjson.pack(_doc(2))
    value = _Holder([big], cache.json)
    cache.keep(key, value)
    assert cache.derived(key) is None


def test_a_working_set_of_two_thirds_of_the_budget_read_round_and_round_stays_whole():
    """Replayed requests (the benchmark's mix) read the same documents in turn: with two generations of half the
    budget, a set over half of it missed part of every round."""
    packed = [rawjson.pack(_doc(i)) for i in range(300)]
    entry = len(packed[0]) + len(_doc(0)) + ENTRY_OVERHEAD
    cache = JsonCache(300 * entry * 3 // 2)
    for p in packed:
        cache.json(p)
    misses = cache.misses
    for _ in range(3):
        for p in packed:
            cache.json(p)
    assert cache.misses == misses and cache.size_bytes <= cache.max_bytes
