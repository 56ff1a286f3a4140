"""The storage interface. Two real implementations: `indexer.embedded` (default, in-process,
persisted under CDS_DATA_DIR) and `indexer.elastic` (production). The behaviour suite in
tests/behaviour runs the same scenarios against both.

Contract every backend keeps:
- `replace_catalog` is atomic: a concurrent `search` sees either the whole old catalog or the
  whole new one, never a mix; once it returns, the catalog is searchable and durable.
- `search` returns exactly the hits for which `cds.core.matching.matches(query, item, meta, now)` is
  true, ordered by `cds.core.matching.order_key` and capped at `query.limit`. Backends narrow
  candidates with `query.terms`, `query.ranges`, `query.spatial[*].bbox` (all supersets of the
  true matches) and leave the final word to `cds.core.matching`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import msgspec

from cds.core.documents import CatalogMeta, CatalogRecord, Hit

if TYPE_CHECKING:
    from cds.core.query import Query
    from indexer.overview import Coverage, CoverageQuery, PublisherSummary


class StorageStats(msgspec.Struct, kw_only=True):
    catalogs: int = 0
    items: int = 0
    newest_published_at: float | None = None


class PurgeStats(msgspec.Struct, kw_only=True):
    catalogs: int = 0       # whole catalogs removed (expired validity or max age)
    offers: int = 0         # offers removed from items because their validity ended


class CatalogWriteError(Exception):
    """`replace_catalog` refused: some items could not be stored, and nothing of the new version is
    visible (the previous version, if any, still is). `item_errors` lists (item id, reason);
    `retryable` is False when writing the same record again would fail the same way."""

    def __init__(self, message: str, *, item_errors: list[tuple[str, str]] | None = None,
                 retryable: bool = False) -> None:
        super().__init__(message)
        self.item_errors = item_errors or []
        self.retryable = retryable


class Storage(Protocol):
    name: str

    async def open(self) -> None:
        """Connect / load persisted state. Called once before use."""

    async def close(self) -> None:
        """Flush and release resources."""

    async def ready(self) -> bool:
        """True when the backend can answer queries (for /health/ready)."""

    async def replace_catalog(self, record: CatalogRecord) -> None:
        """Atomically replace everything stored under record.meta.key (FULL semantics)."""

    async def delete_catalog(self, bpp_id: str, catalog_id: str) -> bool:
        """Remove a catalog; True if it existed."""

    async def get_catalog(self, bpp_id: str, catalog_id: str) -> CatalogMeta | None:
        """The stored catalog's meta (with `raw`, used for MERGE publishes), or None."""

    async def search(self, query: Query, now: float) -> list[Hit]:
        """Exact, ordered, capped matches (see module doc)."""

    async def live_publishers(self, now: float) -> set[str]:
        """bpp_ids that have at least one unexpired, active, non-`live` (published) catalog."""

    async def purge_expired(self, now: float) -> PurgeStats:
        """Delete expired catalogs and expired offers from storage."""

    async def stats(self) -> StorageStats:
        """Counts for metrics and readiness."""

    async def publishers(self, now: float) -> list[PublisherSummary]:
        """One row per publisher of stored catalogs, by id (indexer/overview.py; read-only, for the console)."""

    async def coverage(self, query: CoverageQuery, now: float) -> Coverage:
        """Connectors a discover could return now, as points or tile clusters (indexer/overview.py)."""
