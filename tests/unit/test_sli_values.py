"""The value of every SLI formula, computed by hand (issue 11, item 5 of "Must show"): not that a
number exists, but that it is the right one."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from aiconn.resources.v1alpha1.sla import Window
from aiconn.sla.budget import budget_report, window_burn_rates, window_counts
from aiconn.sla.burnwindows import alert_rules
from aiconn.sla.evaluate import FleetTerms, SLAEvaluation, evaluate_fleet
from aiconn.sla.sli import (
    Timeslices,
    availability,
    classify_minutes,
)
from tests.factories import availability_series, latency_from_buckets, small_sla_spec

NAN = float("nan")
SPEC = small_sla_spec(objectives={"availability": {"targetPercent": 99}})


def test_ttft_attainment_at_a_bucket_bound() -> None:
    # 990 of 1000 first tokens at or under 300 ms.
    got = latency_from_buckets({0.1: 600, 0.3: 990, 1.0: 999, float("inf"): 1000}, 0.3)
    assert got.percent[0] == 99.0 and bool(got.exact[0])


def test_tpot_attainment_interpolated_inside_a_bucket() -> None:
    # 800 at <= 50 ms, 1000 at <= 100 ms: at 75 ms, halfway, 900 of 1000.
    got = latency_from_buckets({0.05: 800, 0.1: 1000, float("inf"): 1000}, 0.075)
    assert got.good[0] == pytest.approx(900)
    assert got.percent[0] == pytest.approx(90.0)
    assert not got.exact[0]


def test_availability_and_coverage_of_ten_minutes() -> None:
    # Minute by minute: up, down, 6 % failed (bad), exactly 5 % failed (good), unknown, 5 x up.
    in_contract = [100, 100, 100, 100, 0, 10, 10, 10, 10, 10]
    failed = [0, 0, 6, 5, 0, 0, 0, 0, 0, 0]
    up = [1, 0, 1, 1, NAN, 1, 1, 1, 1, 1]
    got = availability(classify_minutes(in_contract, failed, up))
    assert (int(got.good_minutes), int(got.bad_minutes), got.minutes) == (7, 2, 10)
    assert float(got.percent) == pytest.approx(100 * 7 / 9)
    assert float(got.coverage_percent) == 90.0


def test_burn_rate_values() -> None:
    # 1 bad minute in the last 5, 2 in the last hour, at 99 % (budget 1 %).
    bad = np.zeros((1, 120), dtype=bool)
    bad[0, -1] = bad[0, -30] = True
    known = np.ones_like(bad)
    slices = Timeslices(bad=bad, known=known)
    rates = window_burn_rates(window_counts(slices), budget_fraction=np.array([0.01]))
    assert rates["w5m"][0] == pytest.approx((1 / 5) / 0.01)  # 20
    assert rates["w30m"][0] == pytest.approx((2 / 30) / 0.01)
    assert rates["w1h"][0] == pytest.approx((2 / 60) / 0.01)
    # The 3-day window has only 120 known minutes: it is their ratio, not 2 / 4320.
    assert rates["w3d"][0] == pytest.approx((2 / 120) / 0.01)
    report = budget_report(slices, target_percent=[99])
    assert report.remaining_percent[0] == pytest.approx(100 * (1 - (2 / 120) / 0.01))


def test_burn_rate_values_of_a_scaled_window() -> None:
    # A 1-day SLA at 99 %: windows 1, 2, 4, 12, 48 and 144 minutes; bad minutes now and 10 ago.
    rules = alert_rules(Window(duration="1d"))
    bad = np.zeros((1, 200), dtype=bool)
    bad[0, -1] = bad[0, -11] = True
    slices = Timeslices(bad=bad, known=np.ones_like(bad))
    rates = window_burn_rates(window_counts(slices, rules=rules), budget_fraction=np.array([0.01]))
    assert {name: float(rate[0]) for name, rate in rates.items()} == pytest.approx(
        {
            "w1m": (1 / 1) / 0.01,  # 100
            "w2m": (1 / 2) / 0.01,  # 50
            "w4m": (1 / 4) / 0.01,  # 25
            "w12m": (2 / 12) / 0.01,
            "w48m": (2 / 48) / 0.01,  # 4.17 > 3: ticket-48m's long window
            "w2h24m": (2 / 144) / 0.01,  # 1.39 > 1: ticket-2h24m's
        }
    )
    report = budget_report(slices, target_percent=[99], rules=rules)
    assert report.firing(0) == ["page-2m", "page-12m", "ticket-48m", "ticket-2h24m"]


def test_a_scaled_windows_tie_stays_silent() -> None:
    # A 1-week SLA's ticket alert: 16h48m (1008 min) over 84 min, factor 1. With 1000 known
    # minutes at 99.9 %, 1 bad burns exactly 1 (1.0000000000000568 in binary floats).
    rule = next(r for r in alert_rules(Window(duration="1w")) if r.name == "ticket-16h48m")
    assert (rule.long.minutes, rule.short.minutes, rule.factor) == (1008, 84, 1.0)
    known = np.zeros((1, 1008), dtype=bool)
    known[0, -1000:] = True
    bad = np.zeros_like(known)
    bad[0, -1] = True
    report = budget_report(Timeslices(bad=bad, known=known), target_percent=[99.9], rules=(rule,))
    assert report.burn_rates["w16h48m"][0] == pytest.approx(1.0)
    assert report.firing(0) == []
    bad[0, -2] = True
    report = budget_report(Timeslices(bad=bad, known=known), target_percent=[99.9], rules=(rule,))
    assert report.firing(0) == ["ticket-16h48m"]


def first_minutes_down(minutes: int, down: int, **series: int) -> SLAEvaluation:
    """SPEC's evaluation over `minutes` of availability only, down in the first `down`; `series`
    (tokens, lookback_minutes) passes on to `availability_series`."""
    up = np.ones((1, minutes), dtype=np.float32)
    up[0, :down] = 0
    terms = FleetTerms.from_specs([SPEC])
    return evaluate_fleet(terms=terms, series=availability_series(up, **series)).sla(0)


def test_budget_value_and_credit_to_the_micro_unit() -> None:
    # 1000 minutes, 15 bad, 99 % target: 10 minutes of budget, 150 % spent, -50 % left.
    result = first_minutes_down(1000, 15, tokens=1_234_567)
    assert result.availability_percent == 98.5
    assert result.budget_remaining_percent == -50.0
    # Derived schedule at 99 %: < 99 pays 10 %. 1,234,567 tokens at 0.5 per million.
    assert result.charges == Decimal("0.617284")  # 0.6172835 rounded half-even
    assert result.credit.total_percent == Decimal(10)
    assert result.credit.amount == Decimal("0.061728")


def test_a_look_back_is_not_counted_against_the_periods_budget() -> None:
    # 60 look-back minutes all down, then 100 period minutes all up.
    result = first_minutes_down(160, 60, lookback_minutes=60)
    assert (result.good_minutes, result.bad_minutes, result.minutes) == (100, 0, 100)
    assert result.budget_remaining_percent == 100.0
    assert result.availability_percent == 100.0
    # The burn-rate windows do see it: the 3-day window holds 60 bad of 160 known minutes.
    assert result.burn_rates["w3d"] == pytest.approx((60 / 160) / 0.01)
