"""Registry client: subscriber keys by (subscriber_id, key_id) and BPP listing by domain family.

Sources (tried in order; the first that knows a subscriber wins; docs/decisions.md §W Registry, §1, §26):
- `FileSource`, `LookupSource` (cds.trust.registry_sources): the static file, the legacy `POST {base}/lookup`;
- `DediSource` (cds.trust.dedi): Beckn-One DeDi wrapper `GET {base}/lookup/{subscriber_id}/{namespace}/{key_id}`,
  listing through the network operator's registry of members.
Records are `cds.trust.subscribers`; the cache of keys and negative answers is `cds.trust.key_cache`.

Error policy: an unknown subscriber/key is a 401 (`AUT_*`, cached briefly as a negative entry); a registry
that is down, slow, rate-limits us or answers garbage is a 503 `NET_DOWNSTREAM_UNAVAILABLE` (never cached),
so that a client retries instead of concluding it is not registered.

Keys are cached for `ttl_s` (minutes), capped by the record's `valid_until` - never "until valid_until", so a
revoked key stops working within `ttl_s`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable, TypeVar

import msgspec

from cds.core.errors import (
    AUT_KEY_EXPIRED_OR_REVOKED,
    AUT_KEY_NOT_FOUND,
    AUT_SUBSCRIBER_NOT_FOUND,
    BecknError,
)
from cds.trust.key_cache import CacheValue, KeyCache
from cds.trust.registry_sources import Source
from cds.trust.subscribers import NEGATIVE, Negative, Subscriber, domain_family, same_family

log = logging.getLogger(__name__)

MAX_ID_CHARS = 512                  # subscriber ids / key ids we even ask about

T = TypeVar("T")


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
                        and any(same_family(d, family) for d in r.domains)):
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
