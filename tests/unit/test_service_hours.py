"""Service hours in an IANA time zone: which UTC minutes are judged, across DST changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from pydantic import ValidationError

from aiconn.resources.v1alpha1.servicehours import ServiceHours
from aiconn.sla.servicehours import service_minutes

BERLIN_BUSINESS = ServiceHours(
    time_zone="Europe/Berlin", days=["Mon", "Tue", "Wed", "Thu", "Fri"], start="08:00", end="18:00"
)


def judged_spans(hours: ServiceHours, start: datetime, minutes: int) -> list[tuple[str, str]]:
    """The judged stretches as (first minute, end) in UTC, for readable assertions."""
    mask = service_minutes(hours, start=start, minutes=minutes)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    return [
        (
            f"{start + timedelta(minutes=int(a)):%a %d %H:%M}",
            f"{start + timedelta(minutes=int(b)):%a %d %H:%M}",
        )
        for a, b in zip(edges[::2], edges[1::2], strict=True)
    ]


def test_berlin_business_hours_move_an_hour_in_utc_across_the_spring_change() -> None:
    # DST starts on Sunday 29 March 2026: Friday 27 is CET (UTC+1), Monday 30 CEST (UTC+2).
    start = datetime(2026, 3, 27, tzinfo=UTC)
    assert judged_spans(BERLIN_BUSINESS, start, 4 * 1440) == [
        ("Fri 27 07:00", "Fri 27 17:00"),
        ("Mon 30 06:00", "Mon 30 16:00"),
    ]


def test_a_day_of_25_hours_counts_25_hours_of_an_all_day_service() -> None:
    # New York falls back on Sunday 1 November 2026: that local day has 25 hours.
    all_day = ServiceHours(time_zone="America/New_York", days=["Sun"], start="00:00", end="24:00")
    start = datetime(2026, 11, 1, tzinfo=UTC)
    mask = service_minutes(all_day, start=start, minutes=3 * 1440)
    assert int(mask.sum()) == 25 * 60
    # Local midnight is 04:00 UTC (EDT); the next midnight 05:00 UTC the next day (EST).
    assert judged_spans(all_day, start, 3 * 1440) == [("Sun 01 04:00", "Mon 02 05:00")]


def test_a_day_of_23_hours_counts_23() -> None:
    all_day = ServiceHours(time_zone="Europe/Berlin", days=["Sun"], start="00:00", end="24:00")
    mask = service_minutes(all_day, start=datetime(2026, 3, 28, tzinfo=UTC), minutes=3 * 1440)
    assert int(mask.sum()) == 23 * 60


def test_a_leap_february_has_21_business_days_of_600_minutes() -> None:
    start = datetime(2028, 2, 1, tzinfo=UTC)
    mask = service_minutes(BERLIN_BUSINESS, start=start, minutes=29 * 1440)
    assert int(mask.sum()) == 21 * 600
    assert mask[7 * 60] and not mask[7 * 60 - 1]  # 08:00 CET is 07:00 UTC
    assert mask[-(7 * 60 + 1)] and not mask[-(7 * 60)]  # Tue 29th closes 17:00 UTC


def test_the_span_may_start_inside_service_hours() -> None:
    mask = service_minutes(
        BERLIN_BUSINESS, start=datetime(2026, 3, 2, 12, 30, tzinfo=UTC), minutes=60
    )
    assert mask.all()


@pytest.mark.parametrize(
    ("field", "value"),
    [("time_zone", "Mars/Olympus"), ("start", "8:00"), ("end", "24:01"), ("days", ["Mo"])],
)
def test_bad_service_hours_are_refused_naming_the_value(field: str, value: object) -> None:
    raw = BERLIN_BUSINESS.model_dump() | {field: value}
    with pytest.raises(ValidationError, match=field.split("_")[0]):
        ServiceHours.model_validate(raw)
