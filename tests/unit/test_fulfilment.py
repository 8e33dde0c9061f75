"""Per-objective fulfilment: goal, observed from status.period, predicted by the forecast."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from aiconn.inference.fulfilment import horizon, objectives, reading
from aiconn.inference.stakes import forecast
from aiconn.resources.v1alpha1.sla import Window
from tests.factories import small_sla_spec

SPEC = small_sla_spec(objectives={"window": {"duration": "30d", "calendarAligned": True}})


def test_the_horizon_of_a_calendar_period_and_of_a_rolling_window() -> None:
    # A calendar month: 1 December 00:00 + 15.5 days of 31.
    now = datetime(2026, 12, 16, 12, 0, tzinfo=UTC)
    done, left = horizon(Window(duration="1M"), now)
    assert done == Decimal(15.5 * 86400) / Decimal(31 * 86400)
    assert left == 15.5 * 86400
    assert horizon(Window(duration="1h", calendarAligned=False), now) == (Decimal(0), 3600.0)


def test_objectives_carry_goal_observed_and_predicted() -> None:
    now = datetime(2026, 12, 2, 0, 0, tzinfo=UTC)
    period = {
        "availabilityPercent": 99.95,
        "ttftAttainmentPercent": 98.0,
        "charges": 12.5,
        "burnRates": {"w5m": 20.0},
    }
    observed = reading(SPEC, period, now)
    assert observed.burn_rate == 20.0
    assert observed.charges == Decimal("12.500000")
    rows = {row["objective"]: row for row in objectives(SPEC, observed, forecast(SPEC, observed))}
    availability = rows["availability"]
    assert availability["goalPercent"] == 99.9
    assert availability["observedPercent"] == 99.95
    # A burn of 20 is 98 % for most of the period: off course.
    assert availability["predictedPercent"] < 99.9
    assert availability["fulfilled"] is False
    assert rows["ttft"] == {
        "objective": "ttft",
        "goalPercent": 99.0,
        "observedPercent": 98.0,
        "predictedPercent": 98.0,
        "fulfilled": False,
    }
    assert rows["tpot"]["predictedPercent"] is None
    assert rows["tpot"]["fulfilled"] is None
