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
Hours that cross midnight are written as two days' hours, which the model refuses to guess.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from aiconn.crd import CamelModel, cel, once_each, validations

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

Weekday = Literal["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
WEEKDAYS: tuple[Weekday, ...] = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
CLOCK_PATTERN = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"


class ServiceHours(CamelModel):
    """Local hours of the week the availability objective counts; minutes outside are not judged."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": validations(
            # Zero-padded HH:MM strings order as the times they spell.
            cel("self.start < self.end", "serviceHours.start must be before end", ".end"),
        )
    }
    time_zone: str = Field(
        min_length=1, max_length=64, pattern=r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$"
    )
    """IANA time zone the hours are local to, e.g. Europe/Berlin; daylight-saving changes follow the time-zone database."""
    days: list[Weekday] = Field(
        min_length=1,
        max_length=7,
        json_schema_extra=validations(once_each("days must not repeat a day")),
    )
    """Days of the week with service hours: Mon, Tue, Wed, Thu, Fri, Sat, Sun."""
    start: str = Field(pattern=CLOCK_PATTERN, max_length=5)
    """Local opening time, HH:MM (24-hour clock)."""
    end: str = Field(pattern=CLOCK_PATTERN, max_length=5)
    """Local closing time, HH:MM, after start; 24:00 is midnight at the end of the day. Hours across midnight are not supported."""

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        # The CRD can only check the spelling; the operator knows the time-zone database.
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(
                f"timeZone {value!r} is not an IANA time zone (e.g. Europe/Berlin)"
            ) from err
        return value

    def __str__(self) -> str:
        return f"{','.join(self.days)} {self.start}-{self.end} {self.time_zone}"


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
