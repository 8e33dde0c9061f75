"""Money: token charges and the credits an SLA pays back when a period misses its objectives.

Money is `decimal.Decimal`, rounded half-even to 6 decimals (one micro-unit of the currency), and
the ledger stores it as integer micro-units: binary floats cannot say 0.1 EUR, and a ledger that
drifts by a rounding error per transfer fails its own invariant. Attainments are compared as
decimals too, so "exactly 99.9 %" is exactly 99.9 and earns no credit under a `< 99.9` tier.

Credit tiers are half-open: attainment strictly below `belowPercent` earns `creditPercent`. Of the
tiers that match, the one with the largest credit applies (the lowest threshold crossed). The
latency schedule applies to the worse of TTFT and TPOT; the availability and latency credits add up
and the total is capped at `capPercent` of the period's charges.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

from aiconn.resources.v1alpha1.sla import CreditsSpec, CreditTier

MICRO = Decimal("0.000001")
MICROS_PER_UNIT = 1_000_000
TOKENS_PER_PRICE_UNIT = Decimal(1_000_000)
HUNDRED = Decimal(100)


@dataclass(frozen=True)
class CreditBreakdown:
    """A period's credit: the percentages that applied and the amount paid back."""

    availability_percent: Decimal
    """Credit percent from the availability schedule."""
    latency_percent: Decimal
    """Credit percent from the latency schedule (worse of TTFT and TPOT)."""
    total_percent: Decimal
    """Sum of both, capped at capPercent."""
    amount: Decimal
    """total_percent of the charges, in currency, rounded to micro-units."""


def money(value: Decimal | float | int | str) -> Decimal:
    """A currency amount rounded half-even to 6 decimals; floats go through their repr."""
    return exact_decimal(value).quantize(MICRO, rounding=ROUND_HALF_EVEN)


def to_micros(amount: Decimal) -> int:
    """Integer micro-units of currency, as the ledger stores them."""
    return int(money(amount) * MICROS_PER_UNIT)


def from_micros(micros: int) -> Decimal:
    """Currency from integer micro-units."""
    return money(Decimal(micros) / MICROS_PER_UNIT)


def usage_charge(tokens: int, price_per_million_tokens: Decimal | float) -> Decimal:
    """Charge for `tokens` at the SLA's price per million tokens."""
    if tokens < 0:
        raise ValueError(f"tokens must be >= 0, got {tokens}")
    return money(Decimal(tokens) * exact_decimal(price_per_million_tokens) / TOKENS_PER_PRICE_UNIT)


def tokens_for_amount(amount: Decimal, price_per_million_tokens: Decimal | float) -> int:
    """Whole tokens worth `amount` at the SLA price, rounded half-even; 0 when tokens are free.

    Credits are paid back in tokens; converting the money back at the price the tenant paid keeps
    a credit worth exactly what the schedule says, to the token.
    """
    price = exact_decimal(price_per_million_tokens)
    if price <= 0:
        return 0
    return int((amount * TOKENS_PER_PRICE_UNIT / price).to_integral_value(ROUND_HALF_EVEN))


def attainment_percent(good: float | int, total: float | int) -> Decimal | None:
    """100 x good / total as a decimal, None when there was nothing to count."""
    if total <= 0:
        return None
    with localcontext() as ctx:
        ctx.prec = 34
        return Decimal(good) * HUNDRED / Decimal(total)


def tier_credit(attainment: Decimal | None, schedule: Sequence[CreditTier]) -> Decimal:
    """Credit percent of the largest matching half-open tier; 0 when none matches or unmeasured."""
    if attainment is None:
        return Decimal(0)
    matching = [
        exact_decimal(tier.credit_percent)
        for tier in schedule
        if attainment < exact_decimal(tier.below_percent)
    ]
    return max(matching, default=Decimal(0))


def period_credit(
    *,
    charges: Decimal,
    availability: Decimal | None,
    ttft: Decimal | None,
    tpot: Decimal | None,
    schedule: CreditsSpec,
) -> CreditBreakdown:
    """The credit a period earns: both schedules, added, capped, applied to the charges."""
    measured = [a for a in (ttft, tpot) if a is not None]
    worse_latency = min(measured) if measured else None
    avail = tier_credit(availability, schedule.availability)
    latency = tier_credit(worse_latency, schedule.latency)
    total = min(avail + latency, exact_decimal(schedule.cap_percent))
    return CreditBreakdown(
        availability_percent=avail,
        latency_percent=latency,
        total_percent=total,
        amount=money(charges * total / HUNDRED),
    )


def exact_decimal(value: Decimal | float | int | str) -> Decimal:
    """The decimal a number was written as, unrounded: a price of 0.0000015 per million tokens
    stays 0.0000015 (rounding it to micro-units first would make it 0.000002, a third more)."""
    # repr of a float is the shortest string that round-trips: 99.9 becomes Decimal("99.9"),
    # not 99.900000000000005684...
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(value)
