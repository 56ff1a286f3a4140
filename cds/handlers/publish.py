"""POST /beckn/catalog/publish (and aliases): verify, check ownership, queue durably, ACK."""

from __future__ import annotations

from aiohttp import web

from cds.auth import require_publisher
from cds.handlers.base import ack, first_time, not_processed, receive
from cds.netguard import check_callback_url
from cds.protocol import PUBLISH_ACTIONS, parse_publish
from cds.services.publish import IngestEntry, publisher_of
from cds.typedefs import INGEST, SETTINGS


class PublishView(web.View):
    async def post(self) -> web.Response:
        settings = self.request.app[SETTINGS]
        inbound = await receive(self.request, actions=PUBLISH_ACTIONS, limit=settings.max_publish_bytes)
        req = parse_publish(inbound.doc, inbound.context)
        require_publisher(inbound.caller, inbound.context, req.catalogs)
        publisher_id, publisher_uri = publisher_of(req)
        field = "context.bpp_uri" if inbound.context.bpp_id is not None else "context.bap_uri"
        callback = check_callback_url(publisher_uri, registered_url=inbound.caller.subscriber.url,
                                      allow_private=settings.allow_private_callbacks, field=field)
        if await first_time(self.request, inbound):
            entry = IngestEntry(publisher_id=publisher_id or inbound.caller.subscriber_id,
                                publisher_uri=publisher_uri, callback_url=callback,
                                body=inbound.body, received_at=inbound.received_at)
            try:
                await self.request.app[INGEST].submit(entry)   # durable before we ACK
            except BaseException:
                await not_processed(self.request, inbound)   # refused (503): a retry must not count as a replay
                raise
        return ack(self.request)
