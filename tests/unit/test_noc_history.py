"""Pure parts of the NOC history: the query_range step, and credits grouped per period."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiconn.api.nochistory import MAX_POINTS, credits_by_period, step_seconds
from aiconn.api.routes.fleet import MAX_HISTORY_MINUTES
from aiconn.sla.accounting import Settlement, SettlementState
from aiconn.sla.periods import Period

JAN = Period(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC))
FEB = Period(datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC))
MAR = Period(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))


@given(st.integers(min_value=1, max_value=MAX_HISTORY_MINUTES))
def test_the_step_keeps_every_range_within_the_points_a_chart_draws(minutes: int) -> None:
    step = step_seconds(minutes)
    assert step >= 1
    assert minutes * 60 / step <= MAX_POINTS


def _settled(
    period: Period, credit: int, *, currency: str = "EUR", held: bool = False
) -> Settlement:
    return Settlement(
        sla_uid=f"uid-{credit}",
        sla_namespace="ns",
        sla_name=f"sla-{credit}",
        tenant="t",
        period=period,
        state=SettlementState.HELD_FOR_REVIEW if held else SettlementState.SETTLED,
        currency=currency,
        tokens_used=1,
        charges_micros=10 * credit,
        credit_micros=credit,
        credit_tokens=0,
        credit_percent=Decimal(10),
        coverage_percent=100.0,
        availability_percent=99.0,
        ttft_attainment_percent=99.0,
        tpot_attainment_percent=99.0,
        transfer_ids=(),
        created_at=period.end,
    )


def test_credits_are_summed_per_period_and_currency_oldest_first() -> None:
    settlements = [
        _settled(FEB, 1_500_001),
        _settled(JAN, 250_000),
        _settled(FEB, 2),
        _settled(FEB, 7_000_000, currency="USD"),
        _settled(FEB, 9_999_999, held=True),
    ]
    items = credits_by_period(settlements, periods=12)
    assert [(i.period_start, i.currency) for i in items] == [
        (JAN.start, "EUR"),
        (FEB.start, "EUR"),
        (FEB.start, "USD"),
    ]
    feb = items[1]
    # Held periods are counted but not paid: their credit is not in the sum.
    assert (feb.credit_micros, feb.credits, feb.slas, feb.held_for_review) == (
        1_500_003,
        Decimal("1.500003"),
        3,
        1,
    )


@pytest.mark.parametrize(("periods", "kept"), [(1, [MAR]), (2, [FEB, MAR]), (5, [JAN, FEB, MAR])])
def test_only_the_newest_periods_are_kept(periods: int, kept: list[Period]) -> None:
    settlements = [_settled(p, 1) for p in (MAR, JAN, FEB)]
    items = credits_by_period(settlements, periods=periods)
    assert [i.period_start for i in items] == [p.start for p in kept]


def test_no_settlement_is_no_period() -> None:
    assert credits_by_period([], periods=12) == []
