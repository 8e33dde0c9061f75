"""Error budgets, burn rates and the multi-window burn-rate alerts of the Google SRE workbook.

The budget is what the target leaves over (1 - target). Burn rate is the error ratio of a window
divided by the budget: 1 spends the budget exactly over the period, 14.4 spends 2 % of a 30-day
budget in an hour. An alert fires only when a long and a short window both burn faster than its
factor: the long window proves the burn is significant, the short one that it is still happening.

Ratios are over *known* minutes (see `aiconn.sla.sli`): a window without data has no burn rate
(NaN), so it never fires an alert on its own — missing data is shown as coverage, not as an outage.

The windows and factors are the SLA window's (`aiconn.sla.burnwindows`): the workbook's for a
month, scaled for any other length; the functions here take them as `rules`.

Decisions are exact. The budget of a 99.9 % target is 0.1 % of the minutes, but `(100 - 99.9) /
100` in binary is 0.00099999999999994, so one bad minute in a thousand would burn "above" 1 and
fire an alert that needs strictly above. Targets are therefore taken as decimals to a millionth of
a percent, factors as fractions, and both the alerts and the remaining budget are decided in
integer arithmetic on minute counts; floats only carry the rates shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

import numpy as np
from numpy.typing import ArrayLike, NDArray

from aiconn.sla.burnwindows import DEFAULT_WINDOW, AlertRule, alert_rules, burn_windows
from aiconn.sla.sli import Timeslices

ALERT_RULES = alert_rules(DEFAULT_WINDOW)
"""The alerts of a monthly SLA: the workbook's 1h/5m x14.4, 6h/30m x6, 1d/2h x3, 3d/6h x1."""
BURN_WINDOWS = burn_windows(ALERT_RULES)
"""Their windows: w5m, w30m, w1h, w2h, w6h, w1d, w3d."""


MILLIONTHS = 1_000_000
"""Targets and budgets are exact to a millionth of a percent."""
WHOLE = 100 * MILLIONTHS
"""100 % in millionths of a percent."""


@dataclass(frozen=True)
class BudgetReport:
    """Budget and burn of each SLA; arrays are indexed by SLA."""

    budget_fraction: NDArray[np.float64]
    """1 - target, as a fraction."""
    remaining_percent: NDArray[np.float64]
    """Budget left in percent; negative when overspent, NaN without known minutes."""
    burn_rates: dict[str, NDArray[np.float64]]
    """Burn rate per window name (see BURN_WINDOWS); NaN when the window has no known minute."""
    alerts: NDArray[np.bool_]
    """SLAs x rules: which alerts fire."""
    rules: tuple[AlertRule, ...] = ALERT_RULES
    """The alerts' rules, in the order of the columns (`aiconn.sla.burnwindows.alert_rules`)."""

    def firing(self, index: int) -> list[str]:
        """Names of the alerts firing for one SLA."""
        return [rule.name for rule, on in zip(self.rules, self.alerts[index], strict=True) if on]


def error_budget(target_percent: ArrayLike) -> NDArray[np.float64]:
    """1 - target, as a fraction (99.9 % gives 0.001)."""
    target = np.asarray(target_percent, dtype=np.float64)
    if np.any((target <= 0) | (target >= 100)):
        raise ValueError(
            f"targetPercent must be in (0, 100), got {target[(target <= 0) | (target >= 100)]}"
        )
    return (100.0 - target) / 100.0


def budget_millionths(target_percent: ArrayLike) -> NDArray[np.int64]:
    """100 - target in millionths of a percent, from the decimal the target is written as: 99.9
    gives exactly 100,000 (0.1 %), not the binary 0.0999999999999943."""
    targets = np.atleast_1d(np.asarray(target_percent, dtype=np.float64))
    error_budget(targets)
    exact = [
        int((Decimal(repr(float(t))) * MILLIONTHS).to_integral_value(ROUND_HALF_EVEN))
        for t in targets
    ]
    return WHOLE - np.asarray(exact, dtype=np.int64)


def burn_rate(
    *, bad: ArrayLike, known: ArrayLike, budget_fraction: ArrayLike
) -> NDArray[np.float64]:
    """Error ratio over the budget; NaN where nothing is known."""
    b = np.asarray(bad, dtype=np.float64)
    k = np.asarray(known, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(k > 0, (b / k) / np.asarray(budget_fraction, dtype=np.float64), np.nan)


def budget_remaining_percent(
    *, bad: ArrayLike, known: ArrayLike, budget_fraction: ArrayLike
) -> NDArray[np.float64]:
    """(budget - error ratio) / budget in percent, i.e. 100 x (1 - burn rate of the period)."""
    return 100.0 * (1.0 - burn_rate(bad=bad, known=known, budget_fraction=budget_fraction))


def remaining_percent_exact(
    *, bad: ArrayLike, known: ArrayLike, budget: ArrayLike
) -> NDArray[np.float64]:
    """Budget left in percent from integer minute counts and `budget_millionths`.

    (budget x known - bad) / (budget x known), with the numerator an integer: a budget spent
    exactly is exactly 0, so "exhausted" (<= 0) holds on the tie. NaN where nothing is known.
    """
    b = np.asarray(bad, dtype=np.int64)
    k = np.asarray(known, dtype=np.int64)
    allowed = k * np.asarray(budget, dtype=np.int64)
    left = allowed - b * WHOLE
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(k > 0, 100.0 * left / np.maximum(allowed, 1), np.nan)


def budget_report(
    slices: Timeslices,
    *,
    target_percent: ArrayLike,
    period_columns: slice = slice(None),
    rules: tuple[AlertRule, ...] = ALERT_RULES,
) -> BudgetReport:
    """Budget over `period_columns` of the slices, burn rates over the trailing minutes.

    Columns before the period (a look-back) count only for the burn-rate windows, so a 3-day
    window is whole on the first day of a month. `rules` are the SLA window's alerts.
    """
    bad = np.atleast_2d(slices.bad)
    known = np.atleast_2d(slices.known)
    budget = error_budget(target_percent)
    exact_budget = budget_millionths(target_percent)
    remaining = remaining_percent_exact(
        bad=np.count_nonzero(bad[:, period_columns], axis=1),
        known=np.count_nonzero(known[:, period_columns], axis=1),
        budget=exact_budget,
    )
    counts = window_counts(slices, rules=rules)
    rates = window_burn_rates(counts, budget_fraction=budget)
    return BudgetReport(
        budget_fraction=budget,
        remaining_percent=remaining,
        burn_rates=rates,
        alerts=alerts_firing(counts, budget=exact_budget, rules=rules),
        rules=rules,
    )


@dataclass(frozen=True)
class WindowCounts:
    """Bad and known minutes of each SLA in each trailing window of the rules, by name."""

    bad: dict[str, NDArray[np.int64]]
    known: dict[str, NDArray[np.int64]]


def window_counts(
    slices: Timeslices, *, rules: tuple[AlertRule, ...] = ALERT_RULES
) -> WindowCounts:
    """Count the trailing windows once; rates and alerts are both derived from the counts."""
    bad = np.atleast_2d(slices.bad)
    known = np.atleast_2d(slices.known)
    windows = burn_windows(rules)
    return WindowCounts(
        bad={w.name: np.count_nonzero(bad[:, -w.minutes :], axis=1) for w in windows},
        known={w.name: np.count_nonzero(known[:, -w.minutes :], axis=1) for w in windows},
    )


def window_burn_rates(
    counts: WindowCounts, *, budget_fraction: ArrayLike
) -> dict[str, NDArray[np.float64]]:
    """Burn rate of each SLA over each counted window, by window name (for display)."""
    return {
        name: burn_rate(bad=bad, known=counts.known[name], budget_fraction=budget_fraction)
        for name, bad in counts.bad.items()
    }


def burning_above(
    *, bad: ArrayLike, known: ArrayLike, budget: ArrayLike, factor: float
) -> NDArray[np.bool_]:
    """Burn rate strictly above `factor`, decided exactly (no known minute never fires).

    bad / known / (budget / 100 %) > p / q  <=>  bad x 100 % x q > p x known x budget, all
    integers (a month of minutes times 100 % in millionths stays far inside int64).
    """
    exact = Fraction(repr(factor))
    b = np.asarray(bad, dtype=np.int64)
    k = np.asarray(known, dtype=np.int64)
    spend = b * WHOLE * exact.denominator
    allowed = exact.numerator * k * np.asarray(budget, dtype=np.int64)
    return np.asarray((k > 0) & (spend > allowed), dtype=np.bool_)


def alerts_firing(
    counts: WindowCounts, *, budget: ArrayLike, rules: tuple[AlertRule, ...] = ALERT_RULES
) -> NDArray[np.bool_]:
    """SLAs x rules: both windows strictly above the factor, decided exactly.

    `budget` is per SLA in millionths of a percent (`budget_millionths`).
    """
    columns = [
        burning_above(
            bad=counts.bad[rule.long.name],
            known=counts.known[rule.long.name],
            budget=budget,
            factor=rule.factor,
        )
        & burning_above(
            bad=counts.bad[rule.short.name],
            known=counts.known[rule.short.name],
            budget=budget,
            factor=rule.factor,
        )
        for rule in rules
    ]
    return np.stack(columns, axis=-1)
