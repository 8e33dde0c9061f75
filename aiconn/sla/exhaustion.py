"""When a tenant's tokens run out at the rate it is spending them: the burn and the exhaustion date
that tenant reports and the NOC show.

Method (exact: integers and `Decimal`, no float on the way):

- The recent burn is measured on the periods still open, the usage the SLA engine records each
  pass (`Ledger.open_usage`): each SLA's tokens since its period began over the time from the
  period's start to that reading (an SLA created mid-period is averaged from the period's start,
  which understates its rate until its next period). The tenant's burn is the sum over its SLAs,
  in tokens per second; shown per day (x 86,400). Divisions carry `Decimal`'s 28 significant
  digits, far below a token.
- The balance is what the gateway enforces, `Ledger.available_tokens` (posted wallet balance
  minus usage not yet settled), as of the newest reading.
- Exhaustion is `as_of + available / burn`, truncated to the whole second (never later than the
  exact instant). With no burn it is None (never at this rate); with nothing available it is
  `as_of` (already exhausted).

A period that just began gives a short window and a noisy rate; readings younger than
`MIN_WINDOW` are left out of the rate for that reason (their tokens still count in the balance).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal

SECONDS_PER_DAY = 86_400
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
    burn_tokens_per_second: Decimal
    as_of: datetime | None
    """The newest reading the burn was measured to (None: no open usage)."""
    exhausts_at: datetime | None
    """None: nothing burning (or nothing measured): the balance never runs out at this rate."""

    @property
    def burn_tokens_per_day(self) -> Decimal:
        """The burn per day, exact."""
        return self.burn_tokens_per_second * SECONDS_PER_DAY


def burn_rate(usage: Sequence[OpenUsage]) -> Decimal:
    """Tokens per second over the readings' windows, summed over SLAs (module doc)."""
    total = Decimal(0)
    for reading in usage:
        window = reading.until - reading.since
        if window < MIN_WINDOW or reading.tokens <= 0:
            continue
        total += Decimal(reading.tokens) / _seconds(window)
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
        seconds = (Decimal(available_tokens) / rate).to_integral_value(rounding=ROUND_FLOOR)
        exhausts = as_of + timedelta(seconds=int(seconds))
    return Projection(
        available_tokens=available_tokens,
        burn_tokens_per_second=rate,
        as_of=as_of,
        exhausts_at=exhausts,
    )


def _seconds(window: timedelta) -> Decimal:
    # timedelta's days, seconds and microseconds are integers: exact.
    return Decimal(window.days * SECONDS_PER_DAY + window.seconds) + Decimal(
        window.microseconds
    ) / Decimal(1_000_000)
