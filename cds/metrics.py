"""Prometheus metrics. Every metric we define starts with `cds_` (docs/decisions.md §15); the client
library's default process_*/python_* collectors stay registered.

With `cds serve --workers N` every process of the server (the serving workers and the ingest process)
writes its values to files in `PROMETHEUS_MULTIPROC_DIR` (set by the supervisor; the client library's
multiprocess mode), and a scrape of any worker reads all of them: counters and histograms are summed
over processes, and the gauges that every worker sets from the same shared state (index size, backlog,
circuits) show the most recent value of a live process. `process_*` / `python_*` describe the worker
that answered the scrape."""

from __future__ import annotations

import asyncio
import bisect
import os
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_SHARED = "livemostrecent"       # gauges of shared state: the value the last live process set

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


_unwritten: list["_Deferred"] = []        # deferred children observed since the last flush (this process)
_flush_on: asyncio.AbstractEventLoop | None = None   # the loop a flush is scheduled on


def flush_deferred() -> None:
    """Write every deferred observation of this process into its metric (see `_memoised`)."""
    global _flush_on
    _flush_on = None
    while _unwritten:
        _unwritten.pop().flush()


class _Deferred:
    """A child's observations kept in memory until `flush_deferred`, which the first of them schedules for the end
    of the event loop's turn: requests answered in one turn (several under load) write each value once, and no
    observation waits while the loop idles. Without a running loop (sync code, other threads) it writes through."""

    __slots__ = ("_child", "_dirty")

    def __init__(self, child: Any) -> None:
        self._child = child
        self._dirty = False

    def _touched(self) -> None:
        global _flush_on
        self._dirty = True
        _unwritten.append(self)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            flush_deferred()
            return
        if _flush_on is not loop:
            _flush_on = loop
            loop.call_soon(flush_deferred)

    def flush(self) -> None:
        self._dirty = False
        self._write()

    def _write(self) -> None:
        raise NotImplementedError


class _DeferredCounter(_Deferred):
    __slots__ = ("_n",)

    def __init__(self, child: prometheus_client.Counter) -> None:
        super().__init__(child)
        self._n = 0.0

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        self._n += amount
        if not self._dirty:
            self._touched()

    def _write(self) -> None:
        n, self._n = self._n, 0.0
        if n:
            self._child._value.inc(n)   # what `inc` does after its checks (`inc` above made them)


class _DeferredHistogram(_Deferred):
    """Observations counted per bucket: the one `Histogram.observe` picks (the first bound not below the value)."""

    __slots__ = ("_bounds", "_counts", "_sum")

    def __init__(self, child: prometheus_client.Histogram) -> None:
        super().__init__(child)
        self._bounds = child._upper_bounds          # ends with +Inf
        self._counts: dict[int, int] = {}           # bucket index -> observations (a turn touches one or two)
        self._sum = 0.0

    def observe(self, amount: float) -> None:
        i = bisect.bisect_left(self._bounds, amount)
        if i < len(self._bounds) and amount <= self._bounds[i]:     # (NaN: no bucket, as observe does)
            self._counts[i] = self._counts.get(i, 0) + 1
        self._sum += amount
        if not self._dirty:
            self._touched()

    def _write(self) -> None:
        counts, total = self._counts, self._sum
        self._counts, self._sum = {}, 0.0
        self._child._sum.inc(total)
        buckets = self._child._buckets
        for i, n in counts.items():
            buckets[i].inc(n)


def _memoised(cls: type) -> type:
    """The metric class with `labels(*values)` children remembered by their values: the client library
    validates, converts and takes a lock on every call, several times per request (docs/decisions.md §G).
    Children are never removed here (nothing calls `remove`/`clear`), so a remembered one is always current.
    `deferred(*values)`: that child for the request path (`_Deferred`): an observation otherwise writes the
    shared file of the multiprocess mode under a lock, several per request; `collect` and scrapes flush first."""

    class Memoised(cls):  # type: ignore[valid-type, misc]
        def labels(self, *values: object, **by_name: object):  # type: ignore[override]
            if by_name or not values:
                return super().labels(*values, **by_name)
            memo = self.__dict__.get("_children")
            if memo is None:
                memo = self.__dict__["_children"] = {}
            child = memo.get(values)
            if child is None:
                child = memo[values] = super().labels(*values)
            return child

        def deferred(self, *values: object) -> _DeferredCounter | _DeferredHistogram:
            memo = self.__dict__.get("_deferred")
            if memo is None:
                memo = self.__dict__["_deferred"] = {}
            d = memo.get(values)
            if d is None:
                child = self.labels(*values) if values else self
                d = memo[values] = (_DeferredHistogram if isinstance(child, prometheus_client.Histogram)
                                    else _DeferredCounter)(child)
            return d

        def collect(self):  # type: ignore[override]
            flush_deferred()
            return super().collect()

    Memoised.__name__ = Memoised.__qualname__ = cls.__name__
    return Memoised


Counter = _memoised(prometheus_client.Counter)
Gauge = _memoised(prometheus_client.Gauge)
Histogram = _memoised(prometheus_client.Histogram)


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


class Metrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY, runtime: CollectorRegistry | None = None) -> None:
        self.registry = registry
        self.runtime = runtime              # process_*/python_* of this process (multiprocess mode)
        self.requests = Counter("cds_requests_total",
                                "Inbound Beckn requests by action and outcome (ack|nack|error|aborted)",
                                ["action", "outcome"], registry=registry)
        self.connections_refused = Counter("cds_connections_refused_total",
                                           "Connections refused with a 503 beyond CDS_MAX_CONNECTIONS",
                                           registry=registry)
        self.latency = Histogram("cds_request_duration_seconds", "Inbound request latency until the HTTP reply",
                                 ["action", "outcome"], buckets=_LATENCY_BUCKETS, registry=registry)
        self.nacks = Counter("cds_nacks_total", "NACKs by NFH-008 code", ["action", "code"], registry=registry)
        self.callbacks = Counter("cds_callbacks_total", "Outbound callbacks by action and outcome (delivered|failed)",
                                 ["action", "outcome"], registry=registry)
        self.callback_retries = Counter("cds_callback_retries_total", "Extra delivery attempts", ["action"], registry=registry)
        self.callback_latency = Histogram("cds_callback_duration_seconds",
                                          "Time from request receipt to callback delivered", ["action"],
                                          buckets=_LATENCY_BUCKETS, registry=registry)
        self.discover_results = Histogram("cds_discover_items", "Items returned per discover",
                                          buckets=(0, 1, 5, 10, 25, 50, 100, 250, 1000), registry=registry)
        self.search_latency = Histogram("cds_search_duration_seconds", "Index search time per discover",
                                        ["backend"], buckets=_LATENCY_BUCKETS, registry=registry)
        self.publish_catalogs = Counter("cds_publish_catalogs_total", "Published catalogs by result",
                                        ["status"], registry=registry)
        self.publish_rejected = Counter("cds_publish_rejected_total",
                                        "Published catalogs refused whole, and items the index refused, per "
                                        "publisher", ["bpp", "kind"], registry=registry)
        self.publish_items = Counter("cds_publish_items_total", "Items indexed from publishes", registry=registry)
        self.publish_to_searchable = Histogram("cds_publish_to_searchable_seconds",
                                               "From publish ACK to catalog searchable", buckets=_LATENCY_BUCKETS,
                                               registry=registry)
        self.index_catalogs = Gauge("cds_index_catalogs", "Catalogs in the index", multiprocess_mode=_SHARED, registry=registry)
        self.index_items = Gauge("cds_index_items", "Items (connectors) in the index", multiprocess_mode=_SHARED,
                                 registry=registry)
        self.freshness_lag = Gauge("cds_index_freshness_lag_seconds", "Now minus the newest publish indexed",
                                   multiprocess_mode=_SHARED, registry=registry)
        self.ingest_pending = Gauge("cds_ingest_pending", "Accepted publishes not yet indexed", multiprocess_mode=_SHARED,
                                    registry=registry)
        self.purged = Counter("cds_expiry_purged_total", "Expired objects purged", ["kind"], registry=registry)
        self.registry_lookups = Counter("cds_registry_lookups_total", "Registry key lookups by result (hit|miss)",
                                        ["result"], registry=registry)
        # --- fan-out; `bpp` labels are registry subscriber ids (bounded by the registry) ---
        self.fanout_requests = Counter("cds_fanout_requests_total", "Fan-out discovers sent, per BPP", ["bpp"],
                                       registry=registry)
        self.fanout_responses = Counter("cds_fanout_responses_total",
                                        "Answers to our fan-out discover per BPP (ack|nack|error|timeout)",
                                        ["bpp", "result"], registry=registry)
        self.fanout_replies = Counter("cds_fanout_replies_total",
                                      "on_discover replies from targeted BPPs (accepted|late|duplicate)",
                                      ["bpp", "result"], registry=registry)
        self.fanout_reply_latency = Histogram("cds_fanout_reply_seconds",
                                              "From our fan-out discover to the BPP's accepted on_discover",
                                              ["bpp"], buckets=_LATENCY_BUCKETS, registry=registry)
        self.fanout_timeouts = Counter("cds_fanout_timeouts_total", "Targets that had not replied by the deadline",
                                       ["bpp"], registry=registry)
        self.fanout_circuit_open = Gauge("cds_fanout_circuit_open", "1 while the BPP's circuit is open or half-open",
                                         ["bpp"], multiprocess_mode=_SHARED, registry=registry)
        self.fanout_targets = Histogram("cds_fanout_targets", "BPPs asked per fanned-out discover",
                                        buckets=(1, 2, 5, 10, 20, 50, 100), registry=registry)
        self.fanout_skipped = Counter("cds_fanout_skipped_total",
                                      "Discovers answered without fan-out, by reason", ["reason"], registry=registry)
        self.fanout_callback_latency = Histogram("cds_fanout_merged_callback_seconds",
                                                 "From discover receipt to the merged on_discover delivered "
                                                 "(async) or returned (sync)", ["mode"], buckets=_LATENCY_BUCKETS,
                                                 registry=registry)
        # --- durable ingest on Redis streams; `cds_ingest_pending` above is the stream backlog ---
        self.ingest_backlog_bytes = Gauge("cds_ingest_backlog_bytes", "Bytes of queued publishes (stream mode)",
                                          multiprocess_mode=_SHARED, registry=registry)
        self.ingest_stream_pending = Gauge("cds_ingest_stream_pending",
                                           "Publishes delivered to an indexer and not yet acknowledged", multiprocess_mode=_SHARED, registry=registry)
        self.ingest_consumer_lag = Gauge("cds_ingest_consumer_lag", "Queued publishes not yet delivered to an indexer",
                                         multiprocess_mode=_SHARED, registry=registry)
        self.ingest_dead_letters = Gauge("cds_ingest_dead_letters", "Entries in the dead-letter stream",
                                         multiprocess_mode=_SHARED, registry=registry)
        self.ingest_dead_lettered = Counter("cds_ingest_dead_lettered_total",
                                            "Publishes set aside as poison, by reason "
                                            "(undecodable|unparsable|failing|redelivered)", ["reason"], registry=registry)
        self.ingest_reclaimed = Counter("cds_ingest_reclaimed_total",
                                        "Entries reclaimed from indexers that died or stalled (XAUTOCLAIM)",
                                        registry=registry)
        self.ingest_index_waits = Counter("cds_ingest_index_unavailable_total",
                                          "Indexing attempts that found the index unavailable (retried)",
                                          registry=registry)
        self.ingest_partitions_held = Gauge("cds_ingest_partitions_held", "Stream partitions this indexer holds",
                                            multiprocess_mode="livesum", registry=registry)
        self.ingest_overloaded = Counter("cds_ingest_rejected_total",
                                         "Publishes refused before queueing (overloaded|unavailable)", ["reason"],
                                         registry=registry)

    def server_registry(self) -> CollectorRegistry:
        """The whole server's series: this registry, or, with N workers, all processes' files summed (this
        process's deferred observations written first; the other processes' are by the end of their loop's turn)."""
        flush_deferred()
        if multiprocess_dir() is None:
            return self.registry
        from prometheus_client.multiprocess import MultiProcessCollector

        every = CollectorRegistry()
        MultiProcessCollector(every)
        return every

    def render(self) -> tuple[bytes, str]:
        runtime = generate_latest(self.runtime) if self.runtime is not None and multiprocess_dir() else b""
        return generate_latest(self.server_registry()) + runtime, CONTENT_TYPE_LATEST


def new_metrics() -> Metrics:
    """A fresh registry per app (tests build many apps in one process); it still carries the
    default process/platform/gc collectors like the global one."""
    from prometheus_client.gc_collector import GCCollector
    from prometheus_client.platform_collector import PlatformCollector
    from prometheus_client.process_collector import ProcessCollector

    reg = CollectorRegistry()
    runtime = CollectorRegistry() if multiprocess_dir() else reg
    ProcessCollector(registry=runtime)
    PlatformCollector(registry=runtime)
    GCCollector(registry=runtime)
    return Metrics(reg, runtime if runtime is not reg else None)
