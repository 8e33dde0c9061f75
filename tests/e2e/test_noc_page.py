"""The NOC page in a real headless Chromium, driven over the Chrome DevTools Protocol.

The API serves a seeded fleet (SLAs in the real API server, a settled SQLite ledger) over real
HTTP; the browser opens `/noc#token=...`, and the test waits for the table to list every SLA,
for the three charts to draw SVG shapes and for the page to have refreshed by itself, collects
console errors and uncaught exceptions (there must be none) and saves a screenshot.
"""

from __future__ import annotations

import base64
import itertools
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import websocket

from aiconn.api.app import create_app
from aiconn.api.demo import create_sla, settle_history
from aiconn.api.settings import ApiSettings
from aiconn.devstack.processes import free_port
from aiconn.sla.ledger import Ledger
from tests.helpers import eventually

pytestmark = pytest.mark.e2e
TOKEN = "noc-page-token"
FLEET = 7
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1100",
    "--remote-debugging-port=0",
)


class DevTools:
    """A minimal CDP client: commands by id, events kept for inspection."""

    def __init__(self, url: str) -> None:
        self._ws = websocket.create_connection(url, timeout=30)
        self._ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        command_id = next(self._ids)
        self._ws.send(json.dumps({"id": command_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv())
            if message.get("id") == command_id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self.events.append(message)

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def close(self) -> None:
        self._ws.close()


@pytest.fixture
def api_url(k8s: Any, namespace: str, tmp_path: Path) -> Iterator[str]:
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    for index in range(FLEET):
        name = f"sla-{index}"
        uid = create_sla(k8s, namespace, name, tenant=f"tenant-{index % 3}", index=index)
        settle_history(
            ledger,
            sla_uid=uid,
            namespace=namespace,
            name=name,
            tenant=f"tenant-{index % 3}",
            index=index,
            months=1,
            now=datetime.now(UTC),
        )
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(f"{TOKEN},noc,*\n")
    settings = ApiSettings(
        auth_mode="static", static_tokens_file=tokens, sla_cache_seconds=1, ledger_url="sqlite://"
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, ledger=ledger, kube=k8s),
            host="127.0.0.1",
            port=port,
            access_log=False,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    eventually(lambda: httpx.get(f"{url}/healthz").status_code == 200, what="API up")
    yield url
    server.should_exit = True
    thread.join(timeout=10)
    ledger.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[DevTools]:
    profile = tmp_path / "chromium-profile"
    proc = subprocess.Popen(
        ["/usr/bin/chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        eventually(port_file.exists, timeout=30, what="Chromium DevTools port")
        port = int(port_file.read_text().split()[0])
        pages = eventually(
            lambda: [
                t
                for t in httpx.get(f"http://127.0.0.1:{port}/json/list").json()
                if t["type"] == "page"
            ],
            what="a Chromium page target",
        )
        tools = DevTools(pages[0]["webSocketDebuggerUrl"])
        for domain in ("Runtime", "Log", "Page"):
            tools.send(f"{domain}.enable")
        yield tools
        tools.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _errors(events: list[dict[str, Any]]) -> list[str]:
    found = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            found.append(json.dumps(params["exceptionDetails"])[:500])
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            found.append(json.dumps(params.get("args"))[:500])
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            found.append(params["entry"]["text"])
    return found


def test_noc_page_shows_the_fleet_with_charts_and_no_errors(
    api_url: str, browser: DevTools, namespace: str, artifacts_dir: Path
) -> None:
    browser.send("Page.navigate", url=f"{api_url}/noc#token={TOKEN}")

    def rows() -> list[str] | None:
        names = browser.evaluate(
            "Array.from(document.querySelectorAll('#fleet tbody tr')).map(r => r.dataset.sla)"
        )
        return names if names and len(names) == FLEET else None

    shown = eventually(rows, timeout=30, what="every SLA in the fleet table")
    assert sorted(shown) == sorted(f"{namespace}/sla-{i}" for i in range(FLEET))
    # The token left the URL at once; the page keeps it in sessionStorage only.
    assert browser.evaluate("location.hash") == ""
    assert browser.evaluate("sessionStorage.getItem('aiconn-noc-token')") == TOKEN
    # The page refreshes by itself: /v1/fleet was fetched again without any action.
    eventually(
        lambda: (
            browser.evaluate(
                "performance.getEntriesByType('resource')"
                ".filter(e => new URL(e.name).pathname === '/v1/fleet').length"
            )
            >= 2
        ),
        timeout=20,
        what="a second fleet refresh",
    )
    shapes = {
        "budget": "#chart-budget polyline",
        "attainment": "#chart-attainment rect",
        "credits": "#chart-credits rect",
    }
    counts = {
        chart: browser.evaluate(f"document.querySelectorAll({json.dumps(sel)}).length")
        for chart, sel in shapes.items()
    }
    assert counts["budget"] >= 1, counts
    assert counts["attainment"] >= FLEET, counts
    assert counts["credits"] == 3, counts  # edge, regional, cloud
    assert "Not compliant" in browser.evaluate("document.getElementById('tiles').textContent")
    time.sleep(0.5)  # let the last paint land before the screenshot
    shot = browser.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    (artifacts_dir / "noc.png").write_bytes(base64.b64decode(shot["data"]))
    browser.evaluate("1")  # drain pending events
    assert _errors(browser.events) == []
