"""A real Elasticsearch server for the tests (session-scoped), via scripts/elasticsearch.sh.

- `CDS_TEST_ES_URL` set: use that server (nothing is started or stopped).
- else: start Elastic's integ-test distribution on a free port once per session (download cached
  under `${CDS_CACHE_DIR:-.cache}`), stop it at the end.
- No Java, or the distribution cannot be downloaded: the ES tests are skipped with a loud reason
  (printed and shown by `-ra`), unless `CDS_REQUIRE_ES=1` (CI), where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "elasticsearch.sh"
START_TIMEOUT_S = 180


class EsUnavailable(Exception):
    """Elasticsearch cannot be had on this machine (no Java, no download)."""


@dataclass
class EsServer:
    url: str
    workdir: Path | None = None     # None: an external server we did not start
    port: int | None = None

    def stop(self) -> None:
        if self.workdir is None:
            return
        subprocess.run([str(SCRIPT), "stop", str(self.workdir)], check=False, capture_output=True, timeout=60)

    def cleanup(self) -> None:
        self.stop()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _java_available() -> bool:
    for var in ("ES_JAVA_HOME", "JAVA_HOME"):
        home = os.environ.get(var)
        if home and (Path(home) / "bin" / "java").exists():
            return True
    return shutil.which("java") is not None


def fetch() -> None:
    """Download and unpack the distribution (cached); EsUnavailable when that cannot be done."""
    if not _java_available():
        raise EsUnavailable("no Java runtime (java on PATH / ES_JAVA_HOME); Elasticsearch 8.19 needs Java 17+")
    r = subprocess.run([str(SCRIPT), "fetch"], capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise EsUnavailable(f"could not fetch the Elasticsearch distribution: {r.stderr.strip()[-500:]}")


def start(port: int | None = None, workdir: Path | None = None) -> EsServer:
    """Start a fresh single-node server; raises RuntimeError (with the log tail) if it fails to start."""
    fetch()
    port = port or free_port()
    workdir = workdir or Path(tempfile.mkdtemp(prefix="cds-es-"))
    r = subprocess.run([str(SCRIPT), "start", str(port), str(workdir)], capture_output=True, text=True,
                       timeout=START_TIMEOUT_S + 30,
                       env={**os.environ, "CDS_ES_START_TIMEOUT": str(START_TIMEOUT_S),
                            "CDS_ES_WATCH_PID": str(os.getpid())})   # dies with this process if we are killed
    if r.returncode != 0:
        server = EsServer(url="", workdir=workdir, port=port)
        server.stop()
        raise RuntimeError(f"Elasticsearch did not start (workdir {workdir}):\n{r.stderr[-3000:]}")
    return EsServer(url=r.stdout.strip().splitlines()[-1], workdir=workdir, port=port)


def reachable(url: str) -> bool:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/_cluster/health", timeout=3) as resp:
            return resp.status == 200
    except OSError:
        return False


def skip_loudly(reason: str) -> None:
    msg = f"ELASTICSEARCH TESTS SKIPPED: {reason}"
    if os.environ.get("CDS_REQUIRE_ES") == "1":
        pytest.fail(msg + " (CDS_REQUIRE_ES=1)", pytrace=False)
    print(f"\n*** {msg} ***", file=sys.stderr, flush=True)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def es_server():
    """The session's Elasticsearch (`EsServer`, `.url`); started once, stopped at the end."""
    external = os.environ.get("CDS_TEST_ES_URL")
    if external:
        if not reachable(external):
            skip_loudly(f"CDS_TEST_ES_URL={external} is not reachable")
        yield EsServer(url=external.rstrip("/"))
        return
    try:
        server = start()
    except EsUnavailable as e:
        skip_loudly(str(e))
        return
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def es_url(es_server) -> str:
    return es_server.url
