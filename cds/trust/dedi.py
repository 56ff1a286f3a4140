"""The DeDi registry source (the registry UBC uses): key lookups through the Beckn-One wrapper and the
listing of the network's members for fan-out (docs/decisions.md §1, §26).

- Lookup: `GET {base}/lookup/{subscriber_id}/{namespace}/{key_id}` -> `{"data": {"details": {...}, "state"}}`.
- Listing: participants publish their records in registries of their own namespaces; the network operator adds
  them to its registry of members. We page through that registry with the DeDi query API
  (`GET {base}/query/{network_namespace}/{network_registry}?page=N&page_size=P` ->
  `{"data": {"records": [...], "total_pages": T}}`) and look each member up: by its key id through the wrapper,
  or, for a reference record (`{"type": "Record", "url": <a DeDi record lookup URL>, "subscriber_id"}`), at
  the URL it points to. A member whose details are a whole subscriber record is taken as it is when it
  cannot be looked up.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import quote

import aiohttp
import msgspec

from cds.core.errors import BecknError
from cds.trust.registry_sources import HTTP_TIMEOUT_S, MAX_LIST_RECORDS, MAX_LOOKUP_BYTES, http_json
from cds.trust.subscribers import Subscriber, record_text, subscriber_from_record

log = logging.getLogger(__name__)

PAGE_SIZE = 100
MAX_PAGES = MAX_LIST_RECORDS // PAGE_SIZE
MAX_PAGE_BYTES = 4 << 20
LOOKUP_CONCURRENCY = 8          # member lookups in flight at once while listing
LIVE = "live"


class Member(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of the operator's registry of members, reduced to how it can be looked up."""
    subscriber_id: str
    key_id: str | None = None
    ref_url: str | None = None                # a reference record: where the member's own record lives
    inline: Subscriber | None = None          # the entry's details, when they are a whole subscriber record


def _segment(value: str) -> str:
    return quote(value, safe=":@")


def record_of(data: Any, key_id: str | None) -> Subscriber | None:
    """A DeDi lookup answer (`{"data": {"details", "state"}}`) -> Subscriber; None if it holds no record.

    Raw DeDi records say live/expired/revoked/...; anything but live is not usable."""
    rec = data.get("data") if isinstance(data, dict) else None
    if not isinstance(rec, dict) or not isinstance(rec.get("details"), dict):
        return None
    try:
        sub = subscriber_from_record(rec["details"], key_id=key_id)
    except ValueError as e:
        log.warning("dedi: skipping registry record: %s", e)
        return None
    state = rec.get("state")
    if isinstance(state, str) and state.lower() != LIVE:
        sub.status = state.upper()
    return sub


def member_of(entry: Any) -> Member | None:
    """A query answer's record -> Member (None for entries that are not live or name no subscriber)."""
    if not isinstance(entry, dict):
        return None
    state = entry.get("state")
    if isinstance(state, str) and state.lower() != LIVE:
        return None
    details = entry.get("details")
    if not isinstance(details, dict):
        return None
    sid = record_text(details, "subscriber_id")
    if sid is None:
        return None
    kid = record_text(details, "key_id")
    typ = (record_text(details, "type") or "").upper()
    url = record_text(details, "url")
    if typ == "RECORD":
        return Member(subscriber_id=sid, key_id=kid, ref_url=url if url and url.startswith(("http://", "https://"))
                      else None)
    inline = None
    if typ:
        try:
            inline = subscriber_from_record(details)
        except ValueError:
            inline = None
    return Member(subscriber_id=sid, key_id=kid, inline=inline)


class DediSource:
    """Beckn-One DeDi: lookups by (subscriber id, key id); listing when the network's registry of members is
    configured (`network_namespace`, `network_registry`), else it cannot list (None)."""

    filters_domain = False      # the listing holds every member whatever its domain: one listing serves all

    def __init__(self, base_url: str, session: aiohttp.ClientSession,
                 namespace: str = "subscribers.beckn.one", *, network_namespace: str | None = None,
                 network_registry: str | None = None, timeout_s: float = HTTP_TIMEOUT_S) -> None:
        self.base = base_url.rstrip("/")
        self.session = session
        self.namespace = namespace
        self.network_namespace = network_namespace
        self.network_registry = network_registry
        self.timeout_s = timeout_s

    async def _get(self, url: str, max_bytes: int = MAX_LOOKUP_BYTES) -> Any:
        return await http_json(self.session, "GET", url, source="dedi", max_bytes=max_bytes,
                                timeout_s=self.timeout_s)

    async def lookup(self, subscriber_id: str, key_id: str | None) -> list[Subscriber]:
        if key_id is None:
            return []
        url = "/".join((self.base, "lookup", _segment(subscriber_id), _segment(self.namespace), _segment(key_id)))
        sub = record_of(await self._get(url), key_id)
        return [sub] if sub is not None else []

    async def list_subscribers(self, type: str, domain: str | None) -> list[Subscriber] | None:
        if not (self.network_namespace and self.network_registry):
            return None
        members = await self._members()
        gate = asyncio.Semaphore(LOOKUP_CONCURRENCY)
        results = await asyncio.gather(*(self._resolve(m, gate) for m in members))
        failures = [e for _, e in results if e is not None]
        if failures and len(failures) == len(results):
            raise failures[0]           # the registry is down, not empty
        return [r for found, _ in results for r in found]

    async def _members(self) -> list[Member]:
        """Every page of the operator's registry (BecknError 503 when a page cannot be read: a partial
        member list would silently drop fan-out targets)."""
        assert self.network_namespace and self.network_registry
        base = "/".join((self.base, "query", _segment(self.network_namespace), _segment(self.network_registry)))
        members: dict[str, Member] = {}
        for page in range(1, MAX_PAGES + 1):
            data = await self._get(f"{base}?page={page}&page_size={PAGE_SIZE}", MAX_PAGE_BYTES)
            body = data.get("data") if isinstance(data, dict) else None
            records = body.get("records") if isinstance(body, dict) else None
            if not isinstance(records, list) or not records:
                break
            for entry in records:
                m = member_of(entry)
                if m is not None:
                    members.setdefault(f"{m.subscriber_id}|{m.key_id}|{m.ref_url}", m)
            pages, size = body.get("total_pages"), body.get("page_size")
            if isinstance(pages, int):
                if page >= pages:
                    break
            elif len(records) < (size if isinstance(size, int) and size > 0 else PAGE_SIZE):
                break                   # a short page is the last (the server may cap the page size)
        return list(members.values())

    async def _resolve(self, m: Member, gate: asyncio.Semaphore) -> tuple[list[Subscriber], BecknError | None]:
        """The member's current record(s), or the entry's own details when no lookup answers. A member that
        cannot be looked up right now is left out of this listing (logged), not the whole listing."""
        error = None
        async with gate:
            try:
                if m.key_id is not None:
                    found = await self.lookup(m.subscriber_id, m.key_id)
                elif m.ref_url is not None:
                    sub = record_of(await self._get(m.ref_url), None)
                    found = [sub] if sub is not None else []
                else:
                    found = []
            except BecknError as e:
                log.warning("dedi: member %s could not be looked up: %s", m.subscriber_id, e.message)
                found, error = [], e
        found = [r for r in found if r.subscriber_id == m.subscriber_id]
        if not found and m.inline is not None:
            return [m.inline], None
        return found, error
