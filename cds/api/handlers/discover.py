"""POST /beckn/discover (ACK now, on_discover later) and GET /beckn/discover (synchronous); a POST with
`Prefer: return=representation` is answered like the GET (docs/decisions.md §W)."""

from __future__ import annotations

import orjson
from aiohttp import web

from cds.trust.auth import require_bap
from cds.api.handlers.base import ack, receive, spawn
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
        self.request.app[DISCOVER].refuse_when_full()     # overloaded: refused before any work (docs/decisions.md §P)
        settings = self.request.app[SETTINGS]
        inbound, req, query, work = await self._inbound()
        callback = check_callback_url(req.context.bap_uri, registered_url=inbound.caller.subscriber.url,
                                      reach=callback_reach(settings))
        self.request.app[DISCOVER].admit()      # room for its answer, taken with no await before the spawn
        # the replay check comes after the ACK (the same ACK either way): no round trip to the shared store before it
        spawn(self.request.app, self.request.app[DISCOVER].answer_once(self.request.app[REPLAY], inbound, req, query,
                                                                       callback, work))
        return ack(self.request)

    async def get(self) -> web.Response:
        return await self._synchronous(None)

    async def _synchronous(self, headers: dict[str, str] | None) -> web.Response:
        inbound, req, query, work = await self._inbound()
        body = await self.request.app[DISCOVER].answer(req, query, inbound.received_at, work=work)
        return web.Response(body=orjson.dumps(body), content_type="application/json", headers=headers)
