"""Registry sources: where subscriber records come from, tried in order by `cds.trust.registry.Registry`
(docs/decisions.md §W Registry, §1).

- `FileSource`: static JSON array of legacy Subscription records (development, demos), reloaded on change.
- `LookupSource`: legacy Beckn registry `POST {base}/lookup` (v1.1.1).
- `DediSource` (cds.trust.dedi) reads the Beckn-One DeDi wrapper with the same `http_json`.

A registry that is down, slow, rate-limits us or answers garbage is a 503 `NET_DOWNSTREAM_UNAVAILABLE`; every
answer is bounded in bytes and records.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, Protocol

import aiohttp
import orjson

from cds.core.errors import NET_DOWNSTREAM_UNAVAILABLE, BecknError
from cds.trust.subscribers import Subscriber, parse_records, subscriber_from_record


log = logging.getLogger("cds.trust.registry")  # the registry client logs under one name, whichever part speaks

HTTP_TIMEOUT_S = 3.0                # registry calls sit on the request path: fail fast
MAX_LOOKUP_BYTES = 1 << 20          # one subscriber's records
MAX_LIST_BYTES = 8 << 20            # a whole network's BPPs
MAX_LOOKUP_RECORDS = 1000
MAX_LIST_RECORDS = 20000


def _unavailable(source: str, why: str) -> BecknError:
    return BecknError(NET_DOWNSTREAM_UNAVAILABLE, f"registry unavailable ({source}): {why}", 503)


async def http_json(session: aiohttp.ClientSession, method: str, url: str, *, source: str, max_bytes: int,
                     timeout_s: float, body: dict[str, Any] | None = None) -> Any:
    """Parsed JSON of a 200 answer; None for "not found" (404/410/400/422); BecknError 503 otherwise."""
    try:
        async with session.request(method, url, data=None if body is None else orjson.dumps(body),
                                   headers={"Content-Type": "application/json"} if body is not None else None,
                                   timeout=aiohttp.ClientTimeout(total=timeout_s), allow_redirects=False) as resp:
            if resp.status in (404, 410):
                return None      # the registry says: no such record
            if resp.status in (400, 422):
                # Some registries answer an id they cannot hold with 400; a steady stream of these in the
                # log means our request is wrong (configuration), which is why it is logged.
                log.warning("%s: registry answered HTTP %s for %s", source, resp.status, url)
                return None
            if resp.status != 200:
                raise _unavailable(source, f"HTTP {resp.status}")
            if resp.content_length is not None and resp.content_length > max_bytes:
                raise _unavailable(source, f"answer larger than {max_bytes} bytes")
            buf = bytearray()
            async for chunk in resp.content.iter_chunked(65536):
                buf += chunk
                if len(buf) > max_bytes:
                    raise _unavailable(source, f"answer larger than {max_bytes} bytes")
    except BecknError:
        raise
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
        raise _unavailable(source, type(e).__name__) from None
    try:
        return orjson.loads(buf)
    except orjson.JSONDecodeError:
        raise _unavailable(source, "answer is not JSON") from None


class Source(Protocol):
    # True when `list_subscribers` filters by the domain it is given (exactly, as registries do); False when
    # it answers every subscriber whatever the domain (asked once).
    filters_domain: bool

    async def lookup(self, subscriber_id: str, key_id: str | None) -> list[Subscriber]: ...

    async def list_subscribers(self, type: str, domain: str | None) -> list[Subscriber] | None:
        """Records of `type` (in `domain`, None = any domain); None when this source cannot list."""


class FileSource:
    """Static JSON array of legacy Subscription records; re-read when the file changes (the demo rewrites it).

    A missing or invalid file is a ValueError at construction. A later broken rewrite keeps the last good
    records (logged), so a half-written file never empties the registry."""

    filters_domain = False

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._stamp: tuple[int, int] | None = None
        self._records: list[Subscriber] = []
        try:
            self._load()
        except OSError as e:
            raise ValueError(f"registry file {self.path}: {e.strerror or e}") from None

    def _load(self) -> None:
        st = os.stat(self.path)
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        with open(self.path, "rb") as f:
            data = f.read(MAX_LIST_BYTES + 1)
        if len(data) > MAX_LIST_BYTES:
            raise ValueError(f"registry file {self.path}: larger than {MAX_LIST_BYTES} bytes")
        try:
            items = orjson.loads(data)
        except orjson.JSONDecodeError as e:
            raise ValueError(f"registry file {self.path}: not JSON ({e})") from None
        if not isinstance(items, list):
            raise ValueError(f"registry file {self.path}: expected a JSON array of subscriber records")
        records = []
        for i, rec in enumerate(items[:MAX_LIST_RECORDS]):
            try:
                records.append(subscriber_from_record(rec))
            except ValueError as e:
                raise ValueError(f"registry file {self.path}: record {i}: {e}") from None
        self._records, self._stamp = records, stamp

    def _current(self) -> list[Subscriber]:
        try:
            self._load()
        except (OSError, ValueError) as e:
            log.error("registry file %s unreadable, keeping the last good records: %s", self.path, e)
        return self._records

    async def lookup(self, subscriber_id: str, key_id: str | None) -> list[Subscriber]:
        return [r for r in self._current() if r.subscriber_id == subscriber_id]

    async def list_subscribers(self, type: str, domain: str | None) -> list[Subscriber] | None:
        return [r for r in self._current() if r.type == type]


class LookupSource:
    """Legacy Beckn registry: `POST {base}/lookup` with a Subscription filter, answer = array of Subscription."""

    filters_domain = True

    def __init__(self, base_url: str, session: aiohttp.ClientSession, *, timeout_s: float = HTTP_TIMEOUT_S) -> None:
        self.url = base_url.rstrip("/") + "/lookup"
        self.session = session
        self.timeout_s = timeout_s

    async def _post(self, body: dict[str, Any], max_bytes: int, limit: int) -> list[Subscriber]:
        data = await http_json(self.session, "POST", self.url, source="lookup", max_bytes=max_bytes,
                                timeout_s=self.timeout_s, body=body)
        if data is None:
            return []
        if isinstance(data, dict) and isinstance(data.get("data"), list):   # some registries wrap it
            data = data["data"]
        return parse_records(data, limit, "lookup")

    async def lookup(self, subscriber_id: str, key_id: str | None) -> list[Subscriber]:
        if key_id is not None:
            found = await self._post({"subscriber_id": subscriber_id, "key_id": key_id},
                                     MAX_LOOKUP_BYTES, MAX_LOOKUP_RECORDS)
            if found:
                return found
            # Filtered by key, "unknown subscriber" and "unknown key" look alike; ask once more to tell
            # them apart (only on this miss path, whose answer is cached as a negative).
        return await self._post({"subscriber_id": subscriber_id}, MAX_LOOKUP_BYTES, MAX_LOOKUP_RECORDS)

    async def list_subscribers(self, type: str, domain: str | None) -> list[Subscriber] | None:
        body = {"type": type} if domain is None else {"type": type, "domain": domain}
        return await self._post(body, MAX_LIST_BYTES, MAX_LIST_RECORDS)
