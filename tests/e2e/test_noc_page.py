"""The NOC page in a real headless Chromium at 1280 px, driven over the Chrome DevTools Protocol.

The API serves a seeded fleet (SLAs in the real API server, three settled months in a SQLite
ledger) over real HTTP, and a real Prometheus scrapes the API's /metrics with the NOC token, so
the page's history comes from query_range. The browser opens `/noc#token=...`; the first test
waits for the table to list every SLA, for the three charts to draw SVG shapes and for the page to
have refreshed by itself. The second makes an incident (a breach, an unplaceable SLA, Events on
the real API server), reloads the page and finds the incident in the history, the feed and the
order of the table. Both collect console errors and uncaught exceptions (there must be none) and
save screenshots.
"""

from __future__ import annotations

import base64
import itertools
import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import websocket

from aiconn.api.app import create_app
from aiconn.devstack.controlplane import ControlPlane
from aiconn.devstack.processes import free_port
from aiconn.devstack.prometheus import ScrapeTarget
from aiconn.resources.v1alpha1.kinds import SLA
from aiconn.resources.v1alpha1.meta import API_VERSION, GROUP, VERSION
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec
from aiconn.store.ledger import Ledger
from tests.helpers import admin_api, eventually, static_token_settings
from tests.seeding import create_sla, settle_history, status

pytestmark = pytest.mark.e2e
TOKEN = "noc-page-token"
FLEET = 7
MONTHS = 3
WIDTH = 1280
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    f"--window-size={WIDTH},1100",
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


@pytest.fixture(scope="module")
def k8s(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """An admin client of a control plane of this module's own. The NOC page shows the whole
    fleet, so the cluster must hold only the SLAs these tests create: on the worker's shared
    control plane, another file's SLAs (a namespace still terminating, an SLA whose finalizer
    outlived its operator) were counted too, depending on which files ran there first."""
    plane = ControlPlane(state_dir=tmp_path_factory.mktemp("noc-controlplane"))
    try:
        plane.start(crds=sorted((Path(__file__).resolve().parents[2] / "crds").glob("*.yaml")))
        yield from admin_api(plane)
    finally:
        plane.stop()


@pytest.fixture
def api_url(k8s: Any, namespace: str, tmp_path: Path, prometheus_factory: Any) -> Iterator[str]:
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
            months=MONTHS,
            now=datetime.now(UTC),
        )
    port = free_port()
    target = ScrapeTarget(job="aiconn-api", address=f"127.0.0.1:{port}", bearer_token=TOKEN)
    prometheus = prometheus_factory([target])
    settings = static_token_settings(
        tmp_path / "tokens.csv",
        [f"{TOKEN},noc,*"],
        sla_cache_seconds=1,
        prometheus_url=prometheus.url,
    )
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
    # The history has a point for every SLA before the page is opened.
    eventually(
        lambda: len(prometheus.query("aiconn_sla_availability_percent")) == FLEET,
        what="Prometheus scraped the API",
    )
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
        # Chromium creates the file, then writes the port into it: wait for the port itself.
        written = eventually(
            lambda: port_file.read_text().split() if port_file.exists() else None,
            what="Chromium DevTools port",
        )
        port = int(written[0])
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

    shown = eventually(rows, what="every SLA in the fleet table")
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
        what="a second fleet refresh",
    )
    shapes = {
        "budget": "#chart-budget polyline",
        "attainment": "#chart-attainment polyline",
        "credits": "#chart-credits rect",
    }
    counts = {
        chart: browser.evaluate(f"document.querySelectorAll({json.dumps(sel)}).length")
        for chart, sel in shapes.items()
    }
    assert counts["budget"] >= 1, counts
    assert counts["attainment"] >= FLEET, counts  # one availability line per SLA
    assert counts["credits"] == MONTHS, counts  # one bar per settled month (all in EUR)
    assert "Not compliant" in browser.evaluate("document.getElementById('tiles').textContent")
    time.sleep(0.5)  # let the last paint land before the screenshot
    shot = browser.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    (artifacts_dir / "noc.png").write_bytes(base64.b64decode(shot["data"]))
    browser.evaluate("1")  # drain pending events
    assert _errors(browser.events) == []


BREACH_BUDGET = -180.0


def _set_status(k8s: Any, namespace: str, name: str, index: int, **changes: Any) -> None:
    """Write the status the operator would write for SLA `index`, with `changes` applied."""
    from kubernetes import client

    objects = client.CustomObjectsApi(k8s)
    obj = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, SLA.plural, name)
    new = status(AIInferenceSLASpec.model_validate(obj["spec"]), index=index, now=datetime.now(UTC))
    new["period"].update(changes.pop("period", {}))
    new.update(changes)
    objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, SLA.plural, name, {"status": new}
    )


def _post_event(k8s: Any, namespace: str, name: str, type_: str, reason: str, text: str) -> None:
    """A core/v1 Event on the SLA shaped as the operator posts it (FleetEvaluator.post_event)."""
    from kubernetes import client

    objects = client.CustomObjectsApi(k8s)
    sla = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, SLA.plural, name)
    uid = sla["metadata"]["uid"]
    stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    client.CoreV1Api(k8s).create_namespaced_event(
        namespace,
        {
            "metadata": {"generateName": f"{name}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": "AIInferenceSLA",
                "name": name,
                "namespace": namespace,
                "uid": uid,
            },
            "type": type_,
            "reason": reason,
            "message": text,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "source": {"component": "aiconn-operator"},
        },
    )


def _budget_points(api_url: str, sla: str) -> list[float]:
    """sla's budget history as the page asks for it (the last 60 minutes)."""
    history = httpx.get(
        f"{api_url}/v1/fleet/history?minutes=60", headers={"Authorization": f"Bearer {TOKEN}"}
    ).json()
    for series in history["budget"]:
        if f"{series['namespace']}/{series['name']}" == sla:
            return [value for _, value in series["points"]]
    return []


def _after_reload(
    browser: DevTools,
    selector: str,
    fields: str,
    *,
    shown: Callable[[dict[str, Any]], bool],
    what: str,
) -> dict[str, Any]:
    """Reload the page, then wait until the element at `selector` exists and the values `fields`
    reads from it (a JavaScript object literal over the element `e`) are `shown`: the page's
    scripts fill them in from the API only after the load. Returns those values."""
    browser.send("Page.reload", ignoreCache=True)

    def read() -> dict[str, Any] | None:
        found: dict[str, Any] | None = browser.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            f" return e && {fields}; }})()"
        )
        return found if found and shown(found) else None

    return eventually(read, what=f"{what} after a reload")


def test_after_a_reload_the_noc_page_shows_the_incident_and_who_needs_a_human(
    api_url: str, browser: DevTools, namespace: str, k8s: Any, artifacts_dir: Path
) -> None:
    breach, unplaceable, provisioning = (f"{namespace}/sla-{i}" for i in range(3))
    browser.send(
        "Emulation.setDeviceMetricsOverride",
        width=WIDTH,
        height=1100,
        deviceScaleFactor=1,
        mobile=False,
    )
    browser.send("Page.navigate", url=f"{api_url}/noc#token={TOKEN}")
    eventually(
        lambda: browser.evaluate("document.querySelectorAll('#fleet tbody tr').length") == FLEET,
        what="the fleet table",
    )
    # Healthy history first: two query_range steps apart, so any later grid has a point in it.
    eventually(
        lambda: len([v for v in _budget_points(api_url, breach) if v > 0]) >= 2,
        what="a healthy budget in the history",
    )
    # The incident: sla-0 breaches and spends its budget, sla-1 cannot be placed, sla-2 is new.
    _set_status(
        k8s,
        namespace,
        "sla-0",
        0,
        phase="Degraded",
        conditions=[
            {
                "type": "Compliant",
                "status": "False",
                "reason": "ObjectiveMissed",
                "message": "availability 99.72 % is below the 99.9 % objective",
                "lastTransitionTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            }
        ],
        period={
            "availabilityPercent": 99.72,
            "budgetRemainingPercent": BREACH_BUDGET,
            "alerts": ["page-1h"],
        },
    )
    _set_status(k8s, namespace, "sla-1", 1, phase="Unplaceable")
    _set_status(k8s, namespace, "sla-2", 2, phase="Provisioning")
    _post_event(k8s, namespace, "sla-0", "Warning", "BurnRateAlertStarted", "alert page-1h started")
    _post_event(
        k8s,
        namespace,
        "sla-0",
        "Warning",
        "ErrorBudgetExhausted",
        f"availability error budget of the period is spent ({BREACH_BUDGET:.1f} % remaining)",
    )
    _post_event(
        k8s, namespace, "sla-1", "Warning", "Unplaceable", "no tier has a site with 1 free GPU"
    )
    eventually(
        lambda: min(_budget_points(api_url, breach)) <= BREACH_BUDGET,
        what="the breach in Prometheus",
    )
    # The API reads SLAs through a short cache, which a scrape can fill between two of the
    # patches above: the page is reloaded once the API serves all three of them.
    incident = {breach: "Degraded", unplaceable: "Unplaceable", provisioning: "Provisioning"}

    def phases() -> dict[str, str | None]:
        answer = httpx.get(f"{api_url}/v1/fleet", headers={"Authorization": f"Bearer {TOKEN}"})
        items = answer.json()["items"]
        return {f"{i['namespace']}/{i['name']}": i["phase"] for i in items}

    eventually(
        lambda: all(phases().get(sla) == phase for sla, phase in incident.items()),
        what="the incident's phases served by the API",
    )

    line = _after_reload(
        browser,
        f'#chart-budget polyline[data-sla="{breach}"]',
        "{min: Number(e.dataset.min), max: Number(e.dataset.max)}",
        shown=lambda found: found["min"] <= BREACH_BUDGET,
        what="the breach in the budget history",
    )
    # The history reaches back before the incident: the line falls from a healthy budget.
    assert line["max"] > 0, line
    rows = browser.evaluate(
        "Array.from(document.querySelectorAll('#fleet tbody tr'))"
        ".map(r => ({sla: r.dataset.sla, cls: r.className,"
        " bg: getComputedStyle(r.cells[0]).backgroundColor, phase: r.cells[5].textContent}))"
    )
    by_sla = {r["sla"]: r for r in rows}
    order = [r["sla"] for r in rows]
    # The table is the API's risk order, and the SLA that needs a human first is named above it.
    fleet = httpx.get(f"{api_url}/v1/fleet", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert order == [f"{i['namespace']}/{i['name']}" for i in fleet["items"]]
    first = browser.evaluate("document.getElementById('first').textContent")
    assert first.startswith(f"Needs a human first: {order[0]}"), first
    compliant = [
        f"{i['namespace']}/{i['name']}" for i in fleet["items"] if i["compliant"] == "True"
    ]
    assert compliant and all(order.index(breach) < order.index(c) for c in compliant)
    assert by_sla[breach]["cls"] == "breach", by_sla[breach]
    assert by_sla[unplaceable]["cls"] == "unplaceable", by_sla[unplaceable]
    assert by_sla[provisioning]["cls"] == "provisioning", by_sla[provisioning]
    assert by_sla[unplaceable]["bg"] != by_sla[provisioning]["bg"], rows
    assert order.index(unplaceable) < order.index(provisioning)
    feed = browser.evaluate(
        "Array.from(document.querySelectorAll('#events tbody tr'))"
        ".map(r => [r.dataset.sla, r.dataset.reason, r.className])"
    )
    assert [breach, "ErrorBudgetExhausted", "warning"] in feed, feed
    assert [breach, "BurnRateAlertStarted", "warning"] in feed, feed
    assert [unplaceable, "Unplaceable", "warning"] in feed, feed
    assert browser.evaluate("document.querySelectorAll('#chart-credits rect').length") == MONTHS
    # Readable at 1280 px: nothing wider than the window, no table cut by its container.
    assert browser.evaluate("window.innerWidth") == WIDTH
    page = browser.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert page[0] <= page[1], page  # no horizontal scrolling
    for table in ("fleet", "events"):
        widths = browser.evaluate(
            f"(() => {{ const t = document.getElementById('{table}');"
            " return [t.scrollWidth, t.parentElement.clientWidth]; })()"
        )
        assert widths[0] <= widths[1], (table, widths)
    # The whole page at 1280 px: a viewport as tall as the page, so no scrollbar takes width.
    height = browser.evaluate("document.documentElement.scrollHeight")
    browser.send(
        "Emulation.setDeviceMetricsOverride",
        width=WIDTH,
        height=height,
        deviceScaleFactor=1,
        mobile=False,
    )
    # Two animation frames: the resized layout has been painted.
    browser.send(
        "Runtime.evaluate",
        expression="new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))",
        awaitPromise=True,
    )
    shot = browser.send("Page.captureScreenshot", format="png")
    (artifacts_dir / "noc-after-reload.png").write_bytes(base64.b64decode(shot["data"]))
    browser.evaluate("1")  # drain pending events
    assert _errors(browser.events) == []


def test_after_a_reload_the_noc_page_shows_the_balance_burn_and_exhaustion(
    api_url: str, browser: DevTools, namespace: str, k8s: Any, tmp_path: Path
) -> None:
    from kubernetes import client

    from aiconn.resources.v1alpha1.sla import Window
    from aiconn.sla.accounting import UsageReading
    from aiconn.sla.periods import period_containing
    from aiconn.sla.settlement import fund_allowance
    from aiconn.sla.wallets import wallet_owner

    headers = {"Authorization": f"Bearer {TOKEN}"}
    browser.send("Page.navigate", url=f"{api_url}/noc#token={TOKEN}")
    tenant = wallet_owner(namespace, "tenant-0")
    before = {
        w["tenant"]: w
        for w in httpx.get(f"{api_url}/v1/fleet/wallets", headers=headers).json()["wallets"]
    }
    eventually(
        lambda: (
            browser.evaluate("document.querySelectorAll('#wallets tbody tr').length") == len(before)
        ),
        what="every wallet in the wallets table",
    )
    # A top-up brings the wallet (overdrawn by the seeded months) to 10,000,000 tokens; the SLA
    # loop records 600,000 used in 2 days 3 hours of the open period.
    start = before[tenant]["availableTokens"]
    funding = 10_000_000 - start
    assert funding > 0
    uid = client.CustomObjectsApi(k8s).get_namespaced_custom_object(
        GROUP, VERSION, namespace, SLA.plural, "sla-0"
    )["metadata"]["uid"]
    current = period_containing(Window(duration="1M", calendar_aligned=True), datetime.now(UTC))
    measured = current.start + timedelta(days=2, hours=3)
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        fund_allowance(
            ledger,
            sla_uid=uid,
            namespace=namespace,
            name="sla-0",
            tenant=tenant,
            period=current,
            tokens=funding,
        )
        ledger.record_usage(
            [UsageReading(uid, tenant, current, tokens=600_000, measured_at=measured)]
        )
    finally:
        ledger.close()
    left = 10_000_000 - 600_000
    # 9,400,000 / (600,000 tokens / 183,600 s) = 2,876,400 s = 33 d 7 h.
    seconds = left * 183_600 // 600_000
    assert seconds == 33 * 86_400 + 7 * 3_600
    expected = measured + timedelta(seconds=seconds)

    cells = _after_reload(
        browser,
        f'#wallets tbody tr[data-tenant="{tenant}"]',
        "{available: e.querySelector('.available').textContent,"
        " burn: e.querySelector('.burn').textContent,"
        " at: e.querySelector('.exhaustion').dataset.at}",
        shown=lambda found: bool(found["at"]),
        what="the wallet's exhaustion date",
    )
    assert int("".join(c for c in cells["available"] if c.isdigit() or c == "-")) == left
    # 600,000 x 86,400 / 183,600 = 282,352.9411... tokens a day.
    assert cells["burn"] == "282352.941"
    assert datetime.fromisoformat(cells["at"]) == expected
    browser.evaluate("1")  # drain pending events
    assert _errors(browser.events) == []
