"""The kubectl-native top-up on the real API server (issue 16, item 4): a TopUp created with the
real `kubectl` by billing staff becomes exactly one ledger transfer with who, when and why.

The API server decides who may buy (RBAC `create` on topups.aiconn.io, the right the reporting
API's SubjectAccessReview checks too) and who bought (the admission policy
manifests/policy/topup-requested-by.yaml makes spec.requestedBy the caller's own name); the
operator's handler, run with the shipped operator role against a real SQLite ledger, posts the
transfer keyed by the TopUp's uid, so replaying it pays nothing more; the reporting API's wallet
shows the balance.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from kubernetes import client
from kubernetes.client.rest import ApiException

from aiconn.api.app import create_app
from aiconn.api.settings import ApiSettings
from aiconn.devstack.controlplane import ControlPlane, assets_dir
from aiconn.devstack.kube import apply_manifests
from aiconn.kube import api_client
from aiconn.operator.kubeapi import KubeApi
from aiconn.operator.topups import apply_topup
from aiconn.sla.accounting import wallet_account
from aiconn.store.ledger import Ledger
from tests.factories import sla_manifest
from tests.helpers import (
    ROOT,
    delete_admission_policies,
    eventually,
    grant_billing_and_sla_editing,
    operator_kubeconfig,
    running_operator,
)

pytestmark = pytest.mark.integration

POLICY = ROOT / "manifests" / "policy" / "topup-requested-by.yaml"
API_RBAC = ROOT / "manifests" / "rbac" / "api.yaml"
G, V, PLURAL = "aiconn.io", "v1alpha1", "topups"
TENANT = "acme"


def topup_body(name: str, requested_by: str, tokens: int, tenant: str = TENANT) -> dict[str, Any]:
    return {
        "apiVersion": f"{G}/{V}",
        "kind": "TopUp",
        "metadata": {"name": name},
        "spec": {
            "tenant": tenant,
            "tokens": tokens,
            "reason": "order 4711: campaign week",
            "requestedBy": requested_by,
        },
    }


@pytest.fixture
def billing(control_plane: ControlPlane, k8s: Any, namespace: str) -> Iterator[str]:
    """The shipped policy and aiconn-billing role (noc holds it in `namespace`; tenant-a may
    only edit SLAs there), and an SLA of tenant `acme` in `namespace`."""
    apply_manifests(k8s, [POLICY])
    grant_billing_and_sla_editing(k8s, namespace, API_RBAC)
    client.CustomObjectsApi(k8s).create_namespaced_custom_object(
        G,
        V,
        namespace,
        "aiinferenceslas",
        sla_manifest(
            "chat",
            {
                "tenant": TENANT,
                "model": {
                    "name": "llama-3-8b",
                    "source": "hf://meta-llama/Meta-Llama-3-8B-Instruct",
                    "parametersBillions": 8,
                },
                "network": {"rttBudgetMs": 20},
            },
        ),
    )

    # A policy just written is enforced once the API server's admission has loaded it: wait until
    # it refuses a forged buyer (server-side dry run, nothing stored), or the first assertion
    # below would race it.
    def enforced() -> bool:
        probe = kubectl(
            control_plane,
            "noc",
            namespace,
            "create",
            "--dry-run=server",
            "-f",
            "-",
            stdin=yaml.safe_dump(topup_body("probe", "someone-else", 1)),
        )
        return probe.returncode != 0 and "spec.requestedBy" in probe.stderr

    eventually(enforced, what="the requested-by policy in the API server's admission")
    try:
        yield namespace
    finally:
        delete_admission_policies(k8s, "aiconn-topup-requested-by")


def kubectl(
    control_plane: ControlPlane, user: str, namespace: str, *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """The real kubectl binary, authenticated with `user`'s own token."""
    return subprocess.run(
        [
            str(assets_dir() / "kubectl"),
            f"--kubeconfig={control_plane.kubeconfig_for(user)}",
            f"--namespace={namespace}",
            *args,
        ],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )


def create(
    control_plane: ControlPlane, user: str, namespace: str, body: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    return kubectl(control_plane, user, namespace, "create", "-f", "-", stdin=yaml.safe_dump(body))


def test_billing_tops_up_with_kubectl_once_with_who_when_and_why(
    control_plane: ControlPlane, k8s: Any, billing: str, tmp_path: Path
) -> None:
    namespace = billing
    custom = client.CustomObjectsApi(k8s)

    # Who bought is the caller, checked by the API server: claiming another name is refused.
    forged = create(control_plane, "noc", namespace, topup_body("forged", "someone-else", 500))
    assert forged.returncode != 0
    assert "spec.requestedBy" in forged.stderr and "(noc)" in forged.stderr, forged.stderr
    # A tenant's rights on its SLAs buy nothing.
    tenant = create(control_plane, "tenant-a", namespace, topup_body("mine", "tenant-a", 500))
    assert tenant.returncode != 0 and "forbidden" in tenant.stderr.lower(), tenant.stderr

    made = create(control_plane, "noc", namespace, topup_body("order-4711", "noc", 250_000))
    assert made.returncode == 0, made.stderr
    # A payment is not edited afterwards, not even by the cluster admin.
    with pytest.raises(ApiException) as edited:
        custom.patch_namespaced_custom_object(
            G, V, namespace, PLURAL, "order-4711", {"spec": {"tokens": 9_000_000}}
        )
    assert edited.value.status == 422 and "cannot be changed" in edited.value.body
    unknown = create(control_plane, "noc", namespace, topup_body("typo", "noc", 7, "acne"))
    assert unknown.returncode == 0, unknown.stderr

    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    with api_client(operator_kubeconfig(control_plane, k8s)) as operator:
        kube = KubeApi(operator)
        seen = custom.get_namespaced_custom_object(G, V, namespace, PLURAL, "order-4711")
        first = asyncio.run(apply_topup(kube, ledger, seen))
        # The same watch event again (a replay, or a restart before the status write).
        replayed = asyncio.run(apply_topup(kube, ledger, seen))
        after = custom.get_namespaced_custom_object(G, V, namespace, PLURAL, "order-4711")
        assert asyncio.run(apply_topup(kube, ledger, after)) == [], "an applied TopUp is done"
        typo = custom.get_namespaced_custom_object(G, V, namespace, PLURAL, "typo")
        refused = asyncio.run(apply_topup(kube, ledger, typo))

    wallet = f"{namespace}/{TENANT}"
    (transfer,) = ledger.transfers(kind="topup")
    assert (transfer.credit_account, transfer.amount) == (wallet_account(wallet), 250_000)
    assert transfer.metadata["by"] == "noc"
    assert transfer.metadata["why"] == "order 4711: campaign week"
    assert transfer.metadata["key"] == seen["metadata"]["uid"]
    assert transfer.period.start.isoformat().startswith(seen["metadata"]["creationTimestamp"][:16])
    assert [e.reason for e in first] == ["TopUpApplied"] and transfer.id in first[0].message
    assert [e.reason for e in replayed] == ["TopUpApplied"] and transfer.id in replayed[0].message
    assert ledger.wallet_balance(wallet) == 250_000
    ledger.check_invariant()

    # Billing reads the outcome with kubectl; the status names the transfer.
    shown = kubectl(control_plane, "noc", namespace, "get", "topup", "order-4711", "-o", "json")
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)["status"]
    assert (status["phase"], status["transferId"], status["wallet"]) == (
        "Applied",
        transfer.id,
        wallet,
    )
    assert status["appliedAt"] and status["conditions"][0]["status"] == "True"

    # A tenant no SLA of the namespace names gets nothing, and is told so by field.
    assert [e.reason for e in refused] == ["TenantUnknown"]
    typo_status = custom.get_namespaced_custom_object(G, V, namespace, PLURAL, "typo")["status"]
    assert typo_status["phase"] == "Refused" and "transferId" not in typo_status
    (cond,) = typo_status["conditions"]
    assert (cond["type"], cond["status"], cond["reason"]) == ("Applied", "False", "TenantUnknown")
    assert cond["message"].startswith("spec.tenant:")

    # The reporting API's wallet shows the tokens bought.
    settings = ApiSettings(
        kubeconfig=control_plane.kubeconfig, sla_cache_seconds=0, ledger_url="sqlite://"
    )
    with TestClient(create_app(settings, ledger=ledger)) as api:
        answer = api.get(
            f"/v1/namespaces/{namespace}/wallet",
            headers={"Authorization": f"Bearer {control_plane.tokens['tenant-a']}"},
        )
    assert answer.status_code == 200, answer.text
    (shown_wallet,) = answer.json()["wallets"]
    assert (shown_wallet["tenant"], shown_wallet["tokens"]) == (wallet, 250_000)
    ledger.close()


def test_the_operator_role_reads_topups_and_writes_only_their_status(
    control_plane: ControlPlane, k8s: Any, namespace: str
) -> None:
    operator_kubeconfig(control_plane, k8s)
    reviews = client.AuthorizationV1Api(k8s)

    def allowed(verb: str, subresource: str = "") -> bool:
        review = reviews.create_subject_access_review(
            {
                "spec": {
                    "user": "system:serviceaccount:aiconn-system:aiconn-operator",
                    "groups": ["system:serviceaccounts"],
                    "resourceAttributes": {
                        "verb": verb,
                        "group": G,
                        "resource": PLURAL,
                        "subresource": subresource,
                        "namespace": namespace,
                    },
                }
            }
        )
        return bool(review.status.allowed)

    assert all(allowed(verb) for verb in ("get", "list", "watch"))
    assert allowed("patch", "status")
    assert not any(allowed(verb) for verb in ("create", "update", "patch", "delete"))


def applied(custom: Any, namespace: str, name: str) -> dict[str, Any] | None:
    status: dict[str, Any] = custom.get_namespaced_custom_object(G, V, namespace, PLURAL, name).get(
        "status", {}
    )
    return status if status.get("transferId") else None


def test_the_running_operator_applies_a_topup_created_with_kubectl(
    control_plane: ControlPlane, k8s: Any, billing: str, tmp_path: Path
) -> None:
    """The whole path with Kopf: the operator, as its ServiceAccount with exactly the shipped
    role, sees the TopUp, posts the transfer, writes the status and an Event."""
    namespace = billing
    ledger_url = f"sqlite:///{tmp_path / 'operator-ledger.db'}"
    made = create(control_plane, "noc", namespace, topup_body("order-4712", "noc", 1_000))
    assert made.returncode == 0, made.stderr
    kubeconfig = operator_kubeconfig(control_plane, k8s)
    custom = client.CustomObjectsApi(k8s)
    settings = {"AICONN_LEDGER_URL": ledger_url}
    with running_operator(kubeconfig, settings, namespace=namespace):
        status = eventually(
            lambda: applied(custom, namespace, "order-4712"),
            what="the TopUp's transfer id in its status",
        )
        event = eventually(
            lambda: [
                e
                for e in client.CoreV1Api(k8s).list_namespaced_event(namespace).items
                if e.involved_object.name == "order-4712" and e.reason == "TopUpApplied"
            ],
            what="the TopUpApplied Event",
        )[0]
    assert status["phase"] == "Applied" and status["transferId"] in event.message
    ledger = Ledger.open(ledger_url)
    (transfer,) = ledger.transfers(kind="topup")
    assert (transfer.id, transfer.amount, transfer.metadata["by"]) == (
        status["transferId"],
        1_000,
        "noc",
    )
    ledger.close()
