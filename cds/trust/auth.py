"""Inbound authentication: signature against the registry key of the keyId subscriber, then
the checks that the signer holds the role the action needs and is the party the context says it is
(docs/decisions.md §W, §12, §17, §23)."""

from __future__ import annotations

import asyncio
import time
from typing import Mapping

import msgspec

from cds.core import errors as E
from cds.core.errors import BecknError
from cds.core.models import Context
from cds.trust.registry import Registry
from cds.trust.subscribers import Subscriber
from cds.trust.signing import SignatureHeader, digest_b64, parse_authorization, verify_request

_THREAD_DIGEST_BYTES = 1 << 20


class Caller(msgspec.Struct, kw_only=True):
    subscriber: Subscriber
    signature: SignatureHeader

    @property
    def subscriber_id(self) -> str:
        return self.subscriber.subscriber_id


async def authenticate(body: bytes, headers: Mapping[str, str], registry: Registry, *,
                       skew_s: int, now: float | None = None, digest: str | None = None) -> Caller:
    """`digest`: the body's digest when it was computed already (a spooled body is not in memory)."""
    sig = parse_authorization(headers.get("Authorization"))
    sub = await registry.lookup_key(sig.subscriber_id, sig.key_id)
    if not sub.signing_public_key:
        raise BecknError(E.AUT_KEY_NOT_FOUND, "registry record has no signing key", 401)
    # BLAKE2b of a body of many megabytes holds a loop for a while; hashlib lets go of the GIL meanwhile
    if digest is None and len(body) >= _THREAD_DIGEST_BYTES:
        digest = await asyncio.to_thread(digest_b64, body)
    verify_request(sig, body, sub.signing_public_key, now=time.time() if now is None else now,
                   skew_s=skew_s, digest_header=headers.get("Digest"), digest=digest)
    return Caller(subscriber=sub, signature=sig)


class Inbound(msgspec.Struct, kw_only=True):
    """A request that passed JSON, context and signature checks: what the services act on."""

    body: bytes
    doc: dict
    context: Context
    caller: Caller
    received_at: float
    spool: str | None = None        # a publish body kept in a spool file (then `body` is empty, `doc` a skeleton)


def _deny(signer: str, field: str, value: str | None) -> BecknError:
    return BecknError(E.AUT_UNAUTHORIZED_ACTION,
                      f"signer '{signer}' does not match context.{field} '{value}'", 401, f"context.{field}")


def require_role(caller: Caller, role: str, action: str) -> None:
    """The signer's registry record must give it `role` (docs/decisions.md §23): only a BPP publishes or
    answers a fan-out, only a BAP discovers. Checked before the context ids, which the caller chose."""
    if role not in caller.subscriber.roles():
        held = "/".join(caller.subscriber.roles()) or "no role"
        raise BecknError(E.AUT_UNAUTHORIZED_ACTION,
                         f"signer '{caller.subscriber_id}' is registered as {held}; only a {role} may {action}", 401)


def require_bap(caller: Caller, ctx: Context) -> None:
    """discover: the signer is a BAP and the BAP in the context."""
    require_role(caller, "BAP", "discover")
    if ctx.bap_id != caller.subscriber_id:
        raise _deny(caller.subscriber_id, "bap_id", ctx.bap_id)


def require_bpp(caller: Caller, ctx: Context) -> None:
    """on_discover: the signer is a BPP and the BPP in the context."""
    require_role(caller, "BPP", "send on_discover")
    if ctx.bpp_id != caller.subscriber_id:
        raise _deny(caller.subscriber_id, "bpp_id", ctx.bpp_id)


def require_publisher(caller: Caller, ctx: Context, catalogs: list[dict]) -> None:
    """publish: the signer is a BPP, and signer == bpp_id (or bap_id when bpp_id is absent) == every
    catalog's bppId."""
    require_role(caller, "BPP", "publish catalogs")
    field, claimed = ("bpp_id", ctx.bpp_id) if ctx.bpp_id is not None else ("bap_id", ctx.bap_id)
    if claimed != caller.subscriber_id:
        raise _deny(caller.subscriber_id, field, claimed)
    for i, cat in enumerate(catalogs):
        owner = cat.get("beckn:bppId", cat.get("bppId"))
        if owner is not None and owner != caller.subscriber_id:
            raise BecknError(E.AUT_UNAUTHORIZED_ACTION,
                             f"catalog {i} belongs to '{owner}', not to the signer '{caller.subscriber_id}'",
                             401, f"message.catalogs[{i}].beckn:bppId")
