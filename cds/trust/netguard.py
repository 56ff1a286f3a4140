"""Outbound address policy: callbacks go to public addresses only, unless CDS_ALLOW_LOOPBACK_CALLBACKS
(loopback only: what `--demo` sets, docs/decisions.md §29) or CDS_ALLOW_PRIVATE_CALLBACKS (every non-public
range) widens it; and callback URLs must belong to the registered subscriber.

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


# Where callbacks may go: "public" addresses only, also "loopback" ones, or every "private" range too.
PUBLIC, LOOPBACK, PRIVATE = "public", "loopback", "private"
_LOCALHOST_NAMES = ("localhost", "localhost.localdomain")


def callback_reach(settings: Any) -> str:
    """The policy the settings ask for (CDS_ALLOW_PRIVATE_CALLBACKS includes loopback)."""
    if settings.allow_private_callbacks:
        return PRIVATE
    return LOOPBACK if settings.allow_loopback_callbacks else PUBLIC


def _address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return addr


def is_public_ip(ip: str) -> bool:
    addr = _address(ip)
    return addr is not None and addr.is_global and not addr.is_multicast


def ip_allowed(ip: str, reach: str) -> bool:
    if reach == PRIVATE:
        return True
    if is_public_ip(ip):
        return True
    addr = _address(ip)
    return reach == LOOPBACK and addr is not None and addr.is_loopback


def _is_localhost_name(host: str) -> bool:
    host = host.lower().rstrip(".")
    return host in _LOCALHOST_NAMES or host.endswith(".localhost")


def check_callback_url(url: str | None, *, registered_url: str | None, reach: str,
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
    if reach != PRIVATE:
        host = parts.hostname
        if _is_localhost_name(host) and reach != LOOPBACK:
            raise BecknError(E.CTX_INVALID_FIELD, "callbacks to loopback addresses are not allowed", 400, field)
        # a name is checked again on every resolution by GuardedResolver
        if _address(host) is not None and not ip_allowed(host, reach):
            allowed = "public or loopback" if reach == LOOPBACK else "public"
            raise BecknError(E.CTX_INVALID_FIELD,
                             f"callbacks to private or loopback addresses are not allowed (only {allowed} ones)",
                             400, field)
    return url.rstrip("/")


class GuardedResolver(AbstractResolver):
    """Resolver for the outbound session that refuses addresses outside the policy."""

    def __init__(self, reach: str, inner: AbstractResolver | None = None) -> None:
        self._reach = reach
        self._inner = inner or DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[dict[str, Any]]:
        infos = await self._inner.resolve(host, port, family)
        if self._reach == PRIVATE:
            return infos
        allowed = [i for i in infos if ip_allowed(i["host"], self._reach)]
        if not allowed:
            raise BlockedAddress(f"{host} resolves only to addresses callbacks may not reach")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def guard_literal_host(url: str, reach: str) -> None:
    """aiohttp does not call the resolver for IP-literal hosts, so check those here."""
    if reach == PRIVATE:
        return
    host = urlsplit(url).hostname or ""
    if _address(host) is None:
        if _is_localhost_name(host) and reach != LOOPBACK:
            raise BlockedAddress("localhost is not allowed")
        return
    if not ip_allowed(host, reach):
        raise BlockedAddress(f"{host} is not an address callbacks may reach")
