"""A remote registry for tests (a real HTTP server): the legacy `POST /lookup` with exact-match filters, as a
plain database query would do, and DeDi: the Beckn-One wrapper lookup, the query API listing the network
operator's registry of members, and raw record lookups that reference members point at."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web


class FakeRegistry:
    """A remote registry: legacy POST /lookup (exact-match filters, as a plain database query would do) and the
    Beckn-One DeDi wrapper GET /dedi/lookup/{sid}/{ns}/{kid}. Counts calls; can fail, stall or hold answers."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.calls: list[Any] = []
        self.fail_status: int | None = None
        self.stall_s = 0.0
        self.raw_body: bytes | None = None
        self.gate: asyncio.Event | None = None
        self.need_domain = False              # answer a listing without a domain with 400
        self.fail_domains: set[str] = set()   # listings of these domains fail (502)
        self.members: list[dict[str, Any]] = []  # DeDi: the operator's registry of members ...
        self.network = ("ubc.nbsl", "members")   # ... at /dedi/query/{namespace}/{registry}

    async def _hold(self) -> web.Response | None:
        if self.gate is not None:
            await self.gate.wait()
        if self.stall_s:
            await asyncio.sleep(self.stall_s)
        if self.fail_status is not None:
            return web.Response(status=self.fail_status, text="boom")
        if self.raw_body is not None:
            return web.Response(body=self.raw_body, content_type="application/json")
        return None

    async def lookup(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.calls.append(("lookup", body))
        if (r := await self._hold()) is not None:
            return r
        if "subscriber_id" not in body and "domain" not in body and self.need_domain:
            return web.json_response({"error": "domain is required"}, status=400)
        if body.get("domain") in self.fail_domains:
            return web.Response(status=502, text="upstream")
        out = [x for x in self.records if all(x.get(k) == v or (isinstance(x.get(k), list) and v in x[k])
                                              for k, v in body.items())]
        return web.json_response(out)

    async def dedi(self, request: web.Request) -> web.Response:
        sid, ns, kid = request.match_info["sid"], request.match_info["ns"], request.match_info["kid"]
        self.calls.append(("dedi", sid, ns, kid))
        if (r := await self._hold()) is not None:
            return r
        for x in self.records:
            if x["subscriber_id"] == sid and x.get("key_id") == kid:
                details = {k: v for k, v in x.items() if k not in ("key_id", "status", "valid_from", "valid_until")}
                return web.json_response({"message": "Record retrieved from registry cache",
                                          "data": {"record_id": kid, "details": details,
                                                   "network_memberships": ["ubc/prod"], **x.get("_data", {})}})
        return web.json_response({"message": "not found"}, status=404)

    async def dedi_query(self, request: web.Request) -> web.Response:
        """DeDi query API: the operator's registry of members, `page_size` capped at 2 to force paging."""
        ns, name = request.match_info["ns"], request.match_info["reg"]
        page, size = int(request.query.get("page", "1")), min(2, int(request.query.get("page_size", "10")))
        self.calls.append(("query", ns, name, page))
        if (r := await self._hold()) is not None:
            return r
        if (ns, name) != self.network:
            return web.json_response({"message": "not found"}, status=404)
        chunk = self.members[(page - 1) * size:page * size]
        return web.json_response({"message": "Resource retrieved successfully", "data": {
            "namespace_name": ns, "registry_name": name, "total_records": len(self.members),
            "total_pages": -(-len(self.members) // size), "page_number": page, "page_size": size,
            "records": chunk}})

    async def dedi_raw(self, request: web.Request) -> web.Response:
        """A participant's own record (raw DeDi lookup), where a reference member points."""
        name = request.match_info["name"]
        self.calls.append(("raw", name))
        for x in self.records:
            if x.get("key_id") == name:
                details = {k: v for k, v in x.items() if k not in ("key_id", "status", "valid_from", "valid_until")}
                return web.json_response({"data": {"record_name": name, "details": details, "state": "live"}})
        return web.json_response({"message": "not found"}, status=404)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/lookup", self.lookup)
        app.router.add_get("/dedi/lookup/{sid}/{ns}/{kid}", self.dedi)
        app.router.add_get("/dedi/query/{ns}/{reg}", self.dedi_query)
        app.router.add_get("/raw/lookup/{ns}/{reg}/{name}", self.dedi_raw)
        return app


def member(details: dict[str, Any], state: str = "live") -> dict[str, Any]:
    """An entry of the operator's registry of members, as the DeDi query API lists it."""
    return {"record_id": f"did:cord:{details['subscriber_id']}", "record_name": details["subscriber_id"],
            "state": state, "details": details}
