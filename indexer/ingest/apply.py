"""Indexing one queued publish: normalise every catalog, replace it atomically in the index, and report
per-catalog results with one signed on_catalog_publish (docs/decisions.md §21: at least once, after the
catalog is searchable). The ingest log sits between the ACK and this step, so a process dying right after
the ACK loses nothing."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from cds.config import Settings
from cds.core import errors as E
from cds.core.bounds import REJECTION_CODES
from cds.core.errors import BecknError
from cds.core.models import CatalogResult, PublishRequest
from cds.core.merge import merge_catalog
from cds.core.normalize import normalize_catalog
from cds.core.replies import build_on_catalog_publish
from cds.metrics import Metrics
from cds.trust.outbound import Outbound
from indexer.ingest.entry import IngestEntry, catalog_id_of, parse_entry, rejected_all
from indexer.storage import CatalogWriteError, Storage

log = logging.getLogger("cds.publish")

FAILED = object()  # marker: the index stayed unavailable for this entry


class CatalogIndexer:
    """Normalise and write the catalogs of one queued publish, then report them to the publisher."""

    def __init__(self, storage: Storage, settings: Settings, metrics: Metrics, outbound: Outbound | None,
                 clock: Callable[[], float] = time.time) -> None:
        self._storage = storage
        self._settings = settings
        self._metrics = metrics
        self._outbound = outbound
        self._clock = clock
        # the callback counters, looked up once (a labels() call per callback is a lock and a dict lookup)
        self._sent = {ok: metrics.callbacks.labels("on_catalog_publish", "delivered" if ok else "failed")
                      for ok in (True, False)}

    async def index(self, entry: IngestEntry) -> tuple[PublishRequest, list[CatalogResult]]:
        """Normalise and write every catalog of one publish. Catalog-level problems become
        REJECTED results; storage failures propagate (the entry stays queued and is retried)."""
        req = parse_entry(entry, clock_skew_s=self._settings.clock_skew_s)
        ctx = req.context
        results: list[CatalogResult] = []
        for i, catalog in enumerate(req.catalogs):
            cid = catalog_id_of(catalog, i)
            try:
                if req.update_mode == "MERGE":
                    stored = await self._storage.get_catalog(entry.publisher_id, cid)
                    if stored is not None:
                        catalog = merge_catalog(stored.raw, catalog)
                record, warnings = normalize_catalog(
                    catalog, publisher_id=entry.publisher_id, publisher_uri=entry.publisher_uri,
                    dialect=ctx.dialect, settings=self._settings, now=self._clock(), index=i)
            except BecknError as e:
                paths = f"message.{e.paths}" if e.paths else f"message.catalogs[{i}]"
                results.append(CatalogResult(catalog_id=cid, status="REJECTED",
                                             error={"code": e.code, "message": e.message, "paths": paths}))
                self._metrics.publish_catalogs.labels("REJECTED").inc()
                self._metrics.publish_rejected.labels(entry.publisher_id, "catalog").inc()
                continue
            try:
                await self._storage.replace_catalog(record)
            except CatalogWriteError as e:
                if e.retryable:
                    raise  # the whole entry is retried; nothing of this version is visible
                errors = "; ".join(f"{iid}: {why}" for iid, why in e.item_errors[:5])
                results.append(CatalogResult(catalog_id=cid, status="REJECTED", error={
                    "code": E.SCH_SCHEMA_VALIDATIONFAILED, "message": f"{e} ({errors})" if errors else str(e),
                    "paths": f"message.catalogs[{i}]"}))
                self._metrics.publish_catalogs.labels("REJECTED").inc()
                self._metrics.publish_rejected.labels(entry.publisher_id, "catalog").inc()
                self._metrics.publish_rejected.labels(entry.publisher_id, "item").inc(len(e.item_errors))
                continue
            # Items or offers over a content bound were left out: PARTIAL, their notices listed first (§27).
            status = "PARTIAL" if warnings and warnings[0]["code"] in REJECTION_CODES else "ACCEPTED"
            self._metrics.publish_catalogs.labels(status).inc()
            self._metrics.publish_items.inc(len(record.items))
            self._metrics.publish_to_searchable.observe(max(0.0, time.time() - entry.received_at))
            results.append(CatalogResult(catalog_id=cid, status=status, item_count=len(record.items),
                                         warnings=warnings[:50]))
        return req, results

    async def report(self, entry: IngestEntry, req: PublishRequest, results: list[CatalogResult]) -> bool:
        """Send the signed on_catalog_publish; True when delivered (or nowhere to deliver)."""
        if self._outbound is None or not entry.callback_url:
            return True
        body = build_on_catalog_publish(req.context, results, settings=self._settings, now=self._clock())
        delivery = await self._outbound.post(f"{entry.callback_url}/on_catalog_publish", body)
        self._sent[delivery.ok].inc()
        if delivery.attempts > 1:
            self._metrics.callback_retries.labels("on_catalog_publish").inc(delivery.attempts - 1)
        return delivery.ok

    async def index_with_retry(self, entry: IngestEntry, *, max_attempts: int = 5):
        """Index, retrying storage failures with backoff. Returns (request, results), or None
        when the index stayed unavailable (the publisher is told so) or the entry is unusable."""
        delay = 0.5
        for attempt in range(1, max_attempts + 1):
            try:
                return await self.index(entry)
            except BecknError as e:
                # Cannot happen for entries accepted by this version (they were checked before
                # the ACK); possible for entries written by an older one.
                log.error("dropping unparsable ingest entry from %s: %s", entry.publisher_id, e.message)
                return None
            except Exception:  # noqa: BLE001 - storage down: retry, then report failure
                log.exception("indexing publish from %s failed (attempt %d)", entry.publisher_id, attempt)
                if attempt < max_attempts:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10)
        return FAILED

    async def report_outcome(self, entry: IngestEntry, outcome) -> None:
        if outcome is FAILED:
            await self._report_failure(entry)
        elif outcome is not None:
            await self.report(entry, *outcome)

    async def _report_failure(self, entry: IngestEntry) -> None:
        try:
            req = parse_entry(entry, clock_skew_s=self._settings.clock_skew_s)
        except BecknError:
            return
        await self.report(entry, req, rejected_all(req, "the index is unavailable; publish again later"))
