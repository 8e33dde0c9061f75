"""The demo's assurance scenes, after the breach and the credit: a load surge the loop absorbs by
scaling out (decided with money), and a site loss it fails over from and comes back after.

Two cores run one vLLM, so these scenes run on simulated GPU nodes: kube-scheduler and KWOK join
the demo's control plane, KWOK nodes stand for three sites (the demo SLA's own edge site, a second
edge site and a regional one), and KWOK plays their kubelets: pods are scheduled and Running, but
load no model. The surge is simulated gateway metrics (the gateway's own `GatewayMetrics`,
scraped by the demo's Prometheus under the scene SLA's labels). Everything else is the demo's
real operator, Prometheus and API server; the output says what is simulated.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from aiconn.devstack import stack
from aiconn.devstack.cluster import require_cluster_binaries, start_scheduling
from aiconn.devstack.kube import apply_manifests, apply_objects
from aiconn.devstack.processes import ProcessGroup, free_port
from aiconn.devstack.prometheus import add_scrape_jobs, running_pid
from aiconn.devstack.tiernodes import set_site_ready, simulated_node
from aiconn.gateway.metrics import GatewayMetrics
from aiconn.inference.placement import default_tiers
from aiconn.inference.workload import child_names
from aiconn.resources.v1alpha1.kinds import SLA, TIER
from aiconn.resources.v1alpha1.meta import GROUP, VERSION
from aiconn.resources.v1alpha1.tier import SITE_LABEL

NAMESPACE = "demo-assurance"
SITES = {"de-fra-edge-01": "edge", "de-muc-edge-01": "edge", "fr-par-dc-01": "regional"}
"""The demo SLA's site (so it stays where it runs), the site lost and the one failed over to."""
HOME, AWAY = "de-muc-edge-01", "fr-par-dc-01"
MAX_REPLICAS = 3
SAMPLES = stack.ROOT / "manifests" / "samples"
TIERS_FILE = SAMPLES / "tiers.yaml"
T = TypeVar("T")


@dataclass
class ScenesResult:
    """What the scenes saw, for their printout and the e2e test."""

    held: dict[str, Any] = field(default_factory=dict)
    """The scale-out the loop weighed and held while the capacity cost more than the credit."""
    acted: dict[str, Any] = field(default_factory=dict)
    """The scale-out it took once the capacity cost nothing."""
    replicas_seen: list[int] = field(default_factory=list)
    """The surge Deployment's replica counts, as polled through the scene."""
    surge_ready: int = 0
    failed_over_to: tuple[str, str] = ("", "")
    failover_action: dict[str, Any] = field(default_factory=dict)
    failover_seconds: float = 0.0
    history: list[tuple[str, str]] = field(default_factory=list)
    """The site-loss SLA's placement history at the end: home, away, home."""


def scene_sla(name: str, *, sites: list[str], replicas: int, max_replicas: int) -> dict[str, Any]:
    """The edge sample, servable by regional too (RTT budget 60 ms, TTFT 1 s), at `sites`."""
    body: dict[str, Any] = copy.deepcopy(
        yaml.safe_load((SAMPLES / "sla-edge-urllc.yaml").read_text())
    )
    body["metadata"] = {"name": name, "namespace": NAMESPACE}
    spec = body["spec"]
    spec["network"]["rttBudgetMs"] = 60
    spec["objectives"]["ttft"]["thresholdMs"] = 1000
    spec["placement"]["sites"] = sites
    spec["capacity"] = {"replicas": replicas, "maxReplicas": max_replicas}
    return body


def surge_load(gateway: GatewayMetrics, stop: threading.Event) -> None:
    """The surge, until `stop` is set: 40 s of request time every 0.2 s in the gateway's
    metrics, which Little's law reads as ~200 requests in flight (rate(duration_sum[1m]))."""
    while not stop.wait(0.2):
        gateway.duration.observe(40.0)
        gateway.ttft.observe(0.1)


def _until(check: Callable[[], T | None], *, what: str, timeout: float = 120) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.5)
    raise RuntimeError(f"assurance scene: no {what} within {timeout:.0f} s")


class _Cluster:
    """The few reads and writes the scenes make."""

    def __init__(self, kubeconfig: str) -> None:
        from kubernetes import client

        from aiconn.kube import api_client

        self.api = api_client(kubeconfig)
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    def status(self, name: str) -> dict[str, Any]:
        sla = self.custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, SLA.plural, name)
        return dict(sla.get("status") or {})

    def actions(self, name: str) -> list[dict[str, Any]]:
        return list((self.status(name).get("assurance") or {}).get("actions") or [])

    def running(self, name: str) -> dict[str, int]:
        """Running, Ready, not terminating pods of SLA `name` per site."""
        sites: dict[str, int] = {}
        pods = self.core.list_namespaced_pod(NAMESPACE, label_selector=f"aiconn.io/sla={name}")
        for pod in pods.items:
            ready = {c.type: c.status for c in pod.status.conditions or []}.get("Ready")
            if pod.status.phase != "Running" or ready != "True" or pod.metadata.deletion_timestamp:
                continue
            site = self.core.read_node(pod.spec.node_name).metadata.labels[SITE_LABEL]
            sites[site] = sites.get(site, 0) + 1
        return sites

    def node_ready(self, name: str) -> bool:
        conditions = self.core.read_node(name).status.conditions or []
        return any(c.type == "Ready" and c.status == "True" for c in conditions)

    def replicas(self, name: str) -> int:
        deployment = self.apps.read_namespaced_deployment(child_names(name).deployment, NAMESPACE)
        return int(deployment.spec.replicas)


def run(
    endpoints: stack.Endpoints,
    *,
    state_dir: Path,
    scheduling: bool = True,
    say: Callable[[str], None] = stack.say,
) -> ScenesResult:
    """Both scenes on the running demo stack under `state_dir`; the processes they start are
    recorded there, so `aiconn dev down` stops them with the rest. Without `scheduling`, the
    cluster already runs kube-scheduler and KWOK, and the scenes' namespace exists (with the
    claims the operator's pods mount). What they tell goes to `say`."""
    joining = "kube-scheduler and KWOK join the control plane; " if scheduling else ""
    say(
        f"assurance scenes on SIMULATED GPU nodes: {joining}"
        f"KWOK nodes stand for {', '.join(SITES)} and run pods without loading a model "
        "(a second vLLM does not fit on 2 cores)"
    )
    if scheduling:
        require_cluster_binaries()
        start_scheduling(ProcessGroup(state_dir), Path(endpoints.kubeconfig))
    kube = _Cluster(endpoints.kubeconfig)
    try:
        tiers = default_tiers()
        nodes = [simulated_node(tier, tiers[tier], site, 0) for site, tier in SITES.items()]
        apply_objects(kube.api, nodes)
        _until(lambda: all(kube.node_ready(n["metadata"]["name"]) for n in nodes), what="nodes")
        for node in nodes:
            # The demo's controller-manager runs no node lifecycle controller, which lifts the
            # not-ready taint a new node is created with: keep only the tier's own taints.
            kube.core.patch_node(
                node["metadata"]["name"], {"spec": {"taints": node["spec"]["taints"]}}
            )
        if scheduling:
            kube.core.create_namespace({"metadata": {"name": NAMESPACE}})
        result = ScenesResult()
        _surge(kube, state_dir, result, say)
        _site_loss(kube, result, say)
        return result
    finally:
        kube.api.close()


def _surge(
    kube: _Cluster, state_dir: Path, result: ScenesResult, say: Callable[[str], None]
) -> None:
    name = "surge"
    gateway = GatewayMetrics(
        sla=name, namespace=NAMESPACE, model="m", ttft_threshold_ms=1000, tpot_threshold_ms=100
    )
    from prometheus_client import start_http_server

    port = free_port()
    server, _ = start_http_server(port, addr="127.0.0.1", registry=gateway.registry)
    _scrape(state_dir, f"127.0.0.1:{port}")
    stop = threading.Event()
    try:
        sla = scene_sla(name, sites=[AWAY], replicas=1, max_replicas=MAX_REPLICAS)
        apply_objects(kube.api, [sla], namespace=NAMESPACE)
        _until(lambda: kube.running(name) == {AWAY: 1}, what="surge SLA's replica Running")
        say(
            f"surge scene: SLA {NAMESPACE}/{name} runs 1 replica at {AWAY} (maxReplicas "
            f"{MAX_REPLICAS}); simulated gateway metrics now report ~200 requests in flight"
        )
        threading.Thread(target=surge_load, args=(gateway, stop), daemon=True).start()
        held = _until(
            lambda: next((a for a in kube.actions(name) if a["action"] == "ScaleOut"), None),
            what="scale-out weighed",
        )
        result.held = held
        say(f"  the loop weighs a scale-out: {held['decision']}: {held['reason']}")
        # The provider's call, not the tenant's: spare regional GPUs priced at no marginal cost.
        kube.custom.patch_cluster_custom_object(
            GROUP,
            VERSION,
            TIER.plural,
            "regional",
            {"spec": {"pricePerMillionTokens": 0}},
        )
        say("  the provider prices its spare regional GPUs at 0 (marginal cost): the same surge")
        started = time.monotonic()

        def scaled() -> dict[str, Any] | None:
            result.replicas_seen.append(kube.replicas(name))
            acted = [a for a in kube.actions(name) if a["decision"] == "Act"]
            return acted[-1] if acted and kube.running(name).get(AWAY) == MAX_REPLICAS else None

        result.acted = _until(scaled, what="scale-out to maxReplicas")
        result.surge_ready = kube.running(name).get(AWAY, 0)
        result.replicas_seen.append(kube.replicas(name))
        say(
            f"  scaled out before the budget burns: {result.acted['reason']}; "
            f"{result.surge_ready} replicas Ready {time.monotonic() - started:.1f} s after the "
            f"price change, and no further than maxReplicas {MAX_REPLICAS}"
        )
    finally:
        stop.set()
        server.shutdown()
        apply_manifests(kube.api, [TIERS_FILE])


def _site_loss(kube: _Cluster, result: ScenesResult, say: Callable[[str], None]) -> None:
    name = "site-loss"
    apply_objects(
        kube.api,
        [scene_sla(name, sites=[HOME, AWAY], replicas=1, max_replicas=1)],
        namespace=NAMESPACE,
    )
    _until(lambda: kube.running(name) == {HOME: 1}, what="site-loss SLA's replica Running")
    # The loop records where an SLA started on its first pass after the placement.
    _until(
        lambda: (kube.status(name).get("assurance") or {}).get("placementHistory"),
        what="the first placement in the history",
    )
    say(f"site-loss scene: SLA {NAMESPACE}/{name} runs at edge {HOME}; its KWOK nodes go NotReady")
    lost = time.monotonic()
    set_site_ready(kube.core, HOME, ready=False)
    try:
        _until(lambda: kube.running(name).get(AWAY) == 1, what="a replica Running elsewhere")
        result.failover_seconds = time.monotonic() - lost
        status = _until(
            lambda: (st := kube.status(name)).get("placement", {}).get("site") == AWAY and st,
            what="the fail-over in status",
        )
        placed = status["placement"]
        result.failed_over_to = (placed["tier"], placed["site"])
        result.failover_action = status["assurance"]["actions"][-1]
        say(
            f"  failed over to {placed['tier']} {placed['site']}, Running there "
            f"{result.failover_seconds:.1f} s after the NotReady: "
            f"{result.failover_action['reason']}"
        )
    finally:
        set_site_ready(kube.core, HOME, ready=True)
    say(
        f"  {HOME} is Ready again; the SLA returns once it has been stable for the "
        "stabilisation time"
    )
    _until(lambda: kube.running(name) == {HOME: 1}, what="the return home", timeout=180)
    # KWOK runs the pod as soon as the Deployment moves it; the placement, and the history in the
    # same write, follow once the move's reconcile ends.
    status = _until(
        lambda: (st := kube.status(name)).get("placement", {}).get("site") == HOME and st,
        what="the return home in status",
    )
    history = (status.get("assurance") or {}).get("placementHistory") or []
    result.history = [(h["tier"], h["site"]) for h in history]
    say("  back home; placement history: " + " -> ".join(f"{t} {s}" for t, s in result.history))


def _scrape(state_dir: Path, address: str) -> None:
    """Add `address` to the demo Prometheus's targets, which it scrapes from then on."""
    data = state_dir / "prometheus"
    interval = yaml.safe_load((data / "prometheus.yml").read_text())["global"]["scrape_interval"]
    job = {
        "job_name": "demo-assurance-surge",
        "scrape_timeout": interval,
        "static_configs": [{"targets": [address]}],
    }
    add_scrape_jobs(data, [job], pid=running_pid(state_dir))
