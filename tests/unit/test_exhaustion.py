"""The projected exhaustion date against hand-computed values (method: aiconn.sla.exhaustion)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from aiconn.sla.exhaustion import OpenUsage, project

START = datetime(2027, 1, 1, tzinfo=UTC)


def test_exhaustion_is_the_balance_over_the_recent_burn_truncated_to_the_second() -> None:
    # 1,234,567 tokens in 2 days 3 hours (183,600 s); 8,765,433 left:
    # 8,765,433 x 183,600 / 1,234,567 = 1,303,561.0856... s = 15 d 2 h 6 min 1 s (truncated).
    until = START + timedelta(days=2, hours=3)
    found = project(8_765_433, [OpenUsage(1_234_567, START, until)])
    assert found.exhausts_at == datetime(2027, 1, 18, 5, 6, 1, tzinfo=UTC)
    # 1,234,567 x 86,400 / 183,600 = 580,972.70588... tokens a day.
    assert found.burn_tokens_per_day == Decimal("580972.706")
    assert found.as_of == until


def test_burns_of_several_slas_add_up() -> None:
    # 1,000 tokens/h and 3,000 tokens/h: 4,000 tokens/h, so 10,000 tokens last 2.5 h.
    a = OpenUsage(10_000, START, START + timedelta(hours=10))
    b = OpenUsage(6_000, START, START + timedelta(hours=2))
    found = project(10_000, [a, b])
    assert found.exhausts_at == START + timedelta(hours=12, minutes=30)
    assert found.burn_tokens_per_day == Decimal("96000.000")


def test_nothing_burning_never_exhausts_and_nothing_left_is_exhausted_now() -> None:
    idle = [OpenUsage(0, START, START + timedelta(hours=1))]
    assert project(5, idle).exhausts_at is None
    assert project(5, []).exhausts_at is None
    spent = [OpenUsage(100, START, START + timedelta(hours=1))]
    assert project(-3, spent).exhausts_at == START + timedelta(hours=1)


def test_a_reading_younger_than_five_minutes_is_too_noisy_to_project() -> None:
    young = [OpenUsage(1_000_000, START, START + timedelta(minutes=4))]
    assert project(5, young).exhausts_at is None
