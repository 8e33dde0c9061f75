"""The demo scenario of `make demo`: an SLA placed, measured, breached and paid back.

It applies the edge sample SLA with a short period (minutes instead of a month, through the
SLA's own `objectives.window`, not a special code path), drives steady traffic through the token
gateway, injects a latency spike and then an outage at the injector between the gateway and vLLM
(in the current period when enough of it is left after the SLA's first whole minute, from which
it is judged; otherwise in the next), and waits for the period to close and be settled. It
prints live compliance on the way and ends with the SLA report and the credits. Then come the
assurance scenes (`aiconn.devstack.assurance_scenes`, on simulated KWOK nodes): a surge the loop
scales out for, and a site loss it fails over from and comes back after.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aiconn.devstack import assurance_scenes, stack
from aiconn.devstack.loadgen import LoadGenerator, RequestRecord
from aiconn.sla.periods import ceil_minute, period_containing
from aiconn.sla.spec import AIInferenceSLASpec

SAMPLE = stack.ROOT / "manifests" / "samples" / "sla-edge-urllc.yaml"
PERIOD = "4m"
SPIKE_SECONDS = 50.0
SPIKE_DELAY = 0.6
OUTAGE_SECONDS = 80.0
BASELINE_SECONDS = 30.0


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
    scenes: assurance_scenes.ScenesResult | None = None


def demo_sla() -> dict[str, Any]:
    sla: dict[str, Any] = copy.deepcopy(yaml.safe_load(SAMPLE.read_text()))
    sla["spec"]["objectives"]["window"] = {"duration": PERIOD, "calendarAligned": True}
    # One stand-in pod serves the demo; two replicas would wait forever for a second one (so
    # the loop, which scales in the assurance scenes, never scales this SLA).
    sla["spec"]["capacity"] = {"replicas": 1, "maxReplicas": 1}
    return sla


def _get_json(url: str, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
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
            "aiconn.io",
            "v1alpha1",
            self.endpoints.namespace,
            "aiinferenceslas",
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
        now = dt.datetime.now(dt.UTC).isoformat()
        for pod in pods:
            conditions = [
                {"type": t, "status": "True", "lastTransitionTime": now}
                for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
            ]
            core.patch_namespaced_pod_status(
                pod.metadata.name,
                endpoints.namespace,
                {
                    "status": {
                        "phase": "Running",
                        "conditions": conditions,
                        "startTime": now,
                        "podIP": "127.0.0.1",
                        "hostIP": "127.0.0.1",
                    }
                },
            )


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
            scenario = dt.timedelta(seconds=BASELINE_SECONDS + SPIKE_SECONDS + OUTAGE_SECONDS + 20)
            fits = max(now, in_force) + scenario <= current.end
            target = current if fits else period_containing(spec.objectives.window, current.end)
            result.period_start, result.period_end = target.start_iso, target.end_iso
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
            left = (target.end - dt.datetime.now(dt.UTC)).total_seconds()
            _run_for(watcher, "recovery", max(0.0, left))
        finally:
            result.records = load.stop()
        result.settlement = _wait_settled(watcher, target.start_iso)
    finally:
        result.statuses = watcher.seen
        watcher.close()
    base = f"{endpoints.api}/v1/namespaces/{endpoints.namespace}/slas/{endpoints.sla_name}"
    result.report = _get_json(f"{base}/report?period={target.start_iso}", endpoints.api_token)
    result.statement = _get_json(f"{base}/statement", endpoints.api_token)
    result.scenes = assurance_scenes.run(
        endpoints, state_dir=state_dir or stack.default_state_dir()
    )
    _print_summary(result)
    return result


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


def _print_summary(result: DemoResult) -> None:
    e, report, settlement = result.endpoints, result.report, result.settlement
    ok = sum(1 for r in result.records if r.ok)
    stack.say(f"load generator: {len(result.records)} requests, {ok} served")
    stack.say(
        f"settlement of {result.period_start}: {settlement.get('state')}, charges "
        f"{settlement.get('charges')}, credits {settlement.get('credits')}, transfers "
        f"{len(settlement.get('transferIds', []))}"
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
