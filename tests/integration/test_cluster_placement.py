"""Placement reaches a real scheduler: the tiers' sites are KWOK nodes (labels, taints and
`nvidia.com/gpu` capacity from the shipped tiers), the operator renders each SLA's Deployment,
the controller-manager makes its pods, kube-scheduler binds them and KWOK runs them. Nothing
here writes a pod's node or status by hand."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kopf.testing import KopfRunner
from kubernetes import client

from aiconn.devstack.cluster import Cluster
from aiconn.devstack.kube import load_documents
from aiconn.devstack.tiernodes import GPU_RESOURCE
from aiconn.inference.placement import default_tiers
from aiconn.inference.workload import SITE_LABEL, pod_selector
from aiconn.resources.v1alpha1.meta import GROUP, VERSION
from tests.factories import TIER_SAMPLES
from tests.helpers import (
    condition_of,
    eventually,
    fresh_namespace,
    operator_kubeconfig,
    running_operator,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "manifests" / "samples"


@pytest.fixture(scope="module")
def k8s(kwok_k8s: Any) -> Any:
    """The admin client of this module's KWOK cluster (`kwok_cluster`, tests/conftest.py)."""
    return kwok_k8s


@pytest.fixture(scope="module")
def operator(kwok_cluster: Cluster, k8s: Any) -> Iterator[KopfRunner]:
    """The operator as its ServiceAccount, bound to exactly manifests/rbac."""
    with running_operator(operator_kubeconfig(kwok_cluster.control_plane, k8s)) as runner:
        yield runner


@pytest.fixture
def namespace(k8s: Any) -> Iterator[str]:
    """A namespace per test, deleted and waited for: its pods must free their GPUs before the
    next test counts on them."""
    with fresh_namespace(k8s, wait_deleted=True) as name:
        yield name


def sample(name: str, *, rename: str | None = None) -> dict[str, Any]:
    body = copy.deepcopy(load_documents([SAMPLES / name])[0])
    if rename:
        body["metadata"]["name"] = rename
    return body


def create_sla(k8s: Any, namespace: str, body: dict[str, Any]) -> None:
    client.CustomObjectsApi(k8s).create_namespaced_custom_object(
        GROUP, VERSION, namespace, "aiinferenceslas", body
    )


def sla_status(k8s: Any, namespace: str, name: str) -> dict[str, Any]:
    sla = client.CustomObjectsApi(k8s).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "aiinferenceslas", name
    )
    return dict(sla.get("status") or {})


def inference_pods(k8s: Any, namespace: str, sla: str) -> list[Any]:
    selector = ",".join(f"{k}={v}" for k, v in pod_selector(sla).items())
    return list(client.CoreV1Api(k8s).list_namespaced_pod(namespace, label_selector=selector).items)


def running(k8s: Any, namespace: str, sla: str, count: int) -> list[Any] | None:
    pods = [p for p in inference_pods(k8s, namespace, sla) if p.status.phase == "Running"]
    return pods if len(pods) >= count else None


@pytest.mark.parametrize(("sample_file", "tier"), TIER_SAMPLES)
def test_each_tiers_sla_runs_its_pods_on_that_tiers_nodes(
    k8s: Any, operator: KopfRunner, namespace: str, sample_file: str, tier: str
) -> None:
    body = sample(sample_file)
    name, replicas = body["metadata"]["name"], body["spec"].get("capacity", {}).get("replicas", 1)
    create_sla(k8s, namespace, body)

    pods = eventually(
        lambda: running(k8s, namespace, name, replicas),
        what=f"{replicas} inference pod(s) of {name} Running",
    )
    # KWOK runs a pod the moment it is scheduled, which can be before the reconcile that created
    # the Deployment has written the SLA's status: wait for that write, then check it.
    placement = eventually(
        lambda: sla_status(k8s, namespace, name).get("placement"),
        what=f"{name}'s status to show its placement",
    )
    assert placement["tier"] == tier
    core = client.CoreV1Api(k8s)
    tier_spec = default_tiers()[tier]
    for pod in pods:
        node = core.read_node(pod.spec.node_name)
        labels = node.metadata.labels
        # The scheduler chose a node of the placed tier and site, by its labels alone.
        assert {k: labels.get(k) for k in tier_spec.node_selector} == tier_spec.node_selector
        assert labels[SITE_LABEL] == placement["site"]
        assert int(node.status.allocatable[GPU_RESOURCE]) >= placement["tensorParallelSize"]
        requests = pod.spec.containers[0].resources.requests or {}
        gpus = sum(
            int((c.resources.requests or {}).get(GPU_RESOURCE, 0)) for c in pod.spec.containers
        )
        assert gpus == placement["tensorParallelSize"], requests
    # Running pods make the Deployment available, which the operator reports as Ready.
    eventually(
        lambda: sla_status(k8s, namespace, name).get("phase") == "Ready",
        what=f"{name} Ready",
    )


def test_a_pod_the_scheduler_cannot_place_stays_pending_with_its_reason_in_status(
    k8s: Any, operator: KopfRunner, namespace: str
) -> None:
    """Placement counts free GPUs, so a tier without room is refused before any pod exists
    (`Unplaceable`, each site's free GPUs in the reason; see the capacity tests). What it cannot
    see still reaches the scheduler: here a maintenance taint on every cloud node. The pod stays
    Pending and the scheduler's own reason shows in the SLA's status; lifting the taint lets it
    run, and the condition follows."""
    core = client.CoreV1Api(k8s)
    taint = {"key": "aiconn.io/maintenance", "value": "true", "effect": "NoSchedule"}
    cloud = [
        n
        for n in core.list_node().items
        if (n.metadata.labels or {}).get(SITE_LABEL) in ("eu-west-1", "us-east-1")
    ]
    assert cloud, "the cloud tier's KWOK nodes"

    def set_taint(node: Any, on: bool) -> None:
        current = core.read_node(node.metadata.name).spec.taints or []
        kept = [t.to_dict() for t in current if t.key != taint["key"]]
        core.patch_node(node.metadata.name, {"spec": {"taints": [*kept, taint] if on else kept}})

    for node in cloud:
        set_taint(node, True)
    try:
        create_sla(k8s, namespace, sample("sla-cloud-405b.yaml"))

        def scheduler_said() -> str | None:
            pods = inference_pods(k8s, namespace, "research-405b")
            conds = [
                c for p in pods for c in (p.status.conditions or []) if c.type == "PodScheduled"
            ]
            return next((c.message for c in conds if c.reason == "Unschedulable"), None)

        message = eventually(scheduler_said, what="the scheduler's reason")
        assert "untolerated taint" in message, message

        reported = eventually(
            lambda: condition_of(sla_status(k8s, namespace, "research-405b"), "PodsScheduled"),
            what="PodsScheduled in the SLA's status",
        )
        assert reported["status"] == "False"
        assert reported["reason"] == "Unschedulable"
        assert "untolerated taint" in reported["message"]
        # The condition may land before the reconcile's own status write: wait for the phase.
        status = eventually(
            lambda: (s := sla_status(k8s, namespace, "research-405b")).get("phase") and s,
            what="the SLA's phase",
        )
        assert status["phase"] == "Provisioning"
        assert [p.status.phase for p in inference_pods(k8s, namespace, "research-405b")] == [
            "Pending"
        ]
    finally:
        for node in cloud:
            set_taint(node, False)

    eventually(
        lambda: running(k8s, namespace, "research-405b", 1),
        what="the pod Running once the taint is lifted",
    )
    eventually(
        lambda: (
            (condition_of(sla_status(k8s, namespace, "research-405b"), "PodsScheduled") or {}).get(
                "status"
            )
            == "True"
        ),
        what="PodsScheduled True",
    )
