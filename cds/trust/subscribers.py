"""Registry records: the `Subscriber` we keep from a registry's answer (either record form: legacy lookup, DeDi),
the `Negative` we cache for an unknown subscriber or key, and domain families (docs/decisions.md §1, §26):
`…:ev-charging`, `…:ev-charging:*` and `…:ev-charging:2.0.0` are one family.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timezone
from typing import Any

import msgspec

from cds.core.errors import AUT_SUBSCRIBER_NOT_FOUND, NET_DOWNSTREAM_UNAVAILABLE, BecknError


log = logging.getLogger("cds.trust.registry")  # the registry client logs under one name, whichever part speaks

MAX_DOMAINS = 64
USABLE_STATUS = "SUBSCRIBED"


class Subscriber(msgspec.Struct, kw_only=True):
    subscriber_id: str
    key_id: str | None = None
    type: str | None = None                  # BAP | BPP | BG | CDS ..., upper case
    # Every role the registry gives this key (one subscriber id may be registered as BAP and as BPP with
    # the same key); `type` is the first. Empty for records cached before roles were kept.
    types: list[str] = []
    domain: str | None = None                # first of `domains`
    domains: list[str] = []
    url: str | None = None
    signing_public_key: str | None = None
    status: str = USABLE_STATUS
    valid_from: float | None = None          # unix seconds
    valid_until: float | None = None
    region: str | None = None

    def roles(self) -> list[str]:
        return self.types or ([self.type] if self.type else [])

    def usable(self, now: float) -> bool:
        return (self.status == USABLE_STATUS
                and (self.valid_from is None or self.valid_from <= now)
                and (self.valid_until is None or now < self.valid_until))


class Negative(msgspec.Struct, frozen=True, kw_only=True):
    """A cached refusal; keeps the NFH-008 code so a cache hit answers exactly like a fresh lookup."""
    code: str = AUT_SUBSCRIBER_NOT_FOUND
    message: str = "subscriber not found in the registry"


NEGATIVE = Negative()


def _epoch(value: Any) -> float | None:
    """ISO 8601 date-time (naive = UTC) or unix seconds; ValueError otherwise."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("expected a date-time")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        dt = datetime.fromisoformat(value.strip())
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return dt.timestamp()
    raise ValueError("expected a date-time")


# The names registries give one field: the legacy Subscription (snake_case), DeDi `details` and draft-v2 records.
ALIASES: dict[str, tuple[str, ...]] = {
    "subscriber_id": ("subscriber_id", "subscriberId"),
    "key_id": ("key_id", "keyId", "ukId", "unique_key_id"),
    "type": ("type", "role"),
    "url": ("url", "subscriber_url", "subscriberUrl"),
    "domain": ("domain", "domains"),
    "signing_public_key": ("signing_public_key", "signingPublicKey"),
    "valid_from": ("valid_from", "validFrom"),
    "valid_until": ("valid_until", "validUntil"),
}


def _opt_str(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def record_value(rec: dict[str, Any], field: str) -> Any:
    """The first present spelling of `field` in a registry record (see ALIASES)."""
    for n in ALIASES[field]:
        if rec.get(n) is not None:
            return rec[n]
    return None


def record_text(rec: dict[str, Any], field: str) -> str | None:
    """`record_value` as a non-empty, stripped string, else None."""
    return _opt_str(record_value(rec, field))


def subscriber_from_record(rec: Any, *, key_id: str | None = None) -> Subscriber:
    """A legacy Subscription / DeDi `details` / draft-v2 camelCase record -> Subscriber (ValueError if unusable)."""
    if not isinstance(rec, dict):
        raise ValueError("registry record is not an object")
    sid = record_text(rec, "subscriber_id")
    if sid is None:
        raise ValueError("registry record without subscriber_id")
    raw_domain = record_value(rec, "domain")
    if isinstance(raw_domain, str):
        domains = [raw_domain.strip()] if raw_domain.strip() else []
    elif isinstance(raw_domain, list):
        domains = [d.strip() for d in raw_domain[:MAX_DOMAINS] if isinstance(d, str) and d.strip()]
    else:
        domains = []
    typ = record_text(rec, "type")
    status = _opt_str(rec.get("status"))
    return Subscriber(
        subscriber_id=sid,
        key_id=key_id or record_text(rec, "key_id"),
        type=typ.upper() if typ else None,
        domain=domains[0] if domains else None,
        domains=domains,
        url=record_text(rec, "url"),
        signing_public_key=record_text(rec, "signing_public_key"),
        status=status.upper() if status else USABLE_STATUS,
        valid_from=_epoch(record_value(rec, "valid_from")),
        valid_until=_epoch(record_value(rec, "valid_until")),
        region=_opt_str(rec.get("region")),
    )


def parse_records(items: Any, limit: int, source: str) -> list[Subscriber]:
    """Skip (and log) malformed records rather than failing the whole answer."""
    if not isinstance(items, list):
        raise BecknError(NET_DOWNSTREAM_UNAVAILABLE, f"{source}: registry answer is not a list", 503)
    out: list[Subscriber] = []
    for rec in items[:limit]:
        try:
            out.append(subscriber_from_record(rec))
        except ValueError as e:
            log.warning("%s: skipping registry record: %s", source, e)
    return out


_VERSION = re.compile(r"v\d+(?:\.\d+)*(?:[-+][\w.]+)?|\d+\.\d+(?:\.\d+)*(?:[-+][\w.]+)?", re.IGNORECASE)


def domain_family(domain: str) -> str:
    """`beckn.one:deg:ev-charging[:*|:2.0.0]` -> `beckn.one:deg:ev-charging` (docs/decisions.md §1).

    A version segment needs a dot or a `v` so that codes such as `nic2004:60212` stay whole."""
    d = domain.strip()
    head, sep, last = d.rpartition(":")
    if sep and head and last == "*":
        d = head
        head, sep, last = d.rpartition(":")
    if sep and head and _VERSION.fullmatch(last):
        d = head
    return d


def same_family(a: str, b: str) -> bool:
    return domain_family(a).casefold() == domain_family(b).casefold()
