"""The contracted rate: requests per second and tokens per minute.

Both limits are checked before a request is forwarded; beyond them the gateway answers 429 and the
request is outside the SLA (outcome `over_contract`). Requests per second is a token bucket whose
burst is one second's worth (at least one request). Tokens per minute are reserved: a request is
admitted only when the most it can spend fits in the sliding one-minute window (kept as
per-second slots) next to what the last minute spent and what requests in flight reserved; when it
ends, its slot is settled to the tokens it actually spent, so the limit is never exceeded.

Time is passed in (`now`, monotonic seconds), so the arithmetic is tested without sleeping.
The limits are per gateway, that is per replica.
"""

from __future__ import annotations

import math
from collections import deque

WINDOW_SECONDS = 60


def retry_after_header(seconds: float) -> str:
    """A `Retry-After` value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


class TokenBucket:
    """Admits `rate` requests per second on average, up to `burst` at once."""

    def __init__(self, *, rate: float, now: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0 requests per second, got {rate}")
        self._rate = rate
        self._burst = max(1.0, rate) if burst is None else burst
        self._level = self._burst
        self._updated = now

    def take(self, now: float) -> float:
        """Take one request; 0.0 when admitted, else the seconds until one would be."""
        self._level = min(self._burst, self._level + (now - self._updated) * self._rate)
        self._updated = now
        if self._level >= 1.0:
            self._level -= 1.0
            return 0.0
        return (1.0 - self._level) / self._rate


class MinuteWindow:
    """Tokens metered in the last minute, in one-second slots."""

    def __init__(self, *, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1 token per minute, got {limit}")
        self._limit = limit
        self._slots: deque[list[int]] = deque()
        self._total = 0

    @property
    def used(self) -> int:
        return self._total

    def record(self, tokens: int, now: float) -> int:
        """Count tokens at `now` (a reservation or metered usage); returns the slot's second."""
        second = int(now)
        self._expire(second)
        if self._slots and self._slots[-1][0] == second:
            self._slots[-1][1] += tokens
        else:
            self._slots.append([second, tokens])
        self._total += tokens
        return second

    def adjust(self, second: int, delta: int) -> None:
        """Settle a reservation made in slot `second` by `delta` tokens (nothing once expired)."""
        for slot in self._slots:
            if slot[0] == second:
                slot[1] += delta
                self._total += delta
                return

    def retry_after(self, now: float, tokens: int = 1) -> float:
        """0.0 while `tokens` more fit under the limit, else the seconds until they would.

        `tokens` must not exceed the limit: such a request never fits (see `fits_ever`).
        """
        self._expire(int(now))
        if self._total + tokens <= self._limit:
            return 0.0
        left = self._total
        for second, spent in self._slots:
            left -= spent
            if left + tokens <= self._limit:
                return max(second + WINDOW_SECONDS - now, 0.001)
        raise AssertionError("unreachable: tokens above the limit were asked for")

    def fits_ever(self, tokens: int) -> bool:
        """Whether `tokens` fit in an empty window."""
        return tokens <= self._limit

    def _expire(self, second: int) -> None:
        while self._slots and self._slots[0][0] <= second - WINDOW_SECONDS:
            self._total -= self._slots.popleft()[1]
