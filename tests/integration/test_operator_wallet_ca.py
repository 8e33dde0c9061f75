"""The operator copies the provider's CA bundle for the wallet API beside an SLA's pods and mounts
it into the gateway alone: the real operator (KopfRunner, under exactly manifests/rbac) against
the real API server, configured by the provider's settings, never by the SLA."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kopf.testing import KopfRunner
from kubernetes import client

from aiconn.devstack.kube import apply_objects, load_documents
from aiconn.devstack.pki import write_serving_tls
from aiconn.gateway.settings import GatewaySettings
from aiconn.inference.workload import child_names
from tests.helpers import eventually, operator_kubeconfig, running_operator

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "manifests" / "samples"
WALLET = "https://aiconn-api.aiconn-system.svc:8443"


@pytest.fixture(scope="module")
def ca_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_serving_tls(tmp_path_factory.mktemp("api-tls"), common_name="aiconn-api")["ca.crt"]


@pytest.fixture(scope="module")
def operator(control_plane: Any, k8s: Any, ca_bundle: Path) -> Iterator[KopfRunner]:
    apply_objects(k8s, load_documents([SAMPLES / "tiers.yaml", SAMPLES / "offers.yaml"]))
    settings = {"AICONN_WALLET_API_URL": WALLET, "AICONN_WALLET_CA_FILE": str(ca_bundle)}
    with running_operator(operator_kubeconfig(control_plane, k8s), settings) as runner:
        yield runner


def test_the_gateway_verifies_the_wallet_api_with_the_provider_s_bundle(
    k8s: Any, namespace: str, operator: KopfRunner, ca_bundle: Path
) -> None:
    sla = next(iter(load_documents([SAMPLES / "sla-edge-urllc.yaml"])))
    name = sla["metadata"]["name"]
    client.CustomObjectsApi(k8s).create_namespaced_custom_object(
        "aiconn.io", "v1alpha1", namespace, "aiinferenceslas", sla
    )
    names = child_names(name)
    apps = client.AppsV1Api(k8s)
    dep = eventually(
        lambda: next(
            iter(
                apps.list_namespaced_deployment(
                    namespace, field_selector=f"metadata.name={names.deployment}"
                ).items
            ),
            None,
        ),
        what="the SLA's Deployment",
    )
    bundle = client.CoreV1Api(k8s).read_namespaced_config_map(names.wallet_ca, namespace)
    assert bundle.data == {"ca.crt": ca_bundle.read_text()}
    (owner,) = bundle.metadata.owner_references
    assert owner.kind == "AIInferenceSLA" and owner.name == name

    pod = dep.spec.template.spec
    (volume,) = [v for v in pod.volumes if v.config_map and v.config_map.name == names.wallet_ca]
    by_name = {c.name: c for c in pod.containers}
    gateway, vllm = by_name["gateway"], by_name["vllm"]
    (mount,) = [m for m in gateway.volume_mounts if m.name == volume.name]
    assert not [m for m in vllm.volume_mounts if m.name == volume.name]
    env = {e.name: e.value for e in gateway.env}
    assert env["AICONN_WALLET_API_URL"] == WALLET
    assert env["AICONN_WALLET_CA_FILE"] == f"{mount.mount_path}/ca.crt"
    assert "AICONN_WALLET_ALLOW_PLAINTEXT" not in env
    settings = GatewaySettings.model_validate(
        {k.removeprefix("AICONN_").lower(): v for k, v in env.items()}
    )
    assert settings.wallet_ca_file == Path(env["AICONN_WALLET_CA_FILE"])
