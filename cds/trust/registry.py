"""Registry client: subscriber keys by (subscriber_id, key_id) and BPP listing by domain family.

Sources (tried in order; the first that knows a subscriber wins):
- `FileSource`: static JSON array of legacy Subscription records (development, demos), reloaded on change.
- `LookupSource`: legacy Beckn registry `POST {base}/lookup` (v1.1.1).
- `DediSource` (cds.trust.dedi): Beckn-One DeDi wrapper `GET {base}/lookup/{subscriber_id}/{namespace}/{key_id}`,
  listing through the network operator's registry of members.

Error policy: an unknown subscriber/key is a 401 (`AUT_*`, cached briefly as a negative entry); a registry
that is down, slow, rate-limits us or answers garbage is a 503 `NET_DOWNSTREAM_UNAVAILABLE` (never cached),
so that a client retries instead of concluding it is not registered.

Keys are cached for `ttl_s` (minutes), capped by the record's `valid_until` - never "until valid_until", so a
revoked key stops working within `ttl_s`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections import OrderedDict
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Protocol, TypeVar

import aiohttp
import msgspec
import orjson

from cds.core.errors import (
    AUT_KEY_EXPIRED_OR_REVOKED,
    AUT_KEY_NOT_FOUND,
    AUT_SUBSCRIBER_NOT_FOUND,
    NET_DOWNSTREAM_UNAVAILABLE,
    BecknError,
)
from cds.redisstate import REDIS_ERRORS, Degraded

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger(__name__)

HTTP_TIMEOUT_S = 3.0                # registry calls sit on the request path: fail fast
MAX_LOOKUP_BYTES = 1 << 20          # one subscriber's records
MAX_LIST_BYTES = 8 << 20            # a whole network's BPPs
MAX_LOOKUP_RECORDS = 1000
MAX_LIST_RECORDS = 20000
MAX_DOMAINS = 64
MAX_ID_CHARS = 512                  # subscriber ids / key ids we even ask about
USABLE_STATUS = "SUBSCRIBED"

T = TypeVar("T")


# ---------------------------------------------------------------- records

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


def _parse_records(items: Any, limit: int, source: str) -> list[Subscriber]:
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


def _same_family(a: str, b: str) -> bool:
    return domain_family(a).casefold() == domain_family(b).casefold()


# ---------------------------------------------------------------- HTTP

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


# ---------------------------------------------------------------- sources

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
        return _parse_records(data, limit, "lookup")

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


# ---------------------------------------------------------------- cache

CacheValue = Subscriber | Negative


class KeyCache(Protocol):
    async def get(self, key: str) -> CacheValue | None: ...

    async def set(self, key: str, value: CacheValue, ttl_s: float) -> None: ...


class MemoryKeyCache:
    """Bounded LRU with per-entry TTL (one process; the Redis cache shares entries across replicas)."""

    def __init__(self, max_entries: int = 10000, clock: Callable[[], float] = time.time) -> None:
        self.max_entries = max_entries
        self.clock = clock
        self._data: OrderedDict[str, tuple[float, CacheValue]] = OrderedDict()

    async def get(self, key: str) -> CacheValue | None:
        hit = self._data.get(key)
        if hit is None:
            return None
        if hit[0] <= self.clock():
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return hit[1]

    async def set(self, key: str, value: CacheValue, ttl_s: float) -> None:
        if ttl_s <= 0:
            self._data.pop(key, None)
            return
        self._data[key] = (self.clock() + ttl_s, value)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


class _Cached(msgspec.Struct, array_like=True):
    """A cache value on the wire: exactly one of the two is set."""
    subscriber: Subscriber | None = None
    negative: Negative | None = None


_cached_encoder = msgspec.msgpack.Encoder()
_cached_decoder = msgspec.msgpack.Decoder(_Cached)


class RedisKeyCache:
    """The key cache shared by every API replica: one registry lookup serves them all, and a revocation
    reaches them all within the same TTL (Redis expires the entry; negative entries alike). While Redis is
    unreachable the replica's own memory cache answers, so signature checks keep working."""

    def __init__(self, redis: "Redis", *, prefix: str = "cds:keys:", fallback: KeyCache | None = None) -> None:
        self._redis = redis
        self.prefix = prefix
        self.fallback = fallback if fallback is not None else MemoryKeyCache()
        self.degraded = Degraded("the registry key cache")

    async def get(self, key: str) -> CacheValue | None:
        try:
            data = await self._redis.get(self.prefix + key)
        except REDIS_ERRORS as e:
            self.degraded.note(e)
            return await self.fallback.get(key)
        if data is None:
            return None
        try:
            rec = _cached_decoder.decode(data)
        except msgspec.DecodeError:        # written by another version: a miss, fetched again
            return None
        return rec.subscriber if rec.subscriber is not None else rec.negative

    async def set(self, key: str, value: CacheValue, ttl_s: float) -> None:
        ms = int(ttl_s * 1000)
        try:
            if ms <= 0:
                await self._redis.delete(self.prefix + key)
                return
            rec = _Cached(negative=value) if isinstance(value, Negative) else _Cached(subscriber=value)
            await self._redis.set(self.prefix + key, _cached_encoder.encode(rec), px=ms)
        except REDIS_ERRORS as e:
            self.degraded.note(e)
            await self.fallback.set(key, value, ttl_s)


# ---------------------------------------------------------------- registry

class Registry:
    def __init__(self, sources: list[Source], cache: KeyCache, *, ttl_s: float = 300, negative_ttl_s: float = 15,
                 list_ttl_s: float = 30, clock: Callable[[], float] = time.time) -> None:
        self.sources = list(sources)
        self.cache = cache
        self.ttl_s = ttl_s
        self.negative_ttl_s = negative_ttl_s
        self.list_ttl_s = list_ttl_s
        self.clock = clock
        self._inflight: dict[str, asyncio.Future[Any]] = {}
        self._lists: dict[str, tuple[float, list[Subscriber]]] = {}
        self.on_lookup: Callable[[str], None] = lambda result: None   # "hit" | "miss", for metrics

    async def _single_flight(self, key: str, fetch: Callable[[], Awaitable[T]]) -> T:
        """Concurrent callers for one key share one fetch; a cancelled caller does not cancel it."""
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(fetch())
            self._inflight[key] = task
            task.add_done_callback(lambda t, k=key: self._done(k, t))
        return await asyncio.shield(task)

    def _done(self, key: str, task: asyncio.Future[Any]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()    # retrieved: no "never retrieved" warning when every waiter was cancelled

    # ---- keys

    async def lookup_key(self, subscriber_id: str, key_id: str) -> Subscriber:
        """The usable record holding `key_id`'s signing key, or BecknError 401 (AUT_*) / 503 (registry down)."""
        if not (0 < len(subscriber_id) <= MAX_ID_CHARS and 0 < len(key_id) <= MAX_ID_CHARS):
            raise BecknError(AUT_SUBSCRIBER_NOT_FOUND, "subscriber id or key id empty or too long", 401)
        ck = f"k:{subscriber_id}|{key_id}"
        hit = await self.cache.get(ck)
        self.on_lookup("miss" if hit is None else "hit")
        if hit is None:
            hit = await self._single_flight(ck, lambda: self._fetch_key(ck, subscriber_id, key_id))
        if isinstance(hit, Negative):
            raise BecknError(hit.code, hit.message, 401)
        if not hit.usable(self.clock()):      # a shared cache may outlive valid_until by a little
            raise BecknError(AUT_KEY_EXPIRED_OR_REVOKED, f"key {key_id} of {subscriber_id} expired or revoked", 401)
        return hit

    async def _fetch_key(self, ck: str, subscriber_id: str, key_id: str) -> CacheValue:
        records = await self._from_sources(subscriber_id, key_id)
        now = self.clock()
        result = _pick_key(records, subscriber_id, key_id, now)
        if isinstance(result, Negative):
            await self.cache.set(ck, result, self.negative_ttl_s)
        else:
            await self.cache.set(ck, result, self._positive_ttl(result, now))
            await self.cache.set(f"s:{subscriber_id}", result, self._positive_ttl(result, now))
        return result

    def _positive_ttl(self, sub: Subscriber, now: float) -> float:
        return self.ttl_s if sub.valid_until is None else min(self.ttl_s, sub.valid_until - now)

    async def _from_sources(self, subscriber_id: str, key_id: str | None) -> list[Subscriber]:
        """Records of the first source that knows `subscriber_id`; a failing source is skipped, and its
        error is raised only if no later source knows the subscriber (an outage is not "unknown")."""
        failure: BecknError | None = None
        for src in self.sources:
            try:
                found = [r for r in await src.lookup(subscriber_id, key_id) if r.subscriber_id == subscriber_id]
            except BecknError as e:
                log.warning("registry source %s failed for %s: %s", type(src).__name__, subscriber_id, e.message)
                failure = failure or e
                continue
            if found:
                return found
        if failure is not None:
            raise failure
        return []

    # ---- subscribers (callback URL checks)

    async def subscriber(self, subscriber_id: str) -> Subscriber | None:
        """Any usable record of `subscriber_id` (None if there is none). Uses the record a recent
        `lookup_key` cached; the DeDi source cannot look up without a key id."""
        if not 0 < len(subscriber_id) <= MAX_ID_CHARS:
            return None
        ck = f"s:{subscriber_id}"
        hit = await self.cache.get(ck)
        if hit is None:
            hit = await self._single_flight(ck, lambda: self._fetch_subscriber(ck, subscriber_id))
        if isinstance(hit, Negative) or not hit.usable(self.clock()):
            return None
        return hit

    async def _fetch_subscriber(self, ck: str, subscriber_id: str) -> CacheValue:
        records = await self._from_sources(subscriber_id, None)
        now = self.clock()
        usable = [r for r in records if r.usable(now)]
        if not usable:
            await self.cache.set(ck, NEGATIVE, self.negative_ttl_s)
            return NEGATIVE
        best = next((r for r in usable if r.url), usable[0])
        await self.cache.set(ck, best, self._positive_ttl(best, now))
        return best

    # ---- listing (fan-out targets)

    async def list_bpps(self, domain: str, version: str | None = None) -> list[Subscriber]:
        """Usable BPP records in `domain`'s family, one per subscriber_id, in source order (the file first:
        it can add or pin targets). `version` (the request's `context.version`) names one more form to ask.

        Cached `list_ttl_s`. When a source is down the last complete list (or the other sources' part)
        is served briefly; BecknError 503 only when no source answered and nothing is known."""
        family = domain_family(domain)
        lk = family.casefold()
        cached = self._lists.get(lk)
        if cached is None or cached[0] <= self.clock():
            forms = _forms(domain, family, version)
            records = await self._single_flight(f"l:{lk}", lambda: self._fetch_list(lk, family, forms))
        else:
            records = cached[1]
        now = self.clock()
        return [r for r in records if r.usable(now)]

    async def _fetch_list(self, lk: str, family: str, forms: list[str | None]) -> list[Subscriber]:
        out: dict[str, Subscriber] = {}
        failure: BecknError | None = None
        for src in self.sources:
            try:
                found = await _list_source(src, forms)
            except BecknError as e:
                log.warning("registry source %s cannot list %s: %s", type(src).__name__, family, e.message)
                failure = failure or e
                continue
            for r in found or ():
                if (r.type == "BPP" and r.subscriber_id not in out and r.usable(self.clock())
                        and any(_same_family(d, family) for d in r.domains)):
                    out[r.subscriber_id] = r
        records, ttl = list(out.values()), self.list_ttl_s
        if failure is not None:
            # A source is down: serve the last complete list if we have one, else what the others said;
            # either only briefly, so the full list comes back soon after the outage.
            stale = self._lists.get(lk)
            if stale is not None:
                records = stale[1]
            elif not records:
                raise failure
            ttl = self.negative_ttl_s
        self._lists.pop(lk, None)
        self._lists[lk] = (self.clock() + ttl, records)
        if len(self._lists) > 256:
            self._lists.pop(next(iter(self._lists)))
        return records

    async def close(self) -> None:
        for task in list(self._inflight.values()):
            task.cancel()
        self._inflight.clear()
        closer = getattr(self.cache, "close", None)
        if closer is not None:
            await closer()


def _forms(domain: str, family: str, version: str | None) -> list[str | None]:
    """What to ask a registry that filters domains exactly (docs/decisions.md §26): no domain filter first,
    then every form a BPP of the family may have registered under (bare, `:*`, the request's, a version)."""
    forms: list[str | None] = [None, family, f"{family}:*", domain.strip()]
    if version and 0 < len(version) <= 32:
        forms.append(f"{family}:{version.strip()}")
    return list(dict.fromkeys(forms))


async def _list_source(src: Source, forms: list[str | None]) -> list[Subscriber] | None:
    """One source's BPPs for the forms (asked at once); None when it cannot list. BecknError when the answer is
    incomplete: neither the unfiltered answer (it may also be refused, or too large) nor every form's answer."""
    queries = forms if getattr(src, "filters_domain", False) else [None]
    results = await asyncio.gather(*(src.list_subscribers("BPP", q) for q in queries), return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException) and not isinstance(r, BecknError):
            raise r
    errors = [r for r in results if isinstance(r, BecknError)]
    lists = [r for r in results if isinstance(r, list)]
    per_form = [r for q, r in zip(queries, results) if q is not None]
    complete = ((queries[0] is None and isinstance(results[0], list) and bool(results[0]))
                or (bool(per_form) and not any(isinstance(r, BecknError) for r in per_form)))
    if errors and not complete:
        raise errors[0]
    if not lists:
        return None
    return [r for found in lists for r in found]


def _pick_key(records: list[Subscriber], subscriber_id: str, key_id: str, now: float) -> CacheValue:
    """Decide the answer for (subscriber_id, key_id) from one source's records of that subscriber."""
    if not records:
        return Negative(code=AUT_SUBSCRIBER_NOT_FOUND, message=f"subscriber {subscriber_id} not found in the registry")
    matching = [r for r in records if r.key_id == key_id]
    if not matching:
        # A record without a key id (a registry that keeps one key per subscriber) stands for its only key.
        matching = [r for r in records if r.key_id is None]
    if not matching:
        return Negative(code=AUT_KEY_NOT_FOUND, message=f"key {key_id} of {subscriber_id} not found in the registry")
    usable = [r for r in matching if r.usable(now)]
    if not usable:
        return Negative(code=AUT_KEY_EXPIRED_OR_REVOKED, message=f"key {key_id} of {subscriber_id} expired or revoked")
    with_key = [r for r in usable if r.signing_public_key]
    if not with_key:
        return Negative(code=AUT_KEY_NOT_FOUND, message=f"registry record of {subscriber_id} has no signing key")
    chosen = with_key[0]
    roles = list(dict.fromkeys(r.type for r in with_key
                               if r.type and r.signing_public_key == chosen.signing_public_key))
    return msgspec.structs.replace(chosen, types=roles) if len(roles) > 1 else chosen
