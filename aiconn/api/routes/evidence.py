"""The evidence of a settled period, for download and `aiconn verify FILE`.

Tenant-scoped like the reports (the same TokenReview and SubjectAccessReview, the same 404 for
"not yours" and "does not exist"). The body is the stored document as written with the
settlement, its SHA-256, and the ledger's figures of that settlement, so a verifier holding only
this file can recompute the credit and compare it with both what the evidence says and what the
ledger paid.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status

from aiconn.api.deps import Parts, ReadableSLA, settlement_of
from aiconn.api.models import ApiModel
from aiconn.api.reports import resolve_period
from aiconn.api.routes.responses import TENANT, problem
from aiconn.sla.verify import LedgerFigures

router = APIRouter(prefix="/v1/namespaces/{namespace}", tags=["tenant"], responses=TENANT)


class SettlementEvidence(ApiModel):
    """The evidence stored with a settled period."""

    namespace: str
    name: str
    uid: str
    period_start: datetime
    period_end: datetime
    sha256: str
    """SHA-256 of the evidence's canonical JSON, written with it."""
    evidence: dict[str, Any]
    """Minute verdicts, counts, queries with result hashes, terms and the decision."""
    settlement: LedgerFigures
    """The ledger's settlement row of the period (what was paid, or held)."""


@router.get(
    "/slas/{name}/evidence",
    response_model=SettlementEvidence,
    summary="The evidence a closed period was settled on (verify it with `aiconn verify FILE`)",
    responses={
        400: problem("`period` names no settled period."),
        409: problem("The stored evidence is no longer readable JSON."),
    },
)
def evidence(
    sla: ReadableSLA,
    parts: Parts,
    period: Annotated[
        str,
        Query(
            max_length=64,
            description="A month YYYY-MM or a period start such as 2025-01-01T00:00:00Z",
        ),
    ],
) -> SettlementEvidence:
    closed = resolve_period(period, sla.spec.objectives.window, datetime.now(UTC))
    if closed is None:
        raise HTTPException(
            status_code=status.HTTP_404_NOT_FOUND,
            detail=f"period {period!r} is still open; its evidence is stored when it settles",
        )
    settlement = settlement_of(parts.ledger, sla, closed, missing=", so no evidence")
    stored = parts.ledger.evidence(sla.uid, closed.start)
    if stored is None:
        raise HTTPException(
            status_code=status.HTTP_404_NOT_FOUND,
            detail=f"period {closed.start_iso} was settled without evidence (settled before"
            " evidence was recorded)",
        )
    try:
        document = stored.document
    except ValueError as err:
        raise HTTPException(
            status_code=status.HTTP_409_CONFLICT,
            detail=f"the stored evidence of period {closed.start_iso} is not a readable JSON"
            f" object ({err}): it was altered after it was written",
        ) from err
    return SettlementEvidence(
        namespace=sla.namespace,
        name=sla.name,
        uid=sla.uid,
        period_start=closed.start,
        period_end=closed.end,
        sha256=stored.sha256,
        evidence=document,
        settlement=LedgerFigures.of(settlement),
    )
