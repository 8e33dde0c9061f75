"""Top-ups through the reporting API against the real API server: TokenReview and a
SubjectAccessReview on `create topups.aiconn.io` decide who may move money; the ledger credits
the wallet once per idempotency key, with who, when and why."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aiconn.api.app import create_app
from aiconn.api.settings import ApiSettings
from aiconn.devstack.controlplane import ControlPlane
from aiconn.store.ledger import Ledger
from tests.helpers import grant_billing_and_sla_editing

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
API_RBAC = ROOT / "manifests" / "rbac" / "api.yaml"


@pytest.fixture
def api(
    control_plane: ControlPlane, k8s: Any, namespace: str, tmp_path: Path
) -> Iterator[tuple[TestClient, Ledger]]:
    """The API in kubernetes auth mode (as the admin, whose rights include the reviews); tenant-a
    may edit SLAs in `namespace`, noc holds the shipped aiconn-billing ClusterRole there."""
    grant_billing_and_sla_editing(k8s, namespace, API_RBAC)
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    settings = ApiSettings(
        kubeconfig=control_plane.kubeconfig, sla_cache_seconds=0, ledger_url="sqlite://"
    )
    with TestClient(create_app(settings, ledger=ledger)) as test_client:
        yield test_client, ledger
    ledger.close()


def test_only_billing_may_top_up_and_each_key_pays_once(
    control_plane: ControlPlane, api: tuple[TestClient, Ledger], namespace: str
) -> None:
    test_client, ledger = api
    key = f"order-{uuid.uuid4().hex}"
    path = f"/v1/namespaces/{namespace}/top-ups"
    body = {"tokens": 250_000, "idempotencyKey": key, "note": "order 4711: campaign week"}

    def post(user: str, **changes: Any) -> Any:
        headers = {"Authorization": f"Bearer {control_plane.tokens[user]}"}
        return test_client.post(path, json={**body, **changes}, headers=headers)

    for user in ("tenant-a", "nobody"):
        refused = post(user)
        assert refused.status_code == 403, refused.text
        assert "create topups.aiconn.io" in refused.json()["detail"]
    assert ledger.wallet_balance(namespace) == 0

    first = post("noc")
    assert first.status_code == 200, first.text
    topped = first.json()
    assert (topped["wallet"], topped["tokens"], topped["by"]) == (namespace, 250_000, "noc")
    assert topped["note"] == "order 4711: campaign week"
    assert post("noc").json()["transferId"] == topped["transferId"], "a retry pays nothing more"
    assert ledger.wallet_balance(namespace) == 250_000

    conflict = post("noc", tokens=1)
    assert conflict.status_code == 409 and key in conflict.json()["detail"]
    assert post("noc", idempotencyKey="short").status_code == 422
    assert post("noc", note=" ").status_code == 422
    assert ledger.wallet_balance(namespace) == 250_000
    (transfer,) = [t for t in ledger.transfers(kind="topup") if t.metadata["key"] == key]
    assert transfer.metadata["by"] == "noc" and transfer.id == topped["transferId"]
    ledger.check_invariant()
