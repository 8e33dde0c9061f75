"""Credit schedules, caps and money rounding."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiconn.resources.v1alpha1.sla import (
    BEDROCK_SCHEDULE,
    LATENCY_SCHEDULE,
    CreditsSpec,
    CreditTier,
)
from aiconn.sla.credits import (
    attainment_percent,
    from_micros,
    money,
    period_credit,
    tier_credit,
    to_micros,
    tokens_for_amount,
    usage_charge,
)

D = Decimal


@pytest.mark.parametrize(
    ("attainment", "credit"),
    [
        (None, "0"),
        (D("100"), "0"),
        (D("99.95"), "0"),
        (D("99.9"), "0"),  # exactly 99.9 %: half-open, no credit
        (D("99.89999"), "10"),
        (D("99.0"), "10"),
        (D("98.99"), "25"),
        (D("95.0"), "25"),
        (D("94.9"), "100"),
        (D("0"), "100"),
    ],
)
def test_availability_tiers_are_half_open(attainment: Decimal | None, credit: str) -> None:
    assert tier_credit(attainment, BEDROCK_SCHEDULE) == D(credit)


def test_exactly_999_of_1000_minutes_is_exactly_99_9_percent() -> None:
    assert attainment_percent(999, 1000) == D("99.9")
    assert tier_credit(attainment_percent(999, 1000), BEDROCK_SCHEDULE) == 0
    assert tier_credit(attainment_percent(9989, 10000), BEDROCK_SCHEDULE) == 10


def test_tier_order_does_not_matter() -> None:
    reversed_tiers = tuple(reversed(BEDROCK_SCHEDULE))
    assert tier_credit(D("90"), reversed_tiers) == D(100)


SCHEDULE = CreditsSpec()


@pytest.mark.parametrize(
    ("availability", "ttft", "tpot", "cap", "avail_pct", "lat_pct", "total_pct", "amount"),
    [
        ("99.95", "99.5", "99.5", 100, "0", "0", "0", "0"),
        ("99.5", "99.5", "99.5", 100, "10", "0", "10", "10"),
        ("99.5", "98", "99.5", 100, "10", "5", "15", "15"),
        ("99.5", "99.5", "94", 100, "10", "10", "20", "20"),  # worse of TTFT and TPOT
        ("90", "80", "99.9", 100, "100", "25", "100", "100"),  # capped at 100 %
        ("90", "80", "99.9", 30, "100", "25", "30", "30"),
        (None, None, None, 100, "0", "0", "0", "0"),  # unmeasured: no credit
        ("99.95", None, "89", 100, "0", "25", "25", "25"),
    ],
)
def test_period_credit(
    availability: str | None,
    ttft: str | None,
    tpot: str | None,
    cap: float,
    avail_pct: str,
    lat_pct: str,
    total_pct: str,
    amount: str,
) -> None:
    def dec(x: str | None) -> Decimal | None:
        return None if x is None else D(x)

    breakdown = period_credit(
        charges=D("100"),
        availability=dec(availability),
        ttft=dec(ttft),
        tpot=dec(tpot),
        schedule=CreditsSpec(cap_percent=cap),
    )
    assert breakdown.availability_percent == D(avail_pct)
    assert breakdown.latency_percent == D(lat_pct)
    assert breakdown.total_percent == D(total_pct)
    assert breakdown.amount == D(amount)


@pytest.mark.parametrize(
    ("tokens", "price", "charge"),
    [
        (0, 0.5, "0"),
        (1_000_000, 0.5, "0.5"),
        (1, 0.5, "0.0000005"),  # rounds half-even to 0.000000
        (3, 0.5, "0.0000015"),  # rounds half-even to 0.000002
        (123_456_789, 0.1, "12.3456789"),
        (10**15, 1_000_000, "1000000000000000"),
    ],
)
def test_usage_charge_rounds_half_even_to_micro_units(
    tokens: int, price: float, charge: str
) -> None:
    assert usage_charge(tokens, price) == money(D(charge))
    assert usage_charge(tokens, price) == usage_charge(tokens, price).quantize(D("0.000001"))


def test_half_even_rounding() -> None:
    assert money(D("0.0000005")) == D("0")
    assert money(D("0.0000015")) == D("0.000002")
    assert money(0.1) == D("0.1")


def test_negative_tokens_are_refused() -> None:
    with pytest.raises(ValueError, match="tokens"):
        usage_charge(-1, 0.5)


@pytest.mark.parametrize(
    ("amount", "price", "tokens"),
    [("0.5", 0.5, 1_000_000), ("0.000001", 0.5, 2), ("1", 0, 0), ("0.0000015", 3, 0)],
)
def test_credit_converts_back_to_tokens_at_the_sla_price(
    amount: str, price: float, tokens: int
) -> None:
    assert tokens_for_amount(D(amount), price) == tokens


@given(micros=st.integers(0, 10**18))
def test_micros_round_trip(micros: int) -> None:
    assert to_micros(from_micros(micros)) == micros


@given(
    attainment=st.decimals(0, 100, places=4),
    charges=st.decimals(0, 10**9, places=6),
    cap=st.integers(1, 100),
)
def test_credit_never_exceeds_cap_and_grows_as_attainment_falls(
    attainment: Decimal, charges: Decimal, cap: int
) -> None:
    schedule = CreditsSpec(cap_percent=cap)
    worse = period_credit(
        charges=charges, availability=attainment - 1, ttft=None, tpot=None, schedule=schedule
    )
    better = period_credit(
        charges=charges, availability=attainment, ttft=None, tpot=None, schedule=schedule
    )
    assert better.total_percent <= worse.total_percent <= cap
    assert worse.amount <= money(charges * cap / 100)


def test_latency_schedule_defaults() -> None:
    assert [(t.below_percent, t.credit_percent) for t in LATENCY_SCHEDULE] == [
        (99.0, 5),
        (95.0, 10),
        (90.0, 25),
    ]
    assert tier_credit(D("99"), [CreditTier(below_percent=99.0, credit_percent=5)]) == 0
