"""`cds` console script: serve, keygen, request, indexer, index init, demo data."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from cds.config import ConfigError, load_settings


def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from cds.api.app import create_app
    from cds.api.server import serve
    from cds.logs import setup_logging

    overrides = {}
    if args.demo:
        from cds.demo.seed import demo_overrides

        overrides = demo_overrides(host=args.host, port=args.port)
    settings = _settings_requiring(
        "signing_private_key",
        "CDS_SIGNING_PRIVATE_KEY is not set: create one with `cds keygen` (or run `cds serve --demo`).", **overrides)
    setup_logging(settings.log_level)
    if not settings.registry_url and not settings.registry_file:
        print("warning: neither CDS_REGISTRY_URL nor CDS_REGISTRY_FILE is set: every signed request will be "
              "refused (AUT_SUBSCRIBER_NOT_FOUND)", file=sys.stderr)
    app = create_app(settings)
    if args.demo:
        from cds.api.appkeys import SETTINGS, STORAGE
        from cds.demo.seed import seed

        async def seed_demo(app: web.Application) -> None:
            await seed(app[STORAGE], app[SETTINGS])

        app.on_startup.append(seed_demo)
    print(f"CDS {settings.subscriber_id} listening on http://{args.host}:{args.port}{settings.base_path} "
          f"(storage: {'elasticsearch' if settings.es_url else 'embedded ' + str(settings.data_path)})", file=sys.stderr)
    asyncio.run(serve(app, settings, host=args.host, port=args.port))
    return 0


def _keygen(args: argparse.Namespace) -> int:
    from cds.keys import generate_keypair

    seed, pub = generate_keypair()
    print(f"signing_private_key={seed}\nsigning_public_key={pub}")
    return 0


def _request(args: argparse.Namespace) -> int:
    from cds.cli.request import run_request

    return asyncio.run(run_request(args))


class _Refused(Exception):
    """A command cannot run with this configuration; the message says why (exit 2)."""


def _settings_requiring(field: str, why: str, **overrides: object):
    """Load settings; refuse (exit 2 with `why`) when `field` is unset."""
    try:
        settings = load_settings(**overrides)
    except ConfigError as e:
        raise _Refused(str(e)) from None
    if not getattr(settings, field):
        raise _Refused(why)
    return settings


def _indexer(args: argparse.Namespace) -> int:
    settings = _settings_requiring(
        "redis_url", "cds indexer is the production ingest worker and needs CDS_REDIS_URL; with the embedded "
        "default the API process (cds serve) indexes publishes itself.")
    if not settings.signing_private_key:
        print("CDS_SIGNING_PRIVATE_KEY is not set: the indexer signs on_catalog_publish callbacks.", file=sys.stderr)
        return 2
    from cds.logs import setup_logging
    from indexer.ingest.worker_process import run_indexer

    setup_logging(settings.log_level)
    return asyncio.run(run_indexer(settings))


def _index_init(args: argparse.Namespace) -> int:
    settings = _settings_requiring(
        "es_url", "cds index init creates the Elasticsearch indices and needs CDS_ES_URL "
        "(the embedded index needs no initialisation).")

    from elastic_transport import TransportError
    from elasticsearch import ApiError

    from indexer.elastic.store import ElasticStorage, IndexStateError

    async def run() -> None:
        storage = ElasticStorage(settings)
        try:
            print(await storage.init_indices())
        finally:
            await storage.close()

    # one clear line instead of a traceback: these are the operator's to fix (URL, server, auth, old indices)
    url = _redacted(settings.es_url)
    try:
        asyncio.run(run())
    except TransportError as e:   # refused, timed out, TLS: nothing answered
        print(f"cds index init: cannot reach Elasticsearch at {url}: {e.message}", file=sys.stderr)
        return 2
    except ApiError as e:         # it answered with an error (401/403 credentials, 400 ...)
        err = e.body.get("error") if isinstance(e.body, dict) else None
        why = (f"{err.get('type')}: {err.get('reason')}" if isinstance(err, dict) else str(err or e.body or "")[:200]
               or "empty reply (is this an Elasticsearch server?)")
        print(f"cds index init: Elasticsearch at {url} answered HTTP {e.meta.status}: {why}", file=sys.stderr)
        return 2
    except IndexStateError as e:
        print(f"cds index init: {e}", file=sys.stderr)
        return 2
    return 0


def _redacted(url: str) -> str:
    """The URL without user:password (it is printed)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cds", description="UBC Catalog Discovery Service")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the API")
    s.add_argument("--host", default=os.environ.get("CDS_HOST", "127.0.0.1"))
    s.add_argument("--port", type=int, default=int(os.environ.get("CDS_PORT", "8080")))
    s.add_argument("--demo", action="store_true",
                   help="also create a demo network (keys, registry file, seeded catalogs) under CDS_DATA_DIR")
    s.set_defaults(func=_serve)
    k = sub.add_parser("keygen", help="print a new Ed25519 key pair (base64 seed and public key)")
    k.set_defaults(func=_keygen)
    r = sub.add_parser("request", help="sign and send a JSON payload, print the reply and the callback")
    r.add_argument("file", help="JSON payload (context ids and timestamps are refreshed)")
    r.add_argument("--url", default=None, help="CDS base URL (default http://127.0.0.1:8080/beckn)")
    r.add_argument("--get", action="store_true", help="synchronous GET /discover instead of POST")
    r.add_argument("--key", default=None, help="base64 private key (default: the demo BAP/BPP key)")
    r.add_argument("--subscriber-id", default=None)
    r.add_argument("--key-id", default=None)
    r.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the callback")
    r.add_argument("--callback-host", default="127.0.0.1")
    r.set_defaults(func=_request)
    i = sub.add_parser("indexer", help="run the ingest worker (production mode, needs CDS_REDIS_URL)")
    i.set_defaults(func=_indexer)
    ix = sub.add_parser("index", help="index management")
    ixs = ix.add_subparsers(dest="index_command", required=True)
    init = ixs.add_parser("init", help="create/migrate the Elasticsearch indices")
    init.set_defaults(func=_index_init)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except _Refused as e:
        print(e, file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
