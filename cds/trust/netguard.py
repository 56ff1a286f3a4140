"""Outbound address policy: no callbacks to loopback/private/link-local addresses unless
CDS_ALLOW_PRIVATE_CALLBACKS is set, and callback URLs must belong to the registered subscriber.

The check runs twice: on the URL when a request arrives (literal IPs, scheme, host match), and on
every resolved address when a connection is made (`GuardedResolver`), so DNS rebinding cannot
slip a private address past the first check.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver

from cds.core import errors as E
from cds.core.errors import BecknError


class BlockedAddress(OSError):
    """Raised from the resolver: aiohttp turns it into a ClientConnectorError (no retry)."""


def is_public_ip(ip: str) -> bool:
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return addr.is_global and not addr.is_multicast


def check_callback_url(url: str | None, *, registered_url: str | None, allow_private: bool,
                       field: str = "context.bap_uri") -> str:
    """Validate a callback base URL; returns it without a trailing slash."""
    if not url:
        if registered_url:
            url = registered_url
        else:
            raise BecknError(E.CTX_CALLBACK_URL_MISSING, "no callback URL in the context or the registry", 400, field)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BecknError(E.CTX_INVALID_FIELD, "callback URL must be an absolute http(s) URL", 400, field)
    if parts.username or parts.password:
        raise BecknError(E.CTX_INVALID_FIELD, "callback URL must not carry credentials", 400, field)
    if registered_url:
        reg = urlsplit(registered_url)
        if (reg.scheme, (reg.hostname or "").lower()) != (parts.scheme, parts.hostname.lower()):
            raise BecknError(E.CTX_INVALID_FIELD,
                             f"callback URL host does not match the URL registered for the subscriber ({reg.scheme}://{reg.hostname})",
                             400, field)
    if not allow_private:
        host = parts.hostname
        if host.lower() in ("localhost", "localhost.localdomain") or host.lower().endswith(".localhost"):
            raise BecknError(E.CTX_INVALID_FIELD, "callbacks to loopback addresses are not allowed", 400, field)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass  # a name: checked again on every resolution by GuardedResolver
        else:
            if not is_public_ip(host):
                raise BecknError(E.CTX_INVALID_FIELD, "callbacks to private or loopback addresses are not allowed", 400, field)
    return url.rstrip("/")


class GuardedResolver(AbstractResolver):
    """Resolver for the outbound session that refuses non-public addresses."""

    def __init__(self, allow_private: bool, inner: AbstractResolver | None = None) -> None:
        self._allow_private = allow_private
        self._inner = inner or DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[dict[str, Any]]:
        infos = await self._inner.resolve(host, port, family)
        if self._allow_private:
            return infos
        public = [i for i in infos if is_public_ip(i["host"])]
        if not public:
            raise BlockedAddress(f"{host} resolves only to non-public addresses")
        return public

    async def close(self) -> None:
        await self._inner.close()


def guard_literal_host(url: str, allow_private: bool) -> None:
    """aiohttp does not call the resolver for IP-literal hosts, so check those here."""
    if allow_private:
        return
    host = urlsplit(url).hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host.lower() == "localhost":
            raise BlockedAddress("localhost is not allowed") from None
        return
    if not is_public_ip(host):
        raise BlockedAddress(f"{host} is not a public address")
