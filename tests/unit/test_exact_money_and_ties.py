"""Money and thresholds decided exactly (issue 11, item 6): no price rounded before it is
multiplied, and a tie at a threshold stays on the side the docs promise."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec
from aiconn.sla.budget import (
    budget_millionths,
    budget_report,
    burning_above,
    remaining_percent_exact,
)
from aiconn.sla.evaluate import FleetTerms, evaluate_fleet
from aiconn.sla.sli import Timeslices
from tests.factories import availability_series, small_sla_spec

MINUTES = 4320


def spec(**tokens: object) -> AIInferenceSLASpec:
    return small_sla_spec(tokens=tokens)


def test_the_price_is_not_rounded_before_it_is_multiplied() -> None:
    # 0.0000015 per million tokens rounded to micro-units first would be 0.000002: a third more.
    terms = FleetTerms.from_specs([spec(pricePerMillionTokens=0.0000015)])
    assert terms.price_per_million_tokens == (Decimal("0.0000015"),)
    up = np.ones((1, 10), dtype=np.float32)
    result = evaluate_fleet(
        terms=terms,
        series=availability_series(up, tokens=1_000_000_000),
    ).sla(0)
    assert result.charges == Decimal("0.0015")


@pytest.mark.parametrize(
    ("target", "millionths"), [(99.9, 100_000), (99.95, 50_000), (99.0, 1_000_000), (95, 5_000_000)]
)
def test_budget_is_the_decimal_target(target: float, millionths: int) -> None:
    assert budget_millionths([target]).tolist() == [millionths]


def test_a_burn_rate_exactly_at_the_factor_does_not_fire() -> None:
    # 1 bad minute in 1000 at 99.9 % burns exactly 1.0; in binary floats it is 1.0000000000000568.
    assert not burning_above(bad=[1], known=[1000], budget=budget_millionths([99.9]), factor=1.0)[0]
    assert burning_above(bad=[2], known=[1000], budget=budget_millionths([99.9]), factor=1.0)[0]
    # 14.4 is 72/5 exactly: 72 bad in 5000 known at 99.9 % is exactly 14.4.
    assert not burning_above(bad=[72], known=[5000], budget=budget_millionths([99.9]), factor=14.4)[
        0
    ]
    assert burning_above(bad=[73], known=[5000], budget=budget_millionths([99.9]), factor=14.4)[0]


def test_ticket_3d_on_an_exact_tie_of_its_long_window_stays_silent() -> None:
    # The 3-day window: 1000 known minutes with 1 bad (burn exactly 1); the 6-hour window holds
    # that bad minute among 360 known (burn 2.8). Strictly above needs both.
    known = np.zeros((1, MINUTES), dtype=bool)
    known[0, -1000:] = True
    bad = np.zeros((1, MINUTES), dtype=bool)
    bad[0, -1] = True
    report = budget_report(Timeslices(bad=bad, known=known), target_percent=[99.9])
    assert "ticket-3d" not in report.firing(0)
    bad[0, -2] = True
    report = budget_report(Timeslices(bad=bad, known=known), target_percent=[99.9])
    assert "ticket-3d" in report.firing(0)


def test_a_budget_spent_exactly_is_exactly_zero_left() -> None:
    budget = budget_millionths([99.9])
    assert remaining_percent_exact(bad=[1], known=[1000], budget=budget).tolist() == [0.0]
    assert remaining_percent_exact(bad=[0], known=[1000], budget=budget).tolist() == [100.0]
    assert remaining_percent_exact(bad=[3], known=[1000], budget=budget).tolist() == [-200.0]
    assert np.isnan(remaining_percent_exact(bad=[0], known=[0], budget=budget)[0])
