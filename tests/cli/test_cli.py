"""The console script, end to end: keygen, the README's run command (`cds serve --demo`) answering a discover
signed by `cds request` with an ACK and a signed callback while logging only JSON, a restart that says what it
reused, and help that describes every option and names the settings each command needs."""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from cds.config import load_settings

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


def _serve_refused(tmp_path, *args: str) -> str:
    """`cds serve ARGS` that must exit 2 at once, before starting any process; its output."""
    from cds.keys import generate_keypair

    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CDS_")},
           "CDS_DATA_DIR": str(tmp_path), "CDS_SIGNING_PRIVATE_KEY": generate_keypair()[0]}
    p = subprocess.run([sys.executable, "-m", "cds", "serve", *args], capture_output=True, text=True, env=env,
                       timeout=60)
    assert p.returncode == 2, p.stdout + p.stderr
    return p.stderr


def test_serve_refuses_a_data_directory_or_a_port_in_use_at_once(tmp_path):
    """Not a child failing and restarted forever (and a second supervisor never stops the first one's Redis)."""
    from indexer.embedded.persist import DirLock

    held = DirLock(tmp_path, "serve.lock")
    held.acquire()
    try:
        out = _serve_refused(tmp_path, "--port", str(_free_port()))
        assert "is another `cds serve` using CDS_DATA_DIR" in out
        assert "is another `cds serve` using CDS_DATA_DIR" in _serve_refused(tmp_path, "--single-process")
    finally:
        held.release()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert "cannot listen on 127.0.0.1" in _serve_refused(tmp_path, "--port", str(taken.getsockname()[1]))
    assert "--single-process runs one process" in _serve_refused(tmp_path, "--single-process", "--workers", "2")


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
        assert "signature verified (cds.demo.ubc.local|" in p.stdout      # the summary, with the demo registry
        p = subprocess.run([sys.executable, "-m", "cds", "request", str(fixture), "--url", url, "--get"], env=env,
                           cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0 and "on_discover" in p.stdout
    finally:
        server.terminate()
        server.wait(10)
    # every line the server wrote is JSON (README "Metrics": logs), the "listening on" line included
    lines = [json.loads(line) for line in server.stdout.read().decode().splitlines()]
    assert f"listening on http://127.0.0.1:{port}/beckn" in [r["msg"] for r in lines]
    seeded = [r for r in lines if r["logger"] == "cds.demo.seed"]
    assert len(seeded) == 1 and re.fullmatch(r"demo network: indexed \d+ catalogs \(\d+ items\)", seeded[0]["msg"])


async def test_a_restart_says_the_demo_catalogs_were_reused(tmp_path, caplog, monkeypatch):
    from cds.demo.seed import demo_overrides, seed
    from indexer.embedded.store import EmbeddedStorage

    monkeypatch.setenv("CDS_DATA_DIR", str(tmp_path))
    settings = load_settings({"CDS_DATA_DIR": str(tmp_path)}, **demo_overrides(host="127.0.0.1", port=8080))
    caplog.set_level(logging.INFO, logger="cds.demo.seed")
    for _ in range(2):                                   # a start, then a restart on the same data directory
        storage = EmbeddedStorage(tmp_path / "index")
        await storage.open()
        try:
            await seed(storage, settings)
        finally:
            await storage.close()
    first, again = [r.fields for r in caplog.records]
    assert first["catalogs_indexed"] > 0 and first["items_indexed"] > first["catalogs_indexed"]
    assert first["catalogs_reused"] == 0
    assert again == {**again, "catalogs_indexed": 0, "items_indexed": 0, "catalogs_reused": first["catalogs_indexed"],
                     "items_reused": first["items_indexed"]}
    assert caplog.records[1].getMessage() == (f"demo network: reused {first['catalogs_indexed']} catalogs "
                                              f"({first['items_indexed']} items) already in the index")


def _subcommands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """(path, parser) for every command and nested subcommand that runs something."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix, parser
    for action in subs:
        for name, sub in action.choices.items():
            yield from _subcommands(sub, prefix + (name,))


def test_every_option_of_every_subcommand_has_a_description_and_its_default():
    from cds.cli.main import build_parser

    commands = dict(_subcommands(build_parser()))
    assert {"serve", "keygen", "request", "indexer", "index init"} <= {" ".join(c) for c in commands}
    for path, parser in commands.items():
        assert parser.description, path
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            name = "/".join(action.option_strings) or action.dest
            assert action.help and action.help != argparse.SUPPRESS, f"cds {' '.join(path)} {name}: no help"
            if action.option_strings and action.nargs != 0:     # an option taking a value says its default
                assert "default" in action.help, f"cds {' '.join(path)} {name}: help without its default"


@pytest.mark.parametrize("command, settings", [
    (["serve"], ["CDS_SIGNING_PRIVATE_KEY", "unless --demo", "CDS_REGISTRY_URL", "CDS_REGISTRY_FILE"]),
    (["indexer"], ["CDS_REDIS_URL", "CDS_SIGNING_PRIVATE_KEY", "CDS_ES_URL"]),
    (["index", "init"], ["CDS_ES_URL"]),
])
def test_help_names_the_settings_a_command_needs(command, settings):
    p = subprocess.run([sys.executable, "-m", "cds", *command, "--help"], capture_output=True, text=True, check=True)
    for name in settings:
        assert name in p.stdout, (command, name)
