"""The operator console in a real headless Chromium against a real `cds serve --demo` process (README
"Operator console"): the page loads with the operator token and nothing else, the map shows every connector a
discover could return, the BPP table says what /metrics says (a registered BPP that refuses connections is
fanned out to until its circuit opens), a table row narrows the map, the tester answers with the same items as a
signed discover of the same query, and no request of the page leaves the machine.

Needs Debian's `chromium` (scripts/test.sh installs it when root); skipped loudly without it, a failure with
CDS_REQUIRE_BROWSER=1. CDS_CONSOLE_SCREENSHOTS=DIR also saves the screenshots used in docs/.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest

from cds.demo.seed import DEMO_CONNECTORS, DEMO_SEED, demo_key, ensure_demo
from cds.keys import generate_keypair
from cds.trust.signing import sign_request
from tests.browser import Chromium, chromium_path, stop_process

TOKEN = "console-test-token-0123456789"
SICK_BPP = "sick-bpp.example"
BANGALORE = (77.5946, 12.9716)

pytestmark = pytest.mark.slow


def _require_browser() -> None:
    if chromium_path() is None:
        why = "chromium is not installed (scripts/test.sh installs Debian's chromium when run as root)"
        if os.environ.get("CDS_REQUIRE_BROWSER") == "1":
            pytest.fail(why)
        pytest.skip(why)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(url: str, *, data: bytes | None = None, method: str = "GET", headers: dict | None = None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Demo:
    def __init__(self, tmp: Path) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.data = tmp / "data"
        ensure_demo(str(self.data), cds_url=f"{self.base}/beckn")    # keys + registry, as the server will
        records = orjson.loads((self.data / "demo" / "registry.json").read_bytes())
        sick = dict(next(r for r in records if r["type"] == "BPP"))
        # A non-caching BPP that refuses every connection: a fan-out target whose circuit will open.
        sick.update(subscriber_id=SICK_BPP, key_id="sick-key", signing_public_key=generate_keypair()[1],
                    url=f"http://127.0.0.1:{_free_port()}/bpp")
        self.registry = tmp / "registry.json"
        self.registry.write_bytes(orjson.dumps(records + [sick]))
        env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
        env.update(CDS_DATA_DIR=str(self.data), CDS_CONSOLE_TOKEN=TOKEN, CDS_REGISTRY_FILE=str(self.registry),
                   CDS_CIRCUIT_FAILURES="3")
        self.proc = subprocess.Popen([sys.executable, "-m", "cds", "serve", "--demo", "--port", str(self.port)],
                                     env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120       # a bound for a hung start, not a timing assertion
        while _http(f"{self.base}/health/ready")[0] != 200 if _port_open(self.port) else True:
            assert self.proc.poll() is None, "cds serve --demo exited"
            assert time.monotonic() < deadline, "demo did not become ready"
            time.sleep(0.3)

    def signed_discover(self, body: dict) -> dict:
        sub, key_id, key = demo_key("bap", str(self.data))
        ctx = dict(body["context"], bap_id=sub, bap_uri="http://127.0.0.1:9/bap", transaction_id=str(uuid.uuid4()),
                   message_id=str(uuid.uuid4()))
        raw = orjson.dumps({**body, "context": ctx})
        status, reply = _http(f"{self.base}/beckn/discover", data=raw, method="GET", headers={
            "Content-Type": "application/json",
            "Authorization": sign_request(raw, subscriber_id=sub, key_id=key_id, key=key)})
        assert status == 200, reply
        return orjson.loads(reply)

    def metrics(self) -> dict[str, float]:
        status, text = _http(f"{self.base}/metrics")
        assert status == 200
        out = {}
        for line in text.decode().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    _require_browser()
    d = Demo(tmp_path_factory.mktemp("console"))
    yield d
    d.stop()


def _expected_live() -> dict[str, int]:
    """Active connectors per publisher, from the demo network's own model (not from the CDS)."""
    from cds.demo.generator import generate_network

    out = {"example-bpp.com": 3}                 # the UBC example catalog: three active connectors
    for bpp, stations in generate_network(DEMO_CONNECTORS, seed=DEMO_SEED).iter_stations():
        out[bpp.subscriber_id] = sum(c.active for s in stations for c in s.connectors)
    return out


def _item_ids(on_discover: dict) -> list[str]:
    return [i["beckn:id"] for c in on_discover["message"]["catalogs"] for i in c["beckn:items"]]


def test_console_needs_the_token(demo):
    for path in ("/console", "/console/api/bpps", "/console/api/overview", "/console/static/console.js"):
        status, _ = _http(demo.base + path)
        assert status == 401, path
        status, _ = _http(demo.base + path, headers={"Authorization": "Bearer not-the-token-at-all"})
        assert status == 401, path
    assert _http(demo.base + "/console?token=wrong-token-wrong-token")[0] == 401
    status, body = _http(demo.base + "/console/api/bpps", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and json.loads(body)["bpps"]


async def test_console_in_a_browser(demo):
    tester_form = {"point": list(BANGALORE), "radius_m": 15000, "connector_type": "CCS2"}
    # Signed discovers first: each fans out to the sick BPP, which refuses; its circuit opens (3 failures).
    _, body = _http(demo.base + "/console/api/discover", data=orjson.dumps(tester_form), method="POST",
                    headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    query = json.loads(body)["request"]
    for _ in range(4):
        demo.signed_discover(query)
    expected = _expected_live()
    shots = os.environ.get("CDS_CONSOLE_SCREENSHOTS")

    async with Chromium.launch() as browser:
        page = await browser.new_page(width=1500, height=1060)
        await page.goto(f"{demo.base}/console?token={TOKEN}")
        await page.wait_for("document.body.dataset.ready === '1'", "the console loaded")
        assert await page.eval("location.pathname + location.search") == "/console"   # token left the URL

        # The map: every connector a discover could return, in clusters and points adding up to the total.
        total = int(await page.wait_for("document.getElementById('map-total').dataset.total"))
        assert total == sum(expected.values())
        shown = await page.eval("[...document.querySelectorAll('.cluster')].reduce((n, e) => n + +e.dataset.count, 0)"
                                " + document.querySelectorAll('path.cds-point').length")
        assert shown == total

        # The BPP table against /metrics, row by row.
        await page.wait_for("document.querySelectorAll('#bpps tbody tr[data-bpp]').length > 1")
        rows = await page.eval("""[...document.querySelectorAll('#bpps tbody tr[data-bpp]')].map(tr => {
            const o = {bpp: tr.dataset.bpp};
            tr.querySelectorAll('td[data-col]').forEach(td => o[td.dataset.col] = td.textContent);
            return o; })""")
        metrics = demo.metrics()
        by_bpp = {r["bpp"]: r for r in rows}
        assert set(by_bpp) == set(expected) | {SICK_BPP}
        assert sum(int(r["items"]) for r in rows) == metrics["cds_index_items"]
        assert sum(int(r["catalogs"]) for r in rows) == metrics["cds_index_catalogs"]
        for bpp, r in by_bpp.items():
            label = f'{{bpp="{bpp}"}}'
            assert int(r["fanout_requests"]) == metrics.get(f"cds_fanout_requests_total{label}", 0), bpp
            assert int(r["timeouts"]) == metrics.get(f"cds_fanout_timeouts_total{label}", 0), bpp
            errors = sum(metrics.get(f'cds_fanout_responses_total{{bpp="{bpp}",result="{x}"}}', 0)
                         for x in ("nack", "error"))
            assert int(r["errors"]) == errors, bpp
        sick = by_bpp[SICK_BPP]
        assert metrics[f'cds_fanout_circuit_open{{bpp="{SICK_BPP}"}}'] == 1 and sick["circuit"] == "open"
        assert int(sick["fanout_requests"]) == 3 and int(sick["errors"]) == 3 and sick["items"] == "0"

        # Sorting by a header, then a row narrows the map to that publisher.
        await page.eval("document.querySelector('#bpps th[data-key=\"items\"]').click()")
        first = await page.eval("document.querySelector('#bpps tbody tr').dataset.bpp")
        assert first in (SICK_BPP, "example-bpp.com")               # ascending: the smallest first
        await page.eval("document.querySelector('#bpps tr[data-bpp=\"cpo-003.bpp.ubc.example\"]').click()")
        await page.wait_for(f"+document.getElementById('map-total').dataset.total === "
                            f"{expected['cpo-003.bpp.ubc.example']}", "the map narrowed to cpo-003")
        await page.eval("document.getElementById('map-filter').click()")
        await page.wait_for(f"+document.getElementById('map-total').dataset.total === {total}", "the filter cleared")
        if shots:
            await page.screenshot(Path(shots) / "console-overview.png")

        # The tester: the same items as a signed discover of the request it shows.
        await page.eval(f"""(() => {{
            const c = document.getElementById('centre');
            c.value = '{BANGALORE[1]}, {BANGALORE[0]}'; c.dispatchEvent(new Event('change'));
            document.getElementById('radius').value = '15000';
            document.getElementById('connector').value = 'CCS2';
            document.getElementById('run').click(); }})()""")
        await page.wait_for("document.getElementById('tester-status').dataset.items !== undefined", "tester answered")
        answer = json.loads(await page.eval("document.getElementById('json').textContent"))
        request = json.loads(await page.eval("document.getElementById('request-json').textContent"))
        assert request["message"] == query["message"]
        got = _item_ids(answer)
        assert got and got == _item_ids(demo.signed_discover(request))
        assert await page.eval("document.querySelectorAll('path.cds-result').length") == len(got)
        assert re.fullmatch(r"\d+ item\(s\) in [\d.]+ ms", await page.eval(
            "document.getElementById('tester-status').textContent"))
        if shots:
            await page.screenshot(Path(shots) / "console-tester.png")

        # Nothing but this CDS (and inline data: URLs) was asked for anything; nothing failed in the page.
        assert page.requests
        outside = [u for u in page.requests if not (u.startswith(demo.base + "/") or u.startswith("data:"))]
        assert not outside, outside
        assert not page.console_errors, page.console_errors
        hosts = {urlsplit(u).netloc for u in page.requests if not u.startswith("data:")}
        assert hosts == {f"127.0.0.1:{demo.port}"}


def test_demo_prints_a_console_address_with_a_fresh_token(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env["CDS_DATA_DIR"] = str(tmp_path / "data")
    proc = subprocess.Popen([sys.executable, "-m", "cds", "serve", "--demo", "--port", str(port)], env=env,
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        for line in proc.stderr:                     # the address is logged (JSON) before the server starts
            msg = json.loads(line).get("msg", "") if line.startswith("{") else ""
            if msg.startswith("operator console: "):
                break
        threading.Thread(target=proc.stderr.read, daemon=True).start()   # keep the log pipe from filling
        url = msg.removeprefix("operator console: ").strip()
        assert url.startswith(f"http://127.0.0.1:{port}/console?token=") and len(url.split("=", 1)[1]) >= 16
        deadline = time.monotonic() + 120           # a bound for a hung start, not a timing assertion
        while _http(f"http://127.0.0.1:{port}/health/live")[0] != 200 if _port_open(port) else True:
            assert proc.poll() is None and time.monotonic() < deadline, "demo did not start"
            time.sleep(0.3)
        token = url.split("=", 1)[1]
        status, _ = _http(f"http://127.0.0.1:{port}/console/api/overview", headers={"Authorization": f"Bearer {token}"})
        assert status == 200
        assert _http(f"http://127.0.0.1:{port}/console/api/overview")[0] == 401
    finally:
        stop_process(proc)


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False
