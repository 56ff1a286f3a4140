"""The `generations` doc: which generation of each catalog is visible.

One doc in the catalogs index lists the current `cg` (`{catalog key}.{generation}`) of every visible
catalog. Searches filter items with a terms *lookup* on it, which Elasticsearch resolves with a
realtime GET when the query starts, so every replica reading the cluster sees the latest flip without
any cache, and a query sees exactly one generation per catalog. Changing it is a single-document
write with optimistic concurrency (if_seq_no/if_primary_term), retried on conflict, so concurrent
publishers never lose each other's flips.

Bound: a terms lookup accepts at most `index.max_terms_count` values (65536 by default), i.e. that
many visible catalogs per cluster; beyond that searches fail loudly (400), never silently.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, Callable

from elasticsearch import AsyncElasticsearch, ConflictError, NotFoundError

from indexer.elastic.mapping import GENERATIONS_ID, ckey_of

MAX_ATTEMPTS = 200


def lookup_filter(catalogs_alias: str, field: str = "cg") -> dict[str, Any]:
    """Terms filter: docs whose `field` is a current generation."""
    return {"terms": {field: {"index": catalogs_alias, "id": GENERATIONS_ID, "path": "current"}}}


async def read(es: AsyncElasticsearch, catalogs_alias: str) -> tuple[list[str], int | None, int | None]:
    """(current cgs, seq_no, primary_term); an absent doc is an empty list with no version."""
    try:
        resp = await es.get(index=catalogs_alias, id=GENERATIONS_ID, realtime=True)
    except NotFoundError as e:
        if index_missing(e):
            raise
        return [], None, None
    current = resp["_source"].get("current") or []
    return list(current), resp["_seq_no"], resp["_primary_term"]


def index_missing(e: NotFoundError) -> bool:
    body = e.body if isinstance(e.body, dict) else {}
    return (body.get("error") or {}).get("type") == "index_not_found_exception"


async def update(es: AsyncElasticsearch, catalogs_alias: str,
                 change: Callable[[list[str]], list[str]]) -> tuple[list[str], list[str]]:
    """Apply `change` to the current list atomically; returns (before, after). No write if unchanged."""
    for attempt in range(MAX_ATTEMPTS):
        before, seq_no, term = await read(es, catalogs_alias)
        after = change(before)
        if after == before:
            return before, after
        doc = {"kind": "generations", "current": after}
        try:
            if seq_no is None:
                await es.index(index=catalogs_alias, id=GENERATIONS_ID, document=doc, op_type="create",
                               require_alias=True)
            else:
                await es.index(index=catalogs_alias, id=GENERATIONS_ID, document=doc,
                               if_seq_no=seq_no, if_primary_term=term, require_alias=True)
            return before, after
        except ConflictError:
            await asyncio.sleep(random.random() * min(0.002 * (attempt + 1), 0.1))
    raise RuntimeError(f"could not update the generations doc after {MAX_ATTEMPTS} conflicting attempts")


def current_of(cgs: list[str], ckey: str) -> str | None:
    for cg in cgs:
        if ckey_of(cg) == ckey:
            return cg
    return None


def replacing(ckey: str, new_cg: str | None) -> Callable[[list[str]], list[str]]:
    """Change: drop every generation of `ckey`, then add `new_cg` (None = delete the catalog)."""

    def change(cgs: list[str]) -> list[str]:
        out = [cg for cg in cgs if ckey_of(cg) != ckey]
        if new_cg is not None:
            out.append(new_cg)
        return sorted(out)

    return change


def removing(cgs_to_drop: set[str]) -> Callable[[list[str]], list[str]]:
    """Change: drop exactly these generations (a newer one published meanwhile stays)."""

    def change(cgs: list[str]) -> list[str]:
        return [cg for cg in cgs if cg not in cgs_to_drop]

    return change
