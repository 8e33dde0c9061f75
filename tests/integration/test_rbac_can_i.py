"""Least privilege of the operator, in the API server's own answers.

RBAC: SubjectAccessReviews for the operator's ServiceAccount (what `kubectl auth can-i --as=
system:serviceaccount:aiconn-system:aiconn-operator` asks) with exactly manifests/rbac applied.
Admission: the ValidatingAdmissionPolicies of manifests/rbac, run by the API server on requests
made with a token of that ServiceAccount, take back what a cluster-wide ClusterRole cannot:
kube-system and the operator's own namespace, foreign ServiceAccounts and foreign images.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from aiconn.devstack.kube import apply_manifests
from aiconn.kube import api_client
from tests.factories import factory_deployment
from tests.helpers import delete_admission_policies, eventually, operator_kubeconfig

pytestmark = pytest.mark.integration

RBAC = Path(__file__).resolve().parents[2] / "manifests" / "rbac"
OPERATOR = "system:serviceaccount:aiconn-system:aiconn-operator"
OWNER = {"apiVersion": "aiconn.io/v1alpha1", "kind": "AIInferenceSLA", "name": "f", "uid": "u-1"}


def can_i(k8s: Any, verb: str, resource: str, *, group: str = "", namespace: str = "") -> bool:
    """The API server's answer to `kubectl auth can-i VERB RESOURCE --as=<operator>`."""
    review = client.AuthorizationV1Api(k8s).create_subject_access_review(
        {
            "spec": {
                "user": OPERATOR,
                "groups": ["system:serviceaccounts", "system:serviceaccounts:aiconn-system"],
                "resourceAttributes": {
                    "verb": verb,
                    "resource": resource,
                    "group": group,
                    "namespace": namespace,
                },
            }
        }
    )
    return bool(review.status.allowed)


@pytest.fixture(scope="module")
def operator_api(control_plane: Any, k8s: Any) -> Iterator[Any]:
    """manifests/rbac applied (RBAC and admission policies), and a client that authenticates
    with a token of the operator's ServiceAccount."""
    kubeconfig = operator_kubeconfig(control_plane, k8s)
    apply_manifests(k8s, [RBAC / "operator-admission.yaml"])
    api = api_client(kubeconfig)
    yield api
    api.close()
    delete_admission_policies(k8s, "aiconn-operator-namespaces", "aiconn-operator-workloads")


@pytest.mark.parametrize(
    ("verb", "resource", "group"),
    [
        ("create", "deployments", "apps"),
        ("patch", "deployments", "apps"),
        ("create", "services", ""),
        ("create", "secrets", ""),
        ("create", "configmaps", ""),
        ("patch", "configmaps", ""),
        ("create", "serviceaccounts", ""),
        ("create", "rolebindings", "rbac.authorization.k8s.io"),
        ("patch", "aiinferenceslas", "aiconn.io"),
    ],
)
def test_operator_may_write_its_children_in_tenant_namespaces(
    k8s: Any, operator_api: Any, namespace: str, verb: str, resource: str, group: str
) -> None:
    assert can_i(k8s, verb, resource, group=group, namespace=namespace)


@pytest.mark.parametrize(
    ("verb", "resource", "group", "where"),
    [
        # API keys are written once and never read back, anywhere.
        ("get", "secrets", "", "kube-system"),
        ("list", "secrets", "", ""),
        ("get", "secrets", "", "tenant"),
        ("watch", "secrets", "", ""),
        # No deleting what it does not own, no touching nodes beyond reading them.
        ("delete", "nodes", "", ""),
        ("patch", "nodes", "", ""),
        ("delete", "deployments", "apps", "tenant"),
        ("delete", "secrets", "", "kube-system"),
        ("delete", "roles", "rbac.authorization.k8s.io", "kube-system"),
        # No privilege beyond its own: no cluster roles, no escalate or bind, no impersonation.
        ("create", "clusterroles", "rbac.authorization.k8s.io", ""),
        ("patch", "clusterrolebindings", "rbac.authorization.k8s.io", ""),
        ("escalate", "roles", "rbac.authorization.k8s.io", "tenant"),
        ("bind", "roles", "rbac.authorization.k8s.io", "tenant"),
        ("impersonate", "serviceaccounts", "", ""),
        ("create", "pods", "", "tenant"),
        ("create", "pods/exec", "", "tenant"),
        ("create", "serviceaccounts/token", "", "tenant"),
        ("patch", "validatingadmissionpolicies", "admissionregistration.k8s.io", ""),
        ("delete", "validatingadmissionpolicybindings", "admissionregistration.k8s.io", ""),
        ("create", "customresourcedefinitions", "apiextensions.k8s.io", ""),
        ("delete", "namespaces", "", ""),
    ],
)
def test_operator_may_not_go_beyond_its_children(
    k8s: Any, operator_api: Any, namespace: str, verb: str, resource: str, group: str, where: str
) -> None:
    ns = namespace if where == "tenant" else where
    assert not can_i(k8s, verb, resource, group=group, namespace=ns)


def rendered(namespace: str) -> dict[str, Any]:
    return factory_deployment(namespace, owner=OWNER)


def create_deployment(api: Any, body: dict[str, Any]) -> None:
    """Server-side dry run: admission runs in full, nothing is stored."""
    client.AppsV1Api(api).create_namespaced_deployment(
        body["metadata"]["namespace"], body, dry_run="All"
    )


def refusal(call: Any) -> str:
    with pytest.raises(ApiException) as refused:
        call()
    assert refused.value.status in (403, 422), refused.value.body
    return str(json.loads(refused.value.body)["message"])


def _refused_by(policy: str, call: Any) -> bool:
    try:
        call()
    except ApiException as err:
        return policy in err.body
    return False


def _policies_loaded(operator_api: Any, namespace: str) -> bool:
    """The API server loads new policies asynchronously, each on its own: poll until a request
    each of them refuses is refused by it (a clean-clone run once found the namespaces policy
    loaded and the workloads policy not yet)."""
    secret = {"metadata": {"name": "aiconn-probe", "namespace": "kube-system"}}
    foreign = rendered(namespace)
    foreign["spec"]["template"]["spec"]["containers"][0]["image"] = "probe.example/x:latest"
    return _refused_by(
        "aiconn-operator-namespaces",
        lambda: client.CoreV1Api(operator_api).create_namespaced_secret(
            "kube-system", secret, dry_run="All"
        ),
    ) and _refused_by("aiconn-operator-workloads", lambda: create_deployment(operator_api, foreign))


@pytest.fixture
def enforced(operator_api: Any, namespace: str) -> Any:
    eventually(lambda: _policies_loaded(operator_api, namespace), what="admission policies loaded")
    return operator_api


def test_a_rendered_deployment_is_accepted_from_the_operator(enforced: Any, namespace: str) -> None:
    create_deployment(enforced, rendered(namespace))


def test_a_deployment_naming_another_service_account_is_refused(
    enforced: Any, namespace: str
) -> None:
    body = rendered(namespace)
    body["spec"]["template"]["spec"]["serviceAccountName"] = "default"
    message = refusal(lambda: create_deployment(enforced, body))
    assert "aiconn-operator-workloads" in message and "<sla>-gateway" in message, message


def test_a_deployment_with_a_foreign_image_is_refused(enforced: Any, namespace: str) -> None:
    body = rendered(namespace)
    body["spec"]["template"]["spec"]["containers"][0]["image"] = "evil.example/miner:latest"
    message = refusal(lambda: create_deployment(enforced, body))
    assert "aiconn-operator-workloads" in message and "evil.example/miner:latest" in message


def test_a_foreign_init_container_is_refused(enforced: Any, namespace: str) -> None:
    body = rendered(namespace)
    body["spec"]["template"]["spec"]["initContainers"] = [
        {"name": "setup", "image": "busybox:latest", "command": ["true"]}
    ]
    message = refusal(lambda: create_deployment(enforced, body))
    assert "aiconn-operator-workloads" in message and "busybox:latest" in message


@pytest.mark.parametrize("protected", ["kube-system", "aiconn-system"])
def test_the_operator_may_not_write_in_kube_system_or_its_own_namespace(
    enforced: Any, protected: str
) -> None:
    rbac_api = client.RbacAuthorizationV1Api(enforced)
    role = {"metadata": {"name": "aiconn-probe", "namespace": protected}, "rules": []}
    binding = {
        "metadata": {"name": "aiconn-probe", "namespace": protected},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "aiconn-operator",
        },
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": protected}],
    }
    secret = {"metadata": {"name": "aiconn-probe", "namespace": protected}}
    config_map = {"metadata": {"name": "aiconn-probe", "namespace": protected}}
    calls = {
        "roles": lambda: rbac_api.create_namespaced_role(protected, role, dry_run="All"),
        "rolebindings": lambda: rbac_api.create_namespaced_role_binding(
            protected, binding, dry_run="All"
        ),
        "secrets": lambda: client.CoreV1Api(enforced).create_namespaced_secret(
            protected, secret, dry_run="All"
        ),
        "configmaps": lambda: client.CoreV1Api(enforced).create_namespaced_config_map(
            protected, config_map, dry_run="All"
        ),
        "deployments": lambda: create_deployment(enforced, rendered(protected)),
    }
    for resource, call in calls.items():
        message = refusal(call)
        assert "aiconn-operator-namespaces" in message, message
        assert f"may not write {resource} in {protected}" in message, message
