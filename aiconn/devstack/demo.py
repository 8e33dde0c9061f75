"""The demo scenario of `make demo`: an SLA placed, served, measured, breached and paid back,
all in a real cluster on this machine.

Act one (`aiconn.devstack.incluster`) starts the cluster with its real node, installs aiconn from
its manifests and serves the edge SLA for the tiny model from a pod on the real node, with a
short period (minutes instead of a month, through the SLA's own `objectives.window`, not a
special code path). Prometheus discovers that pod as the manifests' PodMonitor selects it, and
the operator, in its own pod, measures the SLA from the pod's series.

Act two drives steady traffic through the SLA's Service, and injects faults into the pod itself
(`aiconn.devstack.podfaults`): vLLM's engine stalls (a latency spike), then vLLM crashes and the
kubelet restarts it (an outage as long as the restart), in the current period when enough of it
is left after the SLA's first whole minute, from which it is judged; otherwise in the next. The
period's last minute is planned maintenance the provider announced beforehand
(`aiconn.devstack.maintenance`): vLLM is restarted then too, but that minute is excused. It
prints live compliance on the way, waits for the period to close and be settled by the operator,
and ends with the SLA report and the credits from the API in its pod. Beside the measured
period run the assurance scenes (`aiconn.devstack.assurance_scenes`, on the cluster's simulated
KWOK nodes, with SLAs of their own): a surge the loop scales out for, and a site loss it fails
over from and comes back after. They start once the demo's SLA is placed, on a thread of their
own (their lines are marked `scenes |`), and the demo takes their result after the settlement:
the period fixes how long the demo lasts (it waits up to a period for the next to begin), and
the scenes, minutes of their own, fit inside it instead of coming after it. Then the NOC page is
opened afresh and the settlement's evidence verified.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aiconn.devstack import assurance_scenes, incluster, maintenance, nocview, stack
from aiconn.devstack.cluster import Cluster, fresh_cluster_dir
from aiconn.devstack.devcluster import CLUSTER_DIR
from aiconn.devstack.loadgen import LoadGenerator, RequestRecord
from aiconn.devstack.podfaults import VllmFaults
from aiconn.resources.v1alpha1.kinds import SLA
from aiconn.resources.v1alpha1.meta import GROUP, VERSION
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec
from aiconn.sla.periods import Period, ceil_minute, period_containing
from aiconn.sla.timestamps import parse_iso

SAMPLE = stack.ROOT / "manifests" / "samples" / "sla-edge-urllc.yaml"
PERIOD = "4m"
BASELINE_SECONDS = 30.0
SPIKE_SECONDS = 50.0
STALL_SECONDS = 0.8
"""The latency spike: vLLM's engine stopped this long of every second."""
OUTAGE_BUDGET_SECONDS = 70.0
"""What the scenario allows for vLLM's restart after the crash (45-47 s measured here). A
longer restart runs into the recovery and the maintenance minute, which is excused all the
same. The maintenance restart comes within minutes of the first, so the kubelet's crash-loop
back-off (10 s) delays it: vLLM may return just after the window, in the next period."""
OPERATOR_ENV = {
    # Evaluate every 5 s and settle 20 s after a period ends: the demo's minutes go by fast.
    "AICONN_EVALUATION_INTERVAL_SECONDS": "5",
    "AICONN_SETTLEMENT_GRACE_SECONDS": "20",
    # The assurance scenes: scaling on the gateways' signals, and a return home a short
    # stabilisation time after a site recovers.
    "AICONN_SCALING_ENABLED": "true",
    "AICONN_FAILBACK_STABILISATION_SECONDS": "15",
}
"""The provider's settings of the operator for the demo."""


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
    sla: dict[str, Any] = field(default_factory=dict)
    """The SLA as applied."""
    served: incluster.Served | None = None
    """Act one: the SLA's pod on the real node, its first answer, its scrape jobs."""
    outage_seconds: float = 0.0
    """From vLLM's crash to its container restarted by the kubelet and ready."""
    scenes: assurance_scenes.ScenesResult | None = None


def demo_sla() -> dict[str, Any]:
    """The sample SLA with the demo's period, for `aiconn dev up` without `--demo` (the
    process-based stack)."""
    sla: dict[str, Any] = copy.deepcopy(yaml.safe_load(SAMPLE.read_text()))
    sla["spec"]["objectives"]["window"] = {"duration": PERIOD, "calendarAligned": True}
    # One vLLM process serves that stack; two replicas would wait forever for a second one (so
    # the loop, which scales in the assurance scenes, never scales this SLA).
    sla["spec"]["capacity"] = {"replicas": 1, "maxReplicas": 1}
    return sla


def _get_json(url: str, token: str | None = None, context: ssl.SSLContext | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=10, context=context) as r:
        return json.load(r)


class Watcher:
    """Reads the SLA's status through the Kubernetes API and prints a line now and then."""

    def __init__(self, endpoints: stack.Endpoints) -> None:
        from kubernetes import client

        from aiconn.kube import api_client

        self.api = api_client(endpoints.kubeconfig)
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


def cluster_endpoints(act: incluster.ActOne, *, api_token: str) -> stack.Endpoints:
    """Where the cluster's pieces answer from the host, for the acts that follow and for
    `.aiconn/dev/endpoints.json`."""
    state, api = act.cluster.state_dir, incluster.API_URL
    endpoints = stack.Endpoints(
        kubeconfig=str(act.cluster.control_plane.kubeconfig),
        api=api,
        noc=f"{api}/noc#token={api_token}",
        prometheus=act.prometheus.url,
        gateway=act.served.url.removesuffix("/v1/chat/completions"),
        vllm="",  # on the pod's loopback only
        injector_control="",  # nothing stands between the gateway and vLLM
        ledger_url=f"sqlite:///{state / 'ledger-volume' / 'ledger.db'}",
        api_token=api_token,
        gateway_key=act.served.key,
        sla_name=act.sla["metadata"]["name"],
        namespace=act.served.pod.metadata.namespace,
        api_ca=str(state / "api-tls" / "ca.crt"),
    )
    endpoints.save(state.parent / "endpoints.json")
    return endpoints


def run(*, state_dir: Path | None = None) -> DemoResult:
    """Both acts, the scenes, the NOC page and the evidence, in one real cluster under the dev
    state directory. The cluster is left running for a look around (`.aiconn/dev/endpoints.json`
    says where everything answers); `aiconn dev down` stops it, as it does one a failed run
    left behind."""
    with _terminated_as_exit(), started(state_dir=state_dir) as act:
        return act_two(act)


@contextlib.contextmanager
def started(*, state_dir: Path | None = None) -> Iterator[incluster.ActOne]:
    """Act one in a fresh cluster under the dev state directory (a previous demo's cluster is
    stopped first); the cluster keeps running after the block, its admin client is closed."""
    state = (state_dir or stack.default_state_dir()) / CLUSTER_DIR
    if fresh_cluster_dir(state):
        stack.say("stopped the previous demo's cluster")
    cluster = Cluster(state_dir=state, real_node=True)
    act = incluster.act_one(cluster, window=PERIOD, operator_env=OPERATOR_ENV)
    try:
        yield act
    finally:
        act.close()


@contextlib.contextmanager
def _terminated_as_exit() -> Iterator[None]:
    """SIGTERM (a `timeout`, a CI job cancelled) ends the demo as an exception would, so its
    `finally` blocks run: above all, a vLLM engine stopped for the latency spike is continued."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def exit_(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, exit_)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def act_two(act: incluster.ActOne) -> DemoResult:
    """The measured period on act one's SLA (faults, breach, settlement), then the assurance
    scenes, the NOC page and the evidence checked."""
    sla = act.sla
    spec = AIInferenceSLASpec.model_validate(sla["spec"])
    incluster.scrape_api(act.prometheus, act.k8s, act.cluster.state_dir)
    endpoints = cluster_endpoints(act, api_token=incluster.noc_token(act.k8s))
    result = DemoResult(endpoints=endpoints, sla=sla, served=act.served)
    assert act.cluster.node is not None
    faults = VllmFaults(
        act.k8s, act.cluster.node, endpoints.namespace, act.served.pod.metadata.name
    )
    stack.say(
        f"act 2: SLA {endpoints.namespace}/{endpoints.sla_name} (period {PERIOD}, TTFT <= "
        f"{spec.objectives.ttft.threshold_ms} ms for {spec.objectives.ttft.target_percent} %, "
        f"availability {spec.objectives.availability.target_percent} %), measured from its pod"
    )
    # The SLA is judged from its first whole minute after creation; its pod was created after
    # it, so the pod's creation is a safe (later) stand-in for the SLA's.
    in_force = ceil_minute(act.served.pod.metadata.creation_timestamp.astimezone(dt.UTC))
    watcher = Watcher(endpoints)
    try:
        _wait_placed(watcher)
        scenes = _scenes_beside(act, endpoints)
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
            # fits after the SLA's first whole minute, else the next one. The scenario fills a
            # whole period, so in practice that is the next one.
            scenario = dt.timedelta(
                seconds=BASELINE_SECONDS + SPIKE_SECONDS + OUTAGE_BUDGET_SECONDS + 30 + 60
            )  # the last 60 s: the announced maintenance minute
            fits = max(now, in_force) + scenario <= current.end
            target = current if fits else period_containing(spec.objectives.window, current.end)
            result.period_start, result.period_end = target.start_iso, target.end_iso
            window = maintenance.announce(watcher.api, offer=sla["spec"]["offer"], period=target)
            result.maintenance = window
            wait = max(0.0, (max(target.start, in_force) - now).total_seconds())
            stack.say(
                f"driving traffic through the SLA's Service; faults go into the period "
                f"{target.start_iso} .. {target.end_iso} (judged from "
                f"{max(target.start, in_force):%H:%M:%S}, in {wait:.0f} s)"
            )
            _run_for(watcher, "steady traffic", wait + BASELINE_SECONDS)
            stack.say(
                f"latency spike: vLLM's engine stalls {STALL_SECONDS:.1f} s of every second "
                f"for {SPIKE_SECONDS:.0f} s (SIGSTOP / SIGCONT in its container)"
            )
            with faults.stalled(stalled=STALL_SECONDS):
                _run_for(watcher, "latency spike", SPIKE_SECONDS)
            stack.say("outage: vLLM crashes (SIGKILL); the kubelet restarts its container")
            crashed = faults.crash()
            if crashed is None:
                raise RuntimeError("vLLM was not running when the outage was to begin")
            restarts: int = crashed
            down = _run_until(
                watcher,
                "outage",
                lambda: faults.ready_after(restarts),
                timeout=OUTAGE_BUDGET_SECONDS + 240,
            )
            result.outage_seconds = down
            stack.say(f"vLLM is back after {down:.0f} s (restarted by the kubelet)")
            _through_maintenance(watcher, faults, window)
        finally:
            result.records = load.stop()
        result.settlement = _wait_settled(watcher, target.start_iso)
        result.scenes = scenes.result()
    finally:
        result.statuses = watcher.seen
        watcher.close()
    base = f"{endpoints.api}/v1/namespaces/{endpoints.namespace}/slas/{endpoints.sla_name}"
    tls = endpoints.api_tls()
    result.report = _get_json(f"{base}/report?period={target.start_iso}", endpoints.api_token, tls)
    result.statement = _get_json(f"{base}/statement", endpoints.api_token, tls)
    directory = act.cluster.state_dir.parent
    result.noc_screenshot = directory / "noc-after-breach.png"
    result.noc = _open_noc(endpoints, result.noc_screenshot)
    _print_summary(result)
    try:
        verify_evidence(result, directory=directory)
    finally:
        # The ledger is the pods' (its user's files): what this root process created beside it
        # (SQLite's journal files) goes back to that user.
        for path in (act.cluster.state_dir / "ledger-volume").iterdir():
            os.chown(path, incluster.NONROOT, incluster.NONROOT)
    return result


def _scenes_beside(
    act: incluster.ActOne, endpoints: stack.Endpoints
) -> Future[assurance_scenes.ScenesResult]:
    """The assurance scenes, started now on a thread of their own, their lines marked. They
    share the cluster with the demo's SLA but not its objects: simulated nodes at other sites
    (and at its own, which only adds room there), SLAs in a namespace of their own, a scrape job
    of their own, and a price change on the regional tier, not the SLA's edge tier."""
    incluster.tenant_namespace(act.k8s, act.cluster.state_dir, assurance_scenes.NAMESPACE)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="assurance-scenes")
    try:
        return pool.submit(
            assurance_scenes.run,
            endpoints,
            state_dir=act.cluster.state_dir,
            scheduling=False,
            say=lambda message: stack.say(f"scenes | {message}"),
        )
    finally:
        pool.shutdown(wait=False)  # the submitted scenes run to their end


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

    start = parse_iso(period_start)
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


def _through_maintenance(watcher: Watcher, faults: VllmFaults, window: Period) -> None:
    """Recovery until the announced window, then vLLM restarted in it (excused, not bad)."""
    left = (window.start - dt.datetime.now(dt.UTC)).total_seconds()
    _run_for(watcher, "recovery", max(0.0, left))
    if dt.datetime.now(dt.UTC) >= window.end - dt.timedelta(seconds=5):
        stack.say("announced maintenance: its minute is over already (vLLM took long to return)")
        return
    restarted = faults.crash()
    stack.say(
        "announced maintenance: vLLM restarted in its minute (excused, not bad)"
        if restarted is not None
        else "announced maintenance: vLLM is still restarting (excused, not bad)"
    )
    rest = (window.end - dt.datetime.now(dt.UTC)).total_seconds()
    _run_for(watcher, "maintenance", max(0.0, rest))


def _run_until(
    watcher: Watcher, phase: str, done: Callable[[], bool], *, timeout: float, every: float = 10.0
) -> float:
    """Print status lines until `done()` is true; the seconds it took (at most `timeout`)."""
    started = time.monotonic()
    last = started
    while not done():
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"{phase}: not over after {timeout:.0f} s")
        time.sleep(1)
        if time.monotonic() - last >= every:
            watcher.line(phase)
            last = time.monotonic()
    return time.monotonic() - started


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
