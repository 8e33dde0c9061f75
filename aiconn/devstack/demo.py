"""The demo scenario of `make demo`: an SLA placed, measured, breached and paid back.

It applies the edge sample SLA with a short period (minutes instead of a month, through the
SLA's own `objectives.window`, not a special code path), drives steady traffic through the token
gateway, injects a latency spike and then an outage at the injector between the gateway and vLLM
(in the current period when enough of it is left after the SLA's first whole minute, from which
it is judged; otherwise in the next), and waits for the period to close and be settled. The
period's last minute is planned maintenance the provider announced beforehand
(`aiconn.devstack.maintenance`): vLLM is down then too, but that minute is excused. It prints
live compliance on the way and ends with the SLA report and the credits. Then come the
assurance scenes (`aiconn.devstack.assurance_scenes`, on simulated KWOK nodes): a surge the loop
scales out for, and a site loss it fails over from and comes back after; then the NOC page is
opened afresh and the settlement's evidence verified.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import json
import re
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aiconn.devstack import assurance_scenes, maintenance, nocview, stack
from aiconn.devstack.kubelet import mark_running
from aiconn.devstack.loadgen import LoadGenerator, RequestRecord
from aiconn.resources.v1alpha1.kinds import SLA
from aiconn.resources.v1alpha1.meta import GROUP, VERSION
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec
from aiconn.sla.periods import Period, ceil_minute, period_containing

SAMPLE = stack.ROOT / "manifests" / "samples" / "sla-edge-urllc.yaml"
PERIOD = "4m"
SPIKE_SECONDS = 50.0
SPIKE_DELAY = 0.6
OUTAGE_SECONDS = 80.0
BASELINE_SECONDS = 30.0
MAINTENANCE_MARGIN_S = 12.0


@dataclass
class DemoResult:
    """What the demo saw, for its printout and for the e2e test."""

    endpoints: stack.Endpoints
    period_start: str = ""
    period_end: str = ""
    statuses: list[dict[str, Any]] = field(default_factory=list)
    settlement: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    statement: dict[str, Any] = field(default_factory=dict)
    records: list[RequestRecord] = field(default_factory=list)
    noc: nocview.NocView | None = None
    """The NOC page as opened after the settlement (a reload: nothing kept in the tab)."""
    noc_screenshot: Path | None = None
    verified: str = ""
    """`aiconn verify`'s output on the settled period's evidence (a match)."""
    tampered: str = ""
    """Its output once the stored evidence had a bad minute turned good (a mismatch)."""
    maintenance: Period | None = None
    """The announced maintenance window (the target period's last minute), excused."""
    scenes: assurance_scenes.ScenesResult | None = None


def demo_sla() -> dict[str, Any]:
    sla: dict[str, Any] = copy.deepcopy(yaml.safe_load(SAMPLE.read_text()))
    sla["spec"]["objectives"]["window"] = {"duration": PERIOD, "calendarAligned": True}
    # One stand-in pod serves the demo; two replicas would wait forever for a second one (so
    # the loop, which scales in the assurance scenes, never scales this SLA).
    sla["spec"]["capacity"] = {"replicas": 1, "maxReplicas": 1}
    return sla


def _get_json(url: str, token: str | None = None, context: ssl.SSLContext | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=10, context=context) as r:
        return json.load(r)


def _fault(endpoints: stack.Endpoints, *, delay: float = 0.0, refuse: bool = False) -> None:
    body = json.dumps({"delay": delay, "refuse": refuse}).encode()
    request = urllib.request.Request(
        endpoints.injector_control,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=5).close()


class Watcher:
    """Reads the SLA's status through the Kubernetes API and prints a line now and then."""

    def __init__(self, endpoints: stack.Endpoints) -> None:
        from kubernetes import client, config

        configuration = client.Configuration()
        config.load_kube_config(
            config_file=endpoints.kubeconfig, client_configuration=configuration
        )
        self.api = client.ApiClient(configuration)
        self.custom = client.CustomObjectsApi(self.api)
        self.endpoints = endpoints
        self.seen: list[dict[str, Any]] = []

    def status(self) -> dict[str, Any]:
        obj = self.custom.get_namespaced_custom_object(
            GROUP,
            VERSION,
            self.endpoints.namespace,
            SLA.plural,
            self.endpoints.sla_name,
        )
        status: dict[str, Any] = obj.get("status") or {}
        self.seen.append(status)
        return status

    def line(self, phase: str) -> None:
        status = self.status()
        period = status.get("period") or {}
        compliant: dict[str, Any] = next(
            (c for c in status.get("conditions", []) if c["type"] == "Compliant"), {}
        )

        def pct(key: str) -> str:
            value = period.get(key)
            return "  -  " if value is None else f"{value:6.2f}"

        alerts = ",".join(period.get("alerts", [])) or "-"
        stack.say(
            f"{phase:<16} avail% {pct('availabilityPercent')}  ttft% "
            f"{pct('ttftAttainmentPercent')}  budget% {pct('budgetRemainingPercent')}  "
            f"coverage% {pct('coveragePercent')}  compliant {compliant.get('status', '?')}"
            f" ({compliant.get('reason', '')})  alerts {alerts}"
        )

    def close(self) -> None:
        self.api.close()


def _run_for(watcher: Watcher, phase: str, seconds: float, every: float = 10.0) -> None:
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(every, left))
        watcher.line(phase)


def play_kubelet(endpoints: stack.Endpoints) -> None:
    """No kubelet runs locally: report the Deployment's pods Running and Ready, as the kubelet
    would once vLLM answered its probes (the stand-in pair outside the cluster does)."""
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=endpoints.kubeconfig, client_configuration=configuration)
    with client.ApiClient(configuration) as api:
        core = client.CoreV1Api(api)
        selector = f"aiconn.io/sla={endpoints.sla_name}"
        deadline = time.monotonic() + 60
        pods: list[Any] = []
        while not pods and time.monotonic() < deadline:
            pods = core.list_namespaced_pod(endpoints.namespace, label_selector=selector).items
            time.sleep(0.5)
        mark_running(core, endpoints.namespace, pods, pod_ip="127.0.0.1", host_ip="127.0.0.1")


def run(*, state_dir: Path | None = None) -> DemoResult:
    sla = demo_sla()
    spec = AIInferenceSLASpec.model_validate(sla["spec"])
    endpoints = stack.up(SAMPLE, state_dir=state_dir)
    result = DemoResult(endpoints=endpoints)
    stack.say(
        f"applying AIInferenceSLA {endpoints.namespace}/{endpoints.sla_name} "
        f"(period {PERIOD}, TTFT <= {spec.objectives.ttft.threshold_ms} ms for "
        f"{spec.objectives.ttft.target_percent} %, availability "
        f"{spec.objectives.availability.target_percent} %)"
    )
    stack.apply_sla(endpoints.kubeconfig, sla, keys_dir=endpoints.gateway_keys_dir)
    # The SLA is judged from its first whole minute after creation; it was created before now.
    in_force = ceil_minute(dt.datetime.now(dt.UTC))
    watcher = Watcher(endpoints)
    try:
        _wait_placed(watcher)
        play_kubelet(endpoints)
        load = LoadGenerator(
            endpoints.gateway,
            model=spec.model.name,
            api_key=endpoints.gateway_key,
            rate_rps=4,
            workers=4,
            max_requests=20_000,
            timeout_s=20,
        ).start()
        try:
            now = dt.datetime.now(dt.UTC)
            current = period_containing(spec.objectives.window, now)
            # The faults go where the SLA is judged: the current period if the whole scenario
            # fits after the SLA's first whole minute, else the next one.
            scenario = dt.timedelta(
                seconds=BASELINE_SECONDS + SPIKE_SECONDS + OUTAGE_SECONDS + 20 + 60
            )  # the last 60 s: the announced maintenance minute
            fits = max(now, in_force) + scenario <= current.end
            target = current if fits else period_containing(spec.objectives.window, current.end)
            result.period_start, result.period_end = target.start_iso, target.end_iso
            window = maintenance.announce(watcher.api, offer=sla["spec"]["offer"], period=target)
            result.maintenance = window
            wait = max(0.0, (max(target.start, in_force) - now).total_seconds())
            stack.say(
                f"driving traffic; faults go into the period {target.start_iso} .. "
                f"{target.end_iso} (judged from {max(target.start, in_force):%H:%M:%S},"
                f" in {wait:.0f} s)"
            )
            _run_for(watcher, "steady traffic", wait + BASELINE_SECONDS)
            stack.say(
                f"injecting a latency spike: +{SPIKE_DELAY * 1000:.0f} ms between gateway "
                f"and vLLM for {SPIKE_SECONDS:.0f} s"
            )
            _fault(endpoints, delay=SPIKE_DELAY)
            _run_for(watcher, "latency spike", SPIKE_SECONDS)
            stack.say(f"injecting an outage: vLLM unreachable for {OUTAGE_SECONDS:.0f} s")
            _fault(endpoints, refuse=True)
            _run_for(watcher, "outage", OUTAGE_SECONDS)
            _fault(endpoints)
            stack.say("faults cleared; waiting for the period to close and be settled")
            _through_maintenance(watcher, endpoints, window)
        finally:
            result.records = load.stop()
        result.settlement = _wait_settled(watcher, target.start_iso)
    finally:
        result.statuses = watcher.seen
        watcher.close()
    base = f"{endpoints.api}/v1/namespaces/{endpoints.namespace}/slas/{endpoints.sla_name}"
    tls = endpoints.api_tls()
    result.report = _get_json(f"{base}/report?period={target.start_iso}", endpoints.api_token, tls)
    result.statement = _get_json(f"{base}/statement", endpoints.api_token, tls)
    result.scenes = assurance_scenes.run(
        endpoints, state_dir=state_dir or stack.default_state_dir()
    )
    result.noc_screenshot = (state_dir or stack.default_state_dir()) / "noc-after-breach.png"
    result.noc = _open_noc(endpoints, result.noc_screenshot)
    _print_summary(result)
    verify_evidence(result, directory=state_dir or stack.default_state_dir())
    return result


def verify_evidence(result: DemoResult, *, directory: Path) -> None:
    """`aiconn verify` on the settled period: the evidence downloaded from the API matches; the
    ledger's stored evidence, with one bad minute turned good, does not (then it is restored)."""
    e = result.endpoints
    base = f"{e.api}/v1/namespaces/{e.namespace}/slas/{e.sla_name}"
    body = _get_json(f"{base}/evidence?period={result.period_start}", e.api_token, e.api_tls())
    download = directory / "evidence.json"
    download.write_text(json.dumps(body, indent=2))
    print("\n=== evidence of the settled period ===")
    result.verified = _aiconn_verify(str(download))
    where = ["--ledger", e.ledger_url, "--sla", f"{e.namespace}/{e.sla_name}"]
    with _tampered(e.ledger_url, body["uid"], result.period_start):
        result.tampered = _aiconn_verify(*where, "--period", result.period_start)


def _aiconn_verify(*args: str) -> str:
    command = [sys.executable, "-m", "aiconn.cli", "verify", *args]
    stack.say(f"$ aiconn verify {' '.join(args)}")
    ran = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    print(ran.stdout + ran.stderr, end="")
    return ran.stdout + ran.stderr


@contextlib.contextmanager
def _tampered(ledger_url: str, sla_uid: str, period_start: str) -> Iterator[None]:
    """The stored evidence with its first bad minute recorded as good, for the block's length."""
    from sqlmodel import Session, select

    from aiconn.sla.evidence import canonical
    from aiconn.store.ledger import Ledger
    from aiconn.store.schema import EvidenceRow

    start = dt.datetime.fromisoformat(period_start.replace("Z", "+00:00"))
    query = select(EvidenceRow).where(
        EvidenceRow.sla_uid == sla_uid, EvidenceRow.period_start == start
    )
    ledger = Ledger.open(ledger_url)
    try:
        with Session(ledger.engine) as session, session.begin():
            row = session.exec(query).one()
            original = row.document
            document = json.loads(original)
            verdicts = document["verdicts"]
            verdicts["minutes"] = re.sub(r"(\d+)b", r"\1g", verdicts["minutes"], count=1)
            row.document = canonical(document)
        stack.say("tampered with the stored evidence: the first bad minutes recorded as good")
        try:
            yield
        finally:
            with Session(ledger.engine) as session, session.begin():
                session.exec(query).one().document = original
    finally:
        ledger.close()


def _through_maintenance(watcher: Watcher, endpoints: stack.Endpoints, window: Period) -> None:
    """Recovery until the announced window, vLLM down during it, then back (the period ends)."""
    left = (window.start - dt.datetime.now(dt.UTC)).total_seconds()
    _run_for(watcher, "recovery", max(0.0, left))
    stack.say("announced maintenance: vLLM down for its minute (excused, not bad)")
    _fault(endpoints, refuse=True)
    try:
        # Back a little before the window ends: the gateway's health probe needs a moment to see
        # vLLM again, and the minute after the window is not excused.
        left = (window.end - dt.datetime.now(dt.UTC)).total_seconds() - MAINTENANCE_MARGIN_S
        _run_for(watcher, "maintenance", max(0.0, left))
    finally:
        _fault(endpoints)
    rest = (window.end - dt.datetime.now(dt.UTC)).total_seconds()
    _run_for(watcher, "maintenance", max(0.0, rest))


def _wait_placed(watcher: Watcher, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = watcher.status()
        if (status.get("placement") or {}).get("tier") and status.get("children"):
            placement = status["placement"]
            stack.say(
                f"placed on tier {placement['tier']} (site {placement.get('site')}, "
                f"{placement.get('gpusPerReplica')} x {placement.get('gpu')}, TP "
                f"{placement.get('tensorParallelSize')}); rejected: "
                + "; ".join(r["reason"] for r in placement["rejected"])
            )
            return
        time.sleep(1)
    raise RuntimeError(f"the SLA was not placed within {timeout:.0f} s: {watcher.seen[-1:]}")


def _wait_settled(watcher: Watcher, period_start: str, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        settlement: dict[str, Any] = watcher.status().get("lastSettlement") or {}
        if settlement.get("periodStart") == period_start:
            return settlement
        time.sleep(3)
    raise RuntimeError(f"period {period_start} was not settled within {timeout:.0f} s")


def _open_noc(endpoints: stack.Endpoints, screenshot: Path) -> nocview.NocView:
    """Open the NOC page afresh after the incident, as an engineer would, and say what it shows."""
    stack.say("opening the NOC page in headless Chromium (a fresh load, as after a reload)")
    view = nocview.load(
        endpoints.noc,
        screenshot=screenshot,
        ca_file=Path(endpoints.api_ca) if endpoints.api_ca else None,
    )
    key = f"{endpoints.namespace}/{endpoints.sla_name}"
    line = view.budget.get(key)
    history = (
        f"budget history {line.high:.1f} % -> {line.low:.1f} % over {line.points} points"
        if line
        else "no budget history drawn"
    )
    reasons = sorted({reason for sla, reason in view.events if sla == key})
    stack.say(
        f"NOC page: {history}; settled periods in the credits chart: "
        f"{len(view.credit_bars)}; activity for {key}: {', '.join(reasons) or 'none'}"
    )
    stack.say(f"NOC screenshot (1280 px): {screenshot}")
    return view


def _print_summary(result: DemoResult) -> None:
    e, report, settlement = result.endpoints, result.report, result.settlement
    ok = sum(1 for r in result.records if r.ok)
    stack.say(f"load generator: {len(result.records)} requests, {ok} served")
    stack.say(
        f"settlement of {result.period_start}: {settlement.get('state')}, charges "
        f"{settlement.get('charges')}, credits {settlement.get('credits')}, transfers "
        f"{len(settlement.get('transferIds', []))}"
    )
    stack.say(
        f"minutes judged {settlement.get('judgedMinutes')}, excused for announced maintenance"
        f" {settlement.get('excusedMinutes')}, availability"
        f" {settlement.get('availabilityPercent')} %"
    )
    print("\n=== SLA report (from the reporting API) ===")
    print(json.dumps(report, indent=2)[:4000])
    print("\n=== where to look ===")
    print(f"  reporting API : {e.api}/docs")
    # The admin token stays out of the output (logs and terminals get shared): say where it is.
    print(
        f"  NOC page      : {e.api}/noc  (token: api_token in .aiconn/dev/endpoints.json,"
        " or open the `noc` URL there)"
    )
    print(f"  Prometheus    : {e.prometheus}")
    print(
        f"  gateway       : {e.gateway}  (Authorization: Bearer <key in "
        f".aiconn/dev/endpoints.json>)"
    )
    print(f"  kubeconfig    : {e.kubeconfig}")
    print("  stop it all   : aiconn dev down")
