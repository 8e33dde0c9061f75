"""The AssuranceReport: one SLA's closed assurance loop in the shape of 3GPP TS 28.536.

TS 28.536 reports an assurance closed control loop as its goals, each with an observed and a
predicted fulfilment state (FULFILLED or NOT_FULFILLED), and the actions the loop took. Here the
goals are the SLA's objectives, the figures are the operator's `status.assurance` (measured by the
SLA engine, predicted by carrying the current burn to the period's end), and the actions are the
placement moves with the money each one weighed. Read from the SLA's status, like the SLA detail,
so the report and `kubectl get aisla -o yaml` never disagree.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter

from aiconn.api.deps import ReadableSLA
from aiconn.api.models import ApiModel
from aiconn.api.routes.responses import TENANT
from aiconn.resources.v1alpha1.assurance import AssuranceAction, PlacementRecord

router = APIRouter(prefix="/v1/namespaces/{namespace}", tags=["tenant"], responses=TENANT)

Fulfilment = Literal["FULFILLED", "NOT_FULFILLED", "UNKNOWN"]


class AssuranceGoal(ApiModel):
    """One objective as an assurance goal."""

    objective: str
    """availability, ttft or tpot."""
    goal_percent: float
    """The objective's target."""
    observed_percent: float | None = None
    """Attainment of the period so far."""
    predicted_percent: float | None = None
    """Attainment at the period's end if the current burn continues."""
    observed_fulfilment: Fulfilment
    """Whether the period so far meets the goal."""
    predicted_fulfilment: Fulfilment
    """Whether the period's end is predicted to meet it."""


class AssuranceReport(ApiModel):
    """The SLA's assurance closed control loop."""

    namespace: str
    name: str
    goals: list[AssuranceGoal]
    """Per objective: goal, observed and predicted fulfilment."""
    actions: list[AssuranceAction]
    """The last actions, oldest first."""
    placement_history: list[PlacementRecord]
    """The last placements, oldest first."""
    replicas: int | None = None
    """Replicas the loop runs now; None: the spec's."""
    failed_over_from: str | None = None
    """`tier/site` the SLA runs away from while failed over; None at home."""
    evaluated_at: str | None = None
    """When the loop last changed the status this report is read from."""


@router.get(
    "/slas/{name}/assurance",
    response_model=AssuranceReport,
    summary="The SLA's assurance loop: goals with observed and predicted fulfilment, actions",
)
def assurance_report(sla: ReadableSLA) -> AssuranceReport:
    status = sla.status.assurance
    if status is None:
        return AssuranceReport(
            namespace=sla.namespace, name=sla.name, goals=[], actions=[], placement_history=[]
        )
    failover = status.failover
    return AssuranceReport(
        namespace=sla.namespace,
        name=sla.name,
        goals=[
            AssuranceGoal(
                # The objective, its goal and its percentages as the loop wrote them.
                **g.model_dump(include=set(AssuranceGoal.model_fields)),
                observed_fulfilment=_state(g.observed_percent, g.goal_percent),
                predicted_fulfilment=_state(g.predicted_percent, g.goal_percent),
            )
            for g in status.objectives
        ],
        actions=status.actions,
        placement_history=status.placement_history,
        failed_over_from=(
            None
            if failover is None
            else f"{failover.from_tier}/{failover.from_site}"
            if failover.from_site
            else failover.from_tier
        ),
        replicas=status.replicas,
        evaluated_at=status.evaluated_at,
    )


def _state(value: float | None, goal: float) -> Fulfilment:
    if value is None:
        return "UNKNOWN"
    return "FULFILLED" if value >= goal else "NOT_FULFILLED"
