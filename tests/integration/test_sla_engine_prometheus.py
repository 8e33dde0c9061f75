"""The SLA engine and its Prometheus: the stack of tests/integration/sla_stack.py (Prometheus
scraping a gateway in front of a real vLLM). `FleetEvaluator` against the real API server while
that Prometheus is stopped for over a minute, then the number of queries a fleet costs. A file of
its own: the outage waits about four minutes of real time, which the parallel suite spends beside
the other files (test_sla_engine_vllm_down.py above all).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from aiconn.operator.evaluation import FleetEvaluator, SLARef, measure
from aiconn.operator.kubeapi import KubeApi
from aiconn.operator.settings import OperatorSettings
from aiconn.resources.v1alpha1.meta import GROUP, VERSION
from aiconn.sla import metricnames as mn
from aiconn.sla.accounting import Kind, SettlementState
from aiconn.sla.periods import Period, floor_minute
from aiconn.sla.wallets import wallet_owner
from aiconn.store.ledger import Ledger
from aiconn.store.prometheus import SourceUnavailable
from tests.factories import settle_ref
from tests.helpers import eventually
from tests.integration.sla_stack import SLA_NAME, Stack, counting_source, sla_body, sla_ref

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module", autouse=True)
def tokens_counted(stack: Stack) -> None:
    """The gateway has served tokens, and Prometheus has scraped its count, before the first test:
    as when the Prometheus-down test ran after the vLLM-down one on one stack. That test's first
    evaluation, 2 s into a minute, judges the minutes before it and wants tokens used in them;
    on a fresh stack a test starting in a minute's last second would find none counted yet."""
    with stack.load(rate_rps=2, max_requests=4, timeout_s=10) as generator:
        eventually(lambda: len(generator.records()) >= 4, what="4 requests served")
    tokens = f'sum({mn.GATEWAY_TOKENS}{{namespace="{stack.namespace}"}})'
    eventually(
        lambda: (found := stack.prometheus.query(tokens)) and float(found[0]["value"][1]) > 0,
        what="Prometheus to have scraped a token count",
    )


def test_prometheus_down_is_unknown_coverage_and_never_a_credit(
    stack: Stack, k8s: Any, tmp_path: Path
) -> None:
    custom = client.CustomObjectsApi(k8s)
    body = custom.create_namespaced_custom_object(
        GROUP, VERSION, stack.namespace, "aiinferenceslas", sla_body(SLA_NAME)
    )
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    settings = OperatorSettings(prometheus_url=stack.prometheus.url, coverage_floor_percent=90)
    source, _ = counting_source(stack.prometheus.url)
    evaluator = FleetEvaluator(kube=KubeApi(k8s), source=source, ledger=ledger, settings=settings)

    def sla_status() -> dict[str, Any]:
        found = custom.get_namespaced_custom_object(
            GROUP, VERSION, stack.namespace, "aiinferenceslas", SLA_NAME
        )
        return dict(found.get("status") or {})

    def compliant() -> dict[str, Any]:
        return next(c for c in sla_status()["conditions"] if c["type"] == "Compliant")

    generator = stack.load(rate_rps=2, max_requests=2000, timeout_s=10).start()
    try:
        start = datetime.now(UTC)
        time.sleep(60 - start.second + 2)
        report = asyncio.run(evaluator.run_once())
        assert report.evaluated == 1 and report.unavailable == 0
        measured = sla_status()["period"]
        assert compliant()["reason"] != "MeasurementUnavailable"
        # The pass recorded the period's usage so far: it counts against the wallet (the
        # gateway's allowance) before the period settles.
        owner = wallet_owner(stack.namespace, body["spec"]["tenant"])
        assert measured["tokensUsed"] > 0
        assert ledger.pending_usage(owner) == measured["tokensUsed"]
        assert (
            ledger.available_tokens(owner) == ledger.wallet_balance(owner) - measured["tokensUsed"]
        )

        stack.prometheus.stop()
        down_at = datetime.now(UTC)
        try:
            report = asyncio.run(evaluator.run_once())
            assert report.unavailable == 1 and report.evaluated == 0
            assert sla_status()["period"] == measured, "the previous measurements are kept"
            unknown = compliant()
            assert (unknown["status"], unknown["reason"]) == ("Unknown", "MeasurementUnavailable")
            with pytest.raises(SourceUnavailable):
                measure(source, [SLARef.from_body(body)], Period(start=start, end=down_at))
            # Past the end of the next minute, so at least one whole minute goes unseen.
            time.sleep(60 - datetime.now(UTC).second + 62)
        finally:
            stack.prometheus.start()
        up_at = datetime.now(UTC)
        time.sleep(60 - up_at.second + 2)
    finally:
        generator.stop()
    assert ledger.transfers(kind=Kind.CREDIT) == []

    period = Period(start=floor_minute(start) + timedelta(minutes=1), end=floor_minute(up_at))
    sla = SLARef.from_body(body)
    result = measure(source, [sla], period, lookback_minutes=0).sla(0)
    unseen = (floor_minute(up_at) - floor_minute(down_at)).total_seconds() // 60 - 1
    print(
        f"Prometheus down {down_at:%H:%M:%S}-{up_at:%H:%M:%S}: coverage"
        f" {result.coverage_percent} % of {period.minutes} minutes ({unseen:.0f} whole minutes"
        f" unseen), availability {result.availability_percent}"
    )
    assert result.coverage_percent is not None and result.coverage_percent < 90
    assert result.bad_minutes == 0, "minutes Prometheus did not see are unknown, not bad"
    settlement = settle_ref(
        ledger,
        sla,
        period=period,
        result=result,
        coverage_floor_percent=settings.coverage_floor_percent,
    )
    assert settlement.state == SettlementState.HELD_FOR_REVIEW
    assert settlement.credit_micros == 0 and settlement.transfer_ids == ()
    assert ledger.transfers(kind=Kind.CREDIT) == [] and ledger.transfers(kind=Kind.PENALTY) == []
    ledger.close()


def test_batched_query_count_does_not_grow_with_the_fleet(stack: Stack) -> None:
    source, session = counting_source(stack.prometheus.url)
    now = floor_minute(datetime.now(UTC))
    period = Period(start=now - timedelta(minutes=5), end=now)
    counts = {}
    for fleet in (1, 10, 200):
        slas = [sla_ref(stack.namespace)] + [
            sla_ref(stack.namespace, f"other-{i}") for i in range(fleet - 1)
        ]
        session.count = 0
        measure(source, slas, period)
        counts[fleet] = session.count
    print("Prometheus requests per fleet size:", counts)
    assert counts[1] == counts[10] == counts[200]
    # One range query per minute series (in-contract, failed, upstream up, scrape up, whether
    # Prometheus scraped at all, tokens: issue 11 added the last two), chunked under the points
    # limit, plus one instant query per histogram and one for Prometheus's range rule.
    assert counts[1] <= 6 * 2 + 3
