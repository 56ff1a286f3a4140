"""Bulk writes with per-item retry, and delete-by-query built from scroll + bulk.

Every failure is surfaced: a bulk response with `errors: true` is inspected item by item; items
refused with 429/5xx are retried with backoff, anything else (or retries exhausted) raises
`BulkWriteError` carrying each failed item. Delete-by-query is done client-side because the
`reindex` module (which provides `_delete_by_query`) is not part of every distribution.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any, Iterable

import msgspec
import orjson
from elasticsearch import AsyncElasticsearch, ConflictError
from elasticsearch.helpers import async_scan
from elasticsearch.serializer import NdjsonSerializer, OrjsonSerializer

log = logging.getLogger(__name__)

MAX_OPS_PER_REQUEST = 1000
MAX_BYTES_PER_REQUEST = 8 << 20       # well below http.max_content_length (100 MB)
RETRYABLE = frozenset({429, 500, 502, 503, 504})
# What `_send` reads of a bulk reply: every item keeps its status, so items stay aligned with the operations
# (the full reply is ~250 bytes per document for Elasticsearch to write and the client to parse).
_REPLY = "errors,items.*.status,items.*.error"
_json = OrjsonSerializer()      # what the client uses for JSON bodies (indexer/elastic/store.py build_client)


class NdjsonBytes(NdjsonSerializer):
    """The client's NDJSON serializer, passing a body encoded by `_body` through as is (the stock one copies
    it line by line into a new buffer: a few percent of the indexer's CPU at full ingest)."""

    def dumps(self, data: Any) -> bytes:
        if isinstance(data, bytes) and data.endswith(b"\n"):
            return data
        return super().dumps(data)


class BulkItemError(msgspec.Struct, frozen=True):
    op: str
    index: str
    id: str
    status: int
    type: str
    reason: str


class BulkWriteError(Exception):
    """Some bulk operations failed for good; `errors` lists each (first few in the message)."""

    def __init__(self, errors: list[BulkItemError]):
        self.errors = errors
        head = "; ".join(f"{e.id}: {e.status} {e.type}: {e.reason}" for e in errors[:3])
        super().__init__(f"{len(errors)} bulk operation(s) failed: {head}")


class Op(msgspec.Struct, frozen=True):
    """One bulk operation: `action` is index | create | delete; `meta` extra action metadata; the document as
    `source`, or already encoded as JSON in `encoded`."""

    action: str
    index: str
    id: str
    source: dict[str, Any] | None = None
    meta: dict[str, Any] | None = None
    size: int = 0
    encoded: bytes | None = None


def index_op(index: str, id: str, source: dict[str, Any], **meta: Any) -> Op:
    return Op("index", index, id, source, meta or None, _approx_size(source))


def index_encoded_op(index: str, id: str, source: bytes) -> Op:
    """Index a document given as JSON bytes (indexer/elastic/mapping.py item_source, meta_source)."""
    return Op("index", index, id, size=len(source) + 128, encoded=source)


def delete_op(index: str, id: str) -> Op:
    return Op("delete", index, id)


def _approx_size(src: dict[str, Any]) -> int:
    d = src.get("d") or src.get("raw") or ""
    return len(d) + 512


def _chunks(ops: Iterable[Op]) -> Iterable[list[Op]]:
    chunk: list[Op] = []
    size = 0
    for op in ops:
        if chunk and (len(chunk) >= MAX_OPS_PER_REQUEST or size + op.size > MAX_BYTES_PER_REQUEST):
            yield chunk
            chunk, size = [], 0
        chunk.append(op)
        size += op.size
    if chunk:
        yield chunk


def _body(ops: list[Op]) -> bytes:
    """The NDJSON body, encoded here with orjson: the client would encode a list of dicts line by line
    with the standard library's json (the largest single cost of a bulk write, measured). Action lines
    without extra metadata are put together from pre-encoded pieces, and the lines joined once."""
    parts: list[bytes] = []
    heads: dict[tuple[str, str], bytes] = {}
    for op in ops:
        if op.meta:
            parts.append(_json.dumps({op.action: {"_index": op.index, "_id": op.id, **op.meta}}))
            parts.append(b"\n")
        else:
            head = heads.get((op.action, op.index))
            if head is None:
                head = heads[(op.action, op.index)] = b'{"%s":{"_index":%s,"_id":' % (
                    op.action.encode(), orjson.dumps(op.index))
            parts += (head, orjson.dumps(op.id), b"}}\n")
        if op.encoded is not None:
            parts += (op.encoded, b"\n")
        elif op.source is not None:
            parts += (_json.dumps(op.source), b"\n")
    return b"".join(parts)


async def _send(es: AsyncElasticsearch, ops: list[Op], refresh: str | bool, attempts: int,
                backoff: float, ignore_conflicts: bool) -> list[BulkItemError]:
    pending = ops
    delay = backoff
    failed: list[BulkItemError] = []
    for attempt in range(1, attempts + 1):
        # require_alias: writing before `cds index init` must fail, not auto-create a dynamic index
        resp = await es.bulk(operations=_body(pending), refresh=refresh, require_alias=True, filter_path=_REPLY)
        if not resp.get("errors"):
            return failed
        retry: list[Op] = []
        for op, item in zip(pending, resp["items"]):
            res = next(iter(item.values()))
            status = int(res.get("status", 500))
            if status < 300 or (op.action == "delete" and status == 404):
                continue
            if status == 409 and ignore_conflicts:
                continue
            err = res.get("error") or {}
            if status in RETRYABLE and attempt < attempts:
                retry.append(op)
                continue
            failed.append(BulkItemError(op=op.action, index=op.index, id=op.id, status=status,
                                        type=str(err.get("type", "")), reason=str(err.get("reason", ""))[:500]))
        if not retry:
            return failed
        log.warning("bulk: retrying %d operation(s) refused with 429/5xx (attempt %d)", len(retry), attempt)
        await asyncio.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 5.0)
        pending = retry
    return failed


async def bulk(es: AsyncElasticsearch, ops: Iterable[Op], *, refresh: str | bool = False, attempts: int = 5,
               backoff: float = 0.2, ignore_conflicts: bool = False) -> None:
    """Run `ops` (streamed: bodies are built one request at a time) in bounded requests. Raises
    BulkWriteError at the first request with an operation that failed for good (the rest is not sent).

    `refresh` ("wait_for" | "true" | False) makes every write visible before returning: a single request
    carries it; several requests end with one explicit refresh, since a request's wait_for covers only
    the shards that request touched."""
    await _run(es, ops, refresh, attempts, backoff, ignore_conflicts, stop_on_error=True)


async def bulk_items(es: AsyncElasticsearch, ops: Iterable[Op], *, refresh: str | bool = False, attempts: int = 5,
                     backoff: float = 0.2) -> list[BulkItemError]:
    """Like `bulk`, for writes of independent parts (several catalogs in one batch): every request is sent
    and the refresh done whatever failed; returns the operations that failed for good, for the caller to
    sort out per part. Transport errors (no answer at all) still raise."""
    return await _run(es, ops, refresh, attempts, backoff, False, stop_on_error=False)


async def _run(es: AsyncElasticsearch, ops: Iterable[Op], refresh: str | bool, attempts: int, backoff: float,
               ignore_conflicts: bool, *, stop_on_error: bool) -> list[BulkItemError]:
    indices: set[str] = set()
    failed: list[BulkItemError] = []
    held: list[Op] | None = None
    sent = 0

    async def send(chunk: list[Op], refresh: str | bool) -> None:
        errors = await _send(es, chunk, refresh, attempts, backoff, ignore_conflicts)
        if errors and stop_on_error:
            raise BulkWriteError(errors)   # the caller undoes the write; no point sending the rest
        failed.extend(errors)

    for chunk in _chunks(ops):
        if held is not None:
            await send(held, False)
            sent += 1
        held = chunk
        indices.update(op.index for op in chunk)
    if held is None:
        return failed
    await send(held, refresh if sent == 0 else False)
    if refresh and refresh != "false" and sent > 0:
        await es.indices.refresh(index=",".join(sorted(indices)))
    return failed


async def scan_ids(es: AsyncElasticsearch, index: str, query: dict[str, Any]) -> list[str]:
    """Ids of every doc matching `query` (a scroll snapshot)."""
    out: list[str] = []
    async for hit in async_scan(es, index=index, query={"query": query}, _source=False, size=1000,
                                scroll="2m", clear_scroll=True):
        out.append(hit["_id"])
    return out


async def delete_where(es: AsyncElasticsearch, index: str, query: dict[str, Any], *,
                       refresh: str | bool = False) -> int:
    """Delete every doc matching `query` in the alias `index`; the number deleted. Missing docs are not
    errors."""
    ids = await scan_ids(es, index, query)
    if ids:
        await bulk(es, [delete_op(index, i) for i in ids], refresh=refresh)
    return len(ids)


__all__ = ["BulkItemError", "BulkWriteError", "ConflictError", "NdjsonBytes", "Op", "bulk", "bulk_items", "delete_op", "delete_where",
           "index_encoded_op", "index_op", "scan_ids"]
