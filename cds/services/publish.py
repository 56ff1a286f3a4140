"""Publish: check what a verified publish may touch, queue it durably, and let the caller ACK.

Indexing and the on_catalog_publish report happen later, off the request (`indexer.ingest`); the
queue sits in between so that a process dying right after the ACK loses nothing (docs/decisions.md §4).
"""

from __future__ import annotations

from typing import Protocol

from cds.config import Settings
from cds.core.models import PublishRequest
from cds.core.protocol import parse_publish
from cds.trust.auth import Inbound, require_publisher, require_role
from cds.trust.netguard import callback_reach, check_callback_url
from cds.trust.replay import ReplayStore, first_time, not_processed
from indexer.ingest.entry import IngestEntry


class IngestQueue(Protocol):
    async def submit(self, entry: IngestEntry) -> object: ...


class PublishService:
    def __init__(self, ingest: IngestQueue, replay: ReplayStore, settings: Settings) -> None:
        self.ingest = ingest
        self.replay = replay
        self._settings = settings

    async def accept(self, inbound: Inbound) -> bool:
        """Ownership, callback address, then durable queueing. Returns when the publish may be ACKed (True:
        queued); raises BecknError (NACK) otherwise. A replay within its signature's validity is ACKed, not
        queued (False)."""
        require_role(inbound.caller, "BPP", "publish catalogs")   # authorisation before schema (§12)
        req = parse_publish(inbound.doc, inbound.context)
        require_publisher(inbound.caller, inbound.context, req.catalogs)
        publisher_id, publisher_uri = publisher_of(req)
        field = "context.bpp_uri" if inbound.context.bpp_id is not None else "context.bap_uri"
        callback = check_callback_url(publisher_uri, registered_url=inbound.caller.subscriber.url,
                                      reach=callback_reach(self._settings), field=field)
        if not await first_time(self.replay, inbound):
            return False
        entry = IngestEntry(publisher_id=publisher_id or inbound.caller.subscriber_id, publisher_uri=publisher_uri,
                            callback_url=callback, body=inbound.body, received_at=inbound.received_at,
                            spool=inbound.spool)
        try:
            await self.ingest.submit(entry)   # durable before we ACK
        except BaseException:
            await not_processed(self.replay, inbound)   # refused (503): a retry must not count as a replay
            raise
        return True


def publisher_of(req: PublishRequest) -> tuple[str | None, str | None]:
    """(publisher id, publisher base URI) from the context: bpp_* or, when absent, bap_*."""
    ctx = req.context
    if ctx.bpp_id is not None:
        return ctx.bpp_id, ctx.bpp_uri
    return ctx.bap_id, ctx.bap_uri
