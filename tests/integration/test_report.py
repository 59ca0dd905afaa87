"""`python -m sinks.report` on the demo's finished store, opened in headless Chromium.

The browser is driven through the Chrome DevTools protocol, so the check sees what a person's
browser would: uncaught exceptions, console errors, failed loads and every request the page
makes. A deliberately broken page proves that the check can fail.
"""

from __future__ import annotations

import asyncio
import html
import io
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from tests.unit.test_report import cells
from tools.broker import free_port

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "chromium"
EXTERNAL = re.compile(r"""(?:src|href|srcset|action|poster|data)\s*=\s*["']?\s*(?:https?:)?//""", re.I)


@dataclass
class PageCheck:
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # every URL the page asked for besides itself
    screenshot: bytes = b""


class DevTools:
    """A minimal Chrome DevTools protocol client over one page target's websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self.loaded = asyncio.Event()
        self._ids = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}

    async def read(self) -> None:
        async for message in self.ws:
            data = message.json()
            if "id" in data:
                self._pending.pop(data["id"]).set_result(data)
            else:
                self.events.append(data)
                if data.get("method") == "Page.loadEventFired":
                    self.loaded.set()

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        self._ids += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[self._ids] = future
        await self.ws.send_json({"id": self._ids, "method": method, "params": params})
        reply = await asyncio.wait_for(future, 30)
        if "error" in reply:
            raise AssertionError(f"{method}: {reply['error']}")
        return reply["result"]


def _problems(events: list[dict[str, Any]], page_url: str) -> PageCheck:
    check = PageCheck()
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            check.errors.append(details.get("exception", {}).get("description") or details.get("text", "exception"))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in {"error", "assert"}:
            check.errors.append("console: " + " ".join(str(a.get("value", a.get("description", "")))
                                                       for a in params.get("args", [])))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            check.errors.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}".strip())
        elif method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if url != page_url and not url.startswith("data:"):
                check.requests.append(url)
        elif method == "Network.loadingFailed":
            check.errors.append(f"load failed: {params.get('errorText')}")
    return check


async def _open(path: Path, width: int, height: int) -> PageCheck:
    profile = Path(tempfile.mkdtemp(prefix="report-chromium-"))
    browser = subprocess.Popen([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                                "--no-first-run", "--remote-debugging-port=0", f"--user-data-dir={profile}",
                                f"--window-size={width},{height}", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (active.exists() and active.read_text().count("\n") >= 1):
            assert browser.poll() is None, f"chromium exited with {browser.returncode}"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            await asyncio.sleep(0.1)
        port = int(active.read_text().split()[0])
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as response:
                target = next(t for t in await response.json() if t["type"] == "page")
            async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                tools = DevTools(ws)
                reader = asyncio.create_task(tools.read())
                for domain in ("Runtime", "Log", "Page", "Network"):
                    await tools.send(f"{domain}.enable")
                await tools.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                                 deviceScaleFactor=1, mobile=False)
                url = path.resolve().as_uri()
                await tools.send("Page.navigate", url=url)
                await asyncio.wait_for(tools.loaded.wait(), 30)
                await asyncio.sleep(0.5)  # late errors and requests
                metrics = await tools.send("Page.getLayoutMetrics")
                full = min(int(metrics["cssContentSize"]["height"]), 16_000)
                shot = await tools.send("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                                        clip={"x": 0, "y": 0, "width": width, "height": full, "scale": 1})
                reader.cancel()
        check = _problems(tools.events, url)
        import base64

        check.screenshot = base64.b64decode(shot["data"])
        return check
    finally:
        browser.terminate()
        try:
            browser.wait(timeout=10)
        except subprocess.TimeoutExpired:
            browser.kill()
        shutil.rmtree(profile, ignore_errors=True)


def open_in_chromium(path: Path, width: int = 1400, height: int = 3000) -> PageCheck:
    return asyncio.run(asyncio.wait_for(_open(path, width, height), 90))


def colors(png: bytes) -> dict[tuple[int, int, int], int]:
    """Pixel count per RGB color of a screenshot."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    return {color: n for n, color in image.getcolors(maxcolors=image.width * image.height) or []}


def looks_blank(png: bytes) -> bool:
    """Text alone antialiases into a few hundred colors; charts and styled blocks give thousands."""
    return len(colors(png)) < 1000


def test_the_browser_check_fails_on_a_broken_page(tmp_path: Path) -> None:
    closed = free_port()  # loopback only, nothing listens there
    broken = tmp_path / "broken.html"
    broken.write_text('<!DOCTYPE html><html><body><p>x</p><script>throw new Error("boom")</script>'
                      '<script>console.error("bad console")</script>'
                      f'<img src="http://127.0.0.1:{closed}/missing.png"></body></html>')
    check = open_in_chromium(broken, 800, 600)
    assert any("boom" in e for e in check.errors), check.errors
    assert any("bad console" in e for e in check.errors), check.errors
    assert check.requests == [f"http://127.0.0.1:{closed}/missing.png"]
    assert looks_blank(check.screenshot)  # a line of text and a broken image: the detector tells

    clean = tmp_path / "clean.html"
    clean.write_text("<!DOCTYPE html><html><body><p>fine</p></body></html>")
    assert open_in_chromium(clean, 800, 600).errors == []


def sections(page: str) -> dict[tuple[str, str], str]:
    """The page's model-version sections by (model, version), from their headings."""
    found = {}
    for chunk in page.split('<section class="version"')[1:]:
        heading = re.search(r'<h2 class="model-version">(.*?)</h2>', chunk, flags=re.S)
        assert heading is not None
        model, _, version = html.unescape(re.sub(r"<[^>]+>", "", heading.group(1))).partition(" / ")
        found[(model.strip(), version.strip())] = chunk
    return found


def test_report_of_the_demo_is_self_contained_complete_and_renders(demo_results, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    run = demo_results.cli("sinks.report", "--out", str(out))
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"Wrote {out} (2 model version(s))"
    page = out.read_text(encoding="utf-8")

    assert "<script" not in page.lower()
    assert not EXTERNAL.search(page), EXTERNAL.search(page)
    assert "@import" not in page and "url(http" not in page

    versions = demo_results.query("SELECT DISTINCT model, model_version FROM monitoring.window_metrics FINAL "
                                  "ORDER BY model, model_version")
    by_version = sections(page)
    assert sorted(by_version) == [tuple(v) for v in versions] and len(versions) == 2

    alerts = demo_results.query(
        "SELECT model, model_version, window_start, detected_at, status, severity, type, subject, value, message "
        "FROM monitoring.alerts FINAL ORDER BY model, model_version, window_start, detected_at, type, subject")
    assert alerts, "the demo's scenarios raise alerts"
    for (model, version), chunk in by_version.items():
        expected = [[(ws or detected).strftime("%Y-%m-%d %H:%M"), status, severity, kind, subject,
                     "-" if value is None else f"{value:.3f}", message]
                    for m, v, ws, detected, status, severity, kind, subject, value, message in alerts
                    if (m, v) == (model, version)]
        assert cells(chunk) == expected
        windowed = sum(1 for a in alerts if (a[0], a[1]) == (model, version) and a[2] is not None)
        assert len(re.findall(r'id="alert-marker-\d+"', chunk)) == windowed
        assert chunk.count("<svg") == 4  # accuracy, PSI heatmap, PSI lines, label delay
        assert 'id="threshold"' in chunk and 'id="band-drift"' in chunk

    check = open_in_chromium(out)
    (tmp_path / "report.png").write_bytes(check.screenshot)
    assert check.errors == []
    assert check.requests == []
    assert not looks_blank(check.screenshot)
    assert colors(check.screenshot).get((0x25, 0x63, 0xEB), 0) > 500  # the accuracy lines' blue was drawn
    assert Image.open(io.BytesIO(check.screenshot)).height > 3000  # every section laid out


def test_report_filters_by_model_and_says_why_it_cannot_run(demo_results, tmp_path: Path) -> None:
    out = tmp_path / "one.html"
    run = demo_results.cli("sinks.report", "--out", str(out), "--model", "customer-churn", "--version", "v1")
    assert run.returncode == 0, run.stderr
    assert list(sections(out.read_text(encoding="utf-8"))) == [("customer-churn", "v1")]

    missing = demo_results.cli("sinks.report", "--out", str(tmp_path / "none.html"), "--model", "nope")
    assert missing.returncode == 2
    assert missing.stderr.strip().startswith("report: no figures in embedded ClickHouse at ")
    assert missing.stderr.strip().endswith("for model 'nope'") and missing.stderr.count("\n") == 1
    assert not (tmp_path / "none.html").exists()
