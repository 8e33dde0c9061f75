"""manifests/ rendered by the real kustomize and applied to the real API server.

The rendered output is what a cluster gets, so every claim is checked on it: every object is
accepted by server-side apply; the pods pass the namespace's restricted Pod Security admission
(the ReplicaSet controller can create them); the operator runs non-root on a read-only root; the
operator's ClusterRole is exactly the one its own tests run under (tests/integration/
test_operator.py); and the API, under a token of the ServiceAccount the manifests bind, serves
a tenant and Prometheus' scraper.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from kubernetes import client

from aiconn.api.app import create_app
from aiconn.api.settings import ApiSettings
from aiconn.devstack.controlplane import ControlPlane
from aiconn.devstack.incluster import MONITORING_CRDS, render
from aiconn.devstack.kube import apply_objects, load_documents, wait_established
from aiconn.inference.images import AICONN_IMAGE
from tests.helpers import delete_admission_policies, eventually
from tests.seeding import create_sla

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SYSTEM = "aiconn-system"
Objects = list[dict[str, Any]]


def one(objects: Objects, kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def pod_spec(objects: Objects, deployment: str) -> dict[str, Any]:
    spec: dict[str, Any] = one(objects, "Deployment", deployment)["spec"]["template"]["spec"]
    return spec


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


@pytest.fixture(scope="module")
def base() -> Objects:
    return render("manifests/base")


@pytest.fixture(scope="module")
def postgres() -> Objects:
    return render("manifests/overlays/postgres")


@pytest.fixture(scope="module")
def monitoring_crds(k8s: Any) -> None:
    names = apply_objects(k8s, load_documents(MONITORING_CRDS))
    wait_established(k8s, names)


def apply_and_read_back(k8s: Any, objects: Objects) -> None:
    """Server-side apply everything, then find every object on the server."""
    from kubernetes import dynamic

    apply_objects(k8s, [dict(o) for o in objects])
    dyn = dynamic.DynamicClient(k8s)
    for obj in objects:
        resource = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        meta = obj["metadata"]
        namespace = meta.get("namespace") if resource.namespaced else None
        stored = resource.get(name=meta["name"], namespace=namespace)
        assert stored.metadata.uid, f"{obj['kind']}/{meta['name']} not stored"


@pytest.fixture(scope="module")
def installed(k8s: Any, base: Objects, monitoring_crds: None) -> Iterator[Objects]:
    """The base, applied. The workloads are removed afterwards, and so is the admission policy
    (other modules create SLAs without offers); the namespace, RBAC and tiers stay, being what
    the operator's own tests install too."""
    apply_and_read_back(k8s, base)
    yield base
    apps = client.AppsV1Api(k8s)
    for name in ("aiconn-operator", "aiconn-api"):
        apps.delete_namespaced_deployment(name, SYSTEM, propagation_policy="Foreground")
    # Returns once an SLA without an offer is admitted again, so the next module does not race
    # the policy's removal from the API server's admission chain.
    delete_admission_policies(k8s, "aiconn-sla-within-offer", "aiconn-offer-price-notice")


def test_every_rendered_object_is_accepted(installed: Objects) -> None:
    kinds = {o["kind"] for o in installed}
    assert {
        "Namespace",
        "CustomResourceDefinition",
        "InferenceTier",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
        "ServiceMonitor",
        "PodMonitor",
        "PrometheusRule",
        "ConfigMap",
        "Secret",
        "AIInferenceOffer",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    } <= kinds
    crds = {o["metadata"]["name"] for o in installed if o["kind"] == "CustomResourceDefinition"}
    assert crds == {f"{p.stem}.aiconn.io" for p in (ROOT / "crds").glob("*.yaml")}
    tiers = {o["metadata"]["name"]: o for o in installed if o["kind"] == "InferenceTier"}
    assert set(tiers) == {"edge", "regional", "cloud"}
    assert all("namespace" not in t["metadata"] for t in tiers.values())
    cluster_scoped = (
        "AIInferenceOffer",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    )
    assert all("namespace" not in o["metadata"] for o in installed if o["kind"] in cluster_scoped)
    offers = {o["metadata"]["name"] for o in installed if o["kind"] == "AIInferenceOffer"}
    assert offers == {
        "5g-enterprise-bundle",
        "business-subscription",
        "multi-model-units",
        "business-hours-sla",
    }


def test_pods_pass_restricted_pod_security(k8s: Any, installed: Objects) -> None:
    labels = one(installed, "Namespace", SYSTEM)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    core, apps = client.CoreV1Api(k8s), client.AppsV1Api(k8s)

    def admitted(selector: str) -> list[Any]:
        pods: list[Any] = core.list_namespaced_pod(SYSTEM, label_selector=selector).items
        if not pods:
            # Pod Security refusals surface as the ReplicaSet's ReplicaFailure condition.
            sets = apps.list_namespaced_replica_set(SYSTEM, label_selector=selector).items
            refusals = [c.message for r in sets for c in (r.status.conditions or [])]
            raise AssertionError(refusals or "no ReplicaSet yet")
        return pods

    for component in ("operator", "api"):
        selector = f"app.kubernetes.io/name=aiconn,app.kubernetes.io/component={component}"
        eventually(
            functools.partial(admitted, selector),
            what=f"the {component} pod admitted by restricted Pod Security",
        )


def test_operator_runs_non_root_on_a_read_only_root(k8s: Any, installed: Objects) -> None:
    stored = client.AppsV1Api(k8s).read_namespaced_deployment("aiconn-operator", SYSTEM)
    assert stored.spec.replicas == 1
    assert stored.spec.strategy.type == "Recreate"
    pod = stored.spec.template.spec
    assert pod.security_context.run_as_non_root is True
    assert pod.security_context.run_as_user == 65532
    assert pod.security_context.seccomp_profile.type == "RuntimeDefault"
    assert pod.service_account_name == "aiconn-operator"
    (container,) = pod.containers
    assert container.image == AICONN_IMAGE
    assert container.args == ["operator"]
    security = container.security_context
    assert security.read_only_root_filesystem is True
    assert security.allow_privilege_escalation is False
    assert security.capabilities.drop == ["ALL"]
    assert container.resources.requests and container.resources.limits
    for probe in (container.startup_probe, container.liveness_probe, container.readiness_probe):
        assert probe.http_get.path == "/healthz"
    assert container.startup_probe.period_seconds * container.startup_probe.failure_threshold >= 120
    assert {p.name: p.container_port for p in container.ports}["health"] == 8080
    mounts = {m.mount_path: m.name for m in container.volume_mounts}
    volumes = {v.name: v for v in pod.volumes}
    assert volumes[mounts["/tmp"]].empty_dir is not None


def test_api_is_hardened_and_uses_kubernetes_auth(installed: Objects) -> None:
    pod = pod_spec(installed, "aiconn-api")
    assert pod["serviceAccountName"] == "aiconn-api"
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["image"] == AICONN_IMAGE
    assert container["args"] == ["api"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # Liveness waits for the start, which on a loaded node takes minutes (kubelet killed it).
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] == "/healthz"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120
    env = env_of(container)
    assert env["AICONN_API_AUTH_MODE"] == "kubernetes"
    assert not [name for name in env if "STATIC" in name]
    service = one(installed, "Service", "aiconn-api")
    assert (
        service["spec"]["selector"]
        == one(installed, "Deployment", "aiconn-api")["spec"]["selector"]["matchLabels"]
    )


def test_the_ledger_url_comes_from_a_secret(base: Objects, postgres: Objects) -> None:
    for objects, secret in ((base, "aiconn-ledger-"), (postgres, "aiconn-ledger-postgres")):
        for deployment, variable in (
            ("aiconn-operator", "AICONN_LEDGER_URL"),
            ("aiconn-api", "AICONN_API_LEDGER_URL"),
        ):
            source = env_of(pod_spec(objects, deployment)["containers"][0])[variable]
            assert source["secretKeyRef"]["name"].startswith(secret), (deployment, source)
    assert not [o for o in postgres if o["kind"] == "PersistentVolumeClaim"]
    secrets = [o["metadata"]["name"] for o in postgres if o["kind"] == "Secret"]
    assert not [name for name in secrets if name.startswith("aiconn-ledger")]
    for deployment in ("aiconn-operator", "aiconn-api"):
        assert "/var/lib/aiconn" not in str(pod_spec(postgres, deployment))


def test_the_postgres_overlay_is_accepted(k8s: Any, postgres: Objects, installed: Objects) -> None:
    apply_and_read_back(k8s, postgres)


def test_the_inference_podmonitor_labels_series_by_sla_and_namespace(
    installed: Objects,
) -> None:
    # A PodMonitor on the gateway's metrics port: the metrics are not on the port clients reach.
    monitor = one(installed, "PodMonitor", "aiconn-inference")["spec"]
    assert monitor["namespaceSelector"] == {"any": True}
    assert {"key": "aiconn.io/sla", "operator": "Exists"} in monitor["selector"]["matchExpressions"]
    endpoints = {e["path"]: e for e in monitor["podMetricsEndpoints"]}
    assert set(endpoints) == {"/metrics", "/metrics/vllm"}  # the gateway's, and vLLM's through it
    jobs = set()
    for endpoint in endpoints.values():
        assert endpoint["port"] == "metrics"
        relabel = {r["targetLabel"]: r for r in endpoint["relabelings"]}
        assert relabel["sla"]["sourceLabels"] == ["__meta_kubernetes_pod_label_aiconn_io_sla"]
        assert relabel["namespace"]["sourceLabels"] == ["__meta_kubernetes_namespace"]
        jobs.add(relabel["job"]["replacement"])
    assert jobs == {"aiconn-gateway", "vllm"}


def test_rbac_has_no_wildcards_and_the_operator_role_is_the_tested_one(
    installed: Objects,
) -> None:
    for role in (o for o in installed if o["kind"] in ("ClusterRole", "Role")):
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule.get(key, []), (role["metadata"]["name"], rule)
    tested = next(
        d
        for d in load_documents([ROOT / "manifests" / "rbac" / "operator.yaml"])
        if d["kind"] == "ClusterRole"
    )
    assert one(installed, "ClusterRole", "aiconn-operator")["rules"] == tested["rules"]
    binding = one(installed, "ClusterRoleBinding", "aiconn-operator")
    assert binding["roleRef"]["name"] == "aiconn-operator"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "aiconn-operator", "namespace": SYSTEM}
    ]
    assert pod_spec(installed, "aiconn-operator")["serviceAccountName"] == "aiconn-operator"


def _token(k8s: Any, service_account: str) -> str:
    request = {"spec": {"expirationSeconds": 3600}}
    response = client.CoreV1Api(k8s).create_namespaced_service_account_token(
        service_account, SYSTEM, request
    )
    return str(response.status.token)


def test_the_api_rbac_serves_tenants_and_the_metrics_scraper(
    control_plane: ControlPlane, k8s: Any, installed: Objects, tmp_path: Path
) -> None:
    namespace = f"mf-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(k8s)
    core.create_namespace({"metadata": {"name": namespace}})
    rbac = client.RbacAuthorizationV1Api(k8s)
    rule = {"apiGroups": ["aiconn.io"], "resources": ["aiinferenceslas"], "verbs": ["get"]}
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "reader"}, "rules": [rule]})
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "tenant-a"}
            ],
        },
    )
    # The base installs the admission policy: the SLA buys under one of the sample offers.
    create_sla(k8s, namespace, "chat", tenant="tenant-a", index=0, offer="5g-enterprise-bundle")
    kubeconfig = control_plane.kubeconfig_with_token(
        "manifests-aiconn-api", _token(k8s, "aiconn-api")
    )
    settings = ApiSettings(
        auth_mode="kubernetes",
        kubeconfig=kubeconfig,
        sla_cache_seconds=0,
        ledger_url=f"sqlite:///{tmp_path / 'ledger.db'}",
    )
    tenant = {"Authorization": f"Bearer {control_plane.tokens['tenant-a']}"}
    scraper = {"Authorization": f"Bearer {_token(k8s, 'aiconn-metrics-scraper')}"}
    try:
        with TestClient(create_app(settings)) as api:
            assert api.get("/readyz").status_code == 200
            response = api.get(f"/v1/namespaces/{namespace}/slas/chat", headers=tenant)
            assert response.status_code == 200, response.text
            assert response.json()["name"] == "chat"
            assert api.get("/metrics", headers=scraper).status_code == 200
            assert api.get("/metrics", headers=tenant).status_code == 403
    finally:
        core.delete_namespace(namespace)


def test_the_api_serves_https_with_the_certificate_the_tls_manifests_issue(base: Objects) -> None:
    """The API, its Service, its scrape, the operator and the gateways' wallet URL all agree on
    one Secret and one address; manifests/tls issues that Secret for that address."""
    tls_objects = render("manifests/tls")
    certificate = one(tls_objects, "Certificate", "aiconn-api")
    assert certificate["metadata"]["namespace"] == SYSTEM
    secret = certificate["spec"]["secretName"]
    assert secret == "aiconn-api-tls"

    api = pod_spec(base, "aiconn-api")
    (container,) = api["containers"]
    env = env_of(container)
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    (volume,) = [v for v in api["volumes"] if v.get("secret", {}).get("secretName") == secret]
    assert {i["key"] for i in volume["secret"]["items"]} == {"tls.crt", "tls.key"}
    assert env["AICONN_API_TLS_CERT_FILE"] == f"{mounts[volume['name']]}/tls.crt"
    assert env["AICONN_API_TLS_KEY_FILE"] == f"{mounts[volume['name']]}/tls.key"
    assert "AICONN_API_ALLOW_PLAINTEXT" not in env
    (port,) = container["ports"]
    assert int(env["AICONN_API_PORT"]) == port["containerPort"]
    for probe in (
        container["startupProbe"],
        container["livenessProbe"],
        container["readinessProbe"],
    ):
        assert probe["httpGet"]["scheme"] == "HTTPS"

    (service_port,) = one(base, "Service", "aiconn-api")["spec"]["ports"]
    assert service_port["targetPort"] == port["name"]
    config = next(
        o
        for o in base
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("aiconn-config")
    )
    wallet = httpx.URL(config["data"]["wallet-api-url"])
    assert wallet.scheme == "https"
    assert wallet.host in certificate["spec"]["dnsNames"]
    assert wallet.port == service_port["port"]

    # The operator gets the CA of that Secret and nothing else of it (never the key).
    operator = pod_spec(base, "aiconn-operator")
    (op_container,) = operator["containers"]
    op_mounts = {m["name"]: m["mountPath"] for m in op_container["volumeMounts"]}
    (ca_volume,) = [
        v for v in operator["volumes"] if v.get("secret", {}).get("secretName") == secret
    ]
    assert ca_volume["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
    assert env_of(op_container)["AICONN_WALLET_CA_FILE"] == f"{op_mounts[ca_volume['name']]}/ca.crt"

    (endpoint,) = one(base, "ServiceMonitor", "aiconn-api")["spec"]["endpoints"]
    assert endpoint["port"] == service_port["name"]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"]["ca"]["secret"] == {"name": secret, "key": "ca.crt"}
    assert endpoint["tlsConfig"]["serverName"] in certificate["spec"]["dnsNames"]
