"""`cds` console script: serve, keygen, request, indexer, index init, demo data."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time

from cds.config import ConfigError, load_settings


def _serve(args: argparse.Namespace) -> int:
    import logging

    from cds.logs import setup_logging
    from indexer.embedded.persist import DirLocked

    overrides = {}
    if args.demo:
        from cds.demo.seed import demo_overrides

        overrides = demo_overrides(host=args.host, port=args.port)
    settings = _settings_requiring(
        ("signing_private_key",
         "CDS_SIGNING_PRIVATE_KEY is not set: create one with `cds keygen` (or run `cds serve --demo`)."), **overrides)
    setup_logging(settings.log_level)   # from here on every line on stderr is JSON (README "Metrics", logs)
    log = logging.getLogger("cds.serve")
    if not settings.registry_url and not settings.registry_file and not args.worker:
        log.warning("neither CDS_REGISTRY_URL nor CDS_REGISTRY_FILE is set: every signed request will be "
                    "refused (AUT_SUBSCRIBER_NOT_FOUND)")
    if args.demo and settings.console_token and not os.environ.get("CDS_CONSOLE_TOKEN"):
        shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
        log.info(f"operator console: http://{shown}:{args.port}/console?token={settings.console_token}")
        os.environ["CDS_CONSOLE_TOKEN"] = settings.console_token   # the same token for every worker it starts
    if args.worker:     # one of the supervisor's serving processes (docs/decisions.md §P)
        # A follower applying a big catalog works in a thread: the loop waits at most 1 ms for the GIL, not 5.
        sys.setswitchinterval(WORKER_SWITCH_INTERVAL_S)
        watch_parent(os.getppid())      # a worker whose supervisor died (SIGKILL, OOM) must not serve on alone
        from cds.api.app import create_app
        from cds.api.server import serve

        app = create_app(settings, worker=True, machine_redis=args.machine_redis)
        asyncio.run(serve(app, settings, host=args.host, port=args.port, reuse_port=True))
        return 0
    if args.single_process:
        if args.workers not in (None, 1):
            raise _Refused("--single-process runs one process: drop --workers")
        return _serve_single_process(args, settings, log)
    from cds.cli.supervisor import claim, run_workers

    # Every worker count runs the supervisor: ingest never runs on a serving loop (docs/decisions.md §P, §24).
    workers = args.workers or settings.workers or usable_cpus()
    try:
        held = claim(settings, host=args.host, port=args.port)
    except DirLocked as e:
        return _locked(log, e, settings)
    except OSError as e:   # the port is taken, the address is not ours ...
        log.error(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}")
        return 2
    if args.demo:   # seeded before any worker can answer: a ready demo has its catalogs
        asyncio.run(_seed_demo_once(settings))
    return run_workers(settings, workers, host=args.host, port=args.port, demo=args.demo, held=held)


def _locked(log, e: Exception, settings) -> int:
    log.error(f"cannot start: {e}: is another `cds serve` using CDS_DATA_DIR {settings.data_path}?")
    return 2


def _serve_single_process(args: argparse.Namespace, settings, log) -> int:
    """`cds serve --single-process`: API, ingest and index in one process, as before the supervisor ran for
    every worker count. For debugging (one process to profile or step through), never the default: there
    normalising and index writes share the serving loop (docs/decisions.md §P)."""
    from aiohttp import web

    from cds.api.app import create_app
    from cds.api.server import serve
    from cds.cli.supervisor import claim_data_dir, listening_fields
    from indexer.embedded.persist import DirLocked

    try:
        held = claim_data_dir(settings)
    except DirLocked as e:
        return _locked(log, e, settings)
    if not settings.redis_url and (settings.data_path / "redis").exists():
        log.warning("publishes that the supervised `cds serve` queued in CDS_DATA_DIR/redis and did not index "
                    "yet wait there until it runs again (without --single-process)")
    app = create_app(settings)
    if args.demo:
        from cds.api.appkeys import SETTINGS, STORAGE
        from cds.demo.seed import seed

        async def seed_demo(app: web.Application) -> None:
            await seed(app[STORAGE], app[SETTINGS])

        app.on_startup.append(seed_demo)
    url = f"http://{args.host}:{args.port}{settings.base_path}"
    fields = {**listening_fields(settings, url), "single_process": True}

    def listening() -> None:   # called once the socket is bound (after the startup hooks)
        log.info(f"listening on {url}", extra={"fields": fields})

    try:
        asyncio.run(serve(app, settings, host=args.host, port=args.port, on_listening=listening))
    except OSError as e:   # the port is taken, the address is not ours ...
        log.error(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}")
        return 2
    except DirLocked as e:
        return _locked(log, e, settings)
    finally:
        held.release()
    return 0


def usable_cpus() -> int:
    """CPUs this process may use: the affinity mask, capped by a cgroup CPU quota (a container limited to
    2 CPUs on a 64-core node must not start 64 workers)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]          # cgroup v2
    except (OSError, ValueError):
        try:
            quota = open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read().strip()       # cgroup v1
            period = open("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read().strip()
        except OSError:
            return max(1, n)
    if quota not in ("max", "-1") and int(period) > 0:
        n = min(n, max(1, -(-int(quota) // int(period))))
    return max(1, n)


PARENT_GRACE_S = 20.0   # a graceful stop takes at most SHUTDOWN_TIMEOUT_S (5 s) plus the cleanups


def watch_parent(parent: int, *, poll_s: float = 1.0, grace_s: float = PARENT_GRACE_S) -> threading.Thread:
    """Once `parent` is gone: SIGTERM this process (a graceful stop), and if it is still alive `grace_s` later,
    exit at once. A thread, not a task: a worker whose loop or cleanup hangs must not outlive its supervisor
    (one did, stuck in its cleanup after the supervisor was SIGKILLed)."""
    import signal

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        os._exit(1)

    t = threading.Thread(target=watch, name="cds-parent-watch", daemon=True)
    t.start()
    return t


async def _seed_demo_once(settings) -> None:
    from cds.demo.seed import seed
    from indexer.factory import build_storage

    storage = build_storage(settings)
    await storage.open()
    try:
        await seed(storage, settings)
    finally:
        await storage.close()


def _keygen(args: argparse.Namespace) -> int:
    from cds.keys import generate_keypair

    seed, pub = generate_keypair()
    print(f"signing_private_key={seed}\nsigning_public_key={pub}")
    return 0


def _request(args: argparse.Namespace) -> int:
    from cds.cli.request import RequestError, run_request

    try:
        return asyncio.run(run_request(args))
    except RequestError as e:   # the user's to fix: one line, no traceback
        print(f"cds request: {e}", file=sys.stderr)
        return e.status


class _Refused(Exception):
    """A command cannot run with this configuration; the message says why (exit 2)."""


def _settings_requiring(*required: tuple[str, str], **overrides: object):
    """Load settings; refuse (exit 2 with its `why`) when a required (field, why) is unset."""
    try:
        settings = load_settings(**overrides)
    except ConfigError as e:
        raise _Refused(str(e)) from None
    for field, why in required:
        if not getattr(settings, field):
            raise _Refused(why)
    return settings


def _indexer(args: argparse.Namespace) -> int:
    settings = _settings_requiring(
        ("redis_url", "cds indexer is the production ingest worker and needs CDS_REDIS_URL; with the embedded "
         "default `cds serve` indexes publishes itself (its ingest process)."),
        ("signing_private_key", "CDS_SIGNING_PRIVATE_KEY is not set: the indexer signs on_catalog_publish callbacks."))
    from cds.logs import setup_logging
    from indexer.ingest.worker_process import run_indexer

    setup_logging(settings.log_level)
    return asyncio.run(run_indexer(settings))


def _index_init(args: argparse.Namespace) -> int:
    settings = _settings_requiring(
        ("es_url", "cds index init creates the Elasticsearch indices and needs CDS_ES_URL "
         "(the embedded index needs no initialisation)."))

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


_FORMAT = argparse.RawDescriptionHelpFormatter   # keeps the settings paragraphs below as written

_SERVE_NEEDS = """settings (environment, README "Configuration"):
  CDS_SIGNING_PRIVATE_KEY   the CDS's key (`cds keygen`); required unless --demo
  CDS_REGISTRY_URL or CDS_REGISTRY_FILE
                            where signers' keys are looked up; --demo writes a registry file
  CDS_ES_URL, CDS_REDIS_URL optional: Elasticsearch instead of the embedded index under CDS_DATA_DIR,
                            Redis for state shared across replicas"""

_INDEXER_NEEDS = """settings (environment, README "Configuration"):
  CDS_REDIS_URL             required: the durable publish stream it consumes
  CDS_SIGNING_PRIVATE_KEY   required: it signs the on_catalog_publish callbacks
  CDS_ES_URL                the index it writes, shared with the API (else the embedded index under CDS_DATA_DIR)
Without CDS_REDIS_URL, or with the embedded index (CDS_INDEXER_IN_API=auto), `cds serve` indexes publishes
itself and no indexer is needed."""

_INDEX_INIT_NEEDS = """settings (environment, README "Configuration"):
  CDS_ES_URL                required: the Elasticsearch server
  CDS_ES_API_KEY, CDS_ES_USERNAME, CDS_ES_PASSWORD, CDS_ES_CA_CERTS, CDS_ES_VERIFY_CERTS, CDS_ES_INDEX_PREFIX
                            optional: credentials, TLS and the index name prefix
Idempotent; migrates an older mapping. Exit 2 with one line when the server cannot be used."""

_REQUEST_NOTES = """The endpoint follows context.action: discover -> /discover, catalog_publish (catalog/publish) ->
/catalog/publish, on_discover -> /on_discover; other actions are refused. Needs a running CDS (`cds serve --demo`);
without --key the demo BAP (discover) or BPP (publish, on_discover) key under CDS_DATA_DIR/demo signs. The callback's
signature is checked against CDS_REGISTRY_FILE, else the demo registry file.

exit status: 0 ACK (and, after a POST, a callback whose signature verified or could not be checked);
1 NACK, HTTP error, no callback or a bad callback signature; 2 bad arguments or payload; 3 CDS unreachable."""


def _positive(v: str) -> int:
    n = int(v)
    if n <= 0:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cds", description="UBC Catalog Discovery Service (Beckn v2)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = sub.add_parser("serve", help="run the API", description="Run the CDS API (discover, publish, on_discover, "
                       "health, metrics).", epilog=_SERVE_NEEDS, formatter_class=_FORMAT)
    s.add_argument("--host", default=os.environ.get("CDS_HOST", "127.0.0.1"),
                   help="address to listen on; 0.0.0.0 for every interface (default: %(default)s, from CDS_HOST "
                        "when set)")
    # a string default goes through type=int too: a bad CDS_PORT is one argparse line, not a traceback
    s.add_argument("--port", type=int, default=os.environ.get("CDS_PORT", "8080"),
                   help="port to listen on (default: %(default)s, from CDS_PORT when set)")
    s.add_argument("--demo", action="store_true",
                   help="also create a demo network (keys, registry file, seeded catalogs) under CDS_DATA_DIR/demo "
                        "and allow callbacks to loopback addresses")
    s.add_argument("--workers", type=_positive, default=None,
                   help="serving processes on the port (default CDS_WORKERS, else the number of CPUs); with any "
                        "number an ingest process indexes and the workers only serve")
    s.add_argument("--single-process", action="store_true",
                   help="debugging only: serve, index and write in this one process (no supervisor, ingest "
                        "process or private Redis); publishes are then normalised on the serving loop "
                        "(default: off)")
    s.add_argument("--worker", action="store_true",
                   help="internal: run as one serving process of the `--workers N` supervisor")
    s.add_argument("--machine-redis", action="store_true",
                   help="internal, with --worker: the shared state is the supervisor's machine-local Redis")
    s.set_defaults(func=_serve)
    k = sub.add_parser("keygen", help="print a new Ed25519 key pair (base64 seed and public key)",
                       description="Print a new Ed25519 key pair: the seed is CDS_SIGNING_PRIVATE_KEY (keep it "
                                   "secret), the public key goes into the registry record. Needs no settings.")
    k.set_defaults(func=_keygen)
    r = sub.add_parser("request", help="sign and send a JSON payload, print the reply, the callback and a summary",
                       description="Sign a Beckn JSON payload (fresh ids and timestamp), send it to the CDS, print "
                                   "the reply,\nthe signed callback and a summary.",
                       epilog=_REQUEST_NOTES, formatter_class=_FORMAT)
    r.add_argument("file", help="the JSON payload, e.g. one of tests/fixtures/UBC_*.json")
    r.add_argument("--url", default="http://127.0.0.1:8080/beckn", help="CDS base URL (default: %(default)s)")
    r.add_argument("--get", action="store_true",
                   help="discover only: synchronous GET /discover, the on_discover comes back in the reply "
                        "(default: POST, ACK now, on_discover as a callback)")
    r.add_argument("--sync-post", action="store_true",
                   help="discover only: synchronous POST /discover with `Prefer: return=representation`, for "
                        "clients that cannot send a GET body; the on_discover comes back in the reply")
    r.add_argument("--key", default=None, metavar="BASE64",
                   help="base64 Ed25519 private key to sign with (default: the demo BAP or BPP key)")
    r.add_argument("--subscriber-id", default=None, metavar="ID",
                   help="subscriber id of --key, as registered (default: the demo participant's)")
    r.add_argument("--key-id", default=None, metavar="ID", help="key id of --key, as registered (default: the demo key's)")
    r.add_argument("--wait", type=float, default=10.0, metavar="SECONDS",
                   help="seconds to wait for the reply, then for the callback (default: %(default)g)")
    r.add_argument("--callback-host", default="127.0.0.1", metavar="HOST",
                   help="address of the temporary callback listener, sent as bap_uri/bpp_uri; the CDS must reach "
                        "it (default: %(default)s)")
    out = r.add_mutually_exclusive_group()
    out.add_argument("--summary", action="store_true",
                     help="print the summary only, not the JSON (default: JSON, then the summary)")
    out.add_argument("--quiet", action="store_true",
                     help="print nothing but errors; the exit status tells the outcome (default: off)")
    r.set_defaults(func=_request)
    i = sub.add_parser("indexer", help="run the ingest worker (production mode, needs CDS_REDIS_URL)",
                       description="Run the production ingest worker: index publishes from the Redis stream and "
                                   "send on_catalog_publish callbacks.", epilog=_INDEXER_NEEDS, formatter_class=_FORMAT)
    i.set_defaults(func=_indexer)
    ix = sub.add_parser("index", help="index management (Elasticsearch; needs CDS_ES_URL)",
                        description="Manage the Elasticsearch indices (needs CDS_ES_URL).")
    ixs = ix.add_subparsers(dest="index_command", required=True, metavar="COMMAND")
    init = ixs.add_parser("init", help="create or migrate the Elasticsearch indices (needs CDS_ES_URL)",
                          description="Create or migrate the Elasticsearch indices and their aliases.",
                          epilog=_INDEX_INIT_NEEDS, formatter_class=_FORMAT)
    init.set_defaults(func=_index_init)
    return p


WORKER_SWITCH_INTERVAL_S = 0.001


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except _Refused as e:
        print(e, file=sys.stderr)
        return 2
    except KeyboardInterrupt:   # Ctrl-C while `cds request` waits: no traceback
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
