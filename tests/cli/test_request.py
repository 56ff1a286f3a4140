"""`cds request`: what a newcomer meets. Mistakes (a missing file, bad JSON, an action the CDS does not serve,
`--get` on a publish, no server) are one line on stderr and a non-zero exit, never a traceback; each action goes
to its endpoint; the summary tells ACK/NACK, what the answer holds and whether the callback's signature verified."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cds.cli.main import build_parser
from cds.cli.request import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, RequestError, refresh_context, \
    route_for, run_request
from tests.harness import Participant, load_fixture

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DISCOVER = FIXTURES / "UBC_discovery-within-boundary-with-connection-spec.json"
QR = FIXTURES / "UBC_discovery-by-QR.json"
PUBLISH = FIXTURES / "UBC_catalog_publish_ev-charging-catalog-publish.json"
LTS_PUBLISH = FIXTURES / "spec" / "examples" / "lts-constructed" / "publish.json"
ON_DISCOVER = FIXTURES / "UBC_on_discover_ev-charging-on_discover.json"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- errors: one line, non-zero, no traceback ------------------------------------------------------------

def _cds_request(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env["CDS_DATA_DIR"] = str(tmp_path / "data")          # no demo keys there
    return subprocess.run([sys.executable, "-m", "cds", "request", *args], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=60)


def _write(tmp_path: Path, name: str, content: str) -> str:
    (tmp_path / name).write_text(content)
    return str(tmp_path / name)


def _with_action(tmp_path: Path, action: str) -> str:
    doc = load_fixture("UBC_discovery-by-QR.json")
    doc["context"]["action"] = action
    return _write(tmp_path, f"{action.replace('/', '_')}.json", json.dumps(doc))


KEY = base64.b64encode(bytes(Participant("x", "BAP", "http://127.0.0.1").key)).decode()

ERRORS = {
    "missing file": (lambda t: ["no-such-file.json"], EXIT_USAGE, "cannot read no-such-file.json"),
    "invalid JSON": (lambda t: [_write(t, "bad.json", '{"context": ')], EXIT_USAGE, "is not valid JSON"),
    "not an object": (lambda t: [_write(t, "list.json", "[1, 2]")], EXIT_USAGE, "JSON list, not a Beckn request"),
    "no context": (lambda t: [_write(t, "item.json", '{"message": {}}')], EXIT_USAGE, "no context object"),
    "no action": (lambda t: [_write(t, "noaction.json", '{"context": {}}')], EXIT_USAGE, "no context.action"),
    "search": (lambda t: [_with_action(t, "search")], EXIT_USAGE, "'search' is not served by the CDS (Beckn v2 calls it discover)"),
    "status": (lambda t: [_with_action(t, "status")], EXIT_USAGE, "'status' is not served by the CDS"),
    "on_catalog_publish": (lambda t: [_with_action(t, "on_catalog_publish")], EXIT_USAGE, "the CDS sends it"),
    "--get on a publish": (lambda t: [str(PUBLISH), "--get"], EXIT_USAGE,
                           "--get is for discover only: a catalog_publish is POSTed and answered by an "
                           "on_catalog_publish callback"),
    "--key without ids": (lambda t: [str(QR), "--key", KEY], EXIT_USAGE, "--key needs --subscriber-id and --key-id"),
    "bad --key": (lambda t: [str(QR), "--key", "bm90IGEga2V5", "--subscriber-id", "a", "--key-id", "k"], EXIT_USAGE,
                  "--key: signing private key must decode to 32 bytes"),
    "no demo keys": (lambda t: [str(QR)], EXIT_USAGE, "start `cds serve --demo` once, or pass --key"),
    "unreachable": (lambda t: [str(QR), "--key", KEY, "--subscriber-id", "a", "--key-id", "k", "--url",
                               f"http://127.0.0.1:{_closed_port()}/beckn"], EXIT_UNREACHABLE,
                    "Connection refused (is `cds serve --demo` running? --url sets the address)"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_mistakes_are_one_line_and_a_nonzero_exit(tmp_path, case):
    make_args, status, says = ERRORS[case]
    p = _cds_request(tmp_path, *make_args(tmp_path))
    assert p.returncode == status, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr and p.stdout == ""
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cds request: "), p.stderr
    assert says in lines[0], lines[0]


# ---- routing ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fixture, action, path, role", [
    (DISCOVER, "discover", "/discover", "bap"),
    (PUBLISH, "catalog_publish", "/catalog/publish", "bpp"),
    (LTS_PUBLISH, "catalog/publish", "/catalog/publish", "bpp"),
    (ON_DISCOVER, "on_discover", "/on_discover", "bpp"),
])
def test_each_action_has_its_endpoint_and_signer_role(fixture, action, path, role):
    doc = json.loads(fixture.read_text())
    got, route = route_for(doc)
    assert (got, route.path, route.role) == (action, path, role)
    before = dict(doc["context"])
    assert refresh_context(doc, subscriber_id="me.example", callback_uri="http://127.0.0.1:9/x") == action
    ctx = doc["context"]
    camel = "bppId" in ctx
    assert ctx[f"{role}Id" if camel else f"{role}_id"] == "me.example"
    tx = "transactionId" if camel else "transaction_id"
    # an on_discover answers a pending fan-out: its ids must stay; everything else gets fresh ones
    assert (ctx[tx] == before[tx]) == (action == "on_discover")
    if action in ("catalog_publish", "catalog/publish"):   # the signer publishes its own catalogs
        owners = {c.get("beckn:bppId", c.get("bppId")) for c in doc["message"]["catalogs"]}
        assert owners <= {"me.example", None}


def test_unserved_actions_are_refused_before_anything_is_sent():
    for action in ("search", "status", "select", "on_search", "catalog/on_publish"):
        with pytest.raises(RequestError) as e:
            route_for({"context": {"action": action}})
        assert "is not served by the CDS" in str(e.value) and e.value.status == EXIT_USAGE


# ---- against a running CDS: routing end to end, summary, exit status --------------------------------------

def _args(cds, who: Participant, fixture: Path, *extra: str):
    key = base64.b64encode(bytes(who.key)).decode()
    return build_parser().parse_args(["request", str(fixture), "--url", str(cds.make_url("/beckn")), "--key", key,
                                      "--subscriber-id", who.subscriber_id, "--key-id", who.key_id, *extra])


def _summary(out: str) -> list[str]:
    """The summary block: from the `request:` line to the end."""
    lines = out.splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("request:  "))
    return lines[start:]


async def test_publish_then_discover_print_json_and_a_summary(cds, network, capsys, monkeypatch):
    monkeypatch.setenv("CDS_REGISTRY_FILE", str(network.registry_file))   # where the CDS's key is found
    cds_key = f"{network.cds.subscriber_id}|{network.cds.key_id}"

    assert await run_request(_args(cds, network.bpp, PUBLISH)) == EXIT_OK
    out = capsys.readouterr().out
    assert '"on_catalog_publish"' in out            # the JSON of the callback comes first
    s = _summary(out)
    assert s[0].endswith(f"catalog_publish as example-bpp.com, POST {cds.make_url('/beckn/catalog/publish')}")
    assert s[1].startswith("reply:    HTTP 200 ACK in ")
    assert s[2].startswith("callback: on_catalog_publish at ") and s[2].endswith(f"signature verified ({cds_key})")
    assert s[3:] == ["results:  1 catalog", "  catalog-ev-charging-001: ACCEPTED, 3 items"]

    assert await run_request(_args(cds, network.bap, DISCOVER, "--summary")) == EXIT_OK
    s = capsys.readouterr().out.splitlines()
    assert s[0].endswith(f"discover as bap.test, POST {cds.make_url('/beckn/discover')}")
    assert s[2].startswith("callback: on_discover at ") and "ms after the reply; signature verified" in s[2]
    assert s[3].startswith("results:  ") and s[3].endswith("in 1 catalog from 1 BPP")
    assert s[4].startswith("  example-bpp.com: 1 catalog, ")

    assert await run_request(_args(cds, network.bap, QR, "--get", "--summary")) == EXIT_OK
    s = capsys.readouterr().out.splitlines()
    assert s[1].startswith("reply:    HTTP 200 on_discover in ")
    assert s[2:] == ["results:  1 item in 1 catalog from 1 BPP", "  example-bpp.com: 1 catalog, 1 item"]


async def test_no_match_and_nack_read_differently(cds, network, capsys, monkeypatch):
    monkeypatch.setenv("CDS_REGISTRY_FILE", str(network.registry_file))
    assert await run_request(_args(cds, network.bap, QR, "--get", "--summary")) == EXIT_OK
    assert capsys.readouterr().out.splitlines()[2] == "results:  no matching items (0 catalogs)"

    impostor = Participant(network.bap.subscriber_id, "BAP", network.bap.url, key_id=network.bap.key_id)
    assert await run_request(_args(cds, impostor, QR, "--summary")) == EXIT_FAILED
    s = capsys.readouterr().out.splitlines()
    assert s[1].startswith("reply:    HTTP 401 NACK in ") and ": AUT_SIGNATURE_INVALID: " in s[1]
    assert len(s) == 2                               # no callback expected after a NACK


async def test_on_discover_keeps_its_ids_and_reaches_the_on_discover_endpoint(cds, network, capsys):
    assert await run_request(_args(cds, network.bpp, ON_DISCOVER, "--summary")) == EXIT_FAILED
    s = capsys.readouterr().out.splitlines()
    tx = json.loads(ON_DISCOVER.read_text())["context"]["transaction_id"]
    # the on_discover handler answered (not a "does not match this endpoint" NACK), about the fixture's ids
    assert "CTX_TRANSACTION_ID_UNKNOWN" in s[1] and tx in s[1]


async def test_quiet_prints_nothing_and_the_exit_status_tells(cds, network, capsys, monkeypatch):
    monkeypatch.setenv("CDS_REGISTRY_FILE", str(network.registry_file))
    assert await run_request(_args(cds, network.bap, QR, "--quiet")) == EXIT_OK
    impostor = Participant(network.bap.subscriber_id, "BAP", network.bap.url, key_id=network.bap.key_id)
    assert await run_request(_args(cds, impostor, QR, "--quiet")) == EXIT_FAILED
    assert capsys.readouterr() == ("", "")


async def test_a_callback_signed_with_another_key_is_reported_and_fails(cds, network, capsys, monkeypatch):
    # the registry file the client trusts names another key for the CDS: the signature cannot verify
    other = Participant(network.cds.subscriber_id, "CDS", network.cds.url, key_id=network.cds.key_id)
    from tests.harness import write_registry
    trusted = write_registry(network.tmp / "client-registry.json", [other])
    monkeypatch.setenv("CDS_REGISTRY_FILE", str(trusted))
    assert await run_request(_args(cds, network.bap, QR, "--summary")) == EXIT_FAILED
    line = capsys.readouterr().out.splitlines()[2]
    assert line.startswith("callback: on_discover at ") and "signature INVALID" in line

    monkeypatch.setenv("CDS_REGISTRY_FILE", str(network.tmp / "absent.json"))
    assert await run_request(_args(cds, network.bap, QR, "--summary")) == EXIT_OK
    assert "signature not checked: no registry file" in capsys.readouterr().out.splitlines()[2]
