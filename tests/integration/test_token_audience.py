"""The gateway's projected token carries the reporting API's own audience, reviewed by the real
kube-apiserver: the API accepts it, the API server itself refuses it, and tokens for the API
server's default audience still work unless the API is told to accept only its own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from aiconn.api.kubeauth import KubernetesAuthorizer
from aiconn.devstack.controlplane import ControlPlane
from aiconn.inference.workload import WALLET_TOKEN_AUDIENCE
from aiconn.kube import api_client

pytestmark = pytest.mark.integration


@pytest.fixture
def account(k8s: Any, namespace: str) -> str:
    client.CoreV1Api(k8s).create_namespaced_service_account(
        namespace, {"metadata": {"name": "factory-gateway"}}
    )
    return "factory-gateway"


def token(k8s: Any, namespace: str, name: str, audiences: list[str] | None) -> str:
    spec: dict[str, Any] = {"expirationSeconds": 600}
    if audiences:
        spec["audiences"] = audiences
    response = client.CoreV1Api(k8s).create_namespaced_service_account_token(
        name, namespace, {"spec": spec}
    )
    return str(response.status.token)


def authorizer(k8s: Any, *, accept_default_audience: bool = True) -> KubernetesAuthorizer:
    return KubernetesAuthorizer(
        k8s,
        cache_seconds=0,
        cache_size=16,
        audience=WALLET_TOKEN_AUDIENCE,
        accept_default_audience=accept_default_audience,
    )


@pytest.fixture
def as_token(control_plane: ControlPlane) -> Iterator[Any]:
    opened: list[Any] = []

    def make(bearer: str) -> Any:
        api = api_client(control_plane.kubeconfig_with_token("audience-probe", bearer))
        opened.append(api)
        return api

    yield make
    for api in opened:
        api.close()


def test_the_gateway_s_token_is_accepted_by_the_api_and_refused_by_kubernetes(
    k8s: Any, namespace: str, account: str, as_token: Any
) -> None:
    gateway_token = token(k8s, namespace, account, [WALLET_TOKEN_AUDIENCE])
    caller = authorizer(k8s, accept_default_audience=False).authenticate(gateway_token)
    assert caller is not None
    assert caller.username == f"system:serviceaccount:{namespace}:{account}"
    with pytest.raises(ApiException) as refused:
        client.CoreV1Api(as_token(gateway_token)).list_namespaced_pod(namespace)
    assert refused.value.status == 401


def test_default_audience_tokens_still_work_unless_turned_off(
    k8s: Any, namespace: str, account: str, as_token: Any
) -> None:
    kubectl_token = token(k8s, namespace, account, None)
    assert authorizer(k8s).authenticate(kubectl_token) is not None
    assert authorizer(k8s, accept_default_audience=False).authenticate(kubectl_token) is None
    # The same token does reach the API server, so the refusal above is the audience's doing.
    with pytest.raises(ApiException) as forbidden:
        client.CoreV1Api(as_token(kubectl_token)).list_namespaced_pod(namespace)
    assert forbidden.value.status == 403


def test_a_token_for_another_audience_is_refused(k8s: Any, namespace: str, account: str) -> None:
    foreign = token(k8s, namespace, account, ["some-other-service"])
    assert authorizer(k8s).authenticate(foreign) is None
