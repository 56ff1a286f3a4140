"""POST /beckn/on_discover: fan-out replies from BPPs.

Verified first (an unsigned or badly signed reply is a 401 before anything else, DESIGN §8.17);
a reply for no pending request, or from a BPP that was not asked, is a 400
CTX_TRANSACTION_ID_UNKNOWN (§8.9). Fan-out itself arrives with its own issue; until then no
request is ever pending.
"""

from __future__ import annotations

from aiohttp import web

from cds import errors as E
from cds.auth import require_bpp
from cds.errors import BecknError
from cds.handlers.base import receive
from cds.typedefs import SETTINGS


class OnDiscoverView(web.View):
    async def post(self) -> web.Response:
        settings = self.request.app[SETTINGS]
        inbound = await receive(self.request, actions={"on_discover"}, limit=settings.max_publish_bytes)
        require_bpp(inbound.caller, inbound.context)
        raise BecknError(E.CTX_TRANSACTION_ID_UNKNOWN,
                         f"no pending discover for transaction {inbound.context.transaction_id} "
                         f"message {inbound.context.message_id} awaits a reply from {inbound.caller.subscriber_id}",
                         400, "context.message_id")
