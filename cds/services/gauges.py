"""The index and ingest gauges, refreshed when someone looks (a /metrics scrape, the operator console):
they are read from the shared index and queue, not counted by this process."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cds.metrics import Metrics
    from indexer.ingest.local import IngestPipeline
    from indexer.ingest.stream import StreamIngest
    from indexer.storage import Storage


async def refresh_index_gauges(metrics: "Metrics", storage: "Storage", ingest: "IngestPipeline | StreamIngest") -> None:
    st = await storage.stats()
    metrics.index_catalogs.set(st.catalogs)
    metrics.index_items.set(st.items)
    if st.newest_published_at:
        metrics.freshness_lag.set(max(0.0, time.time() - st.newest_published_at))
    metrics.ingest_pending.set(ingest.pending_count())
