"""The AssuranceReport endpoint reads the operator's `status.assurance` from the real API server:
goals with observed and predicted fulfilment, actions with their money, placement history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kubernetes import client

from aiconn.api.app import create_app
from aiconn.resources.v1alpha1.kinds import SLA
from aiconn.resources.v1alpha1.meta import GROUP, VERSION
from tests.helpers import static_token_settings
from tests.seeding import create_sla

pytestmark = pytest.mark.integration

TOKEN = "assurance-token"
ASSURANCE = {
    "objectives": [
        {
            "objective": "availability",
            "goalPercent": 99.9,
            "observedPercent": 99.95,
            "predictedPercent": 99.475,
            "fulfilled": False,
        },
        {"objective": "tpot", "goalPercent": 99.0},
    ],
    "failover": {
        "fromTier": "edge",
        "fromSite": "de-fra-edge-01",
        "at": "2026-12-02T02:00:00Z",
        "reason": "edge de-fra-edge-01 has no Ready node with room for 1 replica(s)",
    },
    "actions": [
        {
            "at": "2026-12-02T02:00:00Z",
            "action": "FailOver",
            "decision": "Act",
            "reason": "restores service",
            "capacityCost": "123.456789",
            "expectedCredit": "20.000000",
            "currency": "EUR",
        }
    ],
    "placementHistory": [
        {
            "at": "2026-12-01T00:00:00Z",
            "tier": "edge",
            "site": "de-fra-edge-01",
            "reason": "Placed",
        },
        {"at": "2026-12-02T02:00:00Z", "tier": "regional", "site": "de-fra-dc-01", "reason": "x"},
    ],
    "evaluatedAt": "2026-12-02T02:00:01Z",
    "replicas": 3,
}


def test_the_assurance_report_is_the_status_in_ts_28536_shape(
    k8s: Any, namespace: str, tmp_path: Path
) -> None:
    create_sla(k8s, namespace, "chat", tenant="acme", index=0)
    settings = static_token_settings(
        tmp_path / "tokens.csv",
        [f"{TOKEN},reporter,{namespace}"],
        ledger_url=f"sqlite:///{tmp_path / 'ledger.db'}",
    )
    headers = {"Authorization": f"Bearer {TOKEN}"}
    path = f"/v1/namespaces/{namespace}/slas/chat/assurance"
    with TestClient(create_app(settings, kube=k8s)) as api:
        empty = api.get(path, headers=headers)
        assert empty.status_code == 200, empty.text
        assert empty.json()["goals"] == []

        client.CustomObjectsApi(k8s).patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, SLA.plural, "chat", {"status": {"assurance": ASSURANCE}}
        )
        report = api.get(path, headers=headers).json()
        assert (
            api.get(f"/v1/namespaces/{namespace}/slas/nope/assurance", headers=headers).status_code
            == 404
        )
        assert api.get(path).status_code == 401

    goals = {g["objective"]: g for g in report["goals"]}
    assert goals["availability"] == {
        "objective": "availability",
        "goalPercent": 99.9,
        "observedPercent": 99.95,
        "predictedPercent": 99.475,
        "observedFulfilment": "FULFILLED",
        "predictedFulfilment": "NOT_FULFILLED",
    }
    assert goals["tpot"]["observedFulfilment"] == "UNKNOWN"
    assert report["actions"][0]["capacityCost"] == "123.456789"
    assert report["actions"][0]["expectedCredit"] == "20.000000"
    assert [m["tier"] for m in report["placementHistory"]] == ["edge", "regional"]
    assert report["failedOverFrom"] == "edge/de-fra-edge-01"
    assert report["evaluatedAt"] == "2026-12-02T02:00:01Z"
    assert report["replicas"] == 3
