"""Error budgets, burn rates and multi-window alerts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiconn.sla.budget import (
    ALERT_RULES,
    budget_remaining_percent,
    budget_report,
    burn_rate,
    error_budget,
)
from aiconn.sla.sli import Timeslices

MONTH = 30 * 1440


def slices(bad: np.ndarray, known: np.ndarray | None = None) -> Timeslices:
    return Timeslices(bad=bad, known=np.ones_like(bad) if known is None else known)


@pytest.mark.parametrize(
    ("target", "budget"), [(99.9, 0.001), (99.0, 0.01), (95.0, 0.05), (99.95, 0.0005)]
)
def test_error_budget_is_one_minus_target(target: float, budget: float) -> None:
    assert error_budget(target) == pytest.approx(budget)


@pytest.mark.parametrize("target", [0.0, 100.0, -1.0, 101.0])
def test_targets_outside_0_100_are_refused(target: float) -> None:
    with pytest.raises(ValueError, match="targetPercent"):
        error_budget(target)


@pytest.mark.parametrize(
    ("bad", "known", "target", "remaining"),
    [
        (0, MONTH, 99.9, 100.0),
        (43, MONTH, 99.9, 100.0 * (1 - (43 / MONTH) / 0.001)),
        (1, 1000, 99.9, 0.0),  # exactly 99.9 %: budget exactly spent
        (2, 1000, 99.9, -100.0),
        (0, 0, 99.9, math.nan),  # nothing known: nothing to say
    ],
)
def test_budget_remaining(bad: int, known: int, target: float, remaining: float) -> None:
    got = float(
        budget_remaining_percent(bad=bad, known=known, budget_fraction=error_budget(target))
    )
    if math.isnan(remaining):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(remaining, abs=1e-9)


def test_week_at_99_95_has_five_minutes_of_budget() -> None:
    # Reference number: one calendar week at 99.95 % gives 5 min 2.4 s of budget.
    assert 7 * 1440 * 60 * float(error_budget(99.95)) == pytest.approx(302.4)


def test_burn_rate_of_one_spends_the_budget_over_the_period() -> None:
    assert float(burn_rate(bad=1, known=1000, budget_fraction=0.001)) == pytest.approx(1.0)


def _tail_bad(minutes: int, bad_tail: int) -> np.ndarray:
    bad = np.zeros((1, minutes), dtype=bool)
    if bad_tail:
        bad[0, -bad_tail:] = True
    return bad


@pytest.mark.parametrize(
    ("bad_tail", "firing"),
    [
        (0, set()),
        (1, {"page-1h"}),
        (3, {"page-1h", "page-6h"}),
        (5, {"page-1h", "page-6h", "ticket-1d", "ticket-3d"}),
        (60, {"page-1h", "page-6h", "ticket-1d", "ticket-3d"}),
    ],
)
def test_multiwindow_alerts(bad_tail: int, firing: set[str]) -> None:
    report = budget_report(slices(_tail_bad(MONTH, bad_tail)), target_percent=[99.9])
    assert set(report.firing(0)) == firing


def test_old_burn_without_a_current_short_window_does_not_page() -> None:
    bad = np.zeros((1, MONTH), dtype=bool)
    bad[0, -60:-10] = True  # an outage that ended 10 minutes ago
    report = budget_report(slices(bad), target_percent=[99.9])
    assert report.burn_rates["w1h"][0] > 14.4
    assert report.burn_rates["w5m"][0] == 0
    assert "page-1h" not in report.firing(0)


def test_unknown_windows_never_fire() -> None:
    known = np.ones((1, MONTH), dtype=bool)
    known[0, -4320:] = False
    report = budget_report(slices(np.zeros((1, MONTH), dtype=bool), known), target_percent=[99.9])
    assert all(math.isnan(report.burn_rates[w][0]) for w in ("w5m", "w1h", "w3d"))
    assert not report.alerts.any()


def test_alert_rules_match_the_sre_workbook() -> None:
    assert [(r.name, r.long.minutes, r.short.minutes, r.factor) for r in ALERT_RULES] == [
        ("page-1h", 60, 5, 14.4),
        ("page-6h", 360, 30, 6.0),
        ("ticket-1d", 1440, 120, 3.0),
        ("ticket-3d", 4320, 360, 1.0),
    ]


@given(
    bad=st.integers(0, 10_000),
    extra=st.integers(0, 10_000),
    target=st.floats(50, 99.999),
)
def test_budget_remaining_is_one_minus_period_burn(bad: int, extra: int, target: float) -> None:
    known = bad + extra
    if known == 0:
        return
    budget = error_budget(target)
    remaining = float(budget_remaining_percent(bad=bad, known=known, budget_fraction=budget))
    rate = float(burn_rate(bad=bad, known=known, budget_fraction=budget))
    assert remaining == pytest.approx(100 * (1 - rate))
    assert (remaining >= 0) == (bad / known <= float(budget) + 1e-12) or math.isclose(
        remaining, 0, abs_tol=1e-6
    )
