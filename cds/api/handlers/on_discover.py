"""POST /beckn/on_discover: fan-out replies from BPPs.

Verified first (an unsigned or badly signed reply is a 401 before anything else, docs/decisions.md §17), then the
signer must be `context.bpp_id` (401 AUT_UNAUTHORIZED_ACTION). `Fanout.accept_reply` does the rest: a reply
for no pending request, or from a BPP that was not asked, is a 400 CTX_TRANSACTION_ID_UNKNOWN (§8.9); an
accepted, late (§8.19) or duplicate reply is ACKed (only accepted ones are merged).
"""

from __future__ import annotations

from aiohttp import web

from cds.trust.auth import require_bpp
from cds.api.handlers.base import ack, receive
from cds.api.appkeys import FANOUT, SETTINGS


class OnDiscoverView(web.View):
    async def post(self) -> web.Response:
        settings = self.request.app[SETTINGS]
        inbound = await receive(self.request, actions={"on_discover"}, limit=settings.max_publish_bytes)
        require_bpp(inbound.caller, inbound.context)
        await self.request.app[FANOUT].accept_reply(inbound.doc, inbound.context, inbound.caller)
        return ack(self.request)
