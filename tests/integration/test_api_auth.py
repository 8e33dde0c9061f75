"""The reporting API against the real API server: TokenReview, SubjectAccessReview and RBAC.

The API runs as its own ServiceAccount, with a token from the TokenRequest API and a ClusterRole
that allows exactly what it needs. Tenants, the NOC and a user with no roles call it with tokens
from the API server's token file.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kubernetes import client

from aiconn.api.app import create_app
from aiconn.api.settings import ApiSettings
from aiconn.devstack.controlplane import ControlPlane
from aiconn.devstack.kube import apply_objects, load_documents
from aiconn.gateway.wallet import WalletApiReader, WalletUnavailable
from aiconn.inference import workload
from aiconn.resources.v1alpha1.sla import Window
from aiconn.sla.accounting import SettlementState, UsageReading
from aiconn.sla.evaluate import SLAEvaluation
from aiconn.sla.periods import Period, period_containing
from aiconn.sla.settlement import settle_period
from aiconn.sla.wallets import wallet_owner
from aiconn.store.ledger import Ledger
from tests.factories import availability_credit, sla_evaluation
from tests.helpers import eventually
from tests.seeding import create_sla, settle_history

pytestmark = pytest.mark.integration

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
SLA_RULE = {"apiGroups": ["aiconn.io"], "resources": ["aiinferenceslas"]}


@dataclass(frozen=True)
class World:
    api: TestClient
    tokens: dict[str, str]
    ns_a: str
    ns_b: str
    ledger: Ledger


def _rbac(k8s: Any, suffix: str, ns_a: str, ns_b: str, ns_sys: str) -> None:
    rbac = client.RbacAuthorizationV1Api(k8s)
    for namespace, user in ((ns_a, "tenant-a"), (ns_b, "tenant-b")):
        rbac.create_namespaced_role(
            namespace,
            {
                "metadata": {"name": "sla-reader"},
                "rules": [{**SLA_RULE, "verbs": ["get", "list"]}],
            },
        )
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": "sla-reader"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "sla-reader",
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}
                ],
            },
        )
    cluster_roles = {
        f"aiconn-noc-{suffix}": (
            [{**SLA_RULE, "verbs": ["get", "list", "watch"]}],
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "aiconn:noc"},
        ),
        f"aiconn-api-{suffix}": (
            [
                {
                    "apiGroups": ["authentication.k8s.io"],
                    "resources": ["tokenreviews"],
                    "verbs": ["create"],
                },
                {
                    "apiGroups": ["authorization.k8s.io"],
                    "resources": ["subjectaccessreviews"],
                    "verbs": ["create"],
                },
                {**SLA_RULE, "verbs": ["get", "list", "watch"]},
                # As in manifests/rbac/api.yaml: reports carry the terms of the offer an SLA
                # names (any SLA in the cluster may name one, other tests' included).
                {
                    "apiGroups": ["aiconn.io"],
                    "resources": ["aiinferenceoffers"],
                    "verbs": ["get", "list"],
                },
            ],
            {"kind": "ServiceAccount", "name": "aiconn-api", "namespace": ns_sys},
        ),
    }
    for name, (rules, subject) in cluster_roles.items():
        rbac.create_cluster_role({"metadata": {"name": name}, "rules": rules})
        rbac.create_cluster_role_binding(
            {
                "metadata": {"name": name},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": name,
                },
                "subjects": [subject],
            }
        )


def _service_account_token(k8s: Any, ns_sys: str) -> str:
    core = client.CoreV1Api(k8s)
    core.create_namespaced_service_account(ns_sys, {"metadata": {"name": "aiconn-api"}})
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
    )
    response = core.create_namespaced_service_account_token("aiconn-api", ns_sys, request)
    return str(response.status.token)


@pytest.fixture(scope="module")
def world(
    control_plane: ControlPlane, k8s: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    suffix = uuid.uuid4().hex[:8]
    ns_a, ns_b, ns_sys = f"api-a-{suffix}", f"api-b-{suffix}", f"api-sys-{suffix}"
    core = client.CoreV1Api(k8s)
    for ns in (ns_a, ns_b, ns_sys):
        core.create_namespace({"metadata": {"name": ns}})
    _rbac(k8s, suffix, ns_a, ns_b, ns_sys)
    kubeconfig = control_plane.kubeconfig_with_token(
        f"aiconn-api-{suffix}", _service_account_token(k8s, ns_sys)
    )
    ledger = Ledger.open(f"sqlite:///{tmp_path_factory.mktemp('api-auth') / 'ledger.db'}")
    now = datetime.now(UTC)
    for index, (ns, tenant, name) in enumerate(
        ((ns_a, "tenant-a", "chat"), (ns_b, "tenant-b", "chat"), (ns_b, "tenant-b", "vision"))
    ):
        uid = create_sla(k8s, ns, name, tenant=tenant, index=index)
        settle_history(
            ledger,
            sla_uid=uid,
            namespace=ns,
            name=name,
            tenant=tenant,
            index=index,
            months=2,
            now=now,
        )
    settings = ApiSettings(kubeconfig=Path(kubeconfig), sla_cache_seconds=0, ledger_url="sqlite://")
    with TestClient(create_app(settings, ledger=ledger)) as api:
        yield World(api=api, tokens=control_plane.tokens, ns_a=ns_a, ns_b=ns_b, ledger=ledger)
    ledger.close()
    rbac = client.RbacAuthorizationV1Api(k8s)
    for name in (f"aiconn-noc-{suffix}", f"aiconn-api-{suffix}"):
        rbac.delete_cluster_role_binding(name)
        rbac.delete_cluster_role(name)
    for ns in (ns_a, ns_b, ns_sys):
        core.delete_namespace(ns)


def _last_month() -> str:
    now = datetime.now(UTC)
    year, month = (now.year, now.month - 1) if now.month > 1 else (now.year - 1, 12)
    return f"{year:04d}-{month:02d}"


def tenant_paths(ns: str, name: str = "chat") -> list[str]:
    base = f"/v1/namespaces/{ns}"
    return [
        f"{base}/slas",
        f"{base}/slas/{name}",
        f"{base}/slas/{name}/report",
        f"{base}/slas/{name}/report?period={_last_month()}",
        f"{base}/slas/{name}/report?format=csv",
        f"{base}/slas/{name}/statement",
        f"{base}/slas/{name}/statement?format=csv&limit=5",
        f"{base}/wallet",
    ]


def get(world: World, path: str, user: str | None) -> Any:
    headers = {"Authorization": f"Bearer {world.tokens[user]}"} if user else {}
    return world.api.get(path, headers=headers)


def test_every_tenant_endpoint_serves_the_tenants_own_data(world: World) -> None:
    for user, ns in (("tenant-a", world.ns_a), ("tenant-b", world.ns_b)):
        for path in tenant_paths(ns):
            response = get(world, path, user)
            assert response.status_code == 200, (user, path, response.text)
            assert user in response.text, (user, path)
            other = "tenant-b" if user == "tenant-a" else "tenant-a"
            assert other not in response.text, (user, path)


def test_another_tenants_data_and_missing_data_get_the_same_answer(world: World) -> None:
    refusals = [
        *tenant_paths(world.ns_b),  # exists, not tenant-a's
        *tenant_paths(world.ns_b, "vision"),  # exists only in B
        *tenant_paths(world.ns_b, "ghost"),  # does not exist, not tenant-a's namespace
        *tenant_paths(world.ns_a, "ghost")[1:-1],  # no such SLA in tenant-a's own namespace
        *tenant_paths("no-such-namespace"),  # namespace does not exist
    ]
    answers = {(r.status_code, r.text) for r in (get(world, p, "tenant-a") for p in refusals)}
    assert answers == {(404, '{"detail":"not found"}')}
    b_answers = {
        (r.status_code, r.text)
        for r in (get(world, p, "tenant-b") for p in tenant_paths(world.ns_a))
    }
    assert b_answers == {(404, '{"detail":"not found"}')}


def test_a_user_without_roles_sees_nothing(world: World) -> None:
    answers = {get(world, p, "nobody").status_code for p in tenant_paths(world.ns_a)}
    assert answers == {404}
    assert get(world, "/v1/fleet", "nobody").status_code == 403


def test_fleet_views_need_the_noc_role(world: World) -> None:
    for path in ("/v1/fleet", "/v1/fleet/summary", "/metrics"):
        for user in ("tenant-a", "tenant-b", "nobody"):
            response = get(world, path, user)
            assert response.status_code == 403, (user, path)
            assert "list aiinferenceslas" in response.json()["detail"]
        assert get(world, path, "noc").status_code == 200, path
    fleet = get(world, "/v1/fleet", "noc").json()
    mine = {(i["namespace"], i["name"]) for i in fleet["items"]}
    assert {(world.ns_a, "chat"), (world.ns_b, "chat"), (world.ns_b, "vision")} <= mine
    metrics = get(world, "/metrics", "noc").text
    budget_lines = [
        line
        for line in metrics.splitlines()
        if line.startswith("aiconn_sla_budget_remaining_percent{")
        and f'namespace="{world.ns_a}"' in line
        and 'sla="chat"' in line
    ]
    assert len(budget_lines) == 1


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer not-a-token", "Basic dXNlcjpwYXNz"])
def test_missing_or_bad_tokens_are_401(world: World, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    for path in [*tenant_paths(world.ns_a)[:3], "/v1/fleet", "/metrics"]:
        response = world.api.get(path, headers=headers)
        assert response.status_code == 401, (header, path)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_probes_need_no_token_and_see_the_api_server(world: World) -> None:
    assert world.api.get("/healthz").json() == {"status": "ok", "checks": {}}
    ready = world.api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"ledger": "ok", "kubernetes": "ok"}


def test_a_gateway_identity_reads_its_own_wallet_and_nothing_else(
    world: World, k8s: Any, tmp_path: Path
) -> None:
    """The inference pod's ServiceAccount, Role and RoleBinding as the operator builds them, and
    a token the API server issues for it (as the kubelet's projected volume would): the gateway's
    wallet reader gets its namespace's available tokens, including usage not yet settled."""
    sla = client.CustomObjectsApi(k8s).get_namespaced_custom_object(
        "aiconn.io", "v1alpha1", world.ns_a, "aiinferenceslas", "chat"
    )
    owner = {"apiVersion": sla["apiVersion"], "kind": sla["kind"], "name": "chat"}
    owner["uid"] = sla["metadata"]["uid"]
    identity = workload.child_names("chat").gateway_identity
    token_file = tmp_path / "token"

    def reader(namespace: str, tenant: str) -> WalletApiReader:
        return WalletApiReader(
            "http://testserver",
            namespace=namespace,
            tenant=tenant,
            token_file=token_file,
            client=world.api,
        )

    apply_objects(
        k8s, [workload.gateway_service_account(sla_name="chat", namespace=world.ns_a, owner=owner)]
    )
    token_file.write_text(_token_for(k8s, identity, world.ns_a))
    tenant_a = wallet_owner(world.ns_a, "tenant-a")
    # Without its Role and RoleBinding the identity is authenticated but may read nothing.
    with pytest.raises(WalletUnavailable, match="404"):
        reader(world.ns_a, tenant_a)()

    for build in (workload.gateway_role, workload.gateway_role_binding):
        apply_objects(k8s, [build(sla_name="chat", namespace=world.ns_a, owner=owner)])
    now = datetime.now(UTC)
    month = period_containing(Window(duration="1M", calendar_aligned=True), now)
    usage = UsageReading(
        sla_uid=owner["uid"], tenant=tenant_a, period=month, tokens=4321, measured_at=now
    )
    world.ledger.record_usage([usage])
    # The API reuses an authorization answer for 5 s (auth_cache_seconds): the refusal above
    # stands until then.
    (available,) = eventually(
        lambda: None if (read := _read_or_none(reader(world.ns_a, tenant_a))) is None else (read,),
        what="the RoleBinding to take effect",
    )
    assert available == world.ledger.wallet_balance(tenant_a) - 4321
    assert available == world.ledger.available_tokens(tenant_a)
    # Tenant B's wallet is a 404 to it, as to anyone who may not read that namespace.
    with pytest.raises(WalletUnavailable, match="404"):
        reader(world.ns_b, wallet_owner(world.ns_b, "tenant-b"))()
    headers = {"Authorization": f"Bearer {token_file.read_text()}"}
    assert world.api.get("/v1/fleet", headers=headers).status_code == 403


def _read_or_none(read: WalletApiReader) -> int | None:
    try:
        return read()
    except WalletUnavailable:
        return None


def _token_for(k8s: Any, account: str, namespace: str) -> str:
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
    )
    response = client.CoreV1Api(k8s).create_namespaced_service_account_token(
        account, namespace, request
    )
    return str(response.status.token)


def test_releasing_a_held_period_needs_approve_on_settlements(world: World, k8s: Any) -> None:
    """The reviewer role from the manifests, bound in one namespace: a held period is released
    once, by name of the reviewer, and nobody else (tenant or NOC) may do it."""
    sla = client.CustomObjectsApi(k8s).get_namespaced_custom_object(
        "aiconn.io", "v1alpha1", world.ns_a, "aiinferenceslas", "chat"
    )
    uid = sla["metadata"]["uid"]
    start = datetime(2020, 1, 1, tzinfo=UTC)
    held_period = Period(start=start, end=start + timedelta(days=1))
    settled_period = Period(start=held_period.end, end=held_period.end + timedelta(days=1))
    for period, coverage in ((held_period, 40.0), (settled_period, 100.0)):
        settle_period(
            world.ledger,
            sla_uid=uid,
            namespace=world.ns_a,
            name="chat",
            tenant=wallet_owner(world.ns_a, "tenant-a"),
            period=period,
            outcome=_review_evaluation(coverage).outcome(),
            coverage_floor_percent=90.0,
        )
    path = f"/v1/namespaces/{world.ns_a}/slas/chat/settlement-releases"
    body = {"periodStart": "2020-01-01T00:00:00Z", "note": "scrape gap; gateway logs agree"}

    def release(user: str, url: str = path, **changes: Any) -> Any:
        headers = {"Authorization": f"Bearer {world.tokens[user]}"}
        return world.api.post(url, json={**body, **changes}, headers=headers)

    for user in ("tenant-a", "noc", "nobody"):
        refused = release(user)
        assert refused.status_code == 403, (user, refused.text)
        assert "approve settlements.aiconn.io" in refused.json()["detail"]
    assert world.ledger.settlement(uid, held_period).state == SettlementState.HELD_FOR_REVIEW

    reviewer = next(
        d
        for d in load_documents([MANIFESTS / "rbac" / "api.yaml"])
        if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "aiconn-settlement-reviewer"
    )
    rbac = client.RbacAuthorizationV1Api(k8s)
    rbac.create_namespaced_role_binding(
        world.ns_a,
        {
            "metadata": {"name": "noc-reviews"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": reviewer["metadata"]["name"],
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "noc"}],
        },
    )
    apply_objects(k8s, [reviewer])
    # Authorization answers are reused for 5 s: the refusal above stands until then.
    released = eventually(
        lambda: (r := release("noc")).status_code == 200 and r.json(),
        what="the reviewer binding to take effect",
    )
    assert released["state"] == "Settled" and released["reviewedBy"] == "noc"
    assert released["reviewNote"] == body["note"]
    assert released["creditMicros"] > 0 and len(released["transferIds"]) == 4
    assert release("noc").json() == released, "a second release answers the first"
    stored = world.ledger.settlement(uid, held_period)
    assert list(stored.transfer_ids) == released["transferIds"]
    assert release("noc", periodStart="2020-01-02T00:00:00Z").status_code == 409
    assert release("noc", periodStart="2019-06-01T00:00:00Z").status_code == 404
    missing = f"/v1/namespaces/{world.ns_a}/slas/absent/settlement-releases"
    assert release("noc", url=missing).status_code == 404
    assert release("noc", note=" ").status_code == 422
    # Bound in ns_a only: ns_b's settlements stay out of reach.
    other = f"/v1/namespaces/{world.ns_b}/slas/chat/settlement-releases"
    assert release("noc", url=other).status_code == 403
    world.ledger.check_invariant()


def _review_evaluation(coverage: float) -> SLAEvaluation:
    return sla_evaluation(
        minutes=1440,
        good_minutes=500,
        bad_minutes=76,
        availability_percent=86.8,
        coverage_percent=coverage,
        tokens_used=2_000_000,
        price_per_million_tokens=Decimal("1"),
        charges=Decimal("2"),
        credit=availability_credit("2", percent=100),
    )
