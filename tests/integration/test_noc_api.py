"""The NOC's history endpoints against real components, run as the API's own service account.

The API's ClusterRole and binding are applied from manifests/rbac/api.yaml to the real API server
and the API runs with a token of its ServiceAccount, so the activity feed works with exactly the
permissions the manifests grant (read-only Events), not with the test's admin client. Credits per
period come from a real SQLite ledger settled by the product's own `settle_period`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from aiconn.api.app import create_app
from aiconn.devstack.controlplane import ControlPlane
from aiconn.devstack.kube import apply_objects, load_documents
from aiconn.devstack.processes import free_port
from aiconn.resources.v1alpha1.meta import API_VERSION
from aiconn.store.ledger import Ledger
from tests.helpers import static_token_settings
from tests.seeding import create_sla, settle_history

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SYSTEM = "aiconn-system"
API_ACCOUNT = f"system:serviceaccount:{SYSTEM}:aiconn-api"
NOC_TOKEN = "noc-history-token"
TENANT_TOKEN = "tenant-history-token"
MONTHS = 2


@dataclass
class World:
    api: TestClient
    namespace: str
    ledger: Ledger
    uids: dict[str, str]


def _install_api_rbac(k8s: Any) -> None:
    core = client.CoreV1Api(k8s)
    try:
        core.create_namespace({"metadata": {"name": SYSTEM}})
    except ApiException as err:
        if err.status != 409:
            raise
    apply_objects(k8s, load_documents([ROOT / "manifests" / "rbac" / "api.yaml"]))


def _api_token(k8s: Any) -> str:
    response = client.CoreV1Api(k8s).create_namespaced_service_account_token(
        "aiconn-api", SYSTEM, {"spec": {"expirationSeconds": 3600}}
    )
    return str(response.status.token)


def _event(k8s: Any, namespace: str, name: str, kind: str, type_: str, reason: str) -> None:
    stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    client.CoreV1Api(k8s).create_namespaced_event(
        namespace,
        {
            "metadata": {"generateName": f"{name}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": "v1" if kind == "Pod" else API_VERSION,
                "kind": kind,
                "name": name,
                "namespace": namespace,
            },
            "type": type_,
            "reason": reason,
            "message": f"{reason} on {name}",
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "source": {"component": "aiconn-operator"},
        },
    )


@pytest.fixture
def world(control_plane: ControlPlane, k8s: Any, namespace: str, tmp_path: Path) -> Iterator[World]:
    _install_api_rbac(k8s)
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    uids = {}
    for index in range(3):
        name = f"sla-{index}"
        uids[name] = create_sla(k8s, namespace, name, tenant="tenant-a", index=index)
        settle_history(
            ledger,
            sla_uid=uids[name],
            namespace=namespace,
            name=name,
            tenant="tenant-a",
            index=index,
            months=MONTHS,
            now=datetime.now(UTC),
        )
    kubeconfig = control_plane.kubeconfig_with_token(
        f"noc-api-{uuid.uuid4().hex[:6]}", _api_token(k8s)
    )
    settings = static_token_settings(
        tmp_path / "tokens.csv",
        [f"{NOC_TOKEN},noc,*", f"{TENANT_TOKEN},tenant-a,{namespace}"],
        kubeconfig=kubeconfig,
    )
    with TestClient(create_app(settings, ledger=ledger)) as api:
        yield World(api=api, namespace=namespace, ledger=ledger, uids=uids)
    ledger.close()


def _get(world: World, path: str, token: str = NOC_TOKEN) -> Any:
    return world.api.get(path, headers={"Authorization": f"Bearer {token}"})


def test_the_api_role_reads_events_and_cannot_write_them(k8s: Any) -> None:
    _install_api_rbac(k8s)
    authz = client.AuthorizationV1Api(k8s)

    def allowed(verb: str) -> bool:
        review = authz.create_subject_access_review(
            {
                "spec": {
                    "user": API_ACCOUNT,
                    "resourceAttributes": {"verb": verb, "resource": "events", "group": ""},
                }
            }
        )
        return bool(review.status.allowed)

    assert allowed("list") and allowed("watch")
    for verb in ("create", "update", "patch", "delete", "deletecollection"):
        assert not allowed(verb), verb


def test_the_activity_feed_lists_events_on_slas_newest_first(k8s: Any, world: World) -> None:
    ns = world.namespace
    _event(k8s, ns, "sla-0", "AIInferenceSLA", "Normal", "Placed")
    _event(k8s, ns, "sla-1", "AIInferenceSLA", "Warning", "Unplaceable")
    _event(k8s, ns, "sla-0", "AIInferenceSLA", "Warning", "ErrorBudgetExhausted")
    _event(k8s, ns, "some-pod", "Pod", "Warning", "BackOff")
    _event(k8s, ns, "sla-1", "NetworkSlice", "Warning", "RealizeFailed")

    response = _get(world, "/v1/fleet/events?limit=1000")
    assert response.status_code == 200, response.text
    mine = [e for e in response.json()["items"] if e["namespace"] == ns]
    assert [(e["kind"], e["name"], e["reason"], e["type"]) for e in mine] == [
        ("NetworkSlice", "sla-1", "RealizeFailed", "Warning"),
        ("AIInferenceSLA", "sla-0", "ErrorBudgetExhausted", "Warning"),
        ("AIInferenceSLA", "sla-1", "Unplaceable", "Warning"),
        ("AIInferenceSLA", "sla-0", "Placed", "Normal"),
    ]  # the Pod's Event is not about an SLA
    times = [e["time"] for e in mine]
    assert times == sorted(times, reverse=True)
    warnings = _get(world, "/v1/fleet/events?warningsOnly=true&limit=1000").json()["items"]
    assert {e["reason"] for e in warnings if e["namespace"] == ns} == {
        "Unplaceable",
        "ErrorBudgetExhausted",
        "RealizeFailed",
    }


def test_settled_credits_per_period_are_the_ledgers_to_the_micro_unit(world: World) -> None:
    response = _get(world, "/v1/fleet/credits")
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    settlements = world.ledger.settlements()
    assert len(items) == MONTHS
    assert [i["periodStart"] for i in items] == sorted(i["periodStart"] for i in items)
    for item in items:
        start = datetime.fromisoformat(item["periodStart"])
        same = [s for s in settlements if s.period.start == start]
        assert item["slas"] == len(same) == 3
        assert item["creditMicros"] == sum(s.credit_micros for s in same)
        assert Decimal(item["credits"]) == Decimal(item["creditMicros"]) / 1_000_000
    assert sum(i["creditMicros"] for i in items) > 0
    newest = _get(world, "/v1/fleet/credits?periods=1").json()["items"]
    assert newest == items[-1:]


@pytest.mark.parametrize(
    ("path", "code", "says"),
    [
        ("/v1/fleet/history", 404, "AICONN_API_PROMETHEUS_URL"),
        ("/v1/fleet/history?minutes=0", 422, "minutes"),
        ("/v1/fleet/history?minutes=99999999", 422, "minutes"),
        ("/v1/fleet/credits?periods=0", 422, "periods"),
        ("/v1/fleet/credits?periods=x", 422, "periods"),
        ("/v1/fleet/events?limit=0", 422, "limit"),
        ("/v1/fleet/events?warningsOnly=maybe", 422, "warningsOnly"),
    ],
)
def test_bad_asks_are_4xx_with_a_reason(world: World, path: str, code: int, says: str) -> None:
    response = _get(world, path)
    assert response.status_code == code, response.text
    assert says in response.json()["detail"]


@pytest.mark.parametrize("path", ["/v1/fleet/history", "/v1/fleet/credits", "/v1/fleet/events"])
def test_history_needs_the_noc_role(world: World, path: str) -> None:
    assert world.api.get(path).status_code == 401
    assert _get(world, path, "not-a-token").status_code == 401
    response = _get(world, path, TENANT_TOKEN)
    assert response.status_code == 403
    assert "NOC role" in response.json()["detail"]


def test_an_unreachable_prometheus_is_503_with_a_reason_not_500(k8s: Any, tmp_path: Path) -> None:
    settings = static_token_settings(
        tmp_path / "tokens.csv",
        [f"{NOC_TOKEN},noc,*"],
        prometheus_url=f"http://127.0.0.1:{free_port()}",  # nothing listens there
    )
    with TestClient(create_app(settings, kube=k8s)) as api:
        response = api.get("/v1/fleet/history", headers={"Authorization": f"Bearer {NOC_TOKEN}"})
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "5"
    assert response.json()["detail"].startswith("Prometheus did not answer")
