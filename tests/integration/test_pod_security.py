"""The inference pods the operator renders pass Pod Security "restricted", as the real
kube-apiserver's PodSecurity admission judges it (server-side dry run: nothing is scheduled)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec
from tests.factories import factory_deployment, llama_8b_spec

pytestmark = pytest.mark.integration

OWNER = {"apiVersion": "aiconn.io/v1alpha1", "kind": "AIInferenceSLA", "name": "f", "uid": "u-1"}
WALLET = "https://aiconn-api.aiconn-system.svc:8443"


def spec(source: str) -> AIInferenceSLASpec:
    return llama_8b_spec(source=source)


def rendered_pod(namespace: str, source: str) -> dict[str, Any]:
    """The rendered Deployment's pod template, as a Pod."""
    dep = factory_deployment(
        namespace, spec(source), owner=OWNER, wallet_api_url=WALLET, wallet_ca=True
    )
    template = dep["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "factory-probe", "namespace": namespace, **template["metadata"]},
        "spec": template["spec"],
    }


@pytest.fixture
def restricted(k8s: Any, namespace: str) -> str:
    labels = {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }
    client.CoreV1Api(k8s).patch_namespace(namespace, {"metadata": {"labels": labels}})
    return namespace


def dry_run_create(k8s: Any, pod: dict[str, Any]) -> None:
    client.CoreV1Api(k8s).create_namespaced_pod(pod["metadata"]["namespace"], pod, dry_run="All")


@pytest.mark.parametrize(
    "source", ["hf://meta-llama/Meta-Llama-3-8B-Instruct", "pvc://weights/llama-3-8b"]
)
def test_rendered_inference_pod_is_admitted_under_restricted(
    k8s: Any, restricted: str, source: str
) -> None:
    pod = rendered_pod(restricted, source)
    # What is judged carries the wallet's projected token and the CA bundle's ConfigMap volume.
    assert {"wallet-token", "wallet-ca"} <= {v["name"] for v in pod["spec"]["volumes"]}
    dry_run_create(k8s, pod)


def _weaken_vllm(pod: dict[str, Any], change: str) -> None:
    vllm = next(c for c in pod["spec"]["containers"] if c["name"] == "vllm")
    if change == "root":
        pod["spec"]["securityContext"].pop("runAsNonRoot")
        vllm["securityContext"].pop("runAsNonRoot")
    elif change == "escalation":
        vllm["securityContext"]["allowPrivilegeEscalation"] = True
    elif change == "capabilities":
        vllm["securityContext"]["capabilities"] = {"add": ["NET_ADMIN"]}
    elif change == "seccomp":
        pod["spec"]["securityContext"].pop("seccompProfile")
        vllm["securityContext"].pop("seccompProfile")


@pytest.mark.parametrize("change", ["root", "escalation", "capabilities", "seccomp"])
def test_a_weakened_copy_is_refused_by_pod_security(k8s: Any, restricted: str, change: str) -> None:
    pod = copy.deepcopy(rendered_pod(restricted, "hf://meta-llama/Meta-Llama-3-8B-Instruct"))
    _weaken_vllm(pod, change)
    with pytest.raises(ApiException) as refused:
        dry_run_create(k8s, pod)
    assert refused.value.status == 403
    message = json.loads(refused.value.body)["message"]
    assert 'violates PodSecurity "restricted:latest"' in message, message
    assert '"vllm"' in message, message
