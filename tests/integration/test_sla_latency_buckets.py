"""Latency attainment against a real Prometheus when pods disagree on buckets (issue 11, items 3
and 4): a threshold edit rolls out pods with a new bound while old pods kept the old ones.

Pod `old` served minutes 0-14 with buckets {0.25, 0.5, +Inf}; pod `new` serves minutes 15-29 with
{0.25, 0.3, 0.5, +Inf} (the edited 300 ms threshold added). Summing per `le` across them took the
0.3 bucket from `new` only and +Inf from both: about 50 % "exact". On Debian's Prometheus 2.x and
on 3.x (`prometheus_bin`); one Prometheus on the history serves both tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aiconn.operator.evaluation import measure
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec
from aiconn.sla import metricnames as mn
from aiconn.sla.accounting import HoldReason, SettlementState
from aiconn.sla.evaluate import SLAEvaluation
from aiconn.sla.periods import Period, floor_minute
from aiconn.store.ledger import Ledger
from aiconn.store.prometheus import PrometheusSource
from tests.factories import settle, sla_ref
from tests.integration.promdata import History, backfilled_prometheus, gateway_pod, serving

pytestmark = [pytest.mark.integration]

MINUTES = 30
OLD = range(15)
NEW = range(15, MINUTES)


@pytest.fixture(scope="module")
def edited(services_dir: Path, prometheus_bin: Path) -> Iterator[tuple[str, Period]]:
    """A Prometheus holding the edited SLA's history; yields its URL and the period."""
    start = floor_minute(datetime.now(UTC)) - timedelta(minutes=MINUTES + 10)
    history = History(start=start)
    history.gauge("up", {"job": "prometheus", "instance": "self"}, 1, range(MINUTES))
    serving(history, "edited", "old", OLD, per_minute=100)
    serving(history, "edited", "new", NEW, per_minute=100)
    shape = {
        # pod: {le: requests at or under it per minute}, 100 requests per minute in all
        "old": {"0.25": 95, "0.5": 99, "+Inf": 100},
        "new": {"0.25": 90, "0.3": 99.5, "0.5": 100, "+Inf": 100},
    }
    for replica, minutes in (("old", OLD), ("new", NEW)):
        for le, per_minute in shape[replica].items():
            history.counter(
                f"{mn.GATEWAY_TTFT}_bucket",
                {**gateway_pod("edited", replica), "le": le},
                dict.fromkeys(minutes, per_minute),
                minutes,
            )
    server, group = backfilled_prometheus(history, services_dir, binary=prometheus_bin)
    try:
        yield server.url, Period(start=start, end=start + timedelta(minutes=MINUTES))
    finally:
        group.stop_all()


def evaluate(url: str, period: Period, *, threshold_ms: int) -> SLAEvaluation:
    spec = AIInferenceSLASpec.model_validate(
        {
            "model": {"name": "tiny", "source": "hf://aiconn/tiny", "parametersBillions": 1},
            "objectives": {
                "availability": {"targetPercent": 99.0},
                "ttft": {"thresholdMs": threshold_ms, "targetPercent": 99},
                "window": {"duration": "1d"},
            },
            "network": {"rttBudgetMs": 50},
            "tokens": {"pricePerMillionTokens": 1000},
        }
    )
    ref = sla_ref("edited", spec)
    return measure(PrometheusSource.from_url(url), [ref], period, lookback_minutes=0).sla(0)


def test_an_edited_threshold_is_measured_from_the_pods_that_carry_it(
    edited: tuple[str, Period],
) -> None:
    result = evaluate(*edited, threshold_ms=300)
    # Only `new` has the 0.3 bound: 99.5 of its 100 requests a minute (was about 50 %).
    assert result.ttft_exact
    assert result.ttft_attainment_percent == pytest.approx(99.5)


def test_a_threshold_no_pod_carries_is_interpolated_from_shared_bounds_and_held_near_a_tier(
    edited: tuple[str, Period], tmp_path: Path
) -> None:
    result = evaluate(*edited, threshold_ms=400)
    # Shared bounds 0.25 (185 a minute) and 0.5 (199): 185 + 0.6 x 14 = 193.4 of 200, 96.7 %
    # (the `old` pod's counts are extrapolated a little further than `new`'s, hence the margin).
    # Summing across pods interpolated from new's 0.3 bucket instead: about 74.6 %.
    assert not result.ttft_exact
    assert result.ttft_attainment_percent == pytest.approx(96.7, abs=0.3)
    # Anywhere between 92.5 % and 99.5 %: the < 99 % and < 95 % latency tiers both may apply.
    assert result.credit_uncertain

    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        period = edited[1]
        settlement = settle(
            ledger, sla_uid="uid-edited", name="edited", period=period, result=result
        )
        assert settlement.state is SettlementState.HELD_FOR_REVIEW
        assert settlement.hold_reason is HoldReason.INEXACT_ATTAINMENT
        assert settlement.ttft_exact is False
        assert settlement.credit_micros == 0
    finally:
        ledger.close()
