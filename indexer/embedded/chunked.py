"""Put records with their items in chunks (docs/decisions.md §P, "Big catalogs in the log").

A follower (a serving worker's read-only index) decodes every put record the writer logs. Decoding a
50,000-item record, even lazily (one `msgspec.Raw` per item), is one C call holding the GIL, and so every
serving request of that worker, for ~90 ms. The writer therefore logs a put of more than `PUT_CHUNK` items
as a `putc` record: the catalog's meta, then the items as msgpack byte strings of `PUT_CHUNK` items each.
A follower decodes the outer record (a few hundred views), then one chunk per call, letting go of the GIL
in between. Still one log frame: the record is applied, and flipped visible,
as one catalog (no query sees half of it). Plain `put` records (older logs, small catalogs) still load.
"""

from __future__ import annotations

import msgspec

from cds.core.documents import CatalogMeta, CatalogRecord, ItemDoc

PUT_CHUNK = 128                 # items per chunk: decoding one takes ~1-5 ms (loadtests.bench_follow)


class PutChunks(msgspec.Struct, tag="putc", array_like=True):
    """A `putc` record. Each chunk is the msgpack of a list of items, stored as a bin (bytes): finding where a
    chunk ends costs nothing, so decoding the outer record is one cheap call (nested arrays would be walked
    to the end, ~80 ms for 50,000 items), and decoded chunks are views into the log record (no copy)."""
    meta: CatalogMeta
    chunks: list[memoryview]
    raw_z: bytes = b""

    def record(self) -> CatalogRecord:
        return CatalogRecord(meta=self.meta, items=[d for chunk in self.chunks for d in decode_chunk(chunk)])


_encode = msgspec.msgpack.Encoder().encode
_chunk_decoder = msgspec.msgpack.Decoder(list[ItemDoc])


def chunked(record: CatalogRecord, raw_z: bytes) -> PutChunks | None:
    """The `putc` form of a put record, or None when it is small enough to log as a plain `put`."""
    items = record.items
    if len(items) <= PUT_CHUNK:
        return None
    return PutChunks(meta=record.meta, raw_z=raw_z,
                     chunks=[memoryview(_encode(items[i:i + PUT_CHUNK])) for i in range(0, len(items), PUT_CHUNK)])


def decode_chunk(chunk: memoryview) -> list[ItemDoc]:
    return _chunk_decoder.decode(chunk)
