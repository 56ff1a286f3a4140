"""A real headless Chromium (Debian's `chromium`), driven over the DevTools protocol with aiohttp's websocket
client: no browser download, no new dependency. Every network request the page makes is recorded
(`Network.requestWillBeSent`), so a test can prove that nothing left the machine.

    async with Chromium.launch() as browser:
        page = await browser.new_page(width=1400, height=1000)
        await page.goto(url)
        await page.wait_for("document.body.dataset.ready === '1'")
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--no-default-browser-check", "--mute-audio",
         "--disable-features=Translate,OptimizationHints,MediaRouter,InterestFeedContentSuggestions",
         "--remote-debugging-port=0", "--remote-allow-origins=*"]
WAIT_S = 60.0        # a bound for a hung browser, not a timing assertion


def chromium_path() -> str | None:
    for name in (os.environ.get("CDS_TEST_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and (found := shutil.which(name)):
            return found
    return None


class CdpError(RuntimeError):
    pass


class Page:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future] = {}
        self.requests: list[str] = []            # every URL the page asked for
        self.console_errors: list[str] = []
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            doc = json.loads(msg.data)
            if "id" in doc:
                fut = self._waiting.pop(doc["id"], None)
                if fut is not None and not fut.done():
                    if "error" in doc:
                        fut.set_exception(CdpError(str(doc["error"])))
                    else:
                        fut.set_result(doc.get("result", {}))
            elif doc.get("method") == "Network.requestWillBeSent":
                self.requests.append(doc["params"]["request"]["url"])
            elif doc.get("method") == "Runtime.exceptionThrown":
                self.console_errors.append(json.dumps(doc["params"]["exceptionDetails"])[:500])
            elif doc.get("method") == "Log.entryAdded" and doc["params"]["entry"].get("level") == "error":
                self.console_errors.append(doc["params"]["entry"].get("text", ""))

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        i = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._waiting[i] = fut
        await self._ws.send_str(json.dumps({"id": i, "method": method, "params": params}))
        return await asyncio.wait_for(fut, WAIT_S)

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", url=url)
        await self.wait_for("document.readyState === 'complete'")

    async def eval(self, expression: str) -> Any:
        r = await self.send("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in r:
            raise CdpError(f"{expression[:80]}: {r['exceptionDetails']}")
        return r.get("result", {}).get("value")

    async def wait_for(self, expression: str, what: str | None = None) -> Any:
        """Poll until `expression` is truthy (bounded by WAIT_S: a hung page fails, a slow one passes)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + WAIT_S
        while True:
            with contextlib.suppress(CdpError):
                value = await self.eval(expression)
                if value:
                    return value
            if loop.time() > end:
                raise AssertionError(f"page never reached: {what or expression}")
            await asyncio.sleep(0.1)

    async def screenshot(self, path: Path) -> None:
        shot = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=False)
        path.write_bytes(base64.b64decode(shot["data"]))

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader
        await self._ws.close()


class Chromium:
    def __init__(self, proc: subprocess.Popen, profile: tempfile.TemporaryDirectory, endpoint: str) -> None:
        self._proc, self._profile, self.endpoint = proc, profile, endpoint
        self._session = aiohttp.ClientSession()
        self._pages: list[Page] = []

    @classmethod
    @contextlib.asynccontextmanager
    async def launch(cls):
        exe = chromium_path()
        if exe is None:
            raise RuntimeError("chromium not found")
        profile = tempfile.TemporaryDirectory(prefix="cds-chromium-")
        proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={profile.name}", "about:blank"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(profile.name) / "DevToolsActivePort"
        loop = asyncio.get_running_loop()
        end = loop.time() + WAIT_S
        while not port_file.exists() or len(port_file.read_text().splitlines()) < 2:
            if proc.poll() is not None or loop.time() > end:
                proc.kill()
                profile.cleanup()
                raise RuntimeError("chromium did not start its DevTools endpoint")
            await asyncio.sleep(0.05)
        port = port_file.read_text().splitlines()[0]
        browser = cls(proc, profile, f"http://127.0.0.1:{port}")
        try:
            yield browser
        finally:
            await browser.close()

    async def new_page(self, *, width: int = 1400, height: int = 1000) -> Page:
        async with self._session.put(f"{self.endpoint}/json/new?about:blank") as r:
            target = await r.json(content_type=None)
        ws = await self._session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
        page = Page(ws)
        self._pages.append(page)
        await page.send("Network.enable")
        await page.send("Runtime.enable")
        await page.send("Log.enable")
        await page.send("Page.enable")
        await page.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                        mobile=False)
        return page

    async def close(self) -> None:
        for p in self._pages:
            await p.close()
        await self._session.close()
        stop_process(self._proc)
        self._profile.cleanup()


def stop_process(proc: subprocess.Popen, grace_s: float = 15) -> None:
    """SIGTERM, then SIGKILL if it has not exited after `grace_s`."""
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
