"""`EmbeddedStorage`: the default, in-process storage backend (no Elasticsearch, no Redis).

Writes: every change (put, delete, per-catalog purge) is a msgpack record in a write-ahead log
(`wal-<gen>.log`, CRC frames, group commit). It is applied to the in-memory index in log order,
on the event loop, right after its batch is fsynced and before its caller resumes: once
`replace_catalog` returns the catalog is durable and searchable, and replaying the log after a
crash rebuilds exactly that state. Purge records carry their `now`, so replay repeats them exactly.

Snapshots: once the log outgrows both `snapshot_bytes` and the last snapshot (so rewriting the
state costs at most about as much as the log it replaces), and on close, the log rotates; the
state at that point is written to `snapshot-<gen>.bin` (tmp + fsync + rename) and older logs and
snapshots are deleted. `open` loads the newest snapshot, then replays the logs from its generation on.

Reads: `search` narrows with the index, then `cds.core.matching` has the final word (`indexer.embedded.search`).
It runs on the event loop thread in slices of at most `SEARCH_SLICE_S` (docs/decisions.md §24: no request holds
the loop longer), charged to the request's work budget; a write applied while it yielded makes it start over
(writes apply in one synchronous step, so a search still sees each catalog entirely old or entirely new).
`search_now` is the same search in one step.

Memory: `CatalogMeta.raw` (the whole published catalog, needed only for MERGE publishes) is kept
zlib-compressed; `get_catalog` returns it in full, while `Hit.catalog` carries the meta with an
empty `raw` (assembly uses `header`). `replace_catalog` interns strings, shares equal lists and
offers and packs the item and offer JSON inside the caller's ItemDocs (same values through the accessors
`item_json` / `offer_json`, less memory; `indexer.embedded.compact`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from cds.core import budget, matching
from cds.core.documents import CatalogMeta, CatalogRecord, Hit, ItemDoc
from indexer.embedded.chunked import PutChunks
from indexer.embedded.compact import PACK_THREAD_MIN, pack_catalog
from indexer.embedded.index import Index, Prepared
from indexer.embedded.search import Slice, Steps, search_steps
from indexer.embedded.positions import FollowerPositions
from indexer.embedded.records import (  # noqa: F401 - the record types are imported from here too
    _Delete, _Op, _Purge, _Put, _SnapEnd, _SnapHead, _decoder, _encode, put_bytes, put_record, encode_op,
)
from indexer.embedded.writer import CatalogTable, TablePrepared, snapshot_record
from indexer.embedded.persist import (
    DirLock, FrameLog, FrameScan, LogOp, StorageCorrupt, frame, list_generations, without_gc, write_atomic,
)
from indexer.overview import (
    CellTally, Coverage, CoveragePoint, CoverageQuery, PublisherSummary, catalog_live, status_label,
    summarize_publishers,
)
from indexer.storage import PurgeStats, StorageStats

if TYPE_CHECKING:
    from cds.core.query import Query

log = logging.getLogger(__name__)

_WAL, _SNAP, _SUFFIX_WAL, _SUFFIX_SNAP = "wal-", "snapshot-", ".log", ".bin"
_PURGE_GROUP = 64          # purge records per commit: bounds how long one apply step blocks the loop
_ZLIB_INLINE = 256 << 10   # (de)compress larger catalog raws in a thread (zlib releases the GIL)
_ZLIB_LEVEL = 6            # a third smaller than level 1 for about 2.5 ms more per MB, once per publish


_ROTATE = object()


def _order_key(item: ItemDoc, meta: CatalogMeta) -> Any:
    return matching.order_key(Hit(item=item, catalog=meta), False)


class EmbeddedStorage:
    name = "embedded"

    def __init__(self, data_dir: Path, *, fsync: bool = True, snapshot_bytes: int = 64 << 20,
                 grid_deg: float = 0.05, followers: FollowerPositions | None = None, searchable: bool = True) -> None:
        self.dir = Path(data_dir)
        # With serving workers that follow this log (`indexer.embedded.follower`), a write returns only once
        # every one of them applied it: "searchable" then means searchable through every worker.
        self.followers = followers
        self.fsync = fsync
        self.snapshot_bytes = snapshot_bytes
        # `searchable=False`: a writer whose log serving workers follow keeps encoded catalogs only (writer.py).
        self._index: Any = Index(_order_key, grid_deg=grid_deg) if searchable else CatalogTable(put_bytes, put_record)
        self._version = 0                    # bumped by every change of the index (see `search`)
        self._wal = FrameLog(self.dir, _WAL, _SUFFIX_WAL, fsync=fsync, on_commit=self._on_commit)
        self._lock = DirLock(self.dir, "index.lock")
        self._opened = False
        self._snapshot_task: asyncio.Task | None = None
        self._replayed = 0          # log bytes replayed at open and not yet folded into a snapshot
        self._snapshot_size = 0     # bytes of the newest snapshot

    # -- lifecycle ---------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._opened:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock.acquire()
        try:
            next_gen, self._replayed = await asyncio.to_thread(without_gc, self._recover)
            await self._wal.start(next_gen)
        except BaseException:
            self._lock.release()
            raise
        self._opened = True
        if self._replayed > max(self.snapshot_bytes, self._snapshot_size):
            self._schedule_snapshot()

    def _recover(self) -> tuple[int, int]:
        """Load the newest snapshot and replay later logs; returns (next log generation, bytes replayed)."""
        for tmp in self.dir.glob("*.tmp"):
            tmp.unlink()
        snaps = list_generations(self.dir, _SNAP, _SUFFIX_SNAP)
        base = 0
        if snaps:
            base, path = snaps[-1]
            self._load_snapshot(path)
            self._snapshot_size = path.stat().st_size
        wals = list_generations(self.dir, _WAL, _SUFFIX_WAL)
        replayed = 0
        for n, (gen, path) in enumerate(wals):
            if gen < base:
                continue
            if path.stat().st_size == 0:
                path.unlink()          # an earlier run opened it and wrote nothing
                continue
            scan = FrameScan(path)
            for offset, payload in scan:
                try:
                    self._apply(_decoder.decode(payload))
                except Exception:  # noqa: BLE001 - one unusable record must not keep the index down;
                    # the publisher's next publish repairs that catalog
                    log.exception("%s: skipping log record at offset %d", path, offset)
            replayed += scan.end
            if not scan.clean:
                # A crash mid-write leaves a torn tail; nothing in it was ever confirmed to a caller.
                (log.warning if n == len(wals) - 1 else log.error)(
                    "%s: ignoring damaged tail after offset %d", path, scan.end)
        self._remove_old(base)
        return max([base] + [g for g, _ in wals]) + 1, replayed

    def _load_snapshot(self, path: Path) -> None:
        load_snapshot(self._index, path)

    def _remove_old(self, base: int) -> None:
        for prefix, suffix in ((_WAL, _SUFFIX_WAL), (_SNAP, _SUFFIX_SNAP)):
            for gen, path in list_generations(self.dir, prefix, suffix):
                if gen < base:
                    path.unlink()

    async def close(self) -> None:
        if not self._opened:
            return
        try:
            if self._snapshot_task is not None:
                with contextlib.suppress(Exception):
                    await self._snapshot_task
            if self._wal.failed is None and self._wal.running and (self._wal.size or self._replayed):
                await self._snapshot()          # a quick restart: load one file instead of replaying logs
            elif not self._wal.running:
                # Shut down by a signal after asyncio cancelled every task: nothing is lost (each write
                # was fsynced before it returned); the next start replays the log instead.
                log.info("closing without a snapshot: the log writer was already stopped")
        finally:
            await self._wal.close()
            if self.followers is not None:
                self.followers.close()
            self._lock.release()
            self._opened = False

    async def ready(self) -> bool:
        return self._opened and self._wal.failed is None

    # -- writes ------------------------------------------------------------------------------------

    async def replace_catalog(self, record: CatalogRecord) -> None:
        # The whole published catalog (meta.raw) is needed only for MERGE publishes: keep it compressed.
        raw = record.meta.raw
        slim = CatalogRecord(meta=msgspec.structs.replace(record.meta, raw=b""), items=list(record.items))
        # All zlib, which lets go of the GIL: in a thread it runs beside the loop (docs/decisions.md §P).
        raw_z = (await asyncio.to_thread(pack_catalog, raw, slim.items, _ZLIB_LEVEL)
                 if len(slim.items) >= PACK_THREAD_MIN or len(raw) > _ZLIB_INLINE
                 else pack_catalog(raw, slim.items, _ZLIB_LEVEL))
        prepared = self._index.prepare(slim, raw_z)     # off to the side: searches still see the old one
        await self._submit(_Put(record=prepared.record, raw_z=raw_z), prepared)
        await self._followed()

    async def delete_catalog(self, bpp_id: str, catalog_id: str) -> bool:
        deleted = await self._submit(_Delete(bpp_id=bpp_id, catalog_id=catalog_id))
        await self._followed()
        return deleted

    async def _followed(self) -> None:
        """Wait until every follower applied the log up to here (no-op without followers)."""
        if self.followers is not None:
            await self.followers.wait((self._wal.gen, self._wal.size))

    async def purge_expired(self, now: float) -> PurgeStats:
        due = [e.key for e in self._index.catalogs.values()
               if (e.meta.expires_at is not None and e.meta.expires_at <= now)
               or (e.offer_end is not None and e.offer_end < now)]
        total = PurgeStats()
        for start in range(0, len(due), _PURGE_GROUP):
            futs = [self._submit(_Purge(bpp_id=b, catalog_id=c, now=now))
                    for b, c in due[start:start + _PURGE_GROUP]]
            for stats in await asyncio.gather(*futs):
                total.catalogs += stats.catalogs
                total.offers += stats.offers
        if due:
            await self._followed()
        return total

    def _submit(self, op: _Op, prepared: Prepared | None = None) -> asyncio.Future:
        """Queue a log record; the future resolves to `_apply`'s result once durable and applied."""
        if not self._opened:
            raise RuntimeError("EmbeddedStorage is not open")
        payload = prepared.payload if isinstance(prepared, TablePrepared) else encode_op(op)
        return self._wal.submit(payload, token=(op, prepared))

    def _on_commit(self, batch: list[LogOp]) -> None:
        """Runs on the event loop once a batch is durable: apply it in log order, in one step."""
        for op in batch:
            if op.error is not None:
                continue                           # a failed rotation: no snapshot this time
            if op.token is _ROTATE:
                # The snapshot is the state after everything before the rotation and nothing after.
                op.result = (self._index.snapshot_rows() if isinstance(self._index, CatalogTable)
                             else [(e.record, e.raw_z) for e in self._index.catalogs.values()], op.gen)
            elif op.token is not None:
                try:
                    op.result = self._apply(*op.token)
                except Exception as e:  # noqa: BLE001 - one bad record must not fail its batch-mates
                    log.exception("applying %s failed", type(op.token[0]).__name__)
                    op.error = e
        if self._wal.size > max(self.snapshot_bytes, self._snapshot_size):
            self._schedule_snapshot()

    def _apply(self, op: _Op, prepared: Prepared | None = None) -> Any:
        self._version += 1                  # a sliced search that sees this changed starts over
        return apply_op(self._index, op, prepared)

    # -- snapshots ---------------------------------------------------------------------------------

    def _schedule_snapshot(self) -> None:
        if self._snapshot_task is None or self._snapshot_task.done():
            self._snapshot_task = asyncio.ensure_future(self._snapshot())
            self._snapshot_task.add_done_callback(_log_failure)

    async def _snapshot(self) -> None:
        # `gen` is the rotation's new log generation: the snapshot is the state before it.
        records, gen = await self._wal.rotate(token=_ROTATE)
        self._replayed = 0
        path = self.dir / f"{_SNAP}{gen:012d}{_SUFFIX_SNAP}"
        self._snapshot_size = await asyncio.to_thread(self._write_snapshot, path, records)
        await asyncio.to_thread(self._remove_old, gen)

    def _write_snapshot(self, path: Path, records: list[tuple[CatalogRecord, bytes]] | list[bytes]) -> int:
        def chunks():
            yield frame(_encode(_SnapHead(version=1, catalogs=len(records))))
            for row in records:      # (a CatalogTable's rows are its put records, compressed)
                yield frame(snapshot_record(row) if isinstance(row, bytes) else put_bytes(*row))
            yield frame(_encode(_SnapEnd(catalogs=len(records))))
        return write_atomic(path, chunks(), fsync=self.fsync)

    # -- reads -------------------------------------------------------------------------------------

    async def get_catalog(self, bpp_id: str, catalog_id: str) -> CatalogMeta | None:
        entry = self._index.catalogs.get((bpp_id, catalog_id))
        if entry is None:
            return None
        if not entry.raw_z:
            return entry.meta
        raw = (await asyncio.to_thread(zlib.decompress, entry.raw_z) if len(entry.raw_z) > _ZLIB_INLINE // 8
               else zlib.decompress(entry.raw_z))
        return msgspec.structs.replace(entry.meta, raw=raw)

    async def live_publishers(self, now: float) -> set[str]:
        return {e.meta.bpp_id for e in self._index.catalogs.values()
                if e.meta.is_active and not e.meta.live
                and (e.meta.expires_at is None or e.meta.expires_at > now)}

    async def stats(self) -> StorageStats:
        cats = self._index.catalogs
        return StorageStats(catalogs=len(cats), items=self._index.item_count,
                            newest_published_at=max((e.meta.published_at for e in cats.values()), default=None))

    async def publishers(self, now: float) -> list[PublisherSummary]:
        return summarize_publishers((e.meta for e in self._index.catalogs.values()), now)

    async def coverage(self, query: CoverageQuery, now: float) -> Coverage:
        """Candidates by vectorised catalog and bbox tests on the loop; the per-document part (item
        activity, type, status) in a thread, so a million connectors never stall the loop. A write landing
        meanwhile may be seen in its old or its new form (an overview, not a search)."""
        idx = self._index
        entries = [e for e in idx.catalogs.values()
                   if catalog_live(e.meta, now) and (query.bpp_id is None or e.meta.bpp_id == query.bpp_id)]
        if not entries:
            return Coverage(total=0)
        ids = np.concatenate([e.ids for e in entries])
        lon, lat = idx.lon[ids], idx.lat[ids]
        mask = ~(np.isnan(lon) | np.isnan(lat))
        if query.bbox is not None:
            b = query.bbox
            mask &= (lon >= b[0]) & (lon <= b[2]) & (lat >= b[1]) & (lat <= b[3])
        return await asyncio.to_thread(_coverage_of, idx.docs, ids[mask].tolist(), query)

    def index_size(self) -> dict[str, int]:
        """Sizes of the internal structures (for leak tests and debugging)."""
        return self._index.sizes()

    async def search(self, query: Query, now: float) -> list[Hit]:
        """The search in slices of at most SEARCH_SLICE_S on the loop, charged to the work budget in force."""
        work = budget.current()
        restarts = 0
        while True:
            version = self._version
            sl = Slice()
            steps = search_steps(self._index, query, now, sl)
            while True:
                with work.running() if work is not None else contextlib.nullcontext():
                    done, hits = _advance(steps, sl, work)
                if done:
                    return hits
                # let the loop answer others (a background answer: behind them, `WorkBudget.pause`)
                await (work.pause() if work is not None and work.pause is not None else asyncio.sleep(0))
                if self._version != version:
                    restarts += 1
                    if restarts > SEARCH_RESTARTS:        # writes keep coming: finish in one step
                        with work.running() if work is not None else contextlib.nullcontext():
                            return _finish(self, query, now, work)
                    break

    def search_now(self, query: Query, now: float) -> list[Hit]:
        """The synchronous search (no await inside: a search never sees a half-applied write)."""
        return _finish(self, query, now, budget.current())


def _coverage_of(docs: list, ids: list[int], query: CoverageQuery) -> Coverage:
    live = [d for d in (docs[i] for i in ids)
            if d is not None and d.is_active and (query.bpp_id is None or d.bpp_id == query.bpp_id)]
    if len(live) <= query.max_points:
        points = [CoveragePoint(lon=d.lon, lat=d.lat, bpp_id=d.bpp_id, catalog_id=d.catalog_id, item_id=d.item_id,
                                connector_type=d.connector_type, max_kw=d.max_kw,
                                status=status_label(d.status, d.status_at, query.fresh_after)) for d in live]
        return Coverage(total=len(live), points=points)
    tally = CellTally(query.precision)
    for d in live:
        tally.add(d.lon, d.lat, d.connector_type, status_label(d.status, d.status_at, query.fresh_after))
    return Coverage(total=len(live), cells=tally.cells())


def apply_op(idx: Index, op: _Op, prepared: Prepared | None = None) -> Any:
    """Apply one log record to an index in one synchronous step (the writer, and replay at open)."""
    if isinstance(op, PutChunks):
        op = _Put(record=op.record(), raw_z=op.raw_z)
    if isinstance(op, _Put):
        idx.put(prepared if prepared is not None else prepare_put(idx, op))
        return None
    if isinstance(op, _Delete):
        return idx.delete((op.bpp_id, op.catalog_id))
    if isinstance(op, _Purge):
        return apply_purge(idx, (op.bpp_id, op.catalog_id), op.now)
    raise StorageCorrupt(f"unexpected log record {type(op).__name__}")


def prepare_put(idx: Index, op: _Put) -> Prepared:
    """A decoded put record's index entries, computed off to the side (touches nothing searches read)."""
    raw_z = op.raw_z
    if op.record.meta.raw:                     # tolerate an uncompressed raw
        raw_z = zlib.compress(op.record.meta.raw, _ZLIB_LEVEL)
        op.record.meta.raw = b""
    return idx.prepare(op.record, raw_z, copy=False)


def apply_purge(idx: Index, key: tuple[str, str], now: float) -> PurgeStats:
    entry = idx.catalogs.get(key)
    if entry is None:
        return PurgeStats()
    if entry.meta.expires_at is not None and entry.meta.expires_at <= now:
        idx.delete(key)
        return PurgeStats(catalogs=1)
    if entry.offer_end is None or entry.offer_end >= now:
        return PurgeStats()
    removed: set[str] = set()
    items = []
    for doc in entry.record.items:
        keep = [o for o in doc.offers if o.valid_to is None or o.valid_to >= now]
        if len(keep) != len(doc.offers):
            removed.update(o.id for o in doc.offers if o.valid_to is not None and o.valid_to < now)
            doc = msgspec.structs.replace(doc, offers=keep)
        items.append(doc)
    idx.replace_docs(entry, CatalogRecord(meta=entry.meta, items=items))
    return PurgeStats(offers=len(removed))


def load_snapshot(idx: Index, path: Path) -> None:
    """Load a snapshot file into `idx`; StorageCorrupt when it is incomplete."""
    scan = FrameScan(path)
    head: _SnapHead | None = None
    count = 0
    end: _SnapEnd | None = None
    for _, payload in scan:
        op = _decoder.decode(payload)
        if isinstance(op, _SnapHead):
            head = op
        elif isinstance(op, _SnapEnd):
            end = op
        else:
            apply_op(idx, op)
            count += 1
    if not scan.clean or head is None or end is None or end.catalogs != count:
        raise StorageCorrupt(f"{path} is incomplete or damaged; move it away to start from the logs "
                             "(catalogs published before it are then lost until re-published)")


SEARCH_SLICE_S = 0.005      # a search yields the event loop after about this much work
SEARCH_RESTARTS = 2         # writes applied during this many pauses: the search finishes in one step


def _advance(steps: Steps, sl: Slice, work: budget.WorkBudget | None) -> tuple[bool, list[Hit]]:
    """Run one slice of the search: (True, hits) when it ended, (False, []) when it paused."""
    sl.until = time.perf_counter() + ((work.slice_s if work is not None else None) or SEARCH_SLICE_S)
    try:
        next(steps)
    except StopIteration as done:
        return True, done.value
    if work is not None:
        work.check()
    return False, []


def _finish(store: EmbeddedStorage, query: Query, now: float, work: budget.WorkBudget | None) -> list[Hit]:
    """The whole search in one step (budget checks between slices, no pause)."""
    sl = Slice()
    steps = search_steps(store._index, query, now, sl)       # noqa: SLF001 - the same module's helper
    while True:
        done, hits = _advance(steps, sl, work)
        if done:
            return hits


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("snapshot failed: %s", task.exception())
