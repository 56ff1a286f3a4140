"""The index writer's own copy when serving workers follow its log (`cds serve --workers N`, docs/decisions.md §P).

The ingest process searches nothing: it needs its catalogs only for snapshots, MERGE publishes (the raw catalog)
and expiry purges. `CatalogTable` stands in for `indexer.embedded.index.Index` there and keeps each catalog as
its encoded log record (packed JSON, no document objects, postings, columns or grid), zlib-compressed (a third
of its size: the log repeats shared offers and field names per item), so a machine holds N searchable copies
instead of N + 1. A record is decoded only when a purge strips offers from it or a snapshot is written.
It offers only what `EmbeddedStorage`'s write path, replay, snapshots and catalog-level reads use.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Callable

from cds.core.documents import CatalogMeta, CatalogRecord, upgrade_terms
from indexer.embedded.compact import pack_documents
from indexer.embedded.index import offer_end

Encode = Callable[[CatalogRecord, bytes], bytes]        # (record, raw_z) -> a put record's bytes
Decode = Callable[[bytes], CatalogRecord]


class Stored:
    """One catalog: its meta (for expiry and listings) and its put record as logged, compressed (`blob`)."""

    __slots__ = ("key", "meta", "raw_z", "offer_end", "blob", "items", "_decode")

    def __init__(self, meta: CatalogMeta, raw_z: bytes, blob: bytes, items: int, end: float | None,
                 decode: Decode) -> None:
        self.key, self.meta, self.raw_z, self.blob = meta.key, meta, raw_z, blob
        self.items, self.offer_end, self._decode = items, end, decode

    @property
    def record(self) -> CatalogRecord:
        """The catalog decoded (a purge); fresh objects every time."""
        return self._decode(zlib.decompress(self.blob))


@dataclass
class TablePrepared:
    record: CatalogRecord
    raw_z: bytes
    payload: bytes                    # the put record to log (encoded once: logged, and kept as `blob`)
    blob: bytes
    offer_end: float | None


class CatalogTable:
    def __init__(self, encode: Encode, decode: Decode) -> None:
        self._encode, self._decode = encode, decode
        self.catalogs: dict[tuple[str, str], Stored] = {}
        self.item_count = 0

    def prepare(self, record: CatalogRecord, raw_z: bytes, *, copy: bool = True) -> TablePrepared:
        for doc in record.items:
            upgrade_terms(doc)          # as Index.prepare: records logged before terms were stored
        pack_documents(record.items)    # (already packed by the writer; records of older logs get packed here)
        payload = self._encode(record, raw_z)
        return TablePrepared(record=record, raw_z=raw_z, payload=payload, blob=zlib.compress(payload, 1),
                             offer_end=offer_end(record.items))

    def put(self, p: TablePrepared) -> None:
        meta = p.record.meta
        self._drop(meta.key)
        self.catalogs[meta.key] = Stored(meta, p.raw_z, p.blob, len(p.record.items), p.offer_end, self._decode)
        self.item_count += len(p.record.items)

    def delete(self, key: tuple[str, str]) -> bool:
        return self._drop(key)

    def _drop(self, key: tuple[str, str]) -> bool:
        old = self.catalogs.pop(key, None)
        if old is not None:
            self.item_count -= old.items
        return old is not None

    def replace_docs(self, entry: Stored, record: CatalogRecord) -> None:
        """A purge stripped offers: keep the record with the documents left."""
        entry.blob = zlib.compress(self._encode(record, entry.raw_z), 1)
        entry.offer_end = offer_end(record.items)

    def snapshot_rows(self) -> list[bytes]:
        """The put records to snapshot, compressed (`snapshot_record` is the record itself)."""
        return [e.blob for e in self.catalogs.values()]

    def sizes(self) -> dict[str, Any]:
        return {"catalogs": len(self.catalogs), "items": self.item_count,
                "record_bytes": sum(len(e.blob) for e in self.catalogs.values())}


def snapshot_record(row: bytes) -> bytes:
    return zlib.decompress(row)
