"""`status.assurance`: what the operator does to keep an SLA, shaped after 3GPP TS 28.536.

TS 28.536 describes closed-loop assurance of network slices as assurance goals, their observed
and predicted fulfilment, and the closed-loop actions taken. The same shape fits an inference
SLA: each objective is a goal, the measured period is what is observed, the burn continued to the
period's end is the prediction, and placement moves and scaling are the actions. Money is a
decimal string (micro-units of the currency), never a float: a decision that weighs a cost
against a credit must show both exactly.
"""

from __future__ import annotations

from pydantic import Field

from aiconn.resources.v1alpha1.meta import CamelModel

HISTORY_LENGTH = 10
"""Placement moves and actions kept in status; older ones live on as Events."""


class PlacementRecord(CamelModel):
    """One placement the SLA had: where, since when, and why it went there."""

    at: str
    """When the operator saw the SLA placed there (RFC 3339, UTC)."""
    tier: str
    """InferenceTier."""
    site: str | None = None
    """Site within the tier."""
    reason: str = Field(max_length=1024)
    """Placed, FailedOver, FailedBack or Retried, with the detail."""


class FailoverStatus(CamelModel):
    """The SLA runs away from its home placement after a failure there."""

    from_tier: str
    """Tier the SLA failed over from; it returns there once that is stable."""
    from_site: str | None = None
    """Site the SLA failed over from."""
    at: str
    """When it failed over (RFC 3339, UTC)."""
    reason: str = Field(max_length=1024)
    """What failed."""
    home_healthy_since: str | None = None
    """Since when the home site could host the SLA again without a break; None while it cannot."""


class AssuranceAction(CamelModel):
    """One closed-loop decision, with the money it weighed."""

    at: str
    """When it was decided (RFC 3339, UTC)."""
    action: str
    """Place, FailOver, FailBack, ScaleOut or ScaleIn."""
    decision: str
    """Act or Hold."""
    reason: str = Field(max_length=1024)
    """Why, in one line."""
    capacity_cost: str | None = None
    """Provider's cost of the capacity the action adds until the period ends (decimal string)."""
    expected_credit: str | None = None
    """Credit the period pays if the current burn continues (decimal string)."""
    currency: str | None = None
    """ISO 4217 currency of both amounts."""


class ObjectiveAssurance(CamelModel):
    """One assurance goal: an objective, how it is doing, and where it is heading."""

    objective: str
    """availability, ttft or tpot."""
    goal_percent: float
    """The objective's target."""
    observed_percent: float | None = None
    """Attainment of the period so far; None before it is measured."""
    predicted_percent: float | None = None
    """Attainment at the period's end if the current burn continues (availability), else the
    observed attainment carried forward; None before it is measured."""
    fulfilled: bool | None = None
    """Whether the prediction meets the goal; None before it is measured."""


class AssuranceStatus(CamelModel):
    """The closed loop's view of the SLA."""

    replicas: int | None = Field(default=None, ge=1, le=256)
    """Replicas the loop runs now, within [replicas, maxReplicas]; None: spec.capacity.replicas."""
    scaled_at: str | None = None
    """When the loop last changed `replicas` (RFC 3339, UTC); its cooldowns count from here."""
    objectives: list[ObjectiveAssurance] = Field(default_factory=list, max_length=8)
    """Per objective: goal, observed and predicted fulfilment."""
    failover: FailoverStatus | None = None
    """Set while the SLA runs away from its home placement."""
    placement_history: list[PlacementRecord] = Field(
        default_factory=list, max_length=HISTORY_LENGTH
    )
    """The last placements, oldest first."""
    actions: list[AssuranceAction] = Field(default_factory=list, max_length=HISTORY_LENGTH)
    """The last closed-loop actions, oldest first."""
    evaluated_at: str | None = None
    """When the loop last changed this status (RFC 3339, UTC)."""
