"""Service level indicators: availability as 1-minute timeslices, latency as occurrences.

Availability follows OpenSLO's Timeslices method with Google's rule for a bad minute: the service
was down, or more than 5 % of its in-contract requests failed. OpenSLO leaves empty slices open;
aiconn decides: a minute whose up-state is NaN is *unknown*, counted neither good nor bad, and
shown as data coverage, so a Prometheus outage can neither fake downtime nor hide it. The
source (`aiconn.store.prometheus.service_up`) makes that NaN only when monitoring itself saw
nothing: an SLA whose pods are gone while Prometheus scrapes is down, not unknown. A minute that
has data, no requests and the service up is good: an idle service that answers is available.

Some minutes are not judged at all: those outside an offer's service hours
(`aiconn.sla.servicehours`) and those of planned maintenance announced in advance
(`aiconn.sla.maintenance`), which are *excused*. Each minute gets exactly one verdict, stored
with a settlement's evidence (`aiconn.sla.evidence.Verdict`, `minute_verdicts`).

Everything is vectorized over a fleet: arrays are SLAs x minutes, so one call judges every SLA.

Latency is counted from cumulative histogram buckets (Occurrences). The count at the threshold is
exact when the threshold is a bucket bound (the gateway adds every SLA's threshold to its buckets);
otherwise it is interpolated linearly inside the bucket, as `histogram_quantile` would, and flagged
inexact so nobody settles money on it unknowingly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

FAILED_PERCENT_LIMIT = 5
"""A minute whose failed share of in-contract requests exceeds this percentage is bad."""


@dataclass(frozen=True)
class Timeslices:
    """Per-minute verdicts for a fleet, as two boolean arrays of the same shape (SLAs x minutes).

    A minute is good when known and not bad, bad when known and bad, unknown when not known.
    """

    bad: NDArray[np.bool_]
    known: NDArray[np.bool_]

    @property
    def good_minutes(self) -> NDArray[np.int64]:
        """Good minutes per SLA."""
        return self.known_minutes - self.bad_minutes

    @property
    def bad_minutes(self) -> NDArray[np.int64]:
        """Bad minutes per SLA."""
        return _count(self.bad)

    @property
    def known_minutes(self) -> NDArray[np.int64]:
        """Minutes with data per SLA."""
        return _count(self.known)


@dataclass(frozen=True)
class Availability:
    """Availability of each SLA over the minutes judged."""

    good_minutes: NDArray[np.int64]
    bad_minutes: NDArray[np.int64]
    minutes: int
    """Minutes judged (known or not), the coverage denominator."""

    @property
    def known_minutes(self) -> NDArray[np.int64]:
        """Minutes with data."""
        return self.good_minutes + self.bad_minutes

    @property
    def percent(self) -> NDArray[np.float64]:
        """Good over known minutes in percent; NaN where no minute is known."""
        return _percent(self.good_minutes, self.known_minutes)

    @property
    def coverage_percent(self) -> NDArray[np.float64]:
        """Known over judged minutes in percent; NaN when nothing was judged."""
        return _percent(self.known_minutes, np.full_like(self.good_minutes, self.minutes))


@dataclass(frozen=True)
class Occurrences:
    """Good and total requests for a latency objective, per SLA."""

    good: NDArray[np.float64]
    total: NDArray[np.float64]
    exact: NDArray[np.bool_]
    """False where the threshold fell inside a bucket and `good` was interpolated."""
    good_low: NDArray[np.float64] | None = None
    """Fewest good requests the buckets allow (the bucket's lower bound); None: `good`."""
    good_high: NDArray[np.float64] | None = None
    """Most good requests the buckets allow (its upper bound, or all); None: `good`."""

    @property
    def bounds(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(fewest, most) good requests: both equal `good` where exact. Settlement checks that
        an interpolated attainment earns the same credit anywhere between them."""
        low = self.good if self.good_low is None else self.good_low
        high = self.good if self.good_high is None else self.good_high
        return low, high

    @property
    def percent(self) -> NDArray[np.float64]:
        """Good over total in percent; NaN where there were no requests."""
        return _percent(self.good, self.total)


def classify_minutes(in_contract: ArrayLike, failed: ArrayLike, up: ArrayLike) -> Timeslices:
    """Judge each minute: `in_contract` and `failed` are request counts, `up` is 1, 0 or NaN.

    Any shape works (one SLA's minutes or SLAs x minutes); the three arrays must match.
    """
    requests = np.asarray(in_contract)
    failures = np.asarray(failed)
    state_up = np.asarray(up)
    if not (requests.shape == failures.shape == state_up.shape):
        raise ValueError(
            "in_contract, failed and up must have the same shape, got"
            f" {requests.shape}, {failures.shape} and {state_up.shape}"
        )
    known = ~np.isnan(state_up)
    bad = state_up == 0
    # Failures are rare, so the failed-share test runs only where a minute has any: on a month of
    # a large fleet this is most of the speed. 100 * failed > 5 * in_contract avoids 0/0, and
    # exactly 5 % stays good instead of depending on how 0.05 rounds in binary.
    flat_failures = failures.reshape(-1)
    where_failed = np.flatnonzero(flat_failures != 0)
    over = flat_failures[where_failed].astype(np.float64) * 100 > (
        requests.reshape(-1)[where_failed].astype(np.float64) * FAILED_PERCENT_LIMIT
    )
    bad.reshape(-1)[where_failed[over]] = True
    bad &= known
    return Timeslices(bad=bad, known=known)


def availability(slices: Timeslices) -> Availability:
    """Aggregate timeslices into good and bad minutes per SLA."""
    return Availability(
        good_minutes=slices.good_minutes,
        bad_minutes=slices.bad_minutes,
        minutes=int(slices.known.shape[-1]),
    )


def occurrences_from_buckets(
    *, bounds: ArrayLike, counts: ArrayLike, totals: ArrayLike, thresholds: ArrayLike
) -> Occurrences:
    """Requests at or under each SLA's threshold, from cumulative bucket counts.

    `bounds` and `counts` are SLAs x buckets, bounds ascending and NaN-padded where an SLA has
    fewer buckets; `totals` is each SLA's request count (the +Inf bucket); `thresholds` are in the
    bounds' unit. Below the first bound the bucket is taken to start at 0, like Prometheus does;
    above the last finite bound nothing can be interpolated and the last bound's count is used.
    """
    b = np.atleast_2d(np.asarray(bounds, dtype=np.float64))
    c = np.atleast_2d(np.asarray(counts, dtype=np.float64))
    total = np.atleast_1d(np.asarray(totals, dtype=np.float64))
    thr = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    if b.shape != c.shape or b.shape[0] != total.shape[0] or thr.shape != total.shape:
        raise ValueError(
            f"bounds {b.shape} and counts {c.shape} must be SLAs x buckets, with one total and"
            f" one threshold per SLA, got {total.shape} and {thr.shape}"
        )
    finite = np.isfinite(b)
    rows = np.arange(b.shape[0])
    # Index of the first bound >= threshold; NaN padding compares False so it is never chosen.
    below = np.count_nonzero(finite & (b < thr[:, None]), axis=1)
    n_finite = np.count_nonzero(finite, axis=1)
    upper_index = np.minimum(below, b.shape[1] - 1)
    has_upper = below < n_finite
    upper = np.where(has_upper, b[rows, upper_index], np.nan)
    upper_count = np.where(has_upper, c[rows, upper_index], np.nan)
    lower_index = np.maximum(below - 1, 0)
    lower = np.where(below > 0, b[rows, lower_index], 0.0)
    lower_count = np.where(below > 0, c[rows, lower_index], 0.0)
    exact = has_upper & (upper == thr)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(upper > lower, (thr - lower) / (upper - lower), 1.0)
    interpolated = lower_count + fraction * (upper_count - lower_count)
    good = np.where(has_upper, interpolated, lower_count)
    # Counts above the +Inf count (scrape skew between buckets) are capped: never above 100 %.
    good = np.minimum(good, total)
    low = np.where(exact, good, np.minimum(lower_count, total))
    high = np.where(exact, good, np.where(has_upper, np.minimum(upper_count, total), total))
    return Occurrences(good=good, total=total, exact=exact, good_low=low, good_high=high)


def _count(mask: NDArray[np.bool_]) -> NDArray[np.int64]:
    return np.asarray(np.count_nonzero(mask, axis=-1), dtype=np.int64)


def _percent(good: ArrayLike, total: ArrayLike) -> NDArray[np.float64]:
    g = np.asarray(good, dtype=np.float64)
    t = np.asarray(total, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(t > 0, 100.0 * g / t, np.nan)
