"""The SLA engine while vLLM is down: the stack of tests/integration/sla_stack.py (Prometheus
scraping a gateway in front of a real vLLM), with the worker's vLLM stopped for 75 s. A file of its
own: it waits about five minutes of real time, which the parallel suite spends beside other files.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from aiconn.operator.evaluation import measure
from aiconn.sla.periods import Period, floor_minute
from aiconn.store.prometheus import PrometheusSource
from tests.integration.sla_stack import Stack, sla_ref

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_killing_vllm_costs_the_minutes_it_was_down(stack: Stack) -> None:
    start = datetime.now(UTC)
    # A whole good minute first, so the outage is framed by known minutes.
    time.sleep(60 - start.second + 2)
    generator = stack.load(rate_rps=2, max_requests=2000, timeout_s=10).start()
    try:
        time.sleep(20)
        down_at = datetime.now(UTC)
        stack.vllm.stop()
        try:
            time.sleep(75)
        finally:
            stack.vllm.start()
        up_at = datetime.now(UTC)
        # The next whole minute must be good again: wait past its end.
        time.sleep(60 - up_at.second + 62)
    finally:
        records = generator.stop()
    end = floor_minute(datetime.now(UTC))
    period = Period(start=floor_minute(start) + timedelta(minutes=1), end=end)
    source = PrometheusSource.from_url(stack.prometheus.url)
    result = measure(source, [sla_ref(stack.namespace)], period, lookback_minutes=0).sla(0)

    # Minutes whose slice overlaps [down_at, up_at]: the outage touches each of them.
    expected = int((floor_minute(up_at) - floor_minute(down_at)).total_seconds() // 60) + 1
    failed = [r for r in records if r.status != 200]
    print(
        f"vLLM down {down_at:%H:%M:%S}-{up_at:%H:%M:%S} ({(up_at - down_at).total_seconds():.0f}"
        f" s): {result.bad_minutes} bad of {result.good_minutes + result.bad_minutes} known"
        f" minutes (expected {expected}), availability {result.availability_percent:.2f} %,"
        f" coverage {result.coverage_percent}, {len(failed)} of {len(records)} requests failed"
    )
    assert failed, "the load generator saw the outage"
    # Boundary: a scrape in the minute before the kill or after the restart can catch the
    # probe's state a second late; +-1 minute.
    assert abs(result.bad_minutes - expected) <= 1
    known = result.good_minutes + result.bad_minutes
    assert known == period.minutes, "every minute was scraped: down is bad, not unknown"
    assert result.availability_percent == pytest.approx(100.0 * result.good_minutes / known)
