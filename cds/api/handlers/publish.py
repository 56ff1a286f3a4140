"""POST /beckn/catalog/publish (and aliases): verify, then hand over to the publish service; ACK once queued."""

from __future__ import annotations

from aiohttp import web

from cds.api.appkeys import PUBLISH, SETTINGS
from cds.api.handlers.base import ack, receive
from cds.core.protocol import PUBLISH_ACTIONS
from indexer.ingest.entry import discard_spool


class PublishView(web.View):
    async def post(self) -> web.Response:
        settings = self.request.app[SETTINGS]
        inbound = await receive(self.request, actions=PUBLISH_ACTIONS, limit=settings.max_publish_bytes, skeleton=True)
        queued = False
        try:
            queued = await self.request.app[PUBLISH].accept(inbound)
        finally:
            if not queued:
                discard_spool(inbound.spool)      # refused or a replay: nobody will read it
        return ack(self.request)
