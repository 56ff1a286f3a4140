"""Writing a batch of catalogs to Elasticsearch in one go (called by `GroupCommit`, indexer/elastic/batch.py).

1. Every catalog of the batch is written as a new generation (its item docs and an immutable meta doc) in
   one bulk stream, made searchable by one refresh at its end.
2. Docs refused for a catalog fail that catalog alone: its generation is deleted by id and it gets its own
   error (`CatalogWriteError` when the documents themselves were refused, the bulk error otherwise);
   the others go on.
3. One write of the generations doc flips every catalog that was written. Two versions of one catalog in
   a batch: the later one wins, the earlier one (never visible) is deleted at once.
4. The previous generations are handed back to be deleted after the grace period.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from typing import TYPE_CHECKING, Callable

import msgspec
from elasticsearch import AsyncElasticsearch

from indexer.elastic import generations
from indexer.elastic.bulk import BulkItemError, BulkWriteError, Op, bulk, bulk_items, delete_op, index_encoded_op
from indexer.elastic.mapping import (catalog_key, cg_of, ckey_of, item_doc_id, item_source, meta_doc_id,
                                    meta_source)
from indexer.storage import CatalogWriteError

if TYPE_CHECKING:
    from cds.core.documents import CatalogMeta, CatalogRecord

log = logging.getLogger(__name__)

# bulk item errors caused by the document itself: writing the same record again fails the same way
DOCUMENT_ERRORS = frozenset({"mapper_parsing_exception", "document_parsing_exception", "illegal_argument_exception",
                             "strict_dynamic_mapping_exception", "parse_exception", "x_content_parse_exception"})


def new_generation() -> str:
    # time-ordered (hex millis) + random: unique across writers, readable in logs
    return f"{int(time.time() * 1000):x}{os.urandom(3).hex()}"


class _Job(msgspec.Struct):
    record: "CatalogRecord"
    ckey: str
    cg: str
    gen: str

    def ops(self, items: str, catalogs: str, ts: float):
        meta = self.record.meta
        for it in self.record.items:
            yield index_encoded_op(items, item_doc_id(self.cg, it.item_id),
                                   item_source(it, meta, self.cg, self.gen, ts))
        yield index_encoded_op(catalogs, meta_doc_id(self.cg), meta_source(meta, self.cg, self.gen, ts))

    def deletes(self, items: str, catalogs: str) -> list[Op]:
        out = [delete_op(items, item_doc_id(self.cg, it.item_id)) for it in self.record.items]
        out.append(delete_op(catalogs, meta_doc_id(self.cg)))
        return out


class Hooks(msgspec.Struct, frozen=True):
    """What the store does around a batch: its not-ready error, caching the meta of a generation now
    visible, deleting replaced generations after the grace period, deleting never-visible ones now."""

    not_ready: Callable[[], Exception]
    written: Callable[[str, "CatalogMeta"], None]
    retire: Callable[[list[str]], None]
    discard: Callable[[list[str]], None]


class CatalogWriter:
    """The flush of the store's group commit: `write(records)` → one outcome per record."""

    def __init__(self, es: Callable[[], AsyncElasticsearch], items_alias: str, catalogs_alias: str, *,
                 visible: str, view: generations.GenerationView, hooks: Hooks) -> None:
        self._es, self._items, self._catalogs = es, items_alias, catalogs_alias
        self._visible, self._view, self._hooks = visible, view, hooks

    async def write(self, records: list["CatalogRecord"]) -> list[BaseException | None]:
        jobs = []
        for r in records:
            ckey, gen = catalog_key(r.meta.bpp_id, r.meta.catalog_id), new_generation()
            jobs.append(_Job(r, ckey, cg_of(ckey, gen), gen))
        ts = time.time()
        ops = itertools.chain.from_iterable(j.ops(self._items, self._catalogs, ts) for j in jobs)
        try:
            failed = await bulk_items(self._es(), ops, refresh=self._visible)
        except BaseException:
            await self._undo(jobs)
            raise
        by_cg: dict[str, list[BulkItemError]] = {}
        for err in failed:
            by_cg.setdefault(_cg_of_doc(err.id), []).append(err)
        outcomes: list[BaseException | None] = [self._refused(j, by_cg[j.cg]) if j.cg in by_cg else None
                                                for j in jobs]
        await self._undo([j for j in jobs if j.cg in by_cg])
        ok = [j for j in jobs if j.cg not in by_cg]
        if ok:
            err = await self._flip(ok)
            if err is not None:
                outcomes = [err if o is None else o for o in outcomes]
        return outcomes

    async def _flip(self, ok: list[_Job]) -> BaseException | None:
        """One generations write for every written catalog; the error if it failed (then what is certainly
        not visible is deleted)."""
        started = self._view.now()
        try:
            before, after = await generations.update(self._es(), self._catalogs,
                                                     generations.replacing_many([(j.ckey, j.cg) for j in ok]),
                                                     known=self._view.latest())
        except Exception as e:  # noqa: BLE001 - reported to every catalog of the flip
            self._view.invalidate()
            # The flip may have landed before the error: undo only what certainly is not current.
            try:
                current = set((await generations.read(self._es(), self._catalogs)).current)
            except Exception:  # noqa: BLE001 - unknown: keep the docs (the orphan sweep removes them if unused)
                return e
            await self._undo([j for j in ok if j.cg not in current])
            return e
        self._view.adopt(after, started)
        visible = set(after.current)
        for j in ok:
            if j.cg in visible:
                self._hooks.written(j.cg, j.record.meta)
        written = {j.ckey for j in ok}
        self._hooks.retire([c for c in before.current if ckey_of(c) in written and c not in visible])
        self._hooks.discard([j.cg for j in ok if j.cg not in visible])     # superseded within the batch
        return None

    def _refused(self, job: _Job, errors: list[BulkItemError]) -> BaseException:
        meta = job.record.meta
        e = BulkWriteError(errors)
        if any(err.type == "index_not_found_exception" for err in errors):
            return self._hooks.not_ready()
        if not all(err.type in DOCUMENT_ERRORS for err in errors):
            return e   # the cluster's fault (closed index, blocks, overload): the caller retries
        names = {item_doc_id(job.cg, it.item_id): it.item_id for it in job.record.items}
        names[meta_doc_id(job.cg)] = "<catalog>"
        out = CatalogWriteError(f"catalog {meta.catalog_id} of {meta.bpp_id}: {e}", retryable=False,
                                item_errors=[(names.get(err.id, err.id), f"{err.type}: {err.reason}")
                                             for err in errors])
        out.__cause__ = e
        return out

    async def _undo(self, jobs: list[_Job]) -> None:
        """Delete what failed writes may have written, by id (a search would miss unrefreshed docs);
        never raises (what it cannot delete, the orphan sweep will)."""
        if not jobs:
            return
        try:
            await bulk(self._es(), [op for j in jobs for op in j.deletes(self._items, self._catalogs)])
        except Exception:  # noqa: BLE001
            log.exception("could not undo a failed catalog write; the orphan sweep will")


def _cg_of_doc(doc_id: str) -> str:
    """The generation a doc id belongs to (`m:{cg}` for a meta doc, `{cg}:{hash}` for an item)."""
    if doc_id.startswith("m:"):
        return doc_id[2:]
    return doc_id.rsplit(":", 1)[0]
