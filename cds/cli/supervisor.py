"""`cds serve` (docs/decisions.md §P): N serving processes on one port (N = 1 too), plus the processes
they share, all children of this supervisor. (`cds serve --single-process`, for debugging, is the only way
to run without it.)

- Serving workers: `cds serve --worker`, each binding the port with SO_REUSEPORT (the kernel spreads
  connections over them). With the embedded index each holds a read-only copy that follows the ingest
  process's write-ahead log (`indexer.embedded.follower`).
- The ingest process (`cds.cli.ingest_process`): consumes the publish stream, normalises, writes the index,
  sends `on_catalog_publish`. Not started with Elasticsearch and an operator's Redis under
  CDS_INDEXER_IN_API=auto/false: `cds indexer` replicas do that job there, as with one process.
- Without CDS_REDIS_URL, a private redis-server (`cds.cli.localredis`) holds the state the workers share.
- Metrics: every child writes to one PROMETHEUS_MULTIPROC_DIR, so any worker's /metrics covers them all.

A child that dies is started again (after a short pause); SIGTERM/SIGINT stop the workers first (they
finish their requests), then the ingest process, then Redis.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from cds.config import Settings
from cds.cli.localredis import LocalRedis
from cds.metrics import MULTIPROC_ENV
from indexer.embedded.persist import DirLock

log = logging.getLogger("cds.supervisor")

RESTART_PAUSE_S = 1.0
SERVE_LOCK = "serve.lock"   # held by the one `cds serve` (supervisor or --single-process) of a data directory


class _Child:
    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name, self.argv, self.env = name, argv, env
        self.proc: subprocess.Popen | None = None
        self.started = 0.0

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, env=self.env)
        self.started = time.monotonic()

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()


def ingest_needed(settings: Settings, local_redis: bool) -> bool:
    """Who indexes: the ingest process, unless Elasticsearch is fed by separate `cds indexer` replicas."""
    if not settings.es_url or local_redis:
        return True
    return settings.indexer_in_api == "true"


def claim_data_dir(settings: Settings) -> DirLock:
    """The data directory's serve lock, held by its one `cds serve` (supervisor or --single-process); raises
    DirLocked when another holds it."""
    settings.data_path.mkdir(parents=True, exist_ok=True)
    held = DirLock(settings.data_path, SERVE_LOCK)
    held.acquire()
    return held


def listening_fields(settings: Settings, url: str) -> dict[str, object]:
    """What the "listening on" line says of any `cds serve`."""
    return {"url": url, "subscriber_id": settings.subscriber_id,
            "storage": "elasticsearch" if settings.es_url else "embedded",
            **({} if settings.es_url else {"data_dir": str(settings.data_path)})}


def claim(settings: Settings, *, host: str, port: int) -> DirLock:
    """Refuse at once, as one process did, what would otherwise be a child failing and restarted forever: a
    data directory another `cds serve` uses (DirLocked; its private Redis must not be stopped by ours) or a
    port that is taken (OSError). Returns the data directory's lock, held until the supervisor exits."""
    import socket

    data = settings.data_path
    held = claim_data_dir(settings)
    try:
        if not settings.es_url:     # the index's writer (ingest process) takes it: free it must be
            (data / "index").mkdir(exist_ok=True)
            probe = DirLock(data / "index", "index.lock")
            probe.acquire()
            probe.release()
        family, kind, proto, _, addr = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                          flags=socket.AI_PASSIVE)[0]
        with socket.socket(family, kind, proto) as s:   # the workers set SO_REUSEADDR too (TIME_WAIT is fine)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(addr)
    except BaseException:
        held.release()
        raise
    return held


def run_workers(settings: Settings, n: int, *, host: str, port: int, demo: bool,
                held: DirLock | None = None) -> int:
    try:
        return _supervise(settings, n, host=host, port=port, demo=demo)
    finally:
        if held is not None:
            held.release()


def _supervise(settings: Settings, n: int, *, host: str, port: int, demo: bool) -> int:
    data = settings.data_path
    data.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    redis: LocalRedis | None = None
    if not settings.redis_url:
        redis = LocalRedis(data / "redis").start()
        env["CDS_REDIS_URL"] = redis.url
    metrics_dir = (data / "metrics").resolve()
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    env[MULTIPROC_ENV] = str(metrics_dir)
    env["CDS_DATA_DIR"] = str(data.resolve())
    demo_args = ["--demo"] if demo else []
    addr = ["--host", host, "--port", str(port)]
    children: list[_Child] = []
    if ingest_needed(settings, redis is not None):
        children.append(_Child("ingest", [sys.executable, "-m", "cds.cli.ingest_process", *demo_args, *addr],
                               {**env, "CDS_INDEXER_PORT": "0"}))
    worker_args = ["--worker", *(["--machine-redis"] if redis is not None else []), *demo_args, *addr]
    children += [_Child(f"worker-{i}", [sys.executable, "-m", "cds", "serve", *worker_args], env) for i in range(n)]
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    url = f"http://{host}:{port}{settings.base_path}"
    try:
        for c in children:
            if c.name == "ingest":
                c.start()
        _hand_over(settings, data, redis.url if redis else settings.redis_url, lambda: stopping)
        for c in children:
            if c.name != "ingest":
                c.start()
        fields = {"workers": n, "pids": [c.proc.pid for c in children if c.proc], **listening_fields(settings, url),
                  **({"local_redis": redis.url} if redis else {})}
        if _wait_bound(host, port, lambda: stopping or any(c.exited() is not None for c in children)):
            log.info(f"listening on {url}", extra={"fields": fields})
        while not stopping:
            for c in children:
                code = c.exited()
                if code is None or stopping:
                    continue
                _mark_dead(c, metrics_dir)
                log.error("%s (pid %s) exited with %s; restarting", c.name, c.proc.pid if c.proc else "?", code)
                if time.monotonic() - c.started < RESTART_PAUSE_S:
                    time.sleep(RESTART_PAUSE_S)
                c.start()
            time.sleep(0.1)
    finally:
        workers = [c for c in children if c.name != "ingest"]
        _stop(workers)
        _stop([c for c in children if c.name == "ingest"])
        if redis is not None:
            redis.stop()
    return 0


def _hand_over(settings: Settings, data: Path, redis_url: str, gave_up: Callable[[], bool]) -> None:
    """Before any worker takes a publish (a publisher's catalogs keep their order): what a one-process
    `cds serve` ACKed here and did not index goes to the stream (`cds.cli.handover`)."""
    if not any((data / "ingest").glob("ingest-*.log")):
        return
    from cds.cli.handover import hand_over_local_log     # the supervisor stays small (imported when needed)

    try:
        asyncio.run(hand_over_local_log(settings, redis_url, gave_up=gave_up))
    except Exception as e:  # noqa: BLE001 - e.g. the operator's Redis is down: the log keeps them for next start
        log.error("cannot queue the one-process ingest log of %s now (%s); it is kept and tried again at the "
                  "next start", data / "ingest", e)


def _wait_bound(host: str, port: int, give_up: Callable[[], bool], timeout_s: float = 120.0) -> bool:
    """Wait until a worker accepts connections on the port (so "listening on" is true when logged)."""
    import socket

    deadline = time.monotonic() + timeout_s
    target = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host
    while time.monotonic() < deadline and not give_up():
        try:
            with socket.create_connection((target, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def _stop(children: list[_Child], timeout_s: float = 15.0) -> None:
    for c in children:
        if c.proc is not None and c.proc.poll() is None:
            c.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for c in children:
        if c.proc is None:
            continue
        try:
            c.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            c.proc.kill()
            c.proc.wait(5)


def _mark_dead(c: _Child, metrics_dir: Path) -> None:
    """Its live gauges stop counting (its counters stay: they are totals)."""
    if c.proc is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(c.proc.pid, str(metrics_dir))
