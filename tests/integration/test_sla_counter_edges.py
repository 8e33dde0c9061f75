"""Exact counts at minute edges against a real Prometheus (issue 11, item 2).

`increase(...[1m])` extrapolated to the window's edges, so per-minute counts and billed tokens
depended on where the scrapes fell. Counts now come from the counters' values at the minute
boundaries: whatever the scrape offset, every request lands in exactly one minute and the tokens
billed are the tokens the gateway counted, across a gateway restart too.

Each test runs on Debian's Prometheus 2.x and on 3.x (`prometheus_bin`): 3.x selects ranges
left-open, and the engine must judge the same minutes on both.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec
from aiconn.sla import metricnames as mn
from aiconn.sla.periods import Period, floor_minute
from aiconn.store.prometheus import PrometheusSource, SLATarget
from tests.factories import sla_ref
from tests.integration.promdata import History, backfilled_prometheus, gateway_pod

SELF = {"job": "prometheus", "instance": "self"}

pytestmark = [pytest.mark.integration]

MINUTES = 10
SPEC = AIInferenceSLASpec.model_validate(
    {
        "model": {"name": "tiny", "source": "hf://aiconn/tiny", "parametersBillions": 1},
        "network": {"rttBudgetMs": 50},
    }
)


# Scrapes repeat every 15 s, so these phases cover the whole range. A scrape exactly on a
# boundary reports what happened before it: the minute that ended (not tested as "in minute 3").
@pytest.mark.parametrize("offset_s", [1, 8, 14])
def test_counts_and_tokens_are_exact_for_any_scrape_offset(
    services_dir: Path, prometheus_bin: Path, offset_s: int
) -> None:
    start = floor_minute(datetime.now(UTC)) - timedelta(minutes=MINUTES + 20)
    history = History(start=start, offset_s=offset_s)
    every = range(MINUTES)
    pod = gateway_pod("edges", "0")
    history.gauge("up", SELF, 1, every)
    history.gauge("up", pod, 1, every)
    history.gauge(mn.GATEWAY_UPSTREAM_UP, pod, 1, every)
    history.counter(
        mn.GATEWAY_REQUESTS, {**pod, "outcome": "success"}, dict.fromkeys(every, 60), every
    )
    # 4 errors in minute 3, one at each of its scrapes (the first just after the minute began).
    history.counter(mn.GATEWAY_REQUESTS, {**pod, "outcome": "upstream_error"}, {3: 4}, every)
    # The gateway restarts after minute 5: its token counter starts again from 0.
    tokens = {**pod, "type": "completion"}
    history.counter(mn.GATEWAY_TOKENS, tokens, dict.fromkeys(range(6), 1000), range(6))
    history.counter(mn.GATEWAY_TOKENS, tokens, dict.fromkeys(range(6, MINUTES), 700), range(6, 10))
    server, group = backfilled_prometheus(history, services_dir, binary=prometheus_bin)
    try:
        series = PrometheusSource.from_url(server.url).fetch_fleet(
            [sla("edges")], Period(start=start, end=start + timedelta(minutes=MINUTES))
        )
    finally:
        group.stop_all()

    failed = [0, 0, 0, 4, 0, 0, 0, 0, 0, 0]
    np.testing.assert_array_equal(series.failed[0], failed)
    np.testing.assert_array_equal(series.in_contract[0], [60 + f for f in failed])
    assert series.tokens.tolist() == [6 * 1000 + 4 * 700]


def test_a_sample_on_a_minute_boundary_belongs_to_the_minute_that_ends_there(
    services_dir: Path, prometheus_bin: Path
) -> None:
    """Scrapes at :00, :15, :30 and :45, so some fall exactly on the boundaries. Prometheus 2
    selects `[1m]` with its left edge, Prometheus 3 without: read naively, a boundary sample
    counted in two minutes on 2.x (one failed health check cost two minutes, a pod's last scrape
    made the next minute served, Prometheus's own last scrape made the next minute monitored).
    On both, a minute is (boundary, next boundary]."""
    start = floor_minute(datetime.now(UTC)) - timedelta(minutes=MINUTES + 20)
    history = History(start=start, offset_s=0)
    pod = gateway_pod("edges", "0")
    # Prometheus scrapes itself in minutes 0-7 and once more at 8:00, then is down.
    history.gauge("up", SELF, 1, range(8))
    history.sample("up", SELF, 8 * 60, 1)
    # The pod is scraped in minutes 0-5 and once more at 6:00, then deleted. Its health check
    # fails once, at 5:00 exactly.
    life = range(6)
    for name in ("up", mn.GATEWAY_UPSTREAM_UP):
        history.gauge(name, pod, 1, life)
        history.sample(name, pod, 6 * 60, 1)
    history.sample(mn.GATEWAY_UPSTREAM_UP, pod, 5 * 60, 0)
    history.counter(
        mn.GATEWAY_REQUESTS, {**pod, "outcome": "success"}, dict.fromkeys(life, 60), life
    )
    # 4 errors at minute 3's scrapes: the first, at 3:00, reports the minute that ended.
    history.counter(mn.GATEWAY_REQUESTS, {**pod, "outcome": "upstream_error"}, {3: 4}, life)
    history.counter(
        mn.GATEWAY_TOKENS, {**pod, "type": "completion"}, dict.fromkeys(life, 1000), life
    )
    server, group = backfilled_prometheus(history, services_dir, binary=prometheus_bin)
    try:
        source = PrometheusSource.from_url(server.url)
        period = Period(start=start, end=start + timedelta(minutes=MINUTES))
        series = source.fetch_fleet([sla("edges")], period)
        earlier = Period(start=start - timedelta(minutes=1), end=start)
        before = source.fetch_fleet([sla("edges")], earlier)
    finally:
        group.stop_all()

    # Up in 0-3 and 5, down in 4 (the failed check at 5:00) and in 6-7 (monitored, no pod:
    # its scrape at 6:00 reported minute 5), unknown in 8-9 (Prometheus's 8:00 scrape too).
    nan = np.nan
    np.testing.assert_array_equal(series.up[0], [1, 1, 1, 1, 0, 1, 0, 0, nan, nan])
    np.testing.assert_array_equal(series.failed[0], [0, 0, 1, 3, 0, 0, 0, 0, nan, nan])
    # The 250 tokens scraped at 0:00 were counted in the minute before the period: billed there.
    assert before.tokens.tolist() == [250]
    assert series.tokens.tolist() == [6 * 1000 - 250]


def sla(name: str) -> SLATarget:
    return sla_ref(name, SPEC).target
