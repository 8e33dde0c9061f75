"""Exact counts at minute edges against a real Prometheus (issue 11, item 2).

`increase(...[1m])` extrapolated to the window's edges, so per-minute counts and billed tokens
depended on where the scrapes fell. Counts now come from the counters' values at the minute
boundaries: whatever the scrape offset, every request lands in exactly one minute and the tokens
billed are the tokens the gateway counted, across a gateway restart too.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from aiconn.operator.evaluation import SLARef
from aiconn.sla import metricnames as mn
from aiconn.sla.periods import Period, floor_minute
from aiconn.sla.prometheus import PrometheusSource
from aiconn.sla.spec import AIInferenceSLASpec
from tests.integration.promdata import History, backfilled_prometheus, gateway_pod

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
    services_dir: Path, offset_s: int
) -> None:
    start = floor_minute(datetime.now(UTC)) - timedelta(minutes=MINUTES + 20)
    history = History(start=start, offset_s=offset_s)
    every = range(MINUTES)
    pod = gateway_pod("edges", "0")
    history.gauge("up", {"job": "prometheus", "instance": "self"}, 1, every)
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
    server, group = backfilled_prometheus(history, services_dir)
    try:
        ref = SLARef(
            uid=str(uuid.uuid4()),
            namespace="acme",
            name="edges",
            created=datetime(2020, 1, 1, tzinfo=UTC),
            spec=SPEC,
            status={},
        )
        series = PrometheusSource.from_url(server.url).fetch_fleet(
            [ref.target], Period(start=start, end=start + timedelta(minutes=MINUTES))
        )
    finally:
        group.stop_all()

    failed = [0, 0, 0, 4, 0, 0, 0, 0, 0, 0]
    np.testing.assert_array_equal(series.failed[0], failed)
    np.testing.assert_array_equal(series.in_contract[0], [60 + f for f in failed])
    assert series.tokens.tolist() == [6 * 1000 + 4 * 700]
