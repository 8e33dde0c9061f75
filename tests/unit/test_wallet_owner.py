"""Wallets are namespaced: a tenant name claimed in another namespace never reaches them."""

from __future__ import annotations

import pytest

from aiconn.sla.wallets import wallet_owner


@pytest.mark.parametrize(
    ("namespace", "tenant", "wallet"),
    [
        ("acme", None, "acme"),
        ("acme", "", "acme"),
        ("acme", "acme", "acme"),
        ("acme", "manufacturing", "acme/manufacturing"),
        ("intruder", "acme", "intruder/acme"),
    ],
)
def test_wallet_owner_is_scoped_by_namespace(
    namespace: str, tenant: str | None, wallet: str
) -> None:
    assert wallet_owner(namespace, tenant) == wallet


def test_two_namespaces_claiming_one_tenant_get_two_wallets() -> None:
    assert wallet_owner("team-a", "acme") != wallet_owner("team-b", "acme")


def test_operator_gateway_and_api_name_the_same_wallet() -> None:
    from datetime import UTC, datetime
    from pathlib import Path

    import yaml

    from aiconn.api.slas import SLA
    from aiconn.inference.placement import default_tiers, plan
    from aiconn.inference.workload import gateway_container
    from aiconn.operator.evaluation import SLARef
    from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec, AIInferenceSLAStatus

    doc = yaml.safe_load(
        (Path(__file__).parents[2] / "manifests/samples/sla-edge-urllc.yaml").read_text()
    )
    spec = AIInferenceSLASpec.model_validate(doc["spec"])
    assert spec.tenant and spec.tenant != "team-a"
    ref = SLARef(
        uid="u", namespace="team-a", name="n", created=datetime.now(UTC), spec=spec, status={}
    )
    gateway = gateway_container(sla_name="n", namespace="team-a", spec=spec)
    env = {e["name"]: e.get("value") for e in gateway["env"]}
    assert plan(spec, default_tiers()).placed
    api_view = SLA(namespace="team-a", name="n", uid="u", spec=spec, status=AIInferenceSLAStatus())
    assert (
        ref.tenant == env["AICONN_TENANT"] == api_view.tenant == wallet_owner("team-a", spec.tenant)
    )
