"""Service hours: the local hours of the week an availability objective counts.

Operator SLAs often promise availability "during business hours (Mon-Fri 08:00-18:00 local
time)". The hours are local to an IANA time zone, so their position in UTC moves twice a year:
08:00 in Berlin is 07:00 UTC in winter and 06:00 UTC in summer. Periods and minutes stay in UTC
(`aiconn.sla.periods`); this module only says which UTC minutes begin inside service hours,
converting each local day's opening and closing through `zoneinfo`, so a day of 23 or 25 hours
is handled by the time-zone database, not by a fixed offset. Minutes outside are not judged:
neither good, bad, unknown nor excused, and they are not in the coverage denominator.

A local time that does not exist (skipped by a spring-forward change) is read with the offset
before the change, as `zoneinfo` does for fold 0; one that exists twice is its first occurrence.
Hours that cross midnight are written as two days' hours, which the model
(`aiconn.resources.v1alpha1.servicehours`) refuses to guess.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from aiconn.resources.v1alpha1.servicehours import WEEKDAYS, ServiceHours

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray


def service_minutes(hours: ServiceHours, *, start: datetime, minutes: int) -> NDArray[np.bool_]:
    """For each minute [start + j, start + j + 1), whether it begins inside service hours.

    `start` is a whole UTC minute. Each local day that could overlap the span is opened and
    closed in its own zone offset, so the mask is right on both sides of a DST change.
    """
    if start.utcoffset() != timedelta(0) or start.second or start.microsecond:
        raise ValueError(f"start must be a whole minute in UTC, got {start!r}")
    import numpy as np  # here, not at the top: the offer model (and the operator) need no numpy

    mask = np.zeros(minutes, dtype=np.bool_)
    zone = ZoneInfo(hours.time_zone)
    open_at, close_at = _clock(hours.start), _clock(hours.end)
    days = {WEEKDAYS.index(d) for d in hours.days}
    end = start + timedelta(minutes=minutes)
    # One local day before and after: a zone's local date differs from UTC's by up to a day.
    day = start.astimezone(zone).date() - timedelta(days=1)
    last = end.astimezone(zone).date() + timedelta(days=1)
    while day <= last:
        if day.weekday() in days:
            opens = _utc(day, open_at, zone)
            closes = _utc(day, close_at, zone)
            first = _minute_index(opens, start)
            stop = _minute_index(closes, start)
            mask[max(first, 0) : max(min(stop, minutes), 0)] = True
        day += timedelta(days=1)
    return mask


def _clock(text: str) -> timedelta:
    hour, minute = (int(part) for part in text.split(":"))
    return timedelta(hours=hour, minutes=minute)


def _utc(day: date, clock: timedelta, zone: ZoneInfo) -> datetime:
    """The UTC instant of local `day` at `clock` (24:00 is the next day's midnight)."""
    whole_days, rest = divmod(clock, timedelta(days=1))
    local = datetime.combine(day + timedelta(days=whole_days), time(), tzinfo=zone) + rest
    # Wall-clock arithmetic on an aware datetime keeps the zone; the offset is the local one.
    return local.astimezone(UTC)


def _minute_index(t: datetime, start: datetime) -> int:
    """Index of the first minute that begins at or after `t`."""
    seconds = (t - start).total_seconds()
    return int(-(-seconds // 60))
