"""Availability timeslices and latency occurrences."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from aiconn.sla.sli import (
    availability,
    classify_minutes,
    occurrences_from_buckets,
)
from tests.factories import latency_from_buckets

NAN = math.nan


@pytest.mark.parametrize(
    ("in_contract", "failed", "up", "verdict"),
    [
        (100, 0, 1.0, "good"),
        (100, 5, 1.0, "good"),  # exactly 5 % is not more than 5 %
        (100, 6, 1.0, "bad"),
        (20, 1, 1.0, "good"),
        (19, 1, 1.0, "bad"),
        (0, 0, 1.0, "good"),  # idle and up: available
        (0, 0, 0.0, "bad"),  # idle and down
        (100, 0, 0.0, "bad"),  # down even if requests succeeded
        (100, 100, NAN, "unknown"),  # no up-state: no data
        (0, 0, NAN, "unknown"),
        (1, 1, 1.0, "bad"),
        (1_000_000, 50_000, 1.0, "good"),
        (1_000_000, 50_001, 1.0, "bad"),
        (2.5, 0.2, 1.0, "bad"),  # extrapolated increase() values are floats
    ],
)
def test_minute_verdicts(in_contract: float, failed: float, up: float, verdict: str) -> None:
    slices = classify_minutes(np.array([in_contract]), np.array([failed]), np.array([up]))
    got = "unknown" if not slices.known[0] else "bad" if slices.bad[0] else "good"
    assert got == verdict


def test_fleet_availability_and_coverage() -> None:
    up = np.array([[1, 1, 1, 1], [1, 0, NAN, NAN], [NAN, NAN, NAN, NAN]], dtype=np.float32)
    zeros = np.zeros(up.shape, dtype=np.int32)
    result = availability(classify_minutes(zeros, zeros, up))
    np.testing.assert_array_equal(result.good_minutes, [4, 1, 0])
    np.testing.assert_array_equal(result.bad_minutes, [0, 1, 0])
    np.testing.assert_allclose(result.percent, [100.0, 50.0, NAN])
    np.testing.assert_allclose(result.coverage_percent, [100.0, 50.0, 0.0])


def test_shapes_must_match() -> None:
    with pytest.raises(ValueError, match="same shape"):
        classify_minutes(np.zeros(3), np.zeros(3), np.zeros(4))


@given(
    data=arrays(np.int32, (3, 50), elements=st.integers(0, 1000)),
    fail_share=arrays(np.float64, (3, 50), elements=st.floats(0, 1)),
    up=arrays(np.float32, (3, 50), elements=st.sampled_from([0.0, 1.0, NAN])),
)
def test_good_bad_unknown_partition_the_minutes(
    data: np.ndarray, fail_share: np.ndarray, up: np.ndarray
) -> None:
    failed = np.floor(data * fail_share).astype(np.int32)
    slices = classify_minutes(data, failed, up)
    assert not np.any(slices.bad & ~slices.known)
    assert np.array_equal(slices.known, ~np.isnan(up))
    assert np.all(slices.good_minutes + slices.bad_minutes == slices.known_minutes)
    expected_bad = ~np.isnan(up) & ((up == 0) | (failed * 100 > data * 5))
    assert np.array_equal(slices.bad, expected_bad)


BUCKETS = {0.1: 10.0, 0.25: 40.0, 0.5: 80.0, 1.0: 95.0, math.inf: 100.0}


@pytest.mark.parametrize(
    ("buckets", "threshold", "good", "exact"),
    [
        (BUCKETS, 0.5, 80.0, True),
        (BUCKETS, 0.1, 10.0, True),
        (BUCKETS, 1.0, 95.0, True),
        (BUCKETS, 0.375, 60.0, False),  # halfway between 0.25 and 0.5
        (BUCKETS, 0.05, 5.0, False),  # first bucket starts at 0
        (BUCKETS, 2.0, 95.0, False),  # past the last finite bound: cannot interpolate
        ({math.inf: 0.0}, 0.5, 0.0, False),
        ({0.5: 0.0, math.inf: 0.0}, 0.5, 0.0, True),
    ],
)
def test_latency_good_count_at_threshold(
    buckets: dict[float, float], threshold: float, good: float, exact: bool
) -> None:
    result = latency_from_buckets(buckets, threshold)
    assert result.good[0] == pytest.approx(good)
    assert bool(result.exact[0]) is exact
    assert result.total[0] == buckets[math.inf]


def test_latency_percent_is_nan_without_requests() -> None:
    assert math.isnan(latency_from_buckets({0.5: 0.0, math.inf: 0.0}, 0.5).percent[0])


def test_histograms_of_different_shapes_in_one_call() -> None:
    result = occurrences_from_buckets(
        bounds=[[0.1, 0.5, 1.0], [0.2, NAN, NAN]],
        counts=[[1, 9, 10], [4, 0, 0]],
        totals=[10, 5],
        thresholds=[0.5, 0.2],
    )
    np.testing.assert_allclose(result.percent, [90.0, 80.0])
    assert result.exact.tolist() == [True, True]


def test_missing_inf_bucket_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\+Inf"):
        latency_from_buckets({0.5: 1.0}, 0.5)


@given(
    counts=st.lists(st.integers(0, 100), min_size=1, max_size=8),
    threshold=st.floats(0.001, 20.0),
)
def test_interpolated_good_lies_between_neighbouring_buckets(
    counts: list[int], threshold: float
) -> None:
    bounds = [0.01 * 2**i for i in range(len(counts))]
    cumulative = np.cumsum(counts).astype(float)
    buckets = dict(zip(bounds, cumulative, strict=True)) | {math.inf: float(cumulative[-1])}
    result = latency_from_buckets(buckets, threshold)
    assert 0 <= result.good[0] <= cumulative[-1]
    below = [c for b, c in zip(bounds, cumulative, strict=True) if b <= threshold]
    above = [c for b, c in zip(bounds, cumulative, strict=True) if b >= threshold]
    assert (below[-1] if below else 0.0) - 1e-9 <= result.good[0]
    assert result.good[0] <= (above[0] if above else cumulative[-1]) + 1e-9
