"""One delivered entry of the publish stream, as the ingest worker (`indexer.ingest.worker`) holds it: its
partition, id, fields and delivery count, the decoded entry (or why it could not be decoded) and the ids of the
catalogs it writes - its ordering keys (per-catalog order: docs/decisions.md §S Publish).
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from indexer.ingest.entry import IngestEntry, catalog_id_of, decode_entry
from indexer.ingest.stream import as_str


class Delivery(msgspec.Struct):
    """One delivered stream entry."""
    partition: int
    id: str
    fields: dict
    deliveries: int = 1
    entry: IngestEntry | None = None
    error: str | None = None                   # why `entry` could not be decoded
    keys: list[str] = []                       # the catalogs it writes (ordering keys)
    fresh: bool = False                        # read as new (">"): never delivered before, so never indexed


def decode_delivery(it: Delivery) -> None:
    """Decode the entry and find the ids of the catalogs it writes (as `CatalogIndexer.index` names them).
    An entry that cannot be parsed writes nothing and needs no order: it goes to the dead letters."""
    raw = it.fields.get(b"e")
    if raw is None:
        return
    try:
        it.entry = decode_entry(raw)
    except Exception as e:  # noqa: BLE001 - whatever the bytes are, they must not block the partition
        it.error = f"undecodable entry: {e}"
        return
    try:
        it.keys = _catalog_ids(_ids_dec.decode(it.entry.body))
        return
    except (msgspec.ValidationError, msgspec.DecodeError):
        pass        # not the usual shape: read it whole below (the same answer, or none for bad JSON)
    try:
        doc = orjson.loads(it.entry.body)
        msg = doc.get("message") if isinstance(doc, dict) else None
        cats = msg.get("catalogs") if isinstance(msg, dict) else None
        if cats is None and isinstance(doc, dict):
            cats = doc.get("catalogs")
        if isinstance(cats, list):
            it.keys = sorted({catalog_id_of(c, k) for k, c in enumerate(cats)})
    except orjson.JSONDecodeError:
        pass


class _CatalogIds(msgspec.Struct):
    beckn_id: Any = msgspec.field(default=msgspec.UNSET, name="beckn:id")
    id: Any = None


class _IdsMessage(msgspec.Struct):
    catalogs: list[_CatalogIds] | None = None


class _PublishIds(msgspec.Struct):
    """Only the catalog ids of a publish body: decoding skips everything else (the body is parsed whole
    once more when it is indexed; doing it twice with orjson was a few percent of the indexer's CPU)."""
    message: _IdsMessage | None = None
    catalogs: list[_CatalogIds] | None = None


_ids_dec = msgspec.json.Decoder(_PublishIds)


def _catalog_ids(doc: _PublishIds) -> list[str]:
    cats = doc.message.catalogs if doc.message is not None and doc.message.catalogs is not None else doc.catalogs
    out = set()
    for k, c in enumerate(cats or ()):
        cid = c.id if c.beckn_id is msgspec.UNSET else c.beckn_id
        out.add(cid if isinstance(cid, str) else f"catalogs[{k}]")
    return sorted(out)


def partition_of(stream_name: Any) -> int:
    return int(as_str(stream_name).rsplit(":p", 1)[1])
