"""aiconn installed for real: manifests/base rendered by kustomize and applied to a cluster with
a real node (containerd, kubelet, kube-proxy), the operator's pod run by kubelet from the image
built here (tools/images/build.sh), reconciling an SLA through the in-cluster API (the
`kubernetes` Service, through kube-proxy). What the pod runs as is read from the host's /proc,
not from the pod spec: the claim is about the running process."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from aiconn.devstack.cluster import Cluster
from aiconn.devstack.images import node_images
from aiconn.devstack.incluster import MONITORING_CRDS, host_volume, ready_pod, render
from aiconn.devstack.kube import apply_objects, load_documents, wait_established
from aiconn.devstack.node import NODE_NAME
from tests.helpers import admin_api, eventually

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CRDS = sorted((ROOT / "crds").glob("*.yaml"))
SYSTEM = "aiconn-system"
OPERATOR = "app.kubernetes.io/name=aiconn,app.kubernetes.io/component=operator"
NONROOT = 65532


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A cluster with one real node, the sandbox and aiconn images imported into it."""
    yield from real_node_cluster(tmp_path_factory)


def real_node_cluster(
    tmp_path_factory: pytest.TempPathFactory, *, vllm: bool = False
) -> Iterator[Cluster]:
    """A cluster with one real node, the sandbox and aiconn images (and vLLM's, if asked)
    imported into it; stopped afterwards, the real node's kubelet among what was stopped."""
    started = Cluster(state_dir=tmp_path_factory.mktemp("cluster"), real_node=True)
    try:
        started.start(crds=CRDS, node_images=node_images(aiconn=True, vllm=vllm))
        yield started
    finally:
        stopped = started.stop()
        assert "kubelet" in stopped, stopped


@pytest.fixture(scope="module")
def k8s(cluster: Cluster) -> Iterator[Any]:
    yield from admin_api(cluster)


@pytest.fixture(scope="module")
def installed(k8s: Any, cluster: Cluster) -> None:
    """manifests/base applied as a user would, plus what a bare cluster lacks: the Prometheus
    Operator's CRDs and a volume for the ledger's claim (no storage provisioner runs here)."""
    wait_established(k8s, apply_objects(k8s, load_documents(MONITORING_CRDS)))
    ledger = cluster.state_dir / "ledger-volume"
    ledger.mkdir()
    os.chown(ledger, NONROOT, NONROOT)
    client.CoreV1Api(k8s).create_persistent_volume(
        host_volume(
            "aiconn-ledger", ledger, namespace=SYSTEM, claim="aiconn-ledger", mode="ReadWriteOnce"
        )
    )
    apply_objects(k8s, render("manifests/base"))


def test_operator_pod_runs_read_only_non_root_and_reconciles_an_sla(
    cluster: Cluster, k8s: Any, installed: None
) -> None:
    pod = eventually(
        lambda: ready_pod(k8s, SYSTEM, OPERATOR),
        timeout=180,
        what="the operator pod Running, Ready",
    )
    assert pod.spec.node_name == NODE_NAME
    (status,) = pod.status.container_statuses
    assert status.image.endswith(":0.1.0") or "aiconn" in status.image

    assert cluster.node is not None
    pid = cluster.node.task_pid(status.container_id)
    uids = next(
        line.split()[1:]
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("Uid:")
    )
    assert set(uids) == {str(NONROOT)}
    root_mount = next(
        line.split()
        for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
        if line.split()[4] == "/"
    )
    assert "ro" in root_mount[5].split(","), root_mount
    denied = subprocess.run(
        ["nsenter", "--target", str(pid), "--mount", "touch", "/probe"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "Read-only file system" in denied.stderr, denied

    # The real node stands for the edge tier's first site but has no GPU; placement counts free
    # GPUs, so advertise some the way a device plugin would (an extended resource in the node's
    # status, which kubelet keeps). Nothing here runs on them: the claim is the reconcile.
    gpus = {"nvidia.com/gpu": "4"}
    client.CoreV1Api(k8s).patch_node_status(
        NODE_NAME, {"status": {"capacity": gpus, "allocatable": gpus}}
    )
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    client.CoreV1Api(k8s).create_namespace({"metadata": {"name": namespace}})
    sla = load_documents([ROOT / "manifests" / "samples" / "sla-edge-urllc.yaml"])[0]
    client.CustomObjectsApi(k8s).create_namespaced_custom_object(
        "aiconn.io", "v1alpha1", namespace, "aiinferenceslas", sla
    )

    def placed() -> dict[str, Any] | None:
        got = client.CustomObjectsApi(k8s).get_namespaced_custom_object(
            "aiconn.io", "v1alpha1", namespace, "aiinferenceslas", sla["metadata"]["name"]
        )
        return (got.get("status") or {}).get("placement")

    placement = eventually(placed, timeout=120, what="the SLA placed by the in-cluster operator")
    assert placement["tier"] == "edge"
    deployment = client.AppsV1Api(k8s).read_namespaced_deployment(
        f"{sla['metadata']['name']}-vllm", namespace
    )
    assert deployment.metadata.owner_references[0].kind == "AIInferenceSLA"
