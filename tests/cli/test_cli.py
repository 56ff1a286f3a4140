"""The console script, end to end: keygen, and the README's run command (`cds serve --demo`)
answering a discover signed by `cds request` with an ACK and a signed callback."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from nacl.signing import SigningKey

ROOT = Path(__file__).resolve().parents[2]


def test_keygen_prints_a_matching_pair():
    out = subprocess.run([sys.executable, "-m", "cds", "keygen"], capture_output=True, text=True, check=True).stdout
    kv = dict(line.split("=", 1) for line in out.strip().splitlines())
    seed = base64.b64decode(kv["signing_private_key"])
    assert len(seed) == 32
    assert base64.b64encode(bytes(SigningKey(seed).verify_key)).decode() == kv["signing_public_key"]


def test_serve_refuses_bad_config(tmp_path):
    env = {**os.environ, "CDS_MAX_RESULTS": "zero", "CDS_DATA_DIR": str(tmp_path)}
    p = subprocess.run([sys.executable, "-m", "cds", "serve", "--port", "1"], capture_output=True, text=True, env=env)
    assert p.returncode == 2 and "CDS_MAX_RESULTS" in p.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_demo_serves_signed_discover(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env["CDS_DATA_DIR"] = str(tmp_path / "data")
    server = subprocess.Popen([sys.executable, "-m", "cds", "serve", "--demo", "--port", str(port)], env=env,
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, server.stdout.read().decode()
            assert time.time() < deadline, "demo did not become ready"
            time.sleep(0.3)
        url = f"http://127.0.0.1:{port}/beckn"
        fixture = ROOT / "tests" / "fixtures" / "UBC_discovery-within-boundary-with-connection-spec.json"
        p = subprocess.run([sys.executable, "-m", "cds", "request", str(fixture), "--url", url], env=env,
                           cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stdout + p.stderr
        assert "HTTP 200" in p.stdout and '"ACK"' in p.stdout
        assert "callback POST /bap/on_discover" in p.stdout
        # The UBC example catalog is seeded: the CCS2 >= 50 kW connectors near BTM come back.
        assert "IND*ecopower-charging*cs-01*IN*ECO*BTM*01*CCS2*A*CCS2-A" in p.stdout
        p = subprocess.run([sys.executable, "-m", "cds", "request", str(fixture), "--url", url, "--get"], env=env,
                           cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0 and "on_discover" in p.stdout
    finally:
        server.terminate()
        server.wait(10)
