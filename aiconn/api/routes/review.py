"""Releasing a period held for review: the one API call that moves money.

A period whose data coverage was below the floor is held, not paid. A reviewer (someone the
platform team binds to `approve` on `settlements.aiconn.io`, a resource no server serves but RBAC
names all the same) looks at the evidence and releases it: the ledger then posts the usage,
charge, credit and penalty it was held with, once, and records who released it and why.

Authorization comes first and says nothing about the SLA (403 names the permission); only then
is the SLA looked up (404 when it does not exist). Releasing twice answers the first release.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException, status
from pydantic import Field

from aiconn.api.deps import CurrentCaller, NamespaceName, Parts, SLAName, not_found
from aiconn.api.models import ApiModel
from aiconn.api.routes.responses import WITH_BODY, problem
from aiconn.sla.accounting import NotHeld, Settlement
from aiconn.sla.timestamps import as_utc
from aiconn.store.ledger import release_held

router = APIRouter(
    prefix="/v1/namespaces/{namespace}",
    tags=["review"],
    responses={
        **WITH_BODY,
        403: problem("The caller may not approve settlements here."),
        404: problem("No such SLA, or no settlement of that period."),
        409: problem("The period was settled when it closed."),
    },
)


class ReleaseRequest(ApiModel):
    """Which held period to release, and why."""

    period_start: datetime
    """Start of the held period, as `status.lastSettlement.periodStart` or the report show it."""
    note: str = Field(min_length=1, max_length=1024, pattern=r"\S")
    """Why the figures may be paid despite the low coverage (kept with the settlement)."""


class ReleasedSettlement(ApiModel):
    """The settlement after the release."""

    namespace: str
    name: str
    period_start: datetime
    period_end: datetime
    state: str
    charges_micros: int
    credit_micros: int
    credit_tokens: int
    coverage_percent: float | None
    transfer_ids: list[str]
    reviewed_by: str | None
    reviewed_at: datetime | None
    review_note: str | None


@router.post(
    "/slas/{name}/settlement-releases",
    response_model=ReleasedSettlement,
    summary="Release a period held for review (pays what it was held with, once)",
)
def release(
    namespace: NamespaceName,
    name: SLAName,
    body: ReleaseRequest,
    caller: CurrentCaller,
    parts: Parts,
) -> ReleasedSettlement:
    if not parts.authorizer.may_review_settlements(caller, namespace):
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN,
            detail=f"releasing a held settlement needs permission to approve"
            f" settlements.aiconn.io in namespace {namespace}",
        )
    sla = parts.reader.get(namespace, name)
    if sla is None:
        raise not_found()
    try:
        start = as_utc(body.period_start)
    except (OverflowError, ValueError) as err:
        raise HTTPException(
            status_code=status.HTTP_422_UNPROCESSABLE_ENTITY,
            detail=f"periodStart {body.period_start} is not a representable UTC time",
        ) from err
    try:
        settled = release_held(
            parts.ledger,
            sla_uid=sla.uid,
            period_start=start,
            reviewer=caller.username,
            note=body.note,
        )
    except NotHeld as err:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail=str(err)) from err
    if settled is None:
        raise HTTPException(
            status_code=status.HTTP_404_NOT_FOUND,
            detail=f"no settlement of {namespace}/{name} for the period starting"
            f" {start.isoformat()}",
        )
    return _released(namespace, name, settled)


_RELEASED_OWN = frozenset(
    {"namespace", "name", "period_start", "period_end", "state", "transfer_ids"}
)
"""Fields of `ReleasedSettlement` not copied as they are from the `Settlement` of that name."""


def _released(namespace: str, name: str, s: Settlement) -> ReleasedSettlement:
    return ReleasedSettlement(
        **{f: getattr(s, f) for f in ReleasedSettlement.model_fields if f not in _RELEASED_OWN},
        namespace=namespace,
        name=name,
        period_start=s.period.start,
        period_end=s.period.end,
        state=str(s.state),
        transfer_ids=list(s.transfer_ids),
    )
