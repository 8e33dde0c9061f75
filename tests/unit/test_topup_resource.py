"""The TopUp resource's pure parts: its rendered schema (bounded, immutable), the admission
policy that names who asked, and the operator's turning one TopUp into one transfer on a real
SQLite ledger (the status writes are recorded here; tests/integration/test_topups_kubectl.py
runs the same function against the real API server)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from aiconn.operator.topups import apply_topup
from aiconn.resources.v1alpha1.crds import RESOURCES, render
from aiconn.resources.v1alpha1.topup import MAX_TOKENS, TopUpSpec
from aiconn.store.ledger import Ledger

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "manifests" / "policy" / "topup-requested-by.yaml"
SPEC = {"tokens": 1000, "reason": "order 4711", "requestedBy": "noc"}


class StatusWrites:
    """Records the status patches the operator would send."""

    def __init__(self) -> None:
        self.patches: list[dict[str, Any]] = []

    async def patch_status(
        self, kind: str, name: str, namespace: str | None, status: dict[str, Any]
    ) -> dict[str, Any]:
        self.patches.append(status)
        return {"status": status}

    async def list(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return [{"spec": {"tenant": "acme"}}]


def body(spec: dict[str, Any], uid: str = "0b7c-uid-1") -> dict[str, Any]:
    return {
        "metadata": {
            "name": "order-4711",
            "namespace": "shop",
            "uid": uid,
            "generation": 1,
            "creationTimestamp": "2026-12-02T10:30:15Z",
        },
        "spec": spec,
    }


def test_the_spec_is_bounded_and_names_who_asked() -> None:
    assert TopUpSpec.model_validate(SPEC).requested_by == "noc"
    for bad in ({"tokens": 0}, {"tokens": MAX_TOKENS + 1}, {"reason": " "}, {"tenant": "Acme"}):
        with pytest.raises(ValidationError):
            TopUpSpec.model_validate({**SPEC, **bad})
    with pytest.raises(ValidationError):
        TopUpSpec.model_validate({"tokens": 1, "reason": "x"})


def test_the_crd_is_namespaced_immutable_and_has_a_status() -> None:
    (info,) = [r for r in RESOURCES if r.kind == "TopUp"]
    crd = render(info)
    assert crd["metadata"]["name"] == "topups.aiconn.io"
    assert crd["spec"]["scope"] == "Namespaced"
    (version,) = crd["spec"]["versions"]
    assert version["subresources"] == {"status": {}}
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert {"rule": "self == oldSelf"}.items() <= spec["x-kubernetes-validations"][0].items()
    assert spec["properties"]["tokens"]["maximum"] == MAX_TOKENS
    assert set(spec["required"]) == {"tokens", "reason", "requestedBy"}


def test_the_policy_makes_requested_by_the_caller_on_create() -> None:
    policy, binding = yaml.safe_load_all(POLICY.read_text())
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert (rule["resources"], rule["operations"]) == (["topups"], ["CREATE"])
    (check,) = policy["spec"]["validations"]
    assert check["expression"] == "object.spec.requestedBy == request.userInfo.username"
    assert check["messageExpression"].startswith("'spec.requestedBy:")
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]


def test_one_topup_is_one_transfer_however_often_it_is_seen(ledger: Ledger) -> None:
    kube = StatusWrites()
    seen = body({**SPEC, "tenant": "acme"})
    first = asyncio.run(apply_topup(kube, ledger, seen))
    again = asyncio.run(apply_topup(kube, ledger, seen))
    (transfer,) = ledger.transfers(kind="topup")
    assert ledger.wallet_balance("shop/acme") == 1000
    assert transfer.metadata["key"] == "0b7c-uid-1" and transfer.metadata["by"] == "noc"
    assert transfer.metadata["at"].startswith("2026-12-02T10:30:15")
    assert [kube.patches[0]["transferId"], kube.patches[1]["transferId"]] == [transfer.id] * 2
    assert kube.patches[0]["phase"] == "Applied" and first[0].reason == again[0].reason
    done = {**seen, "status": kube.patches[0]}
    assert asyncio.run(apply_topup(kube, ledger, done)) == []
    assert len(kube.patches) == 2


def test_refusals_name_the_field_and_credit_nothing(ledger: Ledger) -> None:
    kube = StatusWrites()
    ghost = asyncio.run(apply_topup(kube, ledger, body({**SPEC, "tenant": "ghost"}, "u-2")))
    zero = asyncio.run(apply_topup(kube, ledger, body({**SPEC, "tokens": 0}, "u-3")))
    assert [e.reason for e in ghost + zero] == ["TenantUnknown", "SpecInvalid"]
    assert [p["phase"] for p in kube.patches] == ["Refused", "Refused"]
    messages = [p["conditions"][0]["message"] for p in kube.patches]
    assert messages[0].startswith("spec.tenant:") and messages[1].startswith("spec.tokens:")
    assert ledger.transfers(kind="topup") == []


def test_only_the_billing_role_may_create_topups() -> None:
    """The operator reads TopUps and writes their status; tenants' roles never buy tokens."""
    creators, operator_rules = [], []
    for path in sorted((ROOT / "manifests").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict) or doc.get("kind") not in ("ClusterRole", "Role"):
                continue
            for rule in doc.get("rules") or []:
                resources = set(rule.get("resources", []))
                if not resources & {"topups", "topups/status", "*"}:
                    continue
                if doc["metadata"]["name"] == "aiconn-operator":
                    operator_rules.append((sorted(resources), sorted(rule["verbs"])))
                if {"create", "*"} & set(rule.get("verbs", [])):
                    creators.append(doc["metadata"]["name"])
    assert creators == ["aiconn-billing"]
    assert sorted(operator_rules) == [
        (["topups"], ["get", "list", "watch"]),
        (["topups/status"], ["patch"]),
    ]
