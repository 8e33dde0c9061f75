"""Period reports: which period a caller means, and its numbers from the status or the ledger.

The current period is still moving, so its numbers come from the SLA's status, which the operator
rewrites every evaluation. A closed period's numbers are the ledger's: the settlement row and its
transfers, the same rows money moved by, so a report can never disagree with what was paid.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from decimal import Decimal

from aiconn.api.models import (
    CreditBasis,
    CreditTierOut,
    Objectives,
    PeriodReport,
    SLADetail,
    SLASummary,
    TransferOut,
)
from aiconn.api.slas import SLA
from aiconn.resources.v1alpha1.sla import CreditTier, Window
from aiconn.sla.accounting import Kind, Settlement
from aiconn.sla.budget import budget_remaining_percent, error_budget
from aiconn.sla.credits import (
    exact_decimal,
    from_micros,
    money,
    period_credit,
    to_micros,
    tokens_for_amount,
)
from aiconn.sla.periods import Period, current_period, period_containing
from aiconn.sla.terms import PeriodTerms
from aiconn.sla.timestamps import as_utc
from aiconn.store.ledger import Ledger

CURRENT = "current"
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_ACCEPTED = "'current', a month YYYY-MM, or an RFC 3339 period start such as 2025-01-01T00:00:00Z"


class PeriodError(ValueError):
    """The `period` a caller asked for names no reportable period of this SLA (answered 400)."""


def summary(sla: SLA) -> SLASummary:
    """The SLA and its current period in one row."""
    return SLASummary(**_summary_fields(sla))


def detail(sla: SLA) -> SLADetail:
    """The SLA with its spec and status."""
    return SLADetail(
        **_summary_fields(sla),
        uid=sla.uid,
        spec=sla.spec.to_k8s(),
        status=sla.status.to_k8s(),
    )


def _summary_fields(sla: SLA) -> dict[str, object]:
    period = sla.status.period
    placement = sla.status.placement
    compliant = sla.condition("Compliant")
    return {
        "namespace": sla.namespace,
        "name": sla.name,
        "tenant": sla.tenant,
        "model": sla.spec.model.name,
        "tier": placement.tier if placement else None,
        "site": placement.site if placement else None,
        "phase": sla.status.phase,
        "compliant": compliant if compliant in ("True", "False") else "Unknown",
        "availability_percent": period.availability_percent if period else None,
        "ttft_attainment_percent": period.ttft_attainment_percent if period else None,
        "tpot_attainment_percent": period.tpot_attainment_percent if period else None,
        "budget_remaining_percent": period.budget_remaining_percent if period else None,
        "coverage_percent": period.coverage_percent if period else None,
        "alerts": list(period.alerts) if period else [],
        "credits_accrued": (
            money(period.credits_accrued) if period and period.credits_accrued is not None else None
        ),
        "currency": sla.spec.tokens.currency,
        "evaluated_at": period.evaluated_at if period else None,
    }


def resolve_period(text: str, window: Window, now: datetime) -> Period | None:
    """The closed period `text` names, or None for the current one; PeriodError otherwise."""
    if text == CURRENT:
        return None
    start = _parse_start(text)
    if not window.calendar_aligned:
        raise PeriodError(
            f"period {text!r}: this SLA's window is rolling ({window.duration}); rolling periods"
            " are reported as 'current' only and never settled"
        )
    try:
        period = period_containing(window, start)
    except (ValueError, OverflowError) as err:
        raise PeriodError(f"period {text!r} is out of range; use {_ACCEPTED}") from err
    if period.start != start:
        raise PeriodError(
            f"period {text!r} does not start a period of this SLA's window {window.duration};"
            f" the period containing it starts at {period.start_iso}"
        )
    if period.contains(now):
        return None
    if period.start > now:
        raise PeriodError(f"period {text!r} has not started yet; use {_ACCEPTED}")
    return period


def _parse_start(text: str) -> datetime:
    month = _MONTH.match(text)
    if month:
        year = int(month.group(1))
        if year < 1970:
            raise PeriodError(f"period {text!r} is before 1970; use {_ACCEPTED}")
        return datetime(year, int(month.group(2)), 1, tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as err:
        raise PeriodError(f"period {text!r} is not {_ACCEPTED}") from err
    # A start without an offset means UTC, the time zone every period is defined in. An offset
    # can carry a start at the calendar's edge past it (0001-01-01T00:00+23:59 is year 0 in UTC).
    try:
        start = as_utc(parsed)
    except OverflowError as err:
        raise PeriodError(f"period {text!r} is out of range in UTC; use {_ACCEPTED}") from err
    if start.year < 1970:
        raise PeriodError(f"period {text!r} is before 1970; use {_ACCEPTED}")
    return start


def _objectives(sla: SLA) -> Objectives:
    objectives = sla.spec.objectives
    return Objectives(
        availability_target_percent=objectives.availability.target_percent,
        ttft_threshold_ms=objectives.ttft.threshold_ms,
        ttft_target_percent=objectives.ttft.target_percent,
        tpot_threshold_ms=objectives.tpot.threshold_ms,
        tpot_target_percent=objectives.tpot.target_percent,
    )


def _tiers(schedule: list[CreditTier]) -> list[CreditTierOut]:
    return [
        CreditTierOut(below_percent=t.below_percent, credit_percent=t.credit_percent)
        for t in schedule
    ]


def _basis(
    sla: SLA, availability: float | None, ttft: float | None, tpot: float | None
) -> dict[str, object]:
    credits = sla.spec.credits
    latencies = [a for a in (ttft, tpot) if a is not None]
    return {
        "availability_percent": availability,
        "worse_latency_attainment_percent": min(latencies) if latencies else None,
        "availability_schedule": _tiers(credits.availability),
        "latency_schedule": _tiers(credits.latency),
        "cap_percent": credits.cap_percent,
    }


def current_report(sla: SLA, now: datetime, terms: PeriodTerms | None = None) -> PeriodReport:
    """The open period, from the SLA's status (numbers are null until the first evaluation), on
    the terms pinned for it when the SLA loop has pinned them (the price its charges accrue at)."""
    if terms is not None:
        sla = dataclasses.replace(sla, spec=terms.apply(sla.spec))
    status = sla.status.period
    fallback = current_period(sla.spec.objectives.window, now)
    start = _instant(status.start) if status and status.start else fallback.start
    end = _instant(status.end) if status and status.end else fallback.end
    availability = status.availability_percent if status else None
    ttft = status.ttft_attainment_percent if status else None
    tpot = status.tpot_attainment_percent if status else None
    price = exact_decimal(sla.spec.tokens.price_per_million_tokens)
    charges = money(status.charges) if status and status.charges is not None else None
    accrued = (
        money(status.credits_accrued) if status and status.credits_accrued is not None else None
    )
    percent: Decimal | None = None
    if charges is not None:
        percent = period_credit(
            charges=charges,
            availability=_dec(availability),
            ttft=_dec(ttft),
            tpot=_dec(tpot),
            schedule=sla.spec.credits,
        ).total_percent
    burn = dict(status.burn_rates) if status and status.burn_rates else {}
    return PeriodReport(
        namespace=sla.namespace,
        name=sla.name,
        uid=sla.uid,
        tenant=sla.tenant,
        period_start=start,
        period_end=end,
        state="Open",
        source="status",
        objectives=_objectives(sla),
        availability_percent=availability,
        ttft_attainment_percent=ttft,
        tpot_attainment_percent=tpot,
        coverage_percent=status.coverage_percent if status else None,
        judged_minutes=status.judged_minutes if status else None,
        excused_minutes=status.excused_minutes if status else None,
        budget_remaining_percent=status.budget_remaining_percent if status else None,
        burn_rates=burn,
        alerts=list(status.alerts) if status else [],
        tokens_used=status.tokens_used if status else None,
        price_per_million_tokens=price,
        price_version=None if terms is None else terms.price_version,
        currency=sla.spec.tokens.currency,
        charges_micros=to_micros(charges) if charges is not None else None,
        credit=CreditBasis(
            **_basis(sla, availability, ttft, tpot),
            charges=charges,
            credit_percent=percent,
            credit_amount=accrued,
            credit_micros=to_micros(accrued) if accrued is not None else None,
            credit_tokens=tokens_for_amount(accrued, price) if accrued is not None else None,
            penalty_micros=None,
        ),
        transfers=[],
        evaluated_at=status.evaluated_at if status else None,
    )


def period_transfers(ledger: Ledger, sla_uid: str, period: Period) -> list[TransferOut]:
    """The transfers of one SLA's period, in posting order."""
    return [
        TransferOut.model_validate(t, from_attributes=True)
        for t in ledger.period_transfers(sla_uid, period)
    ]


def settled_report(
    sla: SLA,
    settlement: Settlement,
    mine: list[TransferOut],
    terms: PeriodTerms | None = None,
) -> PeriodReport:
    """A closed period, from the ledger's settlement and the transfers it posted, at the price
    of the terms pinned for it (`terms`; the SLA's price now when none were pinned)."""
    price = (
        exact_decimal(sla.spec.tokens.price_per_million_tokens)
        if terms is None
        else terms.price_per_million_tokens
    )
    availability = settlement.availability_percent
    budget = (
        _derived_budget(sla, availability)
        if settlement.budget_remaining_percent is None
        else float(settlement.budget_remaining_percent)
    )
    return PeriodReport(
        namespace=sla.namespace,
        name=sla.name,
        uid=sla.uid,
        tenant=settlement.tenant,
        period_start=settlement.period.start,
        period_end=settlement.period.end,
        state="Settled" if settlement.state == "Settled" else "HeldForReview",
        source="ledger",
        attainment_exact=(
            None
            if settlement.ttft_exact is None or settlement.tpot_exact is None
            else settlement.ttft_exact and settlement.tpot_exact
        ),
        hold_reason=None if settlement.hold_reason is None else str(settlement.hold_reason),
        objectives=_objectives(sla),
        availability_percent=availability,
        ttft_attainment_percent=settlement.ttft_attainment_percent,
        tpot_attainment_percent=settlement.tpot_attainment_percent,
        coverage_percent=settlement.coverage_percent,
        judged_minutes=settlement.judged_minutes,
        excused_minutes=settlement.excused_minutes,
        budget_remaining_percent=budget,
        burn_rates={},
        alerts=[],
        tokens_used=settlement.tokens_used,
        price_per_million_tokens=price,
        price_version=settlement.price_version,
        currency=settlement.currency,
        charges_micros=settlement.charges_micros,
        credit=CreditBasis(
            **_basis(
                sla,
                availability,
                settlement.ttft_attainment_percent,
                settlement.tpot_attainment_percent,
            ),
            charges=from_micros(settlement.charges_micros),
            credit_percent=settlement.credit_percent,
            credit_amount=from_micros(settlement.credit_micros),
            credit_micros=settlement.credit_micros,
            credit_tokens=settlement.credit_tokens,
            penalty_micros=sum(t.amount for t in mine if t.kind == Kind.PENALTY),
        ),
        transfers=mine,
        evaluated_at=settlement.created_at.isoformat(),
    )


def _derived_budget(sla: SLA, availability: float | None) -> float | None:
    # A settlement stored before the ledger kept the budget it decided (migration 10) has none:
    # it is derived again from its availability and the SLA's target as it is now, which is not
    # the settled figure if the target was edited since (and differs from it by float rounding).
    if availability is None:
        return None
    target = sla.spec.objectives.availability.target_percent
    return float(
        budget_remaining_percent(
            bad=100.0 - availability, known=100.0, budget_fraction=error_budget(target)
        )
    )


def _dec(value: float | None) -> Decimal | None:
    return None if value is None else Decimal(repr(value))


def _instant(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
