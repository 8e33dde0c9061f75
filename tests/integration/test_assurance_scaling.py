"""Scaling on the gateway's signals, decided with money, on the real API server and Prometheus.

A gateway metrics exporter (the gateway's own `GatewayMetrics`, served over HTTP) reports a
surge: request durations adding up to about 200 requests in flight. A real Prometheus scrapes it;
the operator reads the fleet's signals from Prometheus each pass. While the edge tier's capacity
costs more than the credit at stake (none: nothing is charged yet), the loop holds and records
both numbers; once the tier's price is 0, the same surge scales the Deployment out to
maxReplicas, and no further.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from prometheus_client import start_http_server

from aiconn.devstack.kube import apply_objects, load_documents
from aiconn.devstack.processes import free_port
from aiconn.devstack.prometheus import ScrapeTarget
from aiconn.gateway.metrics import GatewayMetrics
from aiconn.inference import workload
from aiconn.resources.v1alpha1.meta import GROUP, VERSION
from tests.helpers import eventually
from tests.integration.test_assurance_placement import run_operator, status_of
from tests.integration.test_capacity_placement import SAMPLES, create, edge_or_regional

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def surge(namespace: str, sla: str) -> Iterator[str]:
    """Serve the SLA's gateway metrics while durations add up to ~200 requests in flight."""
    metrics = GatewayMetrics(
        sla=sla, namespace=namespace, model="m", ttft_threshold_ms=1000, tpot_threshold_ms=100
    )
    port = free_port()
    server, _ = start_http_server(port, addr="127.0.0.1", registry=metrics.registry)
    stop = threading.Event()

    def load() -> None:
        # 40 s of request time every 0.2 s: rate(duration_sum) = 200, Little's law's in flight.
        while not stop.wait(0.2):
            metrics.duration.observe(40.0)
            metrics.ttft.observe(0.1)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        stop.set()
        worker.join()
        server.shutdown()


def actions(k8s: Any, ns: str, name: str) -> list[dict[str, Any]]:
    return list((status_of(k8s, ns, name).get("assurance") or {}).get("actions") or [])


def deployment_replicas(k8s: Any, ns: str, name: str) -> int | None:
    deployment = client.AppsV1Api(k8s).read_namespaced_deployment(
        workload.child_names(name).deployment, ns
    )
    replicas: int | None = deployment.spec.replicas
    return replicas


def test_a_surge_scales_out_once_the_capacity_costs_no_more_than_the_credit_at_stake(
    control_plane: Any, k8s: Any, namespace: str, prometheus_factory: Any, tmp_path: Path
) -> None:
    sla = edge_or_regional("surge", replicas=1)
    sla["spec"]["capacity"] = {"replicas": 1, "maxReplicas": 3}
    with surge(namespace, "surge") as address:
        prometheus = prometheus_factory([ScrapeTarget("aiconn-gateway", address)])
        settings = {
            "AICONN_ASSURANCE_INTERVAL_SECONDS": "1",
            "AICONN_PROMETHEUS_URL": prometheus.url,
            "AICONN_LEDGER_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
            "AICONN_SCALING_ENABLED": "true",
        }
        operator = contextlib.contextmanager(run_operator)(control_plane, k8s, settings)
        try:
            with operator:
                create(k8s, namespace, sla)
                held = eventually(
                    lambda: [
                        a for a in actions(k8s, namespace, "surge") if a["action"] == "ScaleOut"
                    ],
                    what="a scale-out weighed and held",
                )[0]
                assert held["decision"] == "Hold"
                assert held["reason"].startswith("1 -> ")  # the rate may still be ramping up
                assert "in flight per replica > 8" in held["reason"]
                assert "paying the credit is cheaper" in held["reason"]
                assert held["expectedCredit"] == "0.000000"
                assert held["capacityCost"] != "0.000000"
                assert deployment_replicas(k8s, namespace, "surge") == 1

                # The provider prices the edge capacity at nothing: the same surge is now worth it.
                client.CustomObjectsApi(k8s).patch_cluster_custom_object(
                    GROUP, VERSION, "inferencetiers", "edge", {"spec": {"pricePerMillionTokens": 0}}
                )
                eventually(
                    lambda: deployment_replicas(k8s, namespace, "surge") == 3,
                    what="the Deployment scaled out to maxReplicas",
                )
                done = status_of(k8s, namespace, "surge")["assurance"]
                assert done["replicas"] == 3
                acted = done["actions"][-1]
                assert (acted["action"], acted["decision"]) == ("ScaleOut", "Act")
                assert acted["capacityCost"] == "0.000000"
                assert "the credit at stake covers it" in acted["reason"]
                # Never past maxReplicas, however long the surge lasts.
                assert deployment_replicas(k8s, namespace, "surge") == 3
        finally:
            apply_objects(k8s, load_documents([SAMPLES / "tiers.yaml", SAMPLES / "offers.yaml"]))
            # With the SLA engine on the SLA carries the settlement finalizer, and the operator
            # is gone now: release it, so its pods (pending at a Frankfurt site other modules
            # fill with GPU nodes) go with the namespace instead of holding room there.
            custom = client.CustomObjectsApi(k8s)
            with contextlib.suppress(client.ApiException):
                custom.patch_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    namespace,
                    "aiinferenceslas",
                    "surge",
                    {"metadata": {"finalizers": []}},
                )
                custom.delete_namespaced_custom_object(
                    GROUP, VERSION, namespace, "aiinferenceslas", "surge"
                )
            eventually(
                lambda: not client.CoreV1Api(k8s).list_namespaced_pod(namespace).items,
                what="the surge SLA's pods gone",
            )
