"""Which periods a deleted SLA still owes (`aiconn.operator.retirement.periods_owed`)."""

from __future__ import annotations

from datetime import UTC, datetime

from aiconn.operator.retirement import periods_owed
from aiconn.resources.v1alpha1.sla import Window
from aiconn.sla.periods import Period

DAY = Window(duration="1d")


def at(day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, second, tzinfo=UTC)


def test_the_open_period_is_cut_at_the_end_of_the_deletion_minute() -> None:
    owed = periods_owed(DAY, in_force=at(2, 1), deleted_at=at(2, 10, 30, 5))
    assert owed == [Period(start=at(2), end=at(2, 10, 31))]


def test_the_previous_period_is_owed_when_the_sla_was_in_force_in_it() -> None:
    owed = periods_owed(DAY, in_force=at(1, 12), deleted_at=at(2, 0, 0, 30))
    assert owed == [Period(start=at(1), end=at(2)), Period(start=at(2), end=at(2, 0, 1))]


def test_an_sla_deleted_before_its_first_whole_minute_owes_nothing() -> None:
    assert periods_owed(DAY, in_force=at(2, 10, 31), deleted_at=at(2, 10, 30, 5)) == []


def test_a_deletion_on_a_minute_boundary_owes_up_to_that_minute() -> None:
    owed = periods_owed(DAY, in_force=at(2, 1), deleted_at=at(2, 10, 30))
    assert owed == [Period(start=at(2), end=at(2, 10, 30))]


def test_rolling_windows_never_settle() -> None:
    rolling = Window(duration="1d", calendar_aligned=False)
    assert periods_owed(rolling, in_force=at(1), deleted_at=at(2, 10)) == []
