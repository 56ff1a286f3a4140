"""Where publish → searchable goes, stage by stage, inside a running CDS (load tests only; cds/ knows nothing
of this). `loadtests.profile_serve` installs it when $CDS_BENCH_STAGES_OUT is set, e.g.

    python -m loadtests.bench_ingest --connectors 100000 --no-write --env CDS_BENCH_STAGES_OUT=/tmp/stages.json
    python -m loadtests.stage_trace /tmp/stages.json           # the table (per process: one file per pid)

It wraps, in the process that indexes (the ingest process of `cds serve`, or `cds serve --single-process`), the
steps of one queued publish and writes per catalog written, in ms:

- queue: from the API's receipt of the publish (`IngestEntry.received_at`, just before the ACK) to the start of
  `CatalogIndexer.index` (stream append, XREADGROUP, per-catalog chain, concurrency slot);
- normalise: `normalize_catalog`; pack_prepare: `Index.prepare` (interning, index columns; JSON packing on the
  loop for small catalogs) or the ingest process's `CatalogTable.prepare` (encoding); replace: `replace_catalog`
  whole (packing in a thread, the log and the followers included);
- log: submit to the write-ahead log until its batch is written, fsynced and applied (`log_batches` has the
  write + fsync time and size of every batch, `commits` the apply time on the loop);
- followers: waiting for every serving worker to apply the record (0 with `--single-process`);
- to_report: from the index call's end to the callback's start (`done` key in Redis, callback task);
- report: signing and sending on_catalog_publish; total: receipt → callback sent.

Plus the event loop's lag (a 5 ms ticker: how late it ran), which every stage above includes.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import os
import sys
import time
from pathlib import Path
from typing import Any

import orjson

_current: contextvars.ContextVar[dict | None] = contextvars.ContextVar("stage_trace", default=None)
MAX_ROWS = 200_000


class Trace:
    def __init__(self, out: str) -> None:
        self.out = out
        self.rows: list[dict] = []
        self.batches: list[tuple[float, float, int]] = []       # (start, ms, frames)
        self.commits: list[tuple[float, int]] = []              # (ms, ops)
        self.lag: list[float] = []                              # loop lag samples, ms
        self._ticker: asyncio.Task | None = None

    def dump(self) -> None:
        if not self.rows:
            return              # a process that indexed nothing (a follower, the supervisor)
        path = Path(self.out)
        if path.suffix == ".json" or not path.is_dir():
            path = path.with_name(f"{path.stem}.{os.getpid()}.json")
        path.write_bytes(orjson.dumps({"rows": self.rows, "batches": self.batches, "commits": self.commits,
                                       "lag": self.lag}))

    def tick(self) -> None:
        if self._ticker is None:
            self._ticker = asyncio.ensure_future(self._tick())

    async def _tick(self) -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.005)
            if len(self.lag) < MAX_ROWS:
                self.lag.append((time.perf_counter() - t) * 1000 - 5)


_installed: list[Trace] = []


def install(out: str) -> Trace:
    """Wrap the steps (once per process)."""
    if _installed:
        return _installed[0]
    from indexer.embedded import persist, store
    from indexer.embedded.index import Index
    from indexer.ingest import apply

    tr = Trace(out)
    _installed.append(tr)
    atexit.register(tr.dump)
    ms = lambda t0: (time.perf_counter() - t0) * 1000       # noqa: E731

    index0, report0 = apply.CatalogIndexer.index, apply.CatalogIndexer.report

    async def index(self: Any, entry: Any) -> Any:
        tr.tick()
        row = {"queue": (time.time() - entry.received_at) * 1000, "normalise": 0.0, "pack_prepare": 0.0,
               "log": 0.0, "followers": 0.0, "replace": 0.0, "received": entry.received_at}
        _current.set(row)
        t0 = time.perf_counter()
        try:
            return await index0(self, entry)
        finally:
            row["index"] = ms(t0)
            row["index_end"] = time.perf_counter()
            if len(tr.rows) < MAX_ROWS:
                tr.rows.append(row)

    async def report(self: Any, entry: Any, req: Any, results: Any) -> Any:
        row = _current.get()
        t0 = time.perf_counter()
        try:
            return await report0(self, entry, req, results)
        finally:
            if row is not None:
                row["to_report"] = (t0 - row.get("index_end", t0)) * 1000
                row["report"] = ms(t0)
                row["total"] = (time.time() - row["received"]) * 1000

    def timed(fn: Any, stage: str) -> Any:
        def wrapper(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                _add(stage, ms(t0))
        return wrapper

    def timed_async(fn: Any, stage: str) -> Any:
        async def wrapper(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await fn(*a, **k)
            finally:
                _add(stage, ms(t0))
        return wrapper

    def batches(fn: Any, out: list, with_start: bool) -> Any:
        """Time a call taking a log batch: (start, ms, frames) or (ms, frames) per call."""
        def wrapper(self: Any, batch: list) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(self, batch)
            finally:
                if len(out) < MAX_ROWS:
                    out.append((t0, ms(t0), len(batch)) if with_start else (ms(t0), len(batch)))
        return wrapper

    submit0 = store.EmbeddedStorage._submit

    def submit(self: Any, *a: Any, **k: Any) -> Any:
        fut = submit0(self, *a, **k)
        row, t0 = _current.get(), time.perf_counter()
        if row is not None:
            fut.add_done_callback(lambda _f: row.__setitem__("log", row["log"] + ms(t0)))
        return fut

    S = store.EmbeddedStorage
    apply.normalize_catalog = timed(apply.normalize_catalog, "normalise")
    Index.prepare = timed(Index.prepare, "pack_prepare")
    try:                                    # the ingest process's table of encoded catalogs (writer.py)
        from indexer.embedded.writer import CatalogTable
        CatalogTable.prepare = timed(CatalogTable.prepare, "pack_prepare")
    except ImportError:                     # a checkout from before it
        pass
    S.replace_catalog = timed_async(S.replace_catalog, "replace")
    S._followed = timed_async(S._followed, "followers")
    S._submit = submit
    persist.FrameLog._write_batch = batches(persist.FrameLog._write_batch, tr.batches, True)
    S._on_commit = batches(S._on_commit, tr.commits, False)
    apply.CatalogIndexer.index, apply.CatalogIndexer.report = index, report
    return tr


def _add(key: str, v: float) -> None:
    row = _current.get()
    if row is not None:
        row[key] = row.get(key, 0.0) + v


def _pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def summary(paths: list[str], since: float = 0.0) -> str:
    """Percentiles per stage (rows received at or after `since`, a time.time(); 0 = all)."""
    lines = []
    for p in paths:
        d = orjson.loads(Path(p).read_bytes())
        rows = [r for r in d["rows"] if r["received"] >= since and "total" in r]
        if not rows:
            continue
        lines.append(f"{p}: {len(rows)} catalogs")
        lines.append("| stage | p50 | p95 | p99 | max | mean |")
        lines.append("| --- | --- | --- | --- | --- | --- |")
        keys = ["queue", "normalise", "pack_prepare", "replace", "log", "followers", "index", "to_report", "report",
                "total"]
        for k in keys:
            xs = [r.get(k, 0.0) for r in rows]
            lines.append(f"| {k} | {_pct(xs, 50):.1f} | {_pct(xs, 95):.1f} | {_pct(xs, 99):.1f} | {max(xs):.1f} | "
                         f"{sum(xs) / len(xs):.1f} |")
        slow = sorted(rows, key=lambda r: -r["total"])[: max(1, len(rows) // 100)]
        lines.append("slowest 1 %, mean ms: " + ", ".join(
            f"{k} {sum(r.get(k, 0.0) for r in slow) / len(slow):.1f}" for k in keys))
        b = [ms for t, ms, _ in d["batches"]]
        n = [k for *_, k in d["batches"]]
        if b:
            lines.append(f"log batches: {len(b)}, write+fsync p50 {_pct(b, 50):.1f} p99 {_pct(b, 99):.1f} max "
                         f"{max(b):.1f} ms, frames per batch mean {sum(n) / len(n):.2f} max {max(n)}")
        c = [ms for ms, _ in d["commits"]]
        if c:
            lines.append(f"apply on commit: p50 {_pct(c, 50):.2f} p99 {_pct(c, 99):.2f} max {max(c):.1f} ms")
        lag = d["lag"]
        if lag:
            lines.append(f"loop lag: p50 {_pct(lag, 50):.1f} p99 {_pct(lag, 99):.1f} max {max(lag):.1f} ms "
                         f"({sum(1 for x in lag if x > 50)} samples > 50 ms)")
    return "\n".join(lines)


if __name__ == "__main__":
    args = sys.argv[1:]
    since = 0.0
    if args and args[0].startswith("--since="):
        since = float(args.pop(0).split("=", 1)[1])
    print(summary(args, since))
