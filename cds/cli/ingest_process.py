"""The ingest process of `cds serve` (docs/decisions.md §P, any worker count): the stream consumer of
`cds indexer`, run next to the serving workers by the supervisor. With the embedded index it is the
index's only writer (write-ahead log, snapshots, expiry sweep); each of its writes returns, and so
`on_catalog_publish` goes out, only once every serving worker has applied it. Normalisation and index
writes therefore never run on a serving event loop (§24).

    python -m cds.cli.ingest_process [--demo --host H --port P]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from cds.config import load_settings


INGEST_NICE = 10


async def _run(args: argparse.Namespace) -> int:
    from indexer.ingest.worker_process import run_indexer

    overrides = {}
    if args.demo:
        from cds.demo.seed import demo_overrides

        overrides = demo_overrides(host=args.host, port=args.port)
    settings = load_settings(**overrides)
    storage = None
    if not settings.es_url:
        from indexer.embedded.positions import FollowerPositions
        from indexer.embedded.store import EmbeddedStorage

        index_dir = settings.data_path / "index"
        # It searches nothing: encoded catalogs only, not a searchable copy (indexer/embedded/writer.py).
        storage = EmbeddedStorage(index_dir, followers=FollowerPositions(index_dir), searchable=False)
    # the demo catalogs were seeded by `cds serve` before it started this process (cds.cli.main)
    stop = asyncio.Event()
    watch = asyncio.ensure_future(_stop_with_parent(stop))
    try:
        # like `cds serve --single-process`, never creates Elasticsearch indices (`cds index init` does)
        return await run_indexer(settings, stop, storage=storage, purge=not settings.es_url, init_indices=False)
    finally:
        watch.cancel()


async def _stop_with_parent(stop: asyncio.Event) -> None:
    """A supervisor that died (SIGKILL, OOM) leaves no ingest process holding the index lock behind."""
    import os

    parent = os.getppid()
    while os.getppid() == parent:
        await asyncio.sleep(1.0)
    stop.set()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cds.cli.ingest_process", description=__doc__.splitlines()[0])
    p.add_argument("--demo", action="store_true")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    args = p.parse_args(argv)
    from cds.logs import setup_logging

    # Normalising a big catalog is bulk work: the serving workers on the same cores come first (§P).
    os.nice(INGEST_NICE)
    setup_logging(load_settings().log_level)
    return asyncio.run(_run(args))


if __name__ == "__main__":
    sys.exit(main())
