"""Top-ups: tokens a tenant buys beyond its plan, each a ledger transfer with who, when and why.

A top-up moves tokens from the `top-ups` account into the tenant's wallet. The caller names it
with an idempotency key (as payment APIs do): the ledger key is `topup:<tenant>:<key>`, fixed by
the caller's key alone, so a retry, even minutes later or racing the first attempt, returns the
first top-up instead of paying twice, and the same key reused for another amount is refused.
Who asked, when and why are stored with the transfer (its metadata) for the statement.

The kubectl-native path is a namespaced `TopUp` resource (`aiconn.resources.v1alpha1.topup`):
its spec is immutable, the ValidatingAdmissionPolicy in
manifests/policy/topup-requested-by.yaml makes `spec.requestedBy` the creating user's own name,
and the operator posts it here with the object's uid as the idempotency key, so a replayed
watch event or a restart never pays twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from aiconn.resources.v1alpha1.topup import MAX_TOKENS
from aiconn.sla.accounting import (
    TOKENS,
    Transfer,
    TransferBook,
    TransferConflict,
    TransferSpec,
    wallet_account,
)
from aiconn.sla.periods import Period, floor_minute

TOP_UPS = "top-ups"
KIND = "topup"


class TopUpConflict(Exception):
    """The idempotency key was used before for a different top-up."""


@dataclass(frozen=True)
class _TopUpSpec(TransferSpec):
    """A transfer keyed by the caller's idempotency key, not by SLA and period."""

    client_key: str = ""

    @property
    def key(self) -> str:
        return f"{self.sla_uid}:{self.client_key}"


def subject(tenant: str) -> str:
    """What a tenant's top-ups are keyed by (the ledger's `sla_uid` column)."""
    return f"topup:{tenant}"


def top_up(
    ledger: TransferBook,
    *,
    tenant: str,
    namespace: str,
    tokens: int,
    idempotency_key: str,
    by: str,
    why: str,
    at: datetime,
) -> Transfer:
    """Credit `tokens` to the tenant's wallet once per idempotency key; a replay returns the
    stored top-up. Raises TopUpConflict when the key was used for another tenant or amount."""
    if not 1 <= tokens <= MAX_TOKENS:
        raise ValueError(f"tokens must be between 1 and {MAX_TOKENS}, got {tokens}")
    if not idempotency_key or not by or not why.strip():
        raise ValueError("a top-up needs an idempotency key, who asked and why")
    spec = _TopUpSpec(
        debit_account=TOP_UPS,
        credit_account=wallet_account(tenant),
        amount=tokens,
        unit=TOKENS,
        kind=KIND,
        sla_uid=subject(tenant),
        sla_namespace=namespace,
        sla_name="top-up",
        period=Period(start=floor_minute(at), end=floor_minute(at) + timedelta(minutes=1)),
        metadata={"by": by, "why": why[:1024], "at": at.isoformat(), "key": idempotency_key},
        client_key=idempotency_key,
    )
    stored = ledger.transfer_by_key(spec.key)
    if stored is None:
        try:
            return ledger.post_transfer(spec)
        except TransferConflict:
            # A racing replay of the same key won (its `at` differs): judge what it stored.
            stored = ledger.transfer_by_key(spec.key)
            if stored is None:
                raise
    if (stored.credit_account, stored.amount) != (spec.credit_account, tokens):
        raise TopUpConflict(
            f"idempotency key {idempotency_key!r} was used for {stored.amount} tokens to"
            f" {stored.credit_account}; use a new key for a new top-up"
        )
    return stored
