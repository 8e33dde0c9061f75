"""An offer's service hours: the local hours of the week its SLAs' availability objective counts.

Which UTC minutes those hours cover, daylight-saving changes included, is
`aiconn.sla.servicehours.service_minutes`; this is the shape the provider writes. Hours that cross
midnight are written as two days' hours, which the model refuses to guess.
"""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from aiconn.resources.v1alpha1.meta import CamelModel, cel, once_each, validations, with_rules

Weekday = Literal["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
WEEKDAYS: tuple[Weekday, ...] = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
CLOCK_PATTERN = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"


class ServiceHours(CamelModel):
    """Local hours of the week the availability objective counts; minutes outside are not judged."""

    model_config = with_rules(
        # Zero-padded HH:MM strings order as the times they spell.
        cel("self.start < self.end", "serviceHours.start must be before end", ".end"),
    )
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
