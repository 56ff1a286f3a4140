"""Signed outbound calls (on_discover, on_catalog_publish, fan-out discover).

Every body is serialised once, signed over those exact bytes with the CDS key, and POSTed with a
timeout and bounded retries with exponential backoff (retry on connection errors, 429 and 5xx;
never on 4xx: the receiver refused the content and a retry would be refused again).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import msgspec
import orjson

from cds.config import Settings
from cds.trust.netguard import BlockedAddress, GuardedResolver, callback_reach, guard_literal_host
from cds.keys import load_private_key
from cds.trust.signing import RequestSigner

log = logging.getLogger("cds.trust.outbound")


_JSON = {"Content-Type": "application/json"}


class Delivery(msgspec.Struct, kw_only=True):
    url: str
    ok: bool
    status: int | None = None
    attempts: int = 0
    error: str | None = None
    response: bytes = b""


def make_session(settings: Settings) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(callback_reach(settings)),
        limit=512, limit_per_host=32, ttl_dns_cache=60, enable_cleanup_closed=True,
    )
    return aiohttp.ClientSession(connector=connector, json_serialize=lambda o: orjson.dumps(o).decode(),
                                 auto_decompress=True, raise_for_status=False)


class Signer:
    """The CDS's own identity: signs outbound bodies."""

    def __init__(self, settings: Settings) -> None:
        if not settings.signing_private_key:
            raise ValueError("CDS_SIGNING_PRIVATE_KEY is not set")
        self._signer = RequestSigner(subscriber_id=settings.subscriber_id, key_id=settings.key_id,
                                     key=load_private_key(settings.signing_private_key),
                                     ttl_s=settings.signature_ttl_s)

    def sign(self, body: bytes, now: float | None = None) -> str:
        return self._signer.sign(body, now)


class Outbound:
    def __init__(self, session: aiohttp.ClientSession, signer: Signer, settings: Settings) -> None:
        self._session = session
        self._signer = signer
        self._timeout = aiohttp.ClientTimeout(total=settings.callback_timeout_s)
        self._retries = settings.callback_retries
        self._reach = callback_reach(settings)

    async def post(self, url: str, body: dict[str, Any] | bytes, *, retries: int | None = None,
                   timeout: float | None = None, backoff_s: float = 0.2) -> Delivery:
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        retries = self._retries if retries is None else retries
        to = aiohttp.ClientTimeout(total=timeout) if timeout is not None else self._timeout
        attempt, last_err, status = 0, None, None
        while True:
            attempt += 1
            try:
                guard_literal_host(url, self._reach)
                # Re-sign per attempt so a retry never carries an expired signature.
                headers = {**_JSON, "Authorization": self._signer.sign(data)}
                async with self._session.post(url, data=data, headers=headers, timeout=to, allow_redirects=False) as resp:
                    status = resp.status
                    content = await resp.content.read(1 << 20)
                    if 200 <= status < 300:
                        return Delivery(url=url, ok=True, status=status, attempts=attempt, response=content)
                    last_err = f"HTTP {status}: {content[:200].decode('utf-8', 'replace')}"
                    if status < 500 and status != 429:
                        break
            except BlockedAddress as e:
                last_err = f"blocked: {e}"
                break
            except aiohttp.ClientConnectorError as e:
                if isinstance(e.os_error, BlockedAddress):
                    last_err = f"blocked: {e.os_error}"
                    break
                last_err = f"connect: {e}"
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
                last_err = f"{type(e).__name__}: {e}"
            if attempt > retries:
                break
            await asyncio.sleep(backoff_s * (2 ** (attempt - 1)))
        log.warning("delivery to %s failed after %d attempt(s): %s", url, attempt, last_err)
        return Delivery(url=url, ok=False, status=status, attempts=attempt, error=last_err)
