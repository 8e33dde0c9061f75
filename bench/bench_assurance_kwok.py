"""Benchmark the assurance loop's reactions on a cluster that schedules: KWOK nodes for every
site of the shipped tiers, kube-scheduler, the operator as its own process (`aiconn operator`,
scaling on, the default 15 s assurance interval) and a real Prometheus.

Usage: PYTHONPATH=$PWD python bench/bench_assurance_kwok.py [--runs 5]

- surge: a gateway metrics exporter per SLA (the gateway's own `GatewayMetrics`) starts
  reporting ~200 requests in flight; measured from the moment Prometheus first answers the
  loop's in-flight query above the threshold (8 per replica; polled here every 0.1 s) to the
  added replica's pod Ready. The regional tier is priced at 0 for the run, so the money weighing
  (measured apart, see RESULTS.md) always says act.
- fail-over: the serving edge site's KWOK nodes go NotReady (`set_site_ready`); measured from
  that write to a pod Running at the other site, then, after the site is back and the
  stabilisation time (5 s here) has passed, to the pod Running at home again.

KWOK pods load no model: model loading is excluded, as the aims say.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client
from prometheus_client import start_http_server

from aiconn.devstack.assurance_scenes import scene_sla, surge_load
from aiconn.devstack.cluster import Cluster
from aiconn.devstack.kube import apply_objects, load_documents
from aiconn.devstack.processes import ProcessGroup, free_port
from aiconn.devstack.prometheus import PrometheusServer, ScrapeTarget
from aiconn.devstack.tiernodes import set_site_ready
from aiconn.gateway.metrics import GatewayMetrics
from aiconn.inference.placement import default_tiers
from aiconn.inference.scaling import ScalingPolicy, in_flight_query
from aiconn.resources.v1alpha1.tier import SITE_LABEL
from aiconn.store.prometheus import PrometheusSource, QueryClient

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "manifests" / "samples"
G, V = "aiconn.io", "v1alpha1"
HOME, AWAY = "de-muc-edge-01", "fr-par-dc-01"
STABILISATION_S = 5
POLL_S = 0.1


def sla_body(name: str, *, sites: list[str], replicas: int, max_replicas: int) -> dict[str, Any]:
    """The assurance scenes' SLA (`scene_sla`), in whichever namespace it is created in."""
    body = scene_sla(name, sites=sites, replicas=replicas, max_replicas=max_replicas)
    body["metadata"] = {"name": name}
    return body


def wait(check: Callable[[], Any], *, timeout: float = 120, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(POLL_S)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


class Bench:
    def __init__(self, api: Any) -> None:
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.sites: dict[str, str] = {}

    def site_of(self, node: str) -> str:
        if node not in self.sites:
            self.sites[node] = self.core.read_node(node).metadata.labels[SITE_LABEL]
        return self.sites[node]

    def pods(self, ns: str, sla: str, *, ready: bool) -> dict[str, int]:
        """Running (and, with `ready`, Ready) pods of `sla` that are not terminating, per site."""
        found: dict[str, int] = {}
        for pod in self.core.list_namespaced_pod(ns, label_selector=f"aiconn.io/sla={sla}").items:
            if pod.status.phase != "Running" or pod.metadata.deletion_timestamp is not None:
                continue
            conditions = {c.type: c.status for c in pod.status.conditions or []}
            if ready and conditions.get("Ready") != "True":
                continue
            site = self.site_of(pod.spec.node_name)
            found[site] = found.get(site, 0) + 1
        return found

    def create(self, ns: str, body: dict[str, Any]) -> None:
        self.core.create_namespace({"metadata": {"name": ns}})
        self.custom.create_namespaced_custom_object(G, V, ns, "aiinferenceslas", body)

    def delete(self, ns: str) -> None:
        """Delete the namespace and wait it out, so the next run finds the GPUs free. The SLAs'
        settlement finalizers are released first: settling waits for the deletion's minute to
        be scraped (two minutes), which is not what this measures."""
        for sla in self.custom.list_namespaced_custom_object(G, V, ns, "aiinferenceslas")["items"]:
            name = sla["metadata"]["name"]
            self.custom.delete_namespaced_custom_object(G, V, ns, "aiinferenceslas", name)
            with contextlib.suppress(client.ApiException):  # gone already
                self.custom.patch_namespaced_custom_object(
                    G, V, ns, "aiinferenceslas", name, {"metadata": {"finalizers": []}}
                )
        self.core.delete_namespace(ns)
        wait(
            lambda: ns not in {n.metadata.name for n in self.core.list_namespace().items},
            what=f"namespace {ns} gone",
        )


def surge_once(bench: Bench, prometheus: QueryClient, gateway: GatewayMetrics, index: int) -> float:
    """Seconds from the in-flight signal crossing its threshold to the added replica Ready."""
    ns, name = f"bench-surge-{index}", f"surge-{index}"
    threshold = ScalingPolicy().target_in_flight_per_replica
    bench.create(ns, sla_body(name, sites=[AWAY], replicas=1, max_replicas=2))
    wait(lambda: bench.pods(ns, name, ready=True) == {AWAY: 1}, what="one replica Ready")
    stop = threading.Event()

    def crossed() -> bool:
        result = prometheus.custom_query(in_flight_query(namespace=ns, sla=name))
        return bool(result) and float(result[0]["value"][1]) > threshold

    worker = threading.Thread(target=surge_load, args=(gateway, stop), daemon=True)
    worker.start()
    try:
        wait(crossed, what="the in-flight signal above its threshold")
        crossed_at = time.monotonic()
        wait(lambda: bench.pods(ns, name, ready=True) == {AWAY: 2}, what="the added replica")
        took = time.monotonic() - crossed_at
    finally:
        stop.set()
        worker.join()
    print(f"surge {index}: added replica Ready {took:.1f} s after the signal", file=sys.stderr)
    bench.delete(ns)
    return took


def failover_once(bench: Bench, index: int) -> tuple[float, float]:
    """Seconds from the home site's nodes NotReady to a pod Running away, and from the site
    Ready again to the pod Running at home."""
    ns, name = f"bench-failover-{index}", f"moving-{index}"
    bench.create(ns, sla_body(name, sites=[HOME, AWAY], replicas=1, max_replicas=1))
    wait(lambda: bench.pods(ns, name, ready=False) == {HOME: 1}, what="Running at home")
    lost_at = time.monotonic()
    set_site_ready(bench.core, HOME, ready=False)
    try:
        wait(lambda: bench.pods(ns, name, ready=False).get(AWAY) == 1, what="Running away")
        away = time.monotonic() - lost_at
    finally:
        back_at = time.monotonic()
        set_site_ready(bench.core, HOME, ready=True)
    wait(lambda: bench.pods(ns, name, ready=False) == {HOME: 1}, what="Running at home again")
    home = time.monotonic() - back_at
    print(f"fail-over {index}: Running away {away:.1f} s, home {home:.1f} s", file=sys.stderr)
    bench.delete(ns)
    return away, home


def row(what: str, values: list[float], aim: str) -> str:
    return (
        f"| {what} | {len(values)} | {statistics.median(values):.1f} | {max(values):.1f} | {aim} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    state = Path(tempfile.mkdtemp(prefix="aiconn-bench-kwok-"))
    cluster = Cluster(state_dir=state / "cluster")
    group = ProcessGroup(state / "prometheus")
    servers = []
    op = None
    try:
        cluster.start(crds=sorted((ROOT / "crds").glob("*.yaml")))
        api = cluster.api_client()
        apply_objects(api, load_documents([SAMPLES / "tiers.yaml", SAMPLES / "offers.yaml"]))
        # Free capacity: the scale-out is always worth it, so the run times the loop alone.
        client.CustomObjectsApi(api).patch_cluster_custom_object(
            G, V, "inferencetiers", "regional", {"spec": {"pricePerMillionTokens": 0}}
        )
        cluster.add_simulated_nodes(default_tiers())
        metrics, targets = [], []
        for index in range(args.runs):
            gateway = GatewayMetrics(
                sla=f"surge-{index}",
                namespace=f"bench-surge-{index}",
                model="m",
                ttft_threshold_ms=1000,
                tpot_threshold_ms=100,
            )
            port = free_port()
            server, _ = start_http_server(port, addr="127.0.0.1", registry=gateway.registry)
            servers.append(server)
            metrics.append(gateway)
            targets.append(ScrapeTarget("aiconn-gateway", f"127.0.0.1:{port}"))
        prometheus = PrometheusServer(
            group=group, data_dir=group.state_dir / "data", targets=targets, scrape_interval="1s"
        ).start()
        log = (state / "operator.log").open("wb")
        op = subprocess.Popen(
            [sys.executable, "-m", "aiconn.cli", "operator"],
            env={
                **os.environ,
                "KUBECONFIG": str(cluster.control_plane.kubeconfig),
                "AICONN_HEALTH_PORT": "0",
                "AICONN_PROMETHEUS_URL": prometheus.url,
                "AICONN_LEDGER_URL": f"sqlite:///{state / 'ledger.db'}",
                "AICONN_SCALING_ENABLED": "true",
                "AICONN_FAILBACK_STABILISATION_SECONDS": str(STABILISATION_S),
            },
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        bench = Bench(api)
        source = PrometheusSource.from_url(prometheus.url).client
        surges = [surge_once(bench, source, m, i) for i, m in enumerate(metrics)]
        # The shipped prices again: at 0 the regional tier would win the placement outright.
        apply_objects(api, load_documents([SAMPLES / "tiers.yaml"]))
        failovers = [failover_once(bench, i) for i in range(args.runs)]
    finally:
        if op is not None:
            op.terminate()
            op.wait(timeout=30)
        for server in servers:
            server.shutdown()
        group.stop_all()
        cluster.stop()
    print("| what | runs | median (s) | max (s) | aim |")
    print("|---|---|---|---|---|")
    print(row("surge: signal above its threshold -> added replica Ready", surges, "< 30 s"))
    print(
        row(
            "fail-over: site's nodes NotReady -> pod Running at another site",
            [a for a, _ in failovers],
            "< 60 s",
        )
    )
    print(
        row(
            f"come back: site Ready again -> pod Running at home ({STABILISATION_S} s "
            "stabilisation)",
            [h for _, h in failovers],
            "-",
        )
    )


if __name__ == "__main__":
    main()
