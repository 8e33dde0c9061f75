"""Wallets are namespaced: a tenant name claimed in another namespace never reaches them."""

from __future__ import annotations

import pytest

from aiconn.sla.spec import wallet_owner


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
