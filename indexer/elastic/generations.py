"""The `generations` doc: which generation of each catalog is visible.

One doc in the catalogs index lists the current `cg` (`{catalog key}.{generation}`) of every visible
catalog. Changing it is a single-document write with optimistic concurrency (if_seq_no/if_primary_term),
retried on conflict, so concurrent writers never lose each other's flips; one write flips a whole batch
of catalogs (`replacing_many`).

Readers. Searches use `GenerationView`, a cached copy versioned by the doc's (primary term, seq_no): a
search reads no document while the copy is younger than `max_age_s`; an older copy is re-validated with a
source-less realtime GET (a few bytes), and the list itself is fetched only when the version moved. The
writer's own flips update its copy at once. A query uses one snapshot for all its pages, so it sees
exactly one generation of each catalog; a snapshot at most `max_age_s` old still finds the old generation
complete, because generations are deleted only after a grace period far longer than that (see
indexer/elastic/store.py). Other replicas see a flip within `max_age_s`, and a writer reports a catalog
searchable only after that bound (docs/decisions.md §21). Server-side filters (stats, expiry) use a terms
*lookup* on the doc instead, resolved by Elasticsearch in realtime.

Bound: a terms filter accepts at most `index.max_terms_count` values (65536 by default), i.e. that many
visible catalogs per cluster; beyond that searches fail loudly (400), never silently.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from typing import Any, Callable, Iterable

import msgspec
from elasticsearch import AsyncElasticsearch, ConflictError, NotFoundError

from indexer.elastic.mapping import GENERATIONS_ID, ckey_of

MAX_ATTEMPTS = 200


class Snapshot(msgspec.Struct, frozen=True):
    """The visible generations at one version of the doc (`seq_no` None: the doc does not exist yet)."""

    current: tuple[str, ...] = ()
    seq_no: int | None = None
    primary_term: int | None = None

    @property
    def version(self) -> tuple[int, int]:
        return (self.primary_term or -1, -1 if self.seq_no is None else self.seq_no)


def lookup_filter(catalogs_alias: str, field: str = "cg") -> dict[str, Any]:
    """Terms filter: docs whose `field` is a current generation."""
    return {"terms": {field: {"index": catalogs_alias, "id": GENERATIONS_ID, "path": "current"}}}


async def read(es: AsyncElasticsearch, catalogs_alias: str) -> Snapshot:
    """The doc as it is now (realtime); an absent doc is an empty snapshot without a version."""
    try:
        resp = await es.get(index=catalogs_alias, id=GENERATIONS_ID, realtime=True)
    except NotFoundError as e:
        if index_missing(e):
            raise
        return Snapshot()
    return Snapshot(tuple(resp["_source"].get("current") or ()), resp["_seq_no"], resp["_primary_term"])


async def version(es: AsyncElasticsearch, catalogs_alias: str) -> tuple[int, int]:
    """The doc's version without its body (the cheap check of `GenerationView`)."""
    try:
        resp = await es.get(index=catalogs_alias, id=GENERATIONS_ID, realtime=True, source=False)
    except NotFoundError as e:
        if index_missing(e):
            raise
        return Snapshot().version
    return (resp["_primary_term"], resp["_seq_no"])


def index_missing(e: NotFoundError) -> bool:
    body = e.body if isinstance(e.body, dict) else {}
    return (body.get("error") or {}).get("type") == "index_not_found_exception"


async def update(es: AsyncElasticsearch, catalogs_alias: str, change: Callable[[list[str]], list[str]],
                 known: Snapshot | None = None) -> tuple[Snapshot, Snapshot]:
    """Apply `change` to the current list atomically; returns (before, after). No write if unchanged.

    `known`: the writer's latest copy (its own last flip, usually still current). The first attempt writes
    on it without reading the doc; the version check refuses it if it is stale, and the doc is read then.
    That saves a realtime GET per flip, which makes Elasticsearch refresh the catalogs index internally."""
    guess = known
    for attempt in range(MAX_ATTEMPTS):
        before = guess if guess is not None else await read(es, catalogs_alias)
        after = change(list(before.current))
        if after == list(before.current):
            if guess is not None:       # maybe only stale: decide on the doc as it is
                guess = None
                continue
            return before, before
        doc = {"kind": "generations", "current": after}
        try:
            if before.seq_no is None:
                resp = await es.index(index=catalogs_alias, id=GENERATIONS_ID, document=doc, op_type="create",
                                      require_alias=True)
            else:
                resp = await es.index(index=catalogs_alias, id=GENERATIONS_ID, document=doc,
                                      if_seq_no=before.seq_no, if_primary_term=before.primary_term,
                                      require_alias=True)
            return before, Snapshot(tuple(after), resp["_seq_no"], resp["_primary_term"])
        except ConflictError:
            if guess is not None:       # the copy was stale: read the doc, no need to back off
                guess = None
                continue
            await asyncio.sleep(random.random() * min(0.002 * (attempt + 1), 0.1))
    raise RuntimeError(f"could not update the generations doc after {MAX_ATTEMPTS} conflicting attempts")


def current_of(cgs: Iterable[str], ckey: str) -> str | None:
    for cg in cgs:
        if ckey_of(cg) == ckey:
            return cg
    return None


def replacing(ckey: str, new_cg: str | None) -> Callable[[list[str]], list[str]]:
    """Change: drop every generation of `ckey`, then add `new_cg` (None = delete the catalog)."""
    return replacing_many([(ckey, new_cg)])


def replacing_many(flips: list[tuple[str, str | None]]) -> Callable[[list[str]], list[str]]:
    """Change: for each (catalog key, new cg or None) in order, the same as `replacing`; a later flip of
    one catalog wins over an earlier one."""
    final = dict(flips)

    def change(cgs: list[str]) -> list[str]:
        out = [cg for cg in cgs if ckey_of(cg) not in final]
        out += [cg for cg in final.values() if cg is not None]
        return sorted(out)

    return change


def removing(cgs_to_drop: set[str]) -> Callable[[list[str]], list[str]]:
    """Change: drop exactly these generations (a newer one published meanwhile stays)."""

    def change(cgs: list[str]) -> list[str]:
        return [cg for cg in cgs if cg not in cgs_to_drop]

    return change


class GenerationView:
    """A cached, versioned copy of the generations doc (see the module doc): at most `max_age_s` old."""

    def __init__(self, es: Callable[[], AsyncElasticsearch], catalogs_alias: str, max_age_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._es = es
        self._clock = clock
        self._alias = catalogs_alias
        self.max_age_s = max_age_s
        self._snap: Snapshot | None = None
        self._checked = -math.inf    # time (by `clock`) at which the doc was known to be at `_snap`'s version
        self._lock = asyncio.Lock()

    async def current(self) -> Snapshot:
        if self._fresh():
            return self._snap
        async with self._lock:       # one check in flight; the searches waiting behind it share its answer
            if self._fresh():
                return self._snap
            started = self._clock()
            es = self._es()
            if self._snap is not None and await version(es, self._alias) == self._snap.version:
                self._checked = started
                return self._snap
            self.adopt(await read(es, self._alias), started)
            return self._snap

    def now(self) -> float:
        return self._clock()

    def latest(self) -> Snapshot | None:
        """The newest copy held, however old (a guess for `update`, never for a search)."""
        return self._snap

    def adopt(self, snap: Snapshot, known_at: float) -> None:
        """Take `snap` (read, or just written by this process at `known_at`, by `now()`) unless we hold a
        newer one."""
        if self._snap is None or snap.version > self._snap.version:
            self._snap, self._checked = snap, known_at
        elif snap.version == self._snap.version:
            self._checked = max(self._checked, known_at)

    def invalidate(self) -> None:
        self._checked = -math.inf

    def _fresh(self) -> bool:
        return self._snap is not None and self._clock() - self._checked < self.max_age_s
