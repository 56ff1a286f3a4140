"""The records of the embedded index's write-ahead log and snapshots (`indexer.embedded.store`): msgpack, one per
CRC frame (`indexer.embedded.persist`). A put carries the catalog with its items' JSON packed; a big catalog's
put is logged in chunks (`indexer.embedded.chunked`)."""

from __future__ import annotations

from typing import Union

import msgspec

from cds.core.documents import CatalogRecord
from indexer.embedded.chunked import PutChunks, chunked


class _Put(msgspec.Struct, tag="put", array_like=True):
    record: CatalogRecord                  # meta.raw empty ...
    raw_z: bytes = b""                     # ... it travels zlib-compressed here


class _Delete(msgspec.Struct, tag="del", array_like=True):
    bpp_id: str
    catalog_id: str


class _Purge(msgspec.Struct, tag="purge", array_like=True):
    bpp_id: str
    catalog_id: str
    now: float


class _SnapHead(msgspec.Struct, tag="head", array_like=True):
    version: int
    catalogs: int


class _SnapEnd(msgspec.Struct, tag="end", array_like=True):
    catalogs: int


_Op = Union[_Put, PutChunks, _Delete, _Purge, _SnapHead, _SnapEnd]
_encode = msgspec.msgpack.Encoder().encode
_decoder = msgspec.msgpack.Decoder(_Op)


def encode_op(op: _Op) -> bytes:
    """A log record's bytes; a big catalog's put in chunks (`indexer.embedded.chunked`, docs/decisions.md §P)."""
    if isinstance(op, _Put):
        return _encode(chunked(op.record, op.raw_z) or op)
    return _encode(op)


def put_bytes(record: CatalogRecord, raw_z: bytes) -> bytes:
    return encode_op(_Put(record=record, raw_z=raw_z))


def put_record(payload: bytes) -> CatalogRecord:
    op = _decoder.decode(payload)
    return op.record() if isinstance(op, PutChunks) else op.record
