"""One evaluation of the whole fleet: every SLA's period measured in a single vectorized pass.

The operator runs one fleet-wide loop, not a timer per SLA: Prometheus answers one batched query
per SLI (see `aiconn.store.prometheus`) and this module turns the arrays into each SLA's status
numbers and the credits it would earn if the period closed now. The per-minute arrays of a large
fleet are big (10,000 SLAs x a 30-day month is 432 million minutes), so the minute math runs in
chunks of SLAs with compact dtypes and only per-SLA totals are kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from decimal import Decimal

import numpy as np
from numpy.typing import NDArray

from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec, CreditsSpec
from aiconn.sla.budget import (
    ALERT_RULES,
    alerts_firing,
    budget_millionths,
    error_budget,
    remaining_percent_exact,
    window_burn_rates,
    window_counts,
)
from aiconn.sla.burnwindows import AlertRule, burn_windows
from aiconn.sla.credits import (
    CreditBreakdown,
    attainment_percent,
    exact_decimal,
    period_credit,
    usage_charge,
)
from aiconn.sla.judged import MinuteRules
from aiconn.sla.settlement import PeriodOutcome
from aiconn.sla.sli import Occurrences, classify_minutes

DEFAULT_CHUNK_SLAS = 128


@dataclass(frozen=True)
class FleetTerms:
    """What each SLA promises, as arrays indexed like the series (one entry per SLA)."""

    availability_target: NDArray[np.float64]
    ttft_target: NDArray[np.float64]
    tpot_target: NDArray[np.float64]
    price_per_million_tokens: tuple[Decimal, ...]
    credits: tuple[CreditsSpec, ...]

    @classmethod
    def from_specs(cls, specs: Sequence[AIInferenceSLASpec]) -> FleetTerms:
        """Terms of the given SLAs, in order."""
        return cls(
            availability_target=np.array(
                [s.objectives.availability.target_percent for s in specs], dtype=np.float64
            ),
            ttft_target=np.array(
                [s.objectives.ttft.target_percent for s in specs], dtype=np.float64
            ),
            tpot_target=np.array(
                [s.objectives.tpot.target_percent for s in specs], dtype=np.float64
            ),
            # The price as written, unrounded: rounding happens once, on the charge.
            price_per_million_tokens=tuple(
                exact_decimal(s.tokens.price_per_million_tokens) for s in specs
            ),
            credits=tuple(s.credits for s in specs),
        )

    def __len__(self) -> int:
        return len(self.credits)


@dataclass(frozen=True)
class FleetSeries:
    """Measurements of N SLAs over one period, indexed like FleetTerms.

    The minute arrays are SLAs x minutes; column j is the minute [start + j, start + j + 1).
    The first `lookback_minutes` columns precede the period and feed only the burn-rate windows.
    """

    in_contract: NDArray[np.generic]
    """Requests the SLA covers, per minute (success, upstream errors, timeouts)."""
    failed: NDArray[np.generic]
    """In-contract requests that failed, per minute."""
    up: NDArray[np.floating]
    """1 up, 0 down, NaN no data, per minute."""
    ttft: Occurrences
    """Gateway time-to-first-token occurrences over the period."""
    tpot: Occurrences
    """Gateway time-per-output-token occurrences over the period."""
    tokens: NDArray[np.int64]
    """Prompt plus completion tokens metered over the period."""
    inference_ttft: Occurrences | None = None
    """vLLM's own TTFT occurrences (the inference part of the split), when scraped."""
    lookback_minutes: int = 0


@dataclass(frozen=True)
class SLAEvaluation:
    """One SLA's numbers for its status and its settlement. Percentages are None when unmeasured."""

    minutes: int
    good_minutes: int
    bad_minutes: int
    availability_percent: float | None
    coverage_percent: float | None
    ttft_attainment_percent: float | None
    ttft_exact: bool
    tpot_attainment_percent: float | None
    tpot_exact: bool
    inference_ttft_attainment_percent: float | None
    budget_remaining_percent: float | None
    burn_rates: dict[str, float | None]
    alerts: tuple[str, ...]
    tokens_used: int
    price_per_million_tokens: Decimal
    charges: Decimal
    credit: CreditBreakdown
    credit_uncertain: bool = False
    """An interpolated (inexact) latency attainment could earn a different credit somewhere
    within its bucket: the period must not be paid on it without review."""
    excused_minutes: int = 0
    """Minutes of announced maintenance in service hours: neither good, bad nor unknown."""
    judged_minutes: int | None = None
    """Minutes the availability objective covers (in force, in service hours, not excused): the
    coverage denominator. None: not counted (a result built outside `evaluate_fleet`)."""

    def outcome(self) -> PeriodOutcome:
        """What settling the period reads of this evaluation (`aiconn.sla.settlement`)."""
        return PeriodOutcome(**{f.name: getattr(self, f.name) for f in fields(PeriodOutcome)})


@dataclass(frozen=True)
class FleetEvaluation:
    """Per-SLA results as arrays (for dashboards and tests) plus exact money per SLA."""

    minutes: int
    good_minutes: NDArray[np.int64]
    bad_minutes: NDArray[np.int64]
    availability_percent: NDArray[np.float64]
    coverage_percent: NDArray[np.float64]
    ttft_attainment_percent: NDArray[np.float64]
    ttft_exact: NDArray[np.bool_]
    tpot_attainment_percent: NDArray[np.float64]
    tpot_exact: NDArray[np.bool_]
    inference_ttft_attainment_percent: NDArray[np.float64]
    budget_remaining_percent: NDArray[np.float64]
    burn_rates: dict[str, NDArray[np.float64]]
    alerts: NDArray[np.bool_]
    """SLAs x `rules`."""
    tokens_used: NDArray[np.int64]
    price_per_million_tokens: tuple[Decimal, ...]
    charges: tuple[Decimal, ...]
    credits: tuple[CreditBreakdown, ...] = field(repr=False)
    credit_uncertain: NDArray[np.bool_] | None = None
    """Per SLA: see `SLAEvaluation.credit_uncertain`; None means no SLA's was."""
    rules: tuple[AlertRule, ...] = ALERT_RULES
    """The burn-rate alerts of the SLAs' window, in the order of the `alerts` columns."""
    excused_minutes: NDArray[np.int64] | None = None
    """Per SLA: see `SLAEvaluation.excused_minutes`; None means none was excused."""
    judged_minutes: NDArray[np.int64] | None = None
    """Per SLA: see `SLAEvaluation.judged_minutes`."""

    def __len__(self) -> int:
        return len(self.charges)

    def sla(self, index: int) -> SLAEvaluation:
        """The evaluation of the SLA at `index`, as plain Python values."""
        return SLAEvaluation(
            minutes=self.minutes,
            good_minutes=int(self.good_minutes[index]),
            bad_minutes=int(self.bad_minutes[index]),
            availability_percent=_opt(self.availability_percent[index]),
            coverage_percent=_opt(self.coverage_percent[index]),
            ttft_attainment_percent=_opt(self.ttft_attainment_percent[index]),
            ttft_exact=bool(self.ttft_exact[index]),
            tpot_attainment_percent=_opt(self.tpot_attainment_percent[index]),
            tpot_exact=bool(self.tpot_exact[index]),
            inference_ttft_attainment_percent=_opt(self.inference_ttft_attainment_percent[index]),
            budget_remaining_percent=_opt(self.budget_remaining_percent[index]),
            burn_rates={name: _opt(rates[index]) for name, rates in self.burn_rates.items()},
            alerts=tuple(
                rule.name for rule, on in zip(self.rules, self.alerts[index], strict=True) if on
            ),
            tokens_used=int(self.tokens_used[index]),
            price_per_million_tokens=self.price_per_million_tokens[index],
            charges=self.charges[index],
            credit=self.credits[index],
            credit_uncertain=(
                self.credit_uncertain is not None and bool(self.credit_uncertain[index])
            ),
            excused_minutes=(
                0 if self.excused_minutes is None else int(self.excused_minutes[index])
            ),
            judged_minutes=None if self.judged_minutes is None else int(self.judged_minutes[index]),
        )


def evaluate_fleet(
    *,
    terms: FleetTerms,
    series: FleetSeries,
    in_force_from: Sequence[int] | NDArray[np.integer] | None = None,
    minute_rules: MinuteRules | None = None,
    chunk_slas: int = DEFAULT_CHUNK_SLAS,
    rules: tuple[AlertRule, ...] = ALERT_RULES,
) -> FleetEvaluation:
    """Evaluate every SLA over the period the series cover (minutes elapsed so far, or all).

    `rules` are the burn-rate alerts of the SLAs' window (`aiconn.sla.burnwindows.alert_rules`;
    the SLAs of one evaluation share their window, so they share their period and its alerts).

    `in_force_from` gives, per SLA, the first minute of the period (0-based) the SLA was in
    force: an SLA created mid-period is judged, and its data coverage counted, only from then on,
    so its first period is neither held for review for minutes nobody promised nor credited for
    them. None means every SLA was in force for the whole period.

    `minute_rules` (over the same columns as the series, look-back included) limit each SLA's
    availability to its service hours and excuse announced maintenance: those minutes count
    neither in the availability ratio, the coverage denominator nor the burn-rate windows.
    """
    n = len(terms)
    shape = series.in_contract.shape
    if len(shape) != 2 or shape[0] != n or series.failed.shape != shape or series.up.shape != shape:
        raise ValueError(
            f"minute arrays must all be SLAs x minutes with {n} SLAs, got in_contract {shape},"
            f" failed {series.failed.shape}, up {series.up.shape}"
        )
    if not 0 <= series.lookback_minutes <= shape[1]:
        raise ValueError(
            f"lookback_minutes must be between 0 and {shape[1]}, got {series.lookback_minutes}"
        )
    period = slice(series.lookback_minutes, None)
    minutes = shape[1] - series.lookback_minutes
    offsets = np.zeros(n, dtype=np.int64)
    if in_force_from is not None:
        offsets = np.clip(np.asarray(in_force_from, dtype=np.int64), 0, minutes)
        if offsets.shape != (n,):
            raise ValueError(
                f"in_force_from must have one entry per SLA ({n}), got shape {offsets.shape}"
            )
    judged = minutes - offsets
    if minute_rules is not None and (
        minute_rules.judged.shape[1] != shape[1] or len(minute_rules.rule_of) != n
    ):
        raise ValueError(
            f"minute_rules must cover the series' {shape[1]} columns and {n} SLAs, got"
            f" {minute_rules.judged.shape[1]} columns and {len(minute_rules.rule_of)} SLAs"
        )
    budget = error_budget(terms.availability_target)
    exact_budget = budget_millionths(terms.availability_target)

    good = np.empty(n, dtype=np.int64)
    bad = np.empty(n, dtype=np.int64)
    excused = np.zeros(n, dtype=np.int64)
    rates = {w.name: np.empty(n, dtype=np.float64) for w in burn_windows(rules)}
    alerts = np.empty((n, len(rules)), dtype=np.bool_)
    for lo in range(0, n, max(chunk_slas, 1)):
        rows = slice(lo, min(lo + chunk_slas, n))
        slices = classify_minutes(series.in_contract[rows], series.failed[rows], series.up[rows])
        masks = None if minute_rules is None else minute_rules.rows(rows)
        if masks is not None:
            # Minutes outside service hours or excused leave every count, burn windows included.
            np.logical_and(slices.bad, masks, out=slices.bad)
            np.logical_and(slices.known, masks, out=slices.known)
        bad_minutes, known_minutes = slices.bad[:, period], slices.known[:, period]
        in_force = None
        if offsets[rows].any():
            in_force = np.arange(minutes)[None, :] >= offsets[rows, None]
            bad_minutes, known_minutes = bad_minutes & in_force, known_minutes & in_force
        if masks is not None and minute_rules is not None:
            judged[rows], excused[rows] = minute_rules.counts(rows, period, in_force)
        bad_chunk = np.count_nonzero(bad_minutes, axis=1)
        known_chunk = np.count_nonzero(known_minutes, axis=1)
        good[rows] = known_chunk - bad_chunk
        bad[rows] = bad_chunk
        counts = window_counts(slices, rules=rules)
        for name, values in window_burn_rates(counts, budget_fraction=budget[rows]).items():
            rates[name][rows] = values
        alerts[rows] = alerts_firing(counts, budget=exact_budget[rows], rules=rules)

    known = good + bad
    remaining = remaining_percent_exact(bad=bad, known=known, budget=exact_budget)
    with np.errstate(invalid="ignore", divide="ignore"):
        availability = np.where(known > 0, 100.0 * good / np.maximum(known, 1), np.nan)
        coverage = np.where(judged > 0, 100.0 * known / np.maximum(judged, 1), np.nan)

    tokens = np.asarray(series.tokens, dtype=np.int64)
    inference = series.inference_ttft
    charges: list[Decimal] = []
    credits: list[CreditBreakdown] = []
    uncertain = np.zeros(n, dtype=np.bool_)
    ttft_low, ttft_high = series.ttft.bounds
    tpot_low, tpot_high = series.tpot.bounds
    for i in range(n):
        charge = usage_charge(int(tokens[i]), terms.price_per_million_tokens[i])
        charges.append(charge)
        terms_i = _CreditTerms(
            charges=charge,
            availability=attainment_percent(int(good[i]), int(known[i])),
            ttft_total=float(series.ttft.total[i]),
            tpot_total=float(series.tpot.total[i]),
            schedule=terms.credits[i],
        )
        credits.append(terms_i.at(float(series.ttft.good[i]), float(series.tpot.good[i])))
        if not (series.ttft.exact[i] and series.tpot.exact[i]):
            # Credit tiers only grow as attainment falls, so the two ends of the buckets bound
            # every credit an interpolated attainment could stand for.
            fewest = terms_i.at(float(ttft_low[i]), float(tpot_low[i]))
            most = terms_i.at(float(ttft_high[i]), float(tpot_high[i]))
            uncertain[i] = fewest.amount != most.amount
    return FleetEvaluation(
        minutes=minutes,
        good_minutes=good,
        bad_minutes=bad,
        availability_percent=availability,
        coverage_percent=coverage,
        ttft_attainment_percent=series.ttft.percent,
        ttft_exact=series.ttft.exact,
        tpot_attainment_percent=series.tpot.percent,
        tpot_exact=series.tpot.exact,
        inference_ttft_attainment_percent=(
            inference.percent if inference is not None else np.full(n, np.nan)
        ),
        budget_remaining_percent=remaining,
        burn_rates=rates,
        alerts=alerts,
        tokens_used=tokens,
        price_per_million_tokens=terms.price_per_million_tokens,
        charges=tuple(charges),
        credits=tuple(credits),
        credit_uncertain=uncertain,
        rules=rules,
        excused_minutes=excused,
        judged_minutes=judged,
    )


@dataclass(frozen=True)
class _CreditTerms:
    """One SLA's period but for its latency good counts: the credit as a function of them."""

    charges: Decimal
    availability: Decimal | None
    ttft_total: float
    tpot_total: float
    schedule: CreditsSpec

    def at(self, ttft_good: float, tpot_good: float) -> CreditBreakdown:
        return period_credit(
            charges=self.charges,
            availability=self.availability,
            ttft=attainment_percent(ttft_good, self.ttft_total),
            tpot=attainment_percent(tpot_good, self.tpot_total),
            schedule=self.schedule,
        )


def _opt(value: np.floating | float) -> float | None:
    number = float(value)
    return None if np.isnan(number) else number
