"""Decide with money: what an action's capacity costs against the credit the SLA pays if the
current burn continues.

Both sides are exact decimals over the same horizon, the rest of the period:

- the forecast carries each objective forward: the period so far, as measured, plus the rest of
  it at the current rate. For availability the current rate is the short-window burn (attainment
  100 - (100 - target) x burn), for latency the short-window attainment; without a current rate
  the period so far is carried forward unchanged. The expected credit is the SLA's own credit
  schedule (`aiconn.sla.credits.period_credit`) applied to the forecast and to the charges
  projected to the period's end;
- the capacity cost is the tier's price per million tokens for the tokens the action's replicas
  can serve until the period ends (`ReplicaThroughput.replica_tokens_per_second`): the
  provider's cost of holding that capacity.

An action that only protects the margin (scaling out on a burn) is taken when the expected credit
is at least the cost; paying the credit is otherwise cheaper, and the decision says so. An action
that restores service (placing, failing over) is always taken: the contract is to serve, and the
credit is a floor under a broken promise, not a price for breaking it. Failing back to the home
site is taken for its own reason (the site is stable again); its numbers are recorded all the
same. The comparison assumes acting stops the burn; it does not count the revenue of the tokens
the added capacity serves.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec
from aiconn.sla.credits import TOKENS_PER_PRICE_UNIT, money, period_credit

HUNDRED = Decimal(100)


@dataclass(frozen=True)
class PeriodReading:
    """The period as measured so far (`status.period`) and the short-window rates."""

    elapsed_fraction: Decimal
    """Share of the period elapsed, 0 to 1."""
    charges: Decimal
    """Token charges so far."""
    availability_percent: float | None = None
    ttft_percent: float | None = None
    tpot_percent: float | None = None
    burn_rate: float | None = None
    """Short-window availability burn rate (1 = on budget)."""
    short_ttft_percent: float | None = None
    """Short-window TTFT attainment."""
    short_tpot_percent: float | None = None
    """Short-window TPOT attainment."""


@dataclass(frozen=True)
class Forecast:
    """Each objective at the period's end if the current rates continue, and what it pays."""

    availability_percent: Decimal | None
    ttft_percent: Decimal | None
    tpot_percent: Decimal | None
    charges: Decimal
    """Charges projected to the period's end at the rate so far."""
    credit: Decimal
    """The credit the forecast earns under the SLA's schedule."""


@dataclass(frozen=True)
class Weighing:
    """An action's decision and the two numbers it weighed."""

    act: bool
    capacity_cost: Decimal
    expected_credit: Decimal
    currency: str
    reason: str

    @property
    def amounts(self) -> str:
        """Both numbers in words."""
        return (
            f"capacity {self.capacity_cost} {self.currency}, "
            f"expected credit {self.expected_credit} {self.currency}"
        )


def forecast(spec: AIInferenceSLASpec, reading: PeriodReading) -> Forecast:
    """The period's end if the current rates continue (see the module docstring)."""
    done = min(max(reading.elapsed_fraction, Decimal(0)), Decimal(1))
    target = _dec(spec.objectives.availability.target_percent)
    now_availability = (
        None
        if reading.burn_rate is None
        else max(Decimal(0), HUNDRED - (HUNDRED - target) * _dec(reading.burn_rate))
    )
    availability = _carry(reading.availability_percent, now_availability, done)
    ttft = _carry(reading.ttft_percent, _opt(reading.short_ttft_percent), done)
    tpot = _carry(reading.tpot_percent, _opt(reading.short_tpot_percent), done)
    charges = money(reading.charges / done) if done > 0 else money(reading.charges)
    credit = period_credit(
        charges=charges,
        availability=availability,
        ttft=ttft,
        tpot=tpot,
        schedule=spec.credits,
    ).amount
    return Forecast(availability, ttft, tpot, charges, credit)


def capacity_cost(
    *,
    replicas: int,
    replica_tokens_per_second: float,
    price_per_million_tokens: float,
    seconds: float,
) -> Decimal:
    """The tier's price for the tokens `replicas` replicas can serve in `seconds`."""
    tokens = Decimal(replicas) * _dec(replica_tokens_per_second) * _dec(max(seconds, 0.0))
    return money(tokens * _dec(price_per_million_tokens) / TOKENS_PER_PRICE_UNIT)


def weigh(
    *, cost: Decimal, expected_credit: Decimal, restores_service: bool, currency: str
) -> Weighing:
    """Act or hold, with the reason in words (see the module docstring)."""
    if restores_service:
        act, why = True, "restores service"
    elif expected_credit >= cost:
        act, why = True, "the credit at stake covers it"
    else:
        act, why = False, "paying the credit is cheaper"
    weighed = Weighing(act, cost, expected_credit, currency, "")
    return replace(weighed, reason=f"{why} ({weighed.amounts})")


def _carry(observed: float | None, current: Decimal | None, done: Decimal) -> Decimal | None:
    if observed is None:
        return current
    if current is None:
        return _dec(observed)
    return done * _dec(observed) + (1 - done) * current


def _opt(value: float | None) -> Decimal | None:
    return None if value is None else _dec(value)


def _dec(value: float | int) -> Decimal:
    # repr is the shortest string that round-trips: 99.9 is Decimal("99.9"), not its binary value.
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
