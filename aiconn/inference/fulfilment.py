"""Per objective, the assurance goal and its observed and predicted fulfilment (TS 28.536).

The observed figure is the period so far as the SLA engine measured it (`status.period`); the
predicted one is the `aiconn.inference.stakes` forecast, the period's end if the current rates
continue. A rolling window has no end: its prediction is the current rate held for one window.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from aiconn.inference.stakes import Forecast, PeriodReading
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec, Window
from aiconn.sla.burnwindows import shortest_burn_rate
from aiconn.sla.credits import money
from aiconn.sla.periods import current_period


def horizon(window: Window, now: datetime) -> tuple[Decimal, float]:
    """(share of the period elapsed, seconds left in it); a rolling window: (0, its length)."""
    period = current_period(window, now)
    length = (period.end - period.start).total_seconds()
    if not window.calendar_aligned:
        return Decimal(0), length
    done = (now - period.start).total_seconds()
    return Decimal(repr(done)) / Decimal(repr(length)), (period.end - now).total_seconds()


def reading(spec: AIInferenceSLASpec, period: Mapping[str, Any], now: datetime) -> PeriodReading:
    """The forecast's input from `status.period`; the short-window burn is its shortest window's
    (5 minutes for a monthly SLA)."""
    elapsed, _ = horizon(spec.objectives.window, now)
    return PeriodReading(
        elapsed_fraction=elapsed,
        charges=money(period.get("charges") or 0),
        availability_percent=period.get("availabilityPercent"),
        ttft_percent=period.get("ttftAttainmentPercent"),
        tpot_percent=period.get("tpotAttainmentPercent"),
        burn_rate=shortest_burn_rate(period.get("burnRates") or {}),
    )


def objectives(
    spec: AIInferenceSLASpec, observed: PeriodReading, predicted: Forecast
) -> list[dict[str, Any]]:
    """`status.assurance.objectives`: goal, observed, predicted and whether it is on course."""
    goals = spec.objectives
    rows = [
        (
            "availability",
            goals.availability.target_percent,
            observed.availability_percent,
            predicted.availability_percent,
        ),
        ("ttft", goals.ttft.target_percent, observed.ttft_percent, predicted.ttft_percent),
        ("tpot", goals.tpot.target_percent, observed.tpot_percent, predicted.tpot_percent),
    ]
    return [
        {
            "objective": name,
            "goalPercent": goal,
            "observedPercent": seen,
            "predictedPercent": None if ahead is None else round(float(ahead), 4),
            "fulfilled": None if ahead is None else ahead >= Decimal(repr(goal)),
        }
        for name, goal, seen, ahead in rows
    ]
