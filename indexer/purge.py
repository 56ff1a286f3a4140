"""One round of the background expiry sweep (docs/decisions.md §S "Expiry": expired data is filtered at
query time and also removed), shared by the API process and the ingest process of `cds serve --workers N`."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from cds import gcpolicy

if TYPE_CHECKING:
    from cds.metrics import Metrics
    from indexer.storage import Storage

log = logging.getLogger("cds.purge")


async def sweep_expired(storage: "Storage", metrics: "Metrics", now: float) -> None:
    try:
        st = await storage.purge_expired(now)
        metrics.purged.labels("catalog").inc(st.catalogs)
        metrics.purged.labels("offer").inc(st.offers)
        gcpolicy.full_sweep()
    except Exception:  # noqa: BLE001 - keep sweeping; the next round may succeed
        log.exception("expiry purge failed")
