"""SLA periods: which stretch of time an objective is judged and settled over.

Money moves per period, so every component must agree on where a period starts and ends. All
periods are in UTC and half-open, [start, end). Calendar-aligned periods start at fixed boundaries
(so two operators, or one operator before and after a restart, compute the same period); rolling
periods end at the current minute and are reported, never settled.

Durations use OpenSLO's shorthand, where `m` is minutes and `M` is calendar months.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from aiconn.resources.v1alpha1.sla import DURATION_PATTERN, Window
from aiconn.sla.timestamps import iso_z

Unit = Literal["m", "h", "d", "w", "M"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# 1970-01-01 was a Thursday; weeks are counted from the first Monday after the epoch.
FIRST_MONDAY = datetime(1970, 1, 5, tzinfo=UTC)
_UNIT_SECONDS: dict[str, int] = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_UNITS: dict[str, Unit] = {"m": "m", "h": "h", "d": "d", "w": "w", "M": "M"}
_DURATION = re.compile(DURATION_PATTERN)


@dataclass(frozen=True)
class Duration:
    """A parsed OpenSLO duration such as `5m` or `1M`."""

    count: int
    unit: Unit

    def __str__(self) -> str:
        return f"{self.count}{self.unit}"


@dataclass(frozen=True)
class Period:
    """A half-open stretch of UTC time, [start, end)."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        _require_utc(self.start, "start")
        _require_utc(self.end, "end")
        if self.end <= self.start:
            raise ValueError(f"period end {self.end.isoformat()} must be after start {self.start}")

    @property
    def minutes(self) -> int:
        """Whole 1-minute slices in the period (a partial last minute is not a slice)."""
        return int((self.end - self.start).total_seconds()) // 60

    def contains(self, t: datetime) -> bool:
        """Whether `t` lies in [start, end)."""
        return self.start <= t < self.end

    @property
    def start_iso(self) -> str:
        """Start as RFC 3339 with a `Z`, the spelling used in ledger keys and status."""
        return iso_z(self.start)

    @property
    def end_iso(self) -> str:
        """End as RFC 3339 with a `Z`."""
        return iso_z(self.end)


def parse_duration(text: str) -> Duration:
    """Parse `<n><unit>`; the error names the value and what would be accepted."""
    if not _DURATION.match(text):
        raise ValueError(
            f"window duration {text!r} is not an OpenSLO duration:"
            " use 1-9999 followed by m (minutes), h, d, w or M (calendar months), e.g. 1M or 28d"
        )
    return Duration(count=int(text[:-1]), unit=_UNITS[text[-1]])


def period_containing(window: Window, t: datetime) -> Period:
    """The calendar-aligned period of `window` that contains `t`.

    m/h/d periods are multiples of their length since the Unix epoch, w periods start on a Monday
    (multiples of n weeks since 1970-01-05) and M periods start on the first of a month (multiples
    of n months since January 1970, so 3M gives calendar quarters).
    """
    _require_utc(t, "t")
    duration = parse_duration(window.duration)
    if duration.unit == "M":
        index = (t.year - 1970) * 12 + (t.month - 1)
        first = index - index % duration.count
        return Period(start=_month_start(first), end=_month_start(first + duration.count))
    length = _UNIT_SECONDS[duration.unit] * duration.count
    origin = FIRST_MONDAY if duration.unit == "w" else EPOCH
    offset = (t - origin) // timedelta(seconds=length)
    start = origin + timedelta(seconds=offset * length)
    return Period(start=start, end=start + timedelta(seconds=length))


def previous_period(window: Window, t: datetime) -> Period:
    """The calendar-aligned period just before the one containing `t`: the one to settle."""
    current = period_containing(window, t)
    return period_containing(window, current.start - timedelta(microseconds=1))


def rolling_period(window: Window, now: datetime) -> Period:
    """The rolling period ending at the start of `now`'s minute.

    The minute in progress is left out because a 1-minute slice is judged only once complete.
    """
    end = floor_minute(now)
    duration = parse_duration(window.duration)
    if duration.unit == "M":
        index = (end.year - 1970) * 12 + (end.month - 1) - duration.count
        year, month = divmod(index, 12)
        # Clamp the day: a month back from 31 March is the end of February.
        day = min(end.day, _days_in_month(1970 + year, month + 1))
        start = end.replace(year=1970 + year, month=month + 1, day=day)
    else:
        start = end - timedelta(seconds=_UNIT_SECONDS[duration.unit] * duration.count)
    return Period(start=start, end=end)


def current_period(window: Window, now: datetime) -> Period:
    """The period `now` is evaluated in: calendar-aligned or rolling, as the window says."""
    if window.calendar_aligned:
        return period_containing(window, now)
    return rolling_period(window, now)


def elapsed_minutes(period: Period, now: datetime) -> int:
    """Complete minutes of `period` before `now` (0 before it starts, all after it ends)."""
    _require_utc(now, "now")
    clamped = min(max(now, period.start), period.end)
    return int((clamped - period.start).total_seconds()) // 60


def floor_minute(t: datetime) -> datetime:
    """`t` with seconds and microseconds dropped."""
    _require_utc(t, "t")
    return t.replace(second=0, microsecond=0)


def ceil_minute(t: datetime) -> datetime:
    """The first whole minute that starts at or after `t`."""
    floor = floor_minute(t)
    return floor if floor == t else floor + timedelta(minutes=1)


def _month_start(index: int) -> datetime:
    year, month = divmod(index, 12)
    return datetime(1970 + year, month + 1, 1, tzinfo=UTC)


def _days_in_month(year: int, month: int) -> int:
    nxt = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return (nxt - timedelta(days=1)).day


def _require_utc(t: datetime, name: str) -> None:
    # A naive datetime is a local-time bug waiting to shift a settlement by hours.
    if t.tzinfo is None or t.utcoffset() != timedelta(0):
        raise ValueError(f"{name} must be a timezone-aware UTC datetime, got {t!r}")
