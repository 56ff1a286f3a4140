"""The ingest entry: what is kept durably for one ACKed publish (the local log and the Redis stream
store the same msgpack bytes), and how a queued publish is read back."""

from __future__ import annotations

from pathlib import Path

import msgspec

from cds.core import errors as E
from cds.core.models import CatalogResult, PublishRequest
from cds.core.protocol import PUBLISH_ACTIONS, parse_context, parse_json, parse_publish


class IngestEntry(msgspec.Struct, kw_only=True):
    """What the ingest log keeps for one ACKed publish."""

    publisher_id: str
    publisher_uri: str | None = None
    callback_url: str | None = None          # base URL; on_catalog_publish is POSTed to {callback_url}/on_catalog_publish
    body: bytes                              # the publish body exactly as received (empty when spooled)
    received_at: float
    spool: str | None = None                 # the file holding the body (docs/decisions.md §P, same machine)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(IngestEntry)


def encode_entry(entry: IngestEntry) -> bytes:
    return _encoder.encode(entry)


def decode_entry(data: bytes) -> IngestEntry:
    """The entry with its body, read back from its spool file when it has one (OSError when it is gone)."""
    entry = _decoder.decode(data)
    if entry.spool is not None and not entry.body:
        with open(entry.spool, "rb") as f:
            entry.body = f.read()
    return entry


def discard_spool(path: str | None) -> None:
    """A spool file nobody will read again: its entry is done (reported and acknowledged), or its publish was
    refused or a replay (docs/decisions.md §P, "Spooled publishes")."""
    if path:
        Path(path).unlink(missing_ok=True)


def parse_entry(entry: IngestEntry, *, clock_skew_s: float) -> PublishRequest:
    """Re-read a queued publish; its context is checked against the time it was received."""
    doc = parse_json(entry.body)
    ctx = parse_context(doc, expected_actions=PUBLISH_ACTIONS, now=entry.received_at, clock_skew_s=clock_skew_s)
    return parse_publish(doc, ctx)


def catalog_id_of(catalog: object, index: int) -> str:
    """The id a per-catalog result is reported under (its position when it has none)."""
    cid = catalog.get("beckn:id", catalog.get("id")) if isinstance(catalog, dict) else None
    return cid if isinstance(cid, str) else f"catalogs[{index}]"


def rejected_all(req: PublishRequest, message: str) -> list[CatalogResult]:
    """Every catalog of a publish REJECTED for a reason that is not the catalog's fault."""
    return [CatalogResult(catalog_id=catalog_id_of(c, i), status="REJECTED",
                          error={"code": E.NET_INTERNAL_ERROR, "message": message[:500]})
            for i, c in enumerate(req.catalogs)]
