"""Top-ups: buying tokens beyond the plan, the API's second call that moves money.

Billing staff or a billing system (bound to `create` on `topups.aiconn.io` in the tenant's
namespace, checked with a SubjectAccessReview; tenants' SLA rights are not enough) post a number
of tokens with an idempotency key: the ledger credits the wallet once per key and keeps who, when
and why (`aiconn.sla.topups`). A retry with the same key answers the first top-up; the same key
for another amount is a 409.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, status
from pydantic import Field

from aiconn.api.deps import CurrentCaller, NamespaceName, Parts
from aiconn.api.models import ApiModel
from aiconn.api.routes.responses import WITH_BODY, problem
from aiconn.resources.v1alpha1.names import DNS_LABEL_PATTERN
from aiconn.resources.v1alpha1.topup import MAX_TOKENS
from aiconn.sla.topups import TopUpConflict, top_up
from aiconn.sla.wallets import wallet_owner

router = APIRouter(
    prefix="/v1/namespaces/{namespace}",
    tags=["billing"],
    responses={
        **WITH_BODY,
        403: problem("The caller may not top up wallets here."),
        409: problem("The idempotency key was used for another top-up."),
    },
)


class TopUpRequest(ApiModel):
    """Tokens to add to a wallet of this namespace, and why."""

    tokens: int = Field(ge=1, le=MAX_TOKENS)
    """Tokens to credit."""
    idempotency_key: str = Field(min_length=8, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
    """Chosen by the caller, unique per top-up: a retry with it never pays twice."""
    # Not blank as the ledger judges it (`str.strip`, which also strips \x1c-\x1f, where the
    # schema's `\S` alone would not).
    note: str = Field(min_length=1, max_length=1024, pattern=r"[^\s\x1c-\x1f]")
    """Why (an order number, a campaign), kept with the transfer."""
    tenant: str | None = Field(default=None, max_length=63, pattern=DNS_LABEL_PATTERN)
    """The SLA `spec.tenant` whose wallet to credit; the namespace's own wallet when unset."""


class TopUp(ApiModel):
    """A stored top-up."""

    transfer_id: str
    wallet: str
    tokens: int
    by: str
    at: datetime
    note: str
    idempotency_key: str


@router.post("/top-ups", response_model=TopUp, summary="Top up a wallet (once per key)")
def create_top_up(
    namespace: NamespaceName, body: TopUpRequest, caller: CurrentCaller, parts: Parts
) -> TopUp:
    if not parts.authorizer.may_top_up(caller, namespace):
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN,
            detail=f"a top-up needs permission to create topups.aiconn.io in namespace {namespace}",
        )
    wallet = wallet_owner(namespace, body.tenant)
    try:
        stored = top_up(
            parts.ledger,
            tenant=wallet,
            namespace=namespace,
            tokens=body.tokens,
            idempotency_key=body.idempotency_key,
            by=caller.username,
            why=body.note,
            at=datetime.now(UTC),
        )
    except TopUpConflict as err:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail=str(err)) from err
    meta = stored.metadata
    return TopUp(
        transfer_id=stored.id,
        wallet=wallet,
        tokens=stored.amount,
        by=str(meta["by"]),
        at=datetime.fromisoformat(str(meta["at"])),
        note=str(meta["why"]),
        idempotency_key=str(meta["key"]),
    )
