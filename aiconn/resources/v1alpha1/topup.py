"""The TopUp resource: tokens billing staff add to a wallet of a namespace, kubectl-natively.

Its spec is immutable (a payment is not edited), `spec.requestedBy` is the creating user's own
name (manifests/policy/topup-requested-by.yaml), and the operator posts it once, keyed by its uid
(`aiconn.operator.topups`, through `aiconn.sla.topups.top_up`).
"""

from __future__ import annotations

from pydantic import Field

from aiconn.resources.v1alpha1.meta import CamelModel, Condition, cel, with_rules
from aiconn.resources.v1alpha1.names import DNS_LABEL_PATTERN

MAX_TOKENS = 10**15
"""The most tokens one top-up may add."""


class TopUpSpec(CamelModel):
    """Tokens to add to a wallet of this namespace, who asked and why (immutable once created)."""

    model_config = with_rules(
        cel(
            "self == oldSelf",
            "a top-up cannot be changed once created (it is a payment): create a new TopUp",
        )
    )
    tokens: int = Field(ge=1, le=MAX_TOKENS)
    """Tokens to credit to the wallet."""
    reason: str = Field(min_length=1, max_length=1024, pattern=r"\S")
    """Why (an order number, a campaign), kept with the ledger transfer."""
    requested_by: str = Field(min_length=1, max_length=512)
    """Who asks: must be the creating user's own name (request.userInfo.username), which the aiconn-topup-requested-by admission policy checks."""
    tenant: str | None = Field(default=None, max_length=63, pattern=DNS_LABEL_PATTERN)
    """The spec.tenant of an AIInferenceSLA in this namespace whose wallet to credit; the namespace's own wallet when unset."""


class TopUpStatus(CamelModel):
    """What the operator did with the top-up."""

    phase: str | None = Field(default=None, max_length=16)
    """Applied (the ledger transfer exists) or Refused (see the Applied condition)."""
    transfer_id: str | None = Field(default=None, max_length=128)
    """The ledger transfer that credited the wallet."""
    wallet: str | None = Field(default=None, max_length=128)
    """The wallet credited: the namespace, or <namespace>/<tenant>."""
    applied_at: str | None = Field(default=None, max_length=64)
    """When the ledger transfer was posted (RFC 3339)."""
    attempts: int | None = Field(default=None, ge=0)
    """Failed attempts to reach the ledger so far (each retried after a growing pause)."""
    conditions: list[Condition] = Field(default_factory=list, max_length=8)
    """Applied: True with the transfer, False with the reason it was refused or is retried."""
