"""Decide with money: the forecast credit and the capacity cost, worked by hand, exactly."""

from __future__ import annotations

from decimal import Decimal

from aiconn.inference.stakes import PeriodReading, capacity_cost, forecast, weigh
from tests.factories import small_sla_spec

# Defaults: availability 99.9 % (credits 10 % below 99.9, 25 % below 99, 100 % below 95),
# latency 99 % (5 % below 99, 10 % below 95, 25 % below 90), capped at 100 %.
SPEC = small_sla_spec()


def reading(**overrides: object) -> PeriodReading:
    values: dict[str, object] = {
        "elapsed_fraction": Decimal("0.5"),
        "charges": Decimal("100.00"),
        "availability_percent": 99.95,
        "ttft_percent": 99.5,
    }
    return PeriodReading(**{**values, **overrides})  # type: ignore[arg-type]


def test_a_fast_burn_carried_to_the_period_end_earns_the_schedule_credit() -> None:
    # Half the period gone at 99.95 %; a burn of 10 now is 100 - 0.1 x 10 = 99.0 % for the
    # rest: 0.5 x 99.95 + 0.5 x 99.0 = 99.475 % < 99.9, so 10 % of the charges projected to the
    # end (100 / 0.5 = 200).
    result = forecast(SPEC, reading(burn_rate=10.0))
    assert result.availability_percent == Decimal("99.475")
    assert result.ttft_percent == Decimal("99.5")
    assert result.tpot_percent is None
    assert result.charges == Decimal("200.000000")
    assert result.credit == Decimal("20.000000")


def test_no_burn_no_credit_and_latency_carried_at_its_short_window_rate() -> None:
    calm = forecast(SPEC, reading(burn_rate=0.0))
    assert calm.availability_percent == Decimal("99.975")
    assert calm.credit == Decimal("0.000000")
    # TTFT at 97 % over the short window: 0.5 x 99.5 + 0.5 x 97 = 98.25 < 99: 5 %.
    slow = forecast(SPEC, reading(burn_rate=0.0, short_ttft_percent=97.0))
    assert slow.ttft_percent == Decimal("98.25")
    assert slow.credit == Decimal("10.000000")


def test_without_a_current_rate_the_period_so_far_is_carried_forward() -> None:
    result = forecast(SPEC, reading(availability_percent=98.5))
    assert result.availability_percent == Decimal("98.5")
    assert result.credit == Decimal("50.000000")  # 25 % of 200


def test_capacity_cost_is_the_tier_price_of_the_tokens_the_replicas_can_serve() -> None:
    # 2 replicas x 1000 tokens/s x 3600 s = 7.2M tokens at 0.1 / 1M.
    cost = capacity_cost(
        replicas=2, replica_tokens_per_second=1000.0, price_per_million_tokens=0.1, seconds=3600
    )
    assert cost == Decimal("0.720000")


def test_the_decision_weighs_both_numbers_and_records_them() -> None:
    cost = Decimal("0.720000")
    act = weigh(cost=cost, expected_credit=Decimal("20"), restores_service=False, currency="EUR")
    assert act.act
    assert act.reason == (
        "the credit at stake covers it (capacity 0.720000 EUR, expected credit 20 EUR)"
    )
    hold = weigh(cost=cost, expected_credit=Decimal("0.5"), restores_service=False, currency="EUR")
    assert not hold.act
    assert (hold.capacity_cost, hold.expected_credit) == (cost, Decimal("0.5"))
    assert hold.reason.startswith("paying the credit is cheaper")
    restore = weigh(cost=cost, expected_credit=Decimal(0), restores_service=True, currency="EUR")
    assert restore.act
    assert restore.reason.startswith("restores service")
