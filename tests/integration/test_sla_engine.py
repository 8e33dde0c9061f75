"""The SLA engine against real components: Prometheus scraping a gateway in front of a real vLLM
(the stack: tests/integration/sla_stack.py). The engine is the operator's own code: `measure` (one
batched `fetch_fleet`, then `evaluate_fleet`). Here its TTFT attainment against the client's own;
the outages and the query count live in files of their own, so that the parallel suite waits for
them at the same time: test_sla_engine_vllm_down.py and test_sla_engine_prometheus.py.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from aiconn.devstack.loadgen import RequestRecord, ttft_attainment_percent
from aiconn.operator.evaluation import measure
from aiconn.sla.periods import Period, floor_minute
from aiconn.store.prometheus import PrometheusSource
from tests.helpers import eventually
from tests.integration.sla_stack import TTFT_THRESHOLD_MS, Stack, sla_ref

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def wait_scraped(stack: Stack, records: list[RequestRecord]) -> None:
    served = sum(1 for r in records if r.status == 200)
    eventually(
        lambda: stack.scraped_requests() >= served,
        what=f"Prometheus to have scraped {served} requests",
    )


# Not a `serial` test: the two groups of requests lie far from the threshold on either side (see
# the tolerance below), so other tests' load on the cores cannot move a request across it.
def test_ttft_attainment_agrees_with_the_clients_own_measurement(stack: Stack) -> None:
    # Requests alternate between no delay and 1.25 s injected between the gateway and vLLM, one
    # at a time (one worker), so half miss the 1 s threshold; vLLM itself never sees the delay.
    delays = (0.0, 1.25)

    def inject(i: int) -> None:
        stack.injector.delay = delays[i % len(delays)]

    start = datetime.now(UTC)
    generator = stack.load(rate_rps=3, max_requests=80, before_request=inject)
    with generator:
        eventually(
            lambda: len(generator.records()) >= 80, timeout=300, interval=1, what="80 requests"
        )
    records = generator.stop()
    stack.injector.delay = 0.0
    wait_scraped(stack, records)
    time.sleep(2)

    client_side = ttft_attainment_percent(records, TTFT_THRESHOLD_MS / 1000)
    source = PrometheusSource.from_url(stack.prometheus.url)
    period = Period(start=floor_minute(start), end=datetime.now(UTC))
    result = measure(source, [sla_ref(stack.namespace)], period, lookback_minutes=0).sla(0)

    assert client_side is not None and result.ttft_attainment_percent is not None
    assert result.ttft_exact, "the threshold is a bucket bound of the gateway's histogram"
    difference = abs(result.ttft_attainment_percent - client_side)
    print(
        f"TTFT attainment: engine {result.ttft_attainment_percent:.2f} %, client"
        f" {client_side:.2f} %, difference {difference:.2f} points over {len(records)} requests;"
        f" inference (vLLM) {result.inference_ttft_attainment_percent}"
    )
    # The engine and the client can disagree only on requests whose TTFT lies within the
    # client's own overhead of the threshold (loopback, parsing, and the GIL it shares with the
    # in-process gateway). A first version put delays of 0, 50, 300 and 450 ms around a 200 ms
    # threshold: 0.00 points apart on a quiet machine, but 10 points (8 requests of 80) in a full
    # CI run, where vLLM's own TTFT rose to 150-200 ms and the client's overhead to tens of ms.
    # Now the two groups sit at vLLM's TTFT (well under 1 s even then) and over 1.25 s: a delayed
    # request's TTFT is the delay plus vLLM's, on both clocks, so load only widens the margin on
    # that side; an undelayed one crosses only if vLLM's own TTFT nears 1 s. So the test runs in
    # the loaded parallel part. Tolerance: 2.5 points, two requests of 80.
    assert difference <= 2.5
    assert 25 <= client_side <= 75, "the injected delays put about half over the threshold"
    # The overhead split: vLLM's own TTFT did not see the delay the path added.
    assert result.inference_ttft_attainment_percent is not None
    assert result.inference_ttft_attainment_percent >= result.ttft_attainment_percent + 20
