"""The scaling decision: SLO signals in, a replica count within [replicas, maxReplicas] out."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from aiconn.inference.scaling import (
    Direction,
    ScalingPolicy,
    ScalingSignals,
    decide_replicas,
    in_flight_query,
    scaled,
)
from tests.factories import small_sla_spec

POLICY = ScalingPolicy()  # 8 in flight per replica, scale in at half of it, burn > 2
T0 = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
TTFT_TARGET = 99.0


def decide(
    current: int,
    signals: ScalingSignals,
    *,
    low: int = 1,
    high: int = 4,
    since_change: timedelta | None = None,
) -> tuple[int, Direction]:
    decision = decide_replicas(
        current=current,
        low=low,
        high=high,
        signals=signals,
        ttft_target_percent=TTFT_TARGET,
        policy=POLICY,
        now=T0,
        last_change=None if since_change is None else T0 - since_change,
    )
    return decision.replicas, decision.direction


@pytest.mark.parametrize(
    ("current", "signals", "kwargs", "expected"),
    [
        # At the threshold exactly: nothing asks for more, and one fewer would be overloaded.
        (2, ScalingSignals(in_flight=16), {}, (2, Direction.HOLD)),
        # Above it: as many replicas as put each at the target.
        (2, ScalingSignals(in_flight=17), {}, (3, Direction.OUT)),
        (1, ScalingSignals(in_flight=30), {}, (4, Direction.OUT)),
        # Never beyond maxReplicas, however large the surge.
        (1, ScalingSignals(in_flight=500), {}, (4, Direction.OUT)),
        (4, ScalingSignals(in_flight=500), {}, (4, Direction.HOLD)),
        # TTFT attainment below the objective asks for one more even at low load.
        (2, ScalingSignals(in_flight=4, ttft_attainment_percent=98.5), {}, (3, Direction.OUT)),
        # A fast burn asks for one more; a burn at 1 or below does not.
        (2, ScalingSignals(in_flight=10, burn_rate=2.5), {}, (3, Direction.OUT)),
        (2, ScalingSignals(in_flight=10, burn_rate=1.0), {}, (2, Direction.HOLD)),
        # Cooldown after a change holds a second scale-out.
        (2, ScalingSignals(in_flight=30), {"since_change": timedelta(seconds=30)}, (2, "Hold")),
        # Low load scales in one replica at a time, after the longer cooldown.
        (3, ScalingSignals(in_flight=6), {}, (2, Direction.IN)),
        (3, ScalingSignals(in_flight=6), {"since_change": timedelta(minutes=4)}, (3, "Hold")),
        (3, ScalingSignals(in_flight=6), {"since_change": timedelta(minutes=5)}, (2, "ScaleIn")),
        # Inside the hysteresis band: 9 on 2 replicas is 4.5 > 4, so stay at 3.
        (3, ScalingSignals(in_flight=9), {}, (3, Direction.HOLD)),
        # Never below replicas, and never in without a load measurement or while burning.
        (1, ScalingSignals(in_flight=0), {}, (1, Direction.HOLD)),
        (3, ScalingSignals(ttft_attainment_percent=100), {}, (3, Direction.HOLD)),
        (3, ScalingSignals(in_flight=1, burn_rate=1.5), {}, (3, Direction.HOLD)),
        # A count outside the bounds (the spec changed) is brought inside them first.
        (6, ScalingSignals(in_flight=0), {}, (4, Direction.IN)),
        (1, ScalingSignals(in_flight=0), {"low": 2}, (2, Direction.OUT)),
    ],
)
def test_the_decision_table(
    current: int,
    signals: ScalingSignals,
    kwargs: dict[str, object],
    expected: tuple[int, str],
) -> None:
    assert decide(current, signals, **kwargs) == expected  # type: ignore[arg-type]


def simulate(start: int, in_flight: list[float], *, high: int, step: timedelta) -> list[int]:
    """Play the signals through the decision as the loop would, one pass per sample."""
    replicas, last_change, counts = start, None, []
    for index, load in enumerate(in_flight):
        now = T0 + index * step
        decision = decide_replicas(
            current=replicas,
            low=start,
            high=high,
            signals=ScalingSignals(in_flight=load, ttft_attainment_percent=99.5, burn_rate=0.8),
            ttft_target_percent=TTFT_TARGET,
            policy=POLICY,
            now=now,
            last_change=last_change,
        )
        if decision.replicas != replicas:
            replicas, last_change = decision.replicas, now
        counts.append(replicas)
    return counts


@pytest.mark.parametrize("jitter", [0.0, 0.01, 0.05, 0.2])
def test_ten_minutes_of_steady_load_at_the_threshold_never_flap(jitter: float) -> None:
    # 2 replicas at exactly 8 in flight each, read every 15 s for 10 minutes, with the load
    # alternating above and below the threshold by `jitter`.
    step = timedelta(seconds=15)
    samples = int(timedelta(minutes=10) / step)
    load = [16 * (1 + (jitter if i % 2 == 0 else -jitter)) for i in range(samples)]
    counts = simulate(2, load, high=4, step=step)
    assert len(counts) == 40
    changes = sum(1 for a, b in itertools.pairwise(counts) if a != b)
    # At most the first scale-out (when the jitter pushes above the threshold), never back.
    assert counts == sorted(counts)
    assert changes == 0
    assert counts[0] == (2 if jitter == 0 else 3)
    assert max(counts) <= 4


def test_a_surge_scales_out_to_max_replicas_and_never_beyond_then_back_in_slowly() -> None:
    step = timedelta(seconds=15)
    load = [8.0] * 4 + [200.0] * 40 + [2.0] * 80
    counts = simulate(1, load, high=4, step=step)
    assert max(counts) == 4
    assert counts[4] == 4  # the first pass of the surge jumps to the count the load needs
    assert counts[43] == 4
    # Back in one replica per cooldown (5 minutes = 20 passes), to the floor and no lower.
    drops = [i for i, (a, b) in enumerate(itertools.pairwise(counts)) if b < a]
    assert [counts[i] - counts[i + 1] for i in drops] == [1, 1, 1]
    assert all(b - a >= 20 for a, b in itertools.pairwise(drops))
    assert counts[-1] == 1


def test_in_flight_comes_from_the_gateway_duration_sum_by_littles_law() -> None:
    assert in_flight_query(namespace="acme", sla="chat") == (
        'sum(rate(aiconn_gateway_request_duration_seconds_sum{namespace="acme",sla="chat"}[1m]))'
    )


def test_the_reconcile_runs_the_loops_count_within_the_spec_range() -> None:
    spec = small_sla_spec(capacity={"replicas": 2, "maxReplicas": 4})
    assert scaled(spec, {}).capacity.replicas == 2
    assert scaled(spec, {"assurance": {"replicas": 3}}).capacity.replicas == 3
    # A spec edit that narrows the range wins over the loop's last count.
    assert scaled(spec, {"assurance": {"replicas": 9}}).capacity.replicas == 4
    assert scaled(spec, {"assurance": {"replicas": 1}}).capacity.replicas == 2
    assert spec.capacity.replicas == 2  # the spec itself is left alone
