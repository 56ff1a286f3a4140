"""Packed stored JSON (cds.core.rawjson) and the accessors every reader goes through (cds.core.documents)."""

from __future__ import annotations

import zlib
from pathlib import Path

import orjson
import pytest

from cds.core import rawjson
from cds.core.documents import ItemDoc, OfferDoc, item_json, offer_json, plain_json
from cds.core.filters import compile_filter
from cds.core.documents import CatalogMeta

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "UBC_catalog_publish_ev-charging-catalog-publish.json"


def _published() -> tuple[list[bytes], list[bytes]]:
    cat = orjson.loads(FIXTURE.read_bytes())["message"]["catalogs"][0]
    return [orjson.dumps(i) for i in cat["beckn:items"]], [orjson.dumps(o) for o in cat["beckn:offers"]]


def test_pack_round_trips_and_shrinks_published_documents():
    items, offers = _published()
    for raw in items + offers:
        # the same document with other ids and values, as a real publisher's would differ from the example
        raw = raw.replace(b"ecopower", b"voltline").replace(b"60", b"42")
        packed = rawjson.pack(raw)
        assert rawjson.is_packed(packed) and len(packed) < len(raw) // 3
        assert rawjson.unpack(packed) == raw
        assert rawjson.pack(packed) is packed               # packing twice changes nothing


@pytest.mark.parametrize("raw", [b"", b"{}", b'{"a":1}'])
def test_tiny_documents_stay_plain_and_read_back(raw):
    assert rawjson.pack(raw) == raw and rawjson.unpack(raw) == raw


def test_plain_json_is_never_taken_for_packed():
    # every JSON text starts with an object, array, scalar or whitespace: never with the NUL marker
    for raw in (b'{"x":1}', b"[1]", b" {}", b'"s"', b"1", b"null"):
        assert not rawjson.is_packed(raw) and rawjson.unpack(raw) == raw


def test_a_truncated_packed_document_is_an_error_not_garbage():
    packed = rawjson.pack(_published()[0][0])
    with pytest.raises((ValueError, zlib.error)):
        rawjson.unpack(packed[:len(packed) // 2])


def test_a_document_packed_by_an_unknown_dictionary_version_is_a_clear_error():
    packed = rawjson.pack(_published()[0][0])
    with pytest.raises(ValueError, match="version 9"):
        rawjson.unpack(packed[:1] + bytes((9,)) + packed[2:])


def test_released_dictionary_is_pinned():
    # packed data in snapshots needs version 1 byte for byte: editing the file must fail loudly
    assert zlib.crc32(rawjson.dictionary(1)) == 0x92246231


def test_accessors_read_either_form():
    raw_item, raw_offer = _published()[0][0], _published()[1][0]
    offer = OfferDoc(id="o", raw=rawjson.pack(raw_offer))
    item = ItemDoc(bpp_id="b", catalog_id="c", item_id="i", offers=[offer], raw=rawjson.pack(raw_item))
    assert item_json(item) == raw_item and offer_json(offer) == raw_offer
    plain = plain_json(item)
    assert plain.raw == raw_item and plain.offers[0].raw == raw_offer
    assert item_json(plain) == raw_item and offer_json(plain.offers[0]) == raw_offer
    assert rawjson.is_packed(item.raw)                      # the stored one is left as it was


def test_filters_on_untyped_paths_read_packed_documents():
    raw = orjson.dumps({"beckn:id": "i", "beckn:descriptor": {"schema:name": "Hub one"},
                        "beckn:itemAttributes": {"connectorFormat": "CABLE"}})
    offer_raw = orjson.dumps({"beckn:id": "o", "beckn:descriptor": {"schema:name": "Night tariff"}})
    offer = OfferDoc(id="o", raw=rawjson.pack(offer_raw))
    packed = ItemDoc(bpp_id="b", catalog_id="c", item_id="i", offers=[offer], raw=rawjson.pack(raw))
    meta = CatalogMeta(bpp_id="b", catalog_id="c")
    for expr, want in (("$[?(@.beckn:itemAttributes.connectorFormat == 'CABLE')]", True),
                       ("$[?(@.beckn:descriptor.schema:name == 'Hub two')]", False),
                       ("$.catalogs[*].offers[?(@.beckn:descriptor.schema:name == 'Night tariff')]", True),
                       ("$[?(@.beckn:offers.beckn:descriptor.schema:name == 'Day tariff')]", False)):
        f = compile_filter(expr, tz="Asia/Kolkata", status_fresh_s=900)
        assert f.predicate(packed, meta, 0.0) is want
        assert f.predicate(plain_json(packed), meta, 0.0) is want


def test_documents_packed_with_the_full_window_and_with_the_packers_read_back_alike():
    # stored data may come from a packer with the 32 KB window (snapshots written before it shrank) or the
    # 16 KB one: one unpack reads both, and the packer's output reads with a 32 KB-window inflater
    items, offers = _published()
    zd = rawjson.dictionary(1)
    for raw in items + offers:
        full = zlib.compressobj(3, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY, zd)
        old = b"\x00\x01" + full.compress(raw) + full.flush()
        assert rawjson.unpack(old) == raw
        new = rawjson.pack(raw)
        inflater = zlib.decompressobj(-15, zd)
        assert inflater.decompress(new[2:]) == raw and inflater.eof
