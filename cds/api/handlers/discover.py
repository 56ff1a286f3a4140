"""POST /beckn/discover (ACK now, on_discover later) and GET /beckn/discover (synchronous); a POST with
`Prefer: return=representation` is answered like the GET (docs/decisions.md §W)."""

from __future__ import annotations

import orjson
from aiohttp import web

from cds.core.budget import WorkBudget
from cds.core.models import DiscoverRequest
from cds.core.query import Query
from cds.trust.auth import Inbound, require_bap
from cds.api.handlers.base import ack, receive, spawn
from cds.trust.replay import first_time
from cds.trust.netguard import callback_reach, check_callback_url
from cds.core.protocol import parse_discover
from cds.api.appkeys import DISCOVER, REPLAY, SETTINGS
from cds.api.prefer import REPRESENTATION, wants_representation


class DiscoverView(web.View):
    async def _inbound(self):
        settings = self.request.app[SETTINGS]
        inbound = await receive(self.request, actions={"discover"}, limit=settings.max_discover_bytes)
        require_bap(inbound.caller, inbound.context)
        req = parse_discover(inbound.doc, inbound.context)
        work = self.request.app[DISCOVER].work_budget()     # docs/decisions.md §24: planning + matching
        query = await self.request.app[DISCOVER].plan_bounded(req, work)
        return inbound, req, query, work

    async def post(self) -> web.Response:
        if wants_representation(self.request.headers.getall("Prefer", ())):
            return await self._synchronous({"Preference-Applied": REPRESENTATION})
        settings = self.request.app[SETTINGS]
        inbound, req, query, work = await self._inbound()
        callback = check_callback_url(req.context.bap_uri, registered_url=inbound.caller.subscriber.url,
                                      reach=callback_reach(settings))
        spawn(self.request.app, _answer_once(self.request.app, inbound, req, query, callback, work))
        return ack(self.request)

    async def get(self) -> web.Response:
        return await self._synchronous(None)

    async def _synchronous(self, headers: dict[str, str] | None) -> web.Response:
        inbound, req, query, work = await self._inbound()
        body = await self.request.app[DISCOVER].answer(req, query, inbound.received_at, work=work)
        return web.Response(body=orjson.dumps(body), content_type="application/json", headers=headers)


async def _answer_once(app: web.Application, inbound: Inbound, req: DiscoverRequest, query: Query, callback: str,
                       work: WorkBudget) -> None:
    """After the ACK: a replay gets the same ACK (§11) and no second answer. Checking that after the ACK keeps
    a round trip to the shared replay store off the ACK's path (docs/decisions.md §P, "ACKs first")."""
    if await first_time(app[REPLAY], inbound):
        await app[DISCOVER].answer_and_deliver(req, query, callback, inbound.received_at, work)
