"""Periods: calendar alignment in UTC, month lengths, rolling windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiconn.resources.v1alpha1.sla import Window
from aiconn.sla.periods import (
    Period,
    current_period,
    elapsed_minutes,
    parse_duration,
    period_containing,
    previous_period,
    rolling_period,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("duration", "t", "start", "end", "minutes"),
    [
        ("1M", utc(2024, 2, 10, 12), utc(2024, 2, 1), utc(2024, 3, 1), 29 * 1440),
        ("1M", utc(2025, 2, 28, 23, 59, 59), utc(2025, 2, 1), utc(2025, 3, 1), 28 * 1440),
        ("1M", utc(2025, 3, 1), utc(2025, 3, 1), utc(2025, 4, 1), 31 * 1440),
        ("1M", utc(2025, 4, 30, 23, 59), utc(2025, 4, 1), utc(2025, 5, 1), 30 * 1440),
        ("1M", utc(2025, 12, 31, 23, 59), utc(2025, 12, 1), utc(2026, 1, 1), 31 * 1440),
        ("3M", utc(2025, 5, 17), utc(2025, 4, 1), utc(2025, 7, 1), 91 * 1440),
        ("12M", utc(2025, 5, 17), utc(2025, 1, 1), utc(2026, 1, 1), 365 * 1440),
        ("5m", utc(2025, 1, 1, 0, 7, 30), utc(2025, 1, 1, 0, 5), utc(2025, 1, 1, 0, 10), 5),
        ("1h", utc(2025, 1, 1, 13, 59, 59), utc(2025, 1, 1, 13), utc(2025, 1, 1, 14), 60),
        ("1d", utc(2025, 1, 1, 0, 0), utc(2025, 1, 1), utc(2025, 1, 2), 1440),
        ("28d", utc(1970, 1, 29), utc(1970, 1, 29), utc(1970, 2, 26), 28 * 1440),
        ("1w", utc(2025, 6, 1, 23), utc(2025, 5, 26), utc(2025, 6, 2), 7 * 1440),
        ("1w", utc(2025, 6, 2), utc(2025, 6, 2), utc(2025, 6, 9), 7 * 1440),
    ],
)
def test_calendar_period_containing(
    duration: str, t: datetime, start: datetime, end: datetime, minutes: int
) -> None:
    period = period_containing(Window(duration=duration), t)
    assert (period.start, period.end, period.minutes) == (start, end, minutes)


def test_weekly_periods_start_on_monday() -> None:
    period = period_containing(Window(duration="1w"), utc(2025, 7, 17, 9))
    assert period.start.weekday() == 0


@pytest.mark.parametrize(
    ("t", "start", "end"),
    [
        (utc(2024, 3, 15), utc(2024, 2, 1), utc(2024, 3, 1)),
        (utc(2025, 1, 1), utc(2024, 12, 1), utc(2025, 1, 1)),
        (utc(2025, 3, 31, 23, 59), utc(2025, 2, 1), utc(2025, 3, 1)),
    ],
)
def test_previous_period_is_the_month_to_settle(
    t: datetime, start: datetime, end: datetime
) -> None:
    assert previous_period(Window(), t) == Period(start=start, end=end)


@pytest.mark.parametrize(
    ("duration", "now", "start", "end"),
    [
        ("5m", utc(2025, 1, 1, 0, 7, 30), utc(2025, 1, 1, 0, 2), utc(2025, 1, 1, 0, 7)),
        ("1d", utc(2025, 1, 2, 12, 0, 1), utc(2025, 1, 1, 12), utc(2025, 1, 2, 12)),
        ("1M", utc(2025, 3, 31, 10), utc(2025, 2, 28, 10), utc(2025, 3, 31, 10)),
        ("1M", utc(2024, 3, 30, 10), utc(2024, 2, 29, 10), utc(2024, 3, 30, 10)),
        ("1M", utc(2025, 1, 15), utc(2024, 12, 15), utc(2025, 1, 15)),
    ],
)
def test_rolling_period_ends_at_the_current_minute(
    duration: str, now: datetime, start: datetime, end: datetime
) -> None:
    window = Window(duration=duration, calendar_aligned=False)
    assert rolling_period(window, now) == Period(start=start, end=end)
    assert current_period(window, now) == Period(start=start, end=end)


@pytest.mark.parametrize("text", ["0m", "5s", "1y", "m", "10000d", "1.5h", ""])
def test_bad_durations_are_refused_with_the_value(text: str) -> None:
    with pytest.raises(ValueError, match="OpenSLO duration"):
        parse_duration(text)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="UTC"):
        period_containing(Window(), datetime(2025, 1, 1))


def test_elapsed_minutes_are_clamped_to_the_period() -> None:
    period = Period(start=utc(2025, 1, 1), end=utc(2025, 1, 2))
    assert elapsed_minutes(period, utc(2024, 12, 31)) == 0
    assert elapsed_minutes(period, utc(2025, 1, 1, 1, 30, 59)) == 90
    assert elapsed_minutes(period, utc(2025, 2, 1)) == 1440


def test_period_iso_spelling_used_in_ledger_keys() -> None:
    assert period_containing(Window(), utc(2025, 2, 3)).start_iso == "2025-02-01T00:00:00Z"


times = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)
durations = st.sampled_from(["1m", "5m", "1h", "6h", "1d", "7d", "28d", "1w", "2w", "1M", "3M"])


@given(t=times, duration=durations)
def test_periods_contain_their_instant_and_tile_time(t: datetime, duration: str) -> None:
    window = Window(duration=duration)
    period = period_containing(window, t)
    assert period.contains(t)
    assert period_containing(window, period.start) == period
    assert period_containing(window, period.end).start == period.end
    assert previous_period(window, t).end == period.start
    assert period_containing(window, period.end - timedelta(microseconds=1)) == period


@given(t=times)
def test_months_have_28_to_31_days(t: datetime) -> None:
    period = period_containing(Window(), t)
    assert period.start.day == 1
    assert period.minutes // 1440 in (28, 29, 30, 31)
    assert period.minutes % 1440 == 0
