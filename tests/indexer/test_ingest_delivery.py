"""indexer.ingest.delivery: a delivered entry's ordering keys are the ids its catalogs are reported under
(`catalog_id_of`), whichever decoding path found them; an entry that cannot be read writes nothing."""

from __future__ import annotations

import orjson
import pytest

from indexer.ingest.delivery import Delivery, decode_delivery
from indexer.ingest.entry import IngestEntry, catalog_id_of, encode_entry


def delivered(body: bytes) -> Delivery:
    entry = IngestEntry(publisher_id="bpp.example.com", body=body, received_at=1.0)
    it = Delivery(partition=0, id="1-0", fields={b"e": encode_entry(entry)})
    decode_delivery(it)
    return it


@pytest.mark.parametrize("doc", [
    {"message": {"catalogs": [{"beckn:id": "b"}, {"id": "a"}, {"beckn:id": 5}, {}]}},    # the usual shape
    {"catalogs": [{"id": "z"}, {"beckn:id": "y", "id": "ignored"}]},                       # catalogs at the top
    {"message": {"catalogs": ["not an object", {"beckn:id": "c"}]}},                       # read whole instead
    {"message": {"catalogs": [{"beckn:id": "same"}, {"beckn:id": "same"}]}},               # one key per catalog
])
def test_keys_are_the_reported_catalog_ids(doc: dict) -> None:
    cats = doc.get("message", doc)["catalogs"]
    it = delivered(orjson.dumps(doc))
    assert it.entry is not None and it.error is None
    assert it.keys == sorted({catalog_id_of(c, k) for k, c in enumerate(cats)})


def test_a_body_that_is_not_json_writes_no_catalog() -> None:
    it = delivered(b'{"message": ')
    assert it.entry is not None and it.keys == []


def test_undecodable_and_missing_entries() -> None:
    bad = Delivery(partition=0, id="1-0", fields={b"e": b"\xff not msgpack"})
    decode_delivery(bad)
    assert bad.entry is None and bad.error.startswith("undecodable entry") and bad.keys == []
    gone = Delivery(partition=0, id="1-0", fields={})
    decode_delivery(gone)
    assert gone.entry is None and gone.error is None and gone.keys == []
