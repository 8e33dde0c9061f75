"""Inexact attainment never pays silently (issue 11, item 4): the flag reaches settlement, a
credit it could change holds the period, and the ledger records both."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import numpy as np
import pytest

from aiconn.operator.evaluation import exactness
from aiconn.sla.accounting import HoldReason, Settlement, SettlementState
from aiconn.sla.evaluate import FleetSeries, FleetTerms, SLAEvaluation, evaluate_fleet
from aiconn.sla.periods import Period
from aiconn.sla.sli import Occurrences, occurrences_from_buckets
from aiconn.store.ledger import Ledger
from tests import factories
from tests.factories import latency_from_buckets, small_sla_spec

JAN = Period(start=datetime(2025, 1, 1, tzinfo=UTC), end=datetime(2025, 2, 1, tzinfo=UTC))
SPEC = small_sla_spec(objectives={"ttft": {"thresholdMs": 300, "targetPercent": 99}})


def test_bounds_of_an_interpolated_count_are_its_bucket() -> None:
    got = latency_from_buckets({0.25: 900, 0.5: 1000, float("inf"): 1000}, 0.3)
    assert not got.exact[0]
    assert got.good[0] == pytest.approx(920)  # 900 + (0.05 / 0.25) x 100
    low, high = got.bounds
    assert (low[0], high[0]) == (900, 1000)


def test_bounds_above_the_last_bound_reach_the_total_and_exact_bounds_collapse() -> None:
    above = latency_from_buckets({0.25: 900, float("inf"): 1000}, 0.3)
    assert (above.bounds[0][0], above.bounds[1][0]) == (900, 1000)
    exact = latency_from_buckets({0.3: 990, float("inf"): 1000}, 0.3)
    assert exact.exact[0] and (exact.bounds[0][0], exact.bounds[1][0]) == (990, 990)


def test_good_counts_above_the_inf_count_are_capped() -> None:
    # Buckets scraped a moment after +Inf: more "good" than requests must not exceed 100 %.
    got = occurrences_from_buckets(bounds=[[0.5]], counts=[[105]], totals=[100], thresholds=[0.5])
    assert got.good[0] == 100
    assert got.percent[0] == 100.0


def series(ttft: Occurrences) -> FleetSeries:
    up = np.ones((1, 1000), dtype=np.float32)
    return FleetSeries(
        in_contract=np.full((1, 1000), 10.0),
        failed=np.zeros((1, 1000)),
        up=up,
        ttft=ttft,
        tpot=Occurrences(good=np.array([10.0]), total=np.array([10.0]), exact=np.array([True])),
        tokens=np.array([2_000_000], dtype=np.int64),
    )


def evaluate(ttft: Occurrences) -> SLAEvaluation:
    return evaluate_fleet(terms=FleetTerms.from_specs([SPEC]), series=series(ttft)).sla(0)


def test_an_interpolated_attainment_straddling_a_tier_makes_the_credit_uncertain() -> None:
    # 98.4 % interpolated inside [98 %, 100 %]: the < 99 % latency tier may or may not apply.
    ttft = latency_from_buckets({0.25: 980, 0.5: 1000, float("inf"): 1000}, 0.3)
    result = evaluate(ttft)
    assert result.ttft_attainment_percent == pytest.approx(98.4)
    assert not result.ttft_exact
    assert result.credit_uncertain
    assert exactness(result)[:2] == (False, "Interpolated")


def test_an_interpolated_attainment_inside_one_tier_is_not_uncertain() -> None:
    # Anywhere in [99.5 %, 100 %] is above every latency tier: the credit cannot change.
    ttft = latency_from_buckets({0.25: 995, 0.5: 1000, float("inf"): 1000}, 0.3)
    result = evaluate(ttft)
    assert not result.ttft_exact
    assert not result.credit_uncertain
    assert exactness(result)[0] is False  # still flagged, but nothing is held for it


def settle(ledger: Ledger, result: SLAEvaluation, *, uid: str = "uid-1") -> Settlement:
    return factories.settle(ledger, sla_uid=uid, period=JAN, result=result)


def test_an_uncertain_credit_holds_the_period_and_the_ledger_says_why(ledger: Ledger) -> None:
    ttft = latency_from_buckets({0.25: 980, 0.5: 1000, float("inf"): 1000}, 0.3)
    result = evaluate(ttft)
    settlement = settle(ledger, result)
    assert settlement.state is SettlementState.HELD_FOR_REVIEW
    stored = ledger.settlement("uid-1", JAN)
    assert stored is not None
    assert stored.hold_reason is HoldReason.INEXACT_ATTAINMENT
    assert stored.ttft_exact is False and stored.tpot_exact is True
    assert stored.credit_micros == 0 and ledger.transfers() == []


def test_an_exact_period_settles_and_records_it_exact(ledger: Ledger) -> None:
    ttft = latency_from_buckets({0.3: 980, 0.5: 1000, float("inf"): 1000}, 0.3)
    settlement = settle(ledger, evaluate(ttft))
    assert settlement.state is SettlementState.SETTLED
    stored = ledger.settlement("uid-1", JAN)
    assert stored is not None and stored.hold_reason is None
    assert stored.ttft_exact is True and stored.tpot_exact is True


def test_a_period_with_no_judged_minute_is_held_not_settled(ledger: Ledger) -> None:
    ttft = latency_from_buckets({0.3: 1000, float("inf"): 1000}, 0.3)
    result = dataclasses.replace(evaluate(ttft), coverage_percent=None)
    settlement = settle(ledger, result)
    assert settlement.state is SettlementState.HELD_FOR_REVIEW
    stored = ledger.settlement("uid-1", JAN)
    assert stored is not None and stored.hold_reason is HoldReason.LOW_COVERAGE
