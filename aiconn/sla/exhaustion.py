"""When a tenant's tokens run out at the rate it is spending them: the burn and the exhaustion date
that tenant reports and the NOC show.

Method (exact: integers and fractions, no float on the way; `Decimal` only to show the burn):

- The recent burn is measured on the periods still open, the usage the SLA engine records each
  pass (`Ledger.open_usage`): each SLA's tokens since its period began over the time from the
  period's start to that reading (an SLA created mid-period is averaged from the period's start,
  which understates its rate until its next period). The tenant's burn is the sum over its SLAs,
  a fraction of tokens per microsecond (`timedelta` counts whole microseconds), shown per day
  rounded half-even to 0.001 token.
- The balance is what the gateway enforces, `Ledger.available_tokens` (posted wallet balance
  minus usage not yet settled), as of the newest reading.
- Exhaustion is `as_of + available / burn`, computed exactly and truncated to the whole second
  (never later than the exact instant). With no burn it is None (never at this rate); with
  nothing available it is `as_of` (already exhausted).

A period that just began gives a short window and a noisy rate; readings younger than
`MIN_WINDOW` are left out of the rate for that reason (their tokens still count in the balance).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

MICROSECONDS_PER_DAY = 86_400_000_000
BURN_QUANTUM = Decimal("0.001")
MIN_WINDOW = timedelta(minutes=5)


@dataclass(frozen=True)
class OpenUsage:
    """Tokens one SLA metered from `since` until `until` in a period not yet settled."""

    tokens: int
    since: datetime
    until: datetime


@dataclass(frozen=True)
class Projection:
    """A tenant's balance, recent burn and the date its tokens run out at that burn."""

    available_tokens: int
    burn: Fraction
    """Tokens per microsecond, exact."""
    as_of: datetime | None
    """The newest reading the burn was measured to (None: no open usage)."""
    exhausts_at: datetime | None
    """None: nothing burning (or nothing measured): the balance never runs out at this rate."""

    @property
    def burn_tokens_per_day(self) -> Decimal:
        """The burn per day, rounded half-even to 0.001 token."""
        per_day = self.burn * MICROSECONDS_PER_DAY
        exact = Decimal(per_day.numerator) / Decimal(per_day.denominator)
        return exact.quantize(BURN_QUANTUM, rounding=ROUND_HALF_EVEN)


def burn_rate(usage: Sequence[OpenUsage]) -> Fraction:
    """Tokens per microsecond over the readings' windows, summed over SLAs (module doc)."""
    total = Fraction(0)
    for reading in usage:
        window = reading.until - reading.since
        if window < MIN_WINDOW or reading.tokens <= 0:
            continue
        total += Fraction(reading.tokens, _microseconds(window))
    return total


def project(available_tokens: int, usage: Sequence[OpenUsage]) -> Projection:
    """The projection for a tenant with `available_tokens` and these open-period readings."""
    rate = burn_rate(usage)
    as_of = max((u.until for u in usage), default=None)
    if as_of is None or rate == 0:
        exhausts = None
    elif available_tokens <= 0:
        exhausts = as_of
    else:
        microseconds = Fraction(available_tokens) / rate
        exhausts = as_of + timedelta(seconds=int(microseconds // 1_000_000))
    return Projection(
        available_tokens=available_tokens,
        burn=rate,
        as_of=as_of,
        exhausts_at=exhausts,
    )


def _microseconds(window: timedelta) -> int:
    # timedelta's days, seconds and microseconds are integers: exact.
    return (window.days * 86_400 + window.seconds) * 1_000_000 + window.microseconds
