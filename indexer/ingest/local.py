"""The in-process ingest pipeline of the embedded default: publishes are appended durably to the
ingest log before the ACK, then indexed in order by one consumer; each entry is acknowledged in
the log only after its on_catalog_publish went out, so a crash anywhere re-processes it
(index writes are idempotent replaces; the callback is at-least-once, docs/decisions.md §21)."""

from __future__ import annotations

import asyncio
import logging

from cds import gcpolicy
from indexer.ingest.apply import CatalogIndexer
from indexer.ingest.entry import IngestEntry, decode_entry, discard_spool, encode_entry
from indexer.ingest.log import IngestLog

log = logging.getLogger("cds.ingest")


class IngestPipeline:
    def __init__(self, ingest_log: IngestLog, service: CatalogIndexer) -> None:
        self._log = ingest_log
        self._service = service
        self._wake = asyncio.Event()
        self._inflight: set[int] = set()          # indexed or being indexed, not yet acked
        self._reports: set[asyncio.Task] = set()
        self._pending_count = 0

    def pending_count(self) -> int:
        return self._pending_count

    async def submit(self, entry: IngestEntry) -> int:
        seq = await self._log.append(encode_entry(entry))
        self._pending_count += 1
        self._wake.set()
        return seq

    async def run(self) -> None:
        """Consume until cancelled. Indexing is sequential (per-catalog order is kept);
        callbacks go out concurrently and acknowledge their entry when done."""
        while True:
            self._wake.clear()
            batch = [(s, d) for s, d in await self._log.pending() if s not in self._inflight]
            self._pending_count = len(batch) + len(self._inflight)
            for seq, data in batch:
                self._inflight.add(seq)
                try:
                    entry = decode_entry(data)
                except Exception:  # noqa: BLE001 - a corrupt entry must not block the queue
                    log.error("skipping undecodable ingest entry %d", seq)
                    await self._done(seq)
                    continue
                outcome = await self._service.index_with_retry(entry)
                gcpolicy.settle()  # the new index objects are long-lived (see cds.gcpolicy)
                task = asyncio.ensure_future(self._report(seq, entry, outcome))
                self._reports.add(task)
                task.add_done_callback(self._reports.discard)
            if not batch:
                await self._wake.wait()

    async def _report(self, seq: int, entry: IngestEntry, outcome) -> None:
        try:
            await self._service.report_outcome(entry, outcome)
        finally:
            await self._done(seq)
            discard_spool(entry.spool)

    async def _done(self, seq: int) -> None:
        await self._log.ack(seq)
        self._inflight.discard(seq)
        self._pending_count = max(0, self._pending_count - 1)

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until everything submitted so far is indexed and reported (tests, shutdown)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if not self._reports and not self._inflight and not await self._log.pending():
                return
            await asyncio.sleep(0.01)
        raise TimeoutError("ingest pipeline did not drain")

    async def close(self) -> None:
        for t in list(self._reports):
            t.cancel()
        await asyncio.gather(*self._reports, return_exceptions=True)
