"""Whose wallet an SLA's tokens move through."""

from __future__ import annotations


def wallet_owner(namespace: str, tenant: str | None) -> str:
    """The ledger wallet an SLA's tokens move through: the namespace, or `<namespace>/<tenant>`.

    Namespaced because the namespace is the boundary Kubernetes RBAC enforces: a `tenant` value
    that an SLA in another namespace also claims must never reach, or drain, this wallet.
    """
    if not tenant or tenant == namespace:
        return namespace
    return f"{namespace}/{tenant}"
