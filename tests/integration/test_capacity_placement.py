"""Capacity-aware placement on the real API server: a full site sends the next SLA to the next
tier, with the reason in its status.

The GPU nodes are Node objects with labels and a patched status (allocatable nvidia.com/gpu,
Ready), as a kubelet or KWOK would report them; no scheduler runs, so the SLAs' inference pods
stay unbound and hold their GPUs through the site their nodeSelector pins them to, which is
what an SLA placed a moment ago does on a real cluster too. The operator runs as its
ServiceAccount under manifests/rbac, so this also proves it may list Nodes and Pods.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kopf.testing import KopfRunner
from kubernetes import client

from aiconn.devstack.kube import apply_objects, load_documents
from aiconn.inference.placement import default_tiers
from aiconn.resources.v1alpha1.meta import GROUP, VERSION
from aiconn.resources.v1alpha1.tier import SITE_LABEL
from tests.helpers import eventually, operator_kubeconfig, running_operator

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "manifests" / "samples"
TIERS = default_tiers()


@pytest.fixture(scope="module")
def operator(control_plane: Any, k8s: Any) -> Iterator[KopfRunner]:
    apply_objects(k8s, load_documents([SAMPLES / "tiers.yaml", SAMPLES / "offers.yaml"]))
    with running_operator(operator_kubeconfig(control_plane, k8s)) as runner:
        yield runner


@pytest.fixture
def gpu_nodes(k8s: Any) -> Iterator[dict[str, list[str]]]:
    """Two edge nodes of 2 L40S at de-fra-edge-01 and one regional node of 8 H100 at
    de-fra-dc-01; deleted afterwards, since Nodes are cluster-wide and other tests place SLAs."""
    core = client.CoreV1Api(k8s)
    suffix = uuid.uuid4().hex[:6]
    layout = {
        "edge": [("de-fra-edge-01", 2), ("de-fra-edge-01", 2)],
        "regional": [("de-fra-dc-01", 8)],
    }
    created: dict[str, list[str]] = {}
    for tier_name, nodes in layout.items():
        for index, (site, gpus) in enumerate(nodes):
            name = f"gpu-{tier_name}-{index}-{suffix}"
            labels = {**TIERS[tier_name].node_selector, SITE_LABEL: site}
            core.create_node({"metadata": {"name": name, "labels": labels}})
            core.patch_node_status(
                name,
                {
                    "status": {
                        "capacity": {"nvidia.com/gpu": str(gpus), "cpu": "64", "pods": "110"},
                        "allocatable": {"nvidia.com/gpu": str(gpus), "cpu": "64", "pods": "110"},
                        "conditions": [{"type": "Ready", "status": "True", "reason": "Test"}],
                    }
                },
            )
            created.setdefault(tier_name, []).append(name)
    yield created
    for names in created.values():
        for name in names:
            core.delete_node(name)


def edge_or_regional(name: str, *, replicas: int) -> dict[str, Any]:
    """The edge sample, made servable by regional too (RTT budget 60 ms, TTFT 1 s), pinned to
    the two Frankfurt sites."""
    body = copy.deepcopy(next(iter(load_documents([SAMPLES / "sla-edge-urllc.yaml"]))))
    body["metadata"] = {"name": name}
    spec = body["spec"]
    spec["network"]["rttBudgetMs"] = 60
    spec["objectives"]["ttft"]["thresholdMs"] = 1000
    spec["placement"]["sites"] = ["de-fra-edge-01", "de-fra-dc-01"]
    spec["capacity"] = {"replicas": replicas, "maxReplicas": replicas}
    return body


def create(k8s: Any, ns: str, body: dict[str, Any]) -> None:
    client.CustomObjectsApi(k8s).create_namespaced_custom_object(
        GROUP, VERSION, ns, "aiinferenceslas", copy.deepcopy(body)
    )


def placement(k8s: Any, ns: str, name: str, generation: int = 1) -> dict[str, Any] | None:
    sla = client.CustomObjectsApi(k8s).get_namespaced_custom_object(
        GROUP, VERSION, ns, "aiinferenceslas", name
    )
    status = sla.get("status") or {}
    if status.get("observedGeneration") != generation or "placement" not in status:
        return None
    conditions = {c["type"]: c for c in status.get("conditions", [])}
    return {**status["placement"], "message": conditions["Placed"]["message"]}


def pods_of(k8s: Any, ns: str, name: str, count: int) -> list[Any]:
    return eventually(
        lambda: (
            len(
                p := client.CoreV1Api(k8s)
                .list_namespaced_pod(ns, label_selector=f"aiconn.io/sla={name}")
                .items
            )
            == count
            and p
        ),
        what=f"{count} inference pods of {name}",
    )


SITES = ("de-fra-edge-01", "de-fra-dc-01")


def others_holding_the_sites(k8s: Any, namespace: str) -> list[str]:
    """Inference pods of other namespaces pinned to this test's sites: an earlier test's, whose
    namespace is still terminating, would hold GPUs this test counts on."""
    pods = client.CoreV1Api(k8s).list_pod_for_all_namespaces(label_selector="aiconn.io/sla").items
    return [
        f"{p.metadata.namespace}/{p.metadata.name}"
        for p in pods
        if p.metadata.namespace != namespace
        and (p.spec.node_selector or {}).get(SITE_LABEL) in SITES
    ]


def test_a_full_site_sends_the_next_sla_to_the_next_tier_with_the_reason(
    k8s: Any, namespace: str, operator: KopfRunner, gpu_nodes: dict[str, list[str]]
) -> None:
    # The sites' GPUs are this test's alone: an earlier test file on this worker's cluster may
    # have deleted its namespace a moment ago, and its pods count until they are gone.
    eventually(
        lambda: not others_holding_the_sites(k8s, namespace),
        what="earlier tests' inference pods at the Frankfurt sites gone",
    )
    # Two SLAs of 2 replicas x 1 L40S fill the site's 4 GPUs; their pods hold them unbound.
    for name in ("first", "second"):
        create(k8s, namespace, edge_or_regional(name, replicas=2))
        placed = eventually(lambda n=name: placement(k8s, namespace, n), what=f"{name} placed")
        assert (placed["tier"], placed["site"]) == ("edge", "de-fra-edge-01"), placed
        pods = pods_of(k8s, namespace, name, 2)
        assert {p.spec.node_selector[SITE_LABEL] for p in pods} == {"de-fra-edge-01"}
    assert "2 of 4 L40S free at the site" in placement(k8s, namespace, "second")["message"]

    create(k8s, namespace, edge_or_regional("third", replicas=2))
    third = eventually(lambda: placement(k8s, namespace, "third"), what="third placed")
    assert (third["tier"], third["site"]) == ("regional", "de-fra-dc-01"), third
    rejected = {r["tier"]: r["reason"] for r in third["rejected"]}
    assert rejected["edge"] == "edge de-fra-edge-01: 0 of 4 L40S free, 2 needed (2 replica(s) x 1)"
    assert "8 of 8 H100 free at the site" in third["message"]
    eventually(
        lambda: (
            "Tier edge not chosen: de-fra-edge-01: 0 of 4 L40S free, 2 needed (2 replica(s) x 1)"
            in {
                e.message
                for e in client.CoreV1Api(k8s)
                .list_namespaced_event(namespace, field_selector="involvedObject.name=third")
                .items
                if e.reason == "TierNotChosen" and e.type == "Normal"
            }
        ),
        what="a Normal TierNotChosen event with the reason",
    )

    # Re-planning an SLA that already holds GPUs counts them as its own: it stays put.
    client.CustomObjectsApi(k8s).patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "aiinferenceslas",
        "first",
        {"spec": {"objectives": {"tpot": {"thresholdMs": 60, "targetPercent": 99}}}},
    )
    replanned = eventually(lambda: placement(k8s, namespace, "first", 2), what="first replanned")
    assert (replanned["tier"], replanned["site"]) == ("edge", "de-fra-edge-01"), replanned
