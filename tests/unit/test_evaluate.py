"""Fleet evaluation: arrays in, each SLA's status and money out."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiconn.sla.evaluate import FleetSeries, FleetTerms, evaluate_fleet
from aiconn.sla.sli import Occurrences
from tests.factories import small_sla_spec

MONTH = 30 * 1440
SPEC = small_sla_spec()


def occurrences(good: list[float], total: list[float]) -> Occurrences:
    return Occurrences(
        good=np.array(good, dtype=float),
        total=np.array(total, dtype=float),
        exact=np.ones(len(good), dtype=bool),
    )


def series(
    up: np.ndarray,
    *,
    failed: np.ndarray | None = None,
    tokens: list[int] | None = None,
    ttft: Occurrences | None = None,
    lookback: int = 0,
) -> FleetSeries:
    n = up.shape[0]
    in_contract = np.full(up.shape, 100, dtype=np.int32)
    return FleetSeries(
        in_contract=in_contract,
        failed=np.zeros(up.shape, dtype=np.int32) if failed is None else failed,
        up=up,
        ttft=ttft or occurrences([99.5] * n, [100.0] * n),
        tpot=occurrences([100.0] * n, [100.0] * n),
        tokens=np.array(tokens or [2_000_000] * n, dtype=np.int64),
        lookback_minutes=lookback,
    )


def down_minutes(minutes: int, bad: list[int]) -> np.ndarray:
    up = np.ones((len(bad), minutes), dtype=np.float32)
    for row, count in enumerate(bad):
        up[row, :count] = 0
    return up


@pytest.mark.parametrize(
    ("bad", "availability", "credit_percent", "credit"),
    [
        (0, 100.0, "0", "0"),
        (1, 99.9, "0", "0"),  # exactly 99.9 % of 1000 minutes
        (2, 99.8, "10", "0.1"),
        (11, 98.9, "25", "0.25"),
        (51, 94.9, "100", "1"),
    ],
)
def test_one_sla_availability_and_credit(
    bad: int, availability: float, credit_percent: str, credit: str
) -> None:
    result = evaluate_fleet(
        terms=FleetTerms.from_specs([SPEC]), series=series(down_minutes(1000, [bad]))
    ).sla(0)
    assert result.availability_percent == pytest.approx(availability)
    assert result.coverage_percent == 100.0
    assert result.charges == Decimal("1")  # 2M tokens at 0.5 per million
    assert result.credit.total_percent == Decimal(credit_percent)
    assert result.credit.amount == Decimal(credit)


def test_a_period_without_data_is_unmeasured_and_pays_nothing() -> None:
    up = np.full((1, 1440), np.nan, dtype=np.float32)
    result = evaluate_fleet(terms=FleetTerms.from_specs([SPEC]), series=series(up)).sla(0)
    assert result.availability_percent is None
    assert result.coverage_percent == 0.0
    assert result.budget_remaining_percent is None
    assert result.credit.availability_percent == 0
    assert result.alerts == ()


def test_an_idle_period_is_fully_available() -> None:
    up = np.ones((1, 1440), dtype=np.float32)
    s = series(up, tokens=[0], ttft=occurrences([0.0], [0.0]))
    s = FleetSeries(
        in_contract=np.zeros_like(s.in_contract),
        failed=s.failed,
        up=up,
        ttft=s.ttft,
        tpot=occurrences([0.0], [0.0]),
        tokens=s.tokens,
    )
    result = evaluate_fleet(terms=FleetTerms.from_specs([SPEC]), series=s).sla(0)
    assert result.availability_percent == 100.0
    assert result.ttft_attainment_percent is None
    assert result.charges == 0
    assert result.credit.amount == 0


def test_an_empty_period_has_nothing_to_report() -> None:
    up = np.ones((1, 0), dtype=np.float32)
    result = evaluate_fleet(terms=FleetTerms.from_specs([SPEC]), series=series(up)).sla(0)
    assert result.minutes == 0
    assert result.availability_percent is None
    assert result.coverage_percent is None


def test_half_covered_period_reports_coverage() -> None:
    up = np.ones((1, 1000), dtype=np.float32)
    up[0, 500:] = np.nan
    result = evaluate_fleet(terms=FleetTerms.from_specs([SPEC]), series=series(up)).sla(0)
    assert result.coverage_percent == 50.0
    assert result.availability_percent == 100.0


def test_an_sla_created_mid_period_is_judged_from_its_first_minute() -> None:
    # Two SLAs see the same minutes: no data for the first 400 (nobody served them yet), then
    # 600 minutes up with 10 of them down. The second SLA came into force at minute 400.
    up = np.ones((2, 1000), dtype=np.float32)
    up[:, :400] = np.nan
    up[:, 500:510] = 0
    result = evaluate_fleet(
        terms=FleetTerms.from_specs([SPEC, SPEC]), series=series(up), in_force_from=[0, 400]
    )
    whole, late = result.sla(0), result.sla(1)
    assert whole.coverage_percent == 60.0
    assert late.coverage_percent == 100.0
    assert late.good_minutes == 590 and late.bad_minutes == 10
    assert late.availability_percent == whole.availability_percent


def test_minutes_before_an_sla_existed_are_neither_good_nor_bad() -> None:
    up = np.zeros((1, 100), dtype=np.float32)  # down before the SLA existed
    up[0, 30:] = 1
    result = evaluate_fleet(
        terms=FleetTerms.from_specs([SPEC]), series=series(up), in_force_from=[30]
    ).sla(0)
    assert (result.good_minutes, result.bad_minutes) == (70, 0)
    assert result.availability_percent == 100.0
    assert result.credit.amount == 0


def test_an_sla_in_force_after_the_measured_minutes_has_no_coverage() -> None:
    up = np.ones((1, 10), dtype=np.float32)
    result = evaluate_fleet(
        terms=FleetTerms.from_specs([SPEC]), series=series(up), in_force_from=[25]
    ).sla(0)
    assert result.coverage_percent is None
    assert result.availability_percent is None


def test_in_force_needs_one_entry_per_sla() -> None:
    with pytest.raises(ValueError, match="one entry per SLA"):
        evaluate_fleet(
            terms=FleetTerms.from_specs([SPEC]),
            series=series(np.ones((1, 10), dtype=np.float32)),
            in_force_from=[0, 0],
        )


def test_lookback_feeds_burn_rates_but_not_the_period() -> None:
    up = np.ones((1, 4320 + 60), dtype=np.float32)
    up[0, 60:160] = 0  # bad minutes in the look-back only
    result = evaluate_fleet(
        terms=FleetTerms.from_specs([SPEC]), series=series(up, lookback=4320)
    ).sla(0)
    assert result.minutes == 60
    assert result.availability_percent == 100.0
    assert result.burn_rates["w3d"] == pytest.approx(100 / 4320 / 0.001)
    assert result.alerts == ()


def test_fleet_rows_are_independent_of_chunking() -> None:
    rng = np.random.default_rng(7)
    n = 37
    up = (rng.random((n, 2000)) > 0.002).astype(np.float32)
    up[rng.random((n, 2000)) < 0.01] = np.nan
    failed = rng.binomial(100, 0.01, size=(n, 2000)).astype(np.int32)
    terms = FleetTerms.from_specs([SPEC] * n)
    s = series(up, failed=failed)
    whole = evaluate_fleet(terms=terms, series=s, chunk_slas=n)
    chunked = evaluate_fleet(terms=terms, series=s, chunk_slas=5)
    np.testing.assert_array_equal(whole.good_minutes, chunked.good_minutes)
    np.testing.assert_array_equal(whole.alerts, chunked.alerts)
    for name, rates in whole.burn_rates.items():
        np.testing.assert_array_equal(rates, chunked.burn_rates[name])
    assert whole.credits == chunked.credits


def test_mismatched_shapes_are_refused() -> None:
    s = series(np.ones((2, 10), dtype=np.float32))
    with pytest.raises(ValueError, match="SLAs x minutes with 1 SLAs"):
        evaluate_fleet(terms=FleetTerms.from_specs([SPEC]), series=s)


@settings(max_examples=50, deadline=None)
@given(
    bad=st.lists(st.integers(0, 300), min_size=1, max_size=6),
    minutes=st.integers(300, 3000),
)
def test_evaluation_matches_the_definition(bad: list[int], minutes: int) -> None:
    result = evaluate_fleet(
        terms=FleetTerms.from_specs([SPEC] * len(bad)), series=series(down_minutes(minutes, bad))
    )
    for i, count in enumerate(bad):
        one = result.sla(i)
        assert one.good_minutes + one.bad_minutes == minutes
        assert one.bad_minutes == count
        assert one.availability_percent == pytest.approx(100 * (minutes - count) / minutes)
        expected = 100 * (1 - (count / minutes) / 0.001)
        assert one.budget_remaining_percent == pytest.approx(expected)
        assert math.isclose(one.coverage_percent or 0, 100)
