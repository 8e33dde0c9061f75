"""The SLA engine against real components: Prometheus scraping a gateway in front of a real vLLM.

The stack is what a cluster runs, on loopback: the load generator calls the token gateway (served
in a thread), the gateway calls vLLM through the fault injector, and a real Prometheus scrapes the
gateway and vLLM every second with the labels the in-cluster pod monitor gives them (namespace,
sla, pod). The engine is the operator's own code: `measure` (one batched `fetch_fleet`, then
`evaluate_fleet`) and `FleetEvaluator` against the real API server.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes import client
from prometheus_api_client import PrometheusConnect

from aiconn.devstack.gateway import GatewayThread, write_keys
from aiconn.devstack.injector import FaultInjector
from aiconn.devstack.loadgen import LoadGenerator, RequestRecord, ttft_attainment_percent
from aiconn.devstack.processes import ProcessGroup
from aiconn.devstack.prometheus import PrometheusServer
from aiconn.operator.evaluation import FleetEvaluator, SLARef, measure
from aiconn.operator.kubeapi import KubeApi
from aiconn.operator.settings import OperatorSettings
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec
from aiconn.sla import metricnames as mn
from aiconn.sla.accounting import Kind, SettlementState
from aiconn.sla.periods import Period, floor_minute
from aiconn.sla.wallets import wallet_owner
from aiconn.store.ledger import Ledger
from aiconn.store.prometheus import PrometheusSource, SourceUnavailable
from tests.factories import settle_ref, sla_gateway_settings, sla_pod_targets, tiny_sla_manifest
from tests.helpers import eventually, fresh_namespace

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "sk-sla-engine-7c1d"
SLA_NAME = "gold"
TTFT_THRESHOLD_MS = 1000
G, V = "aiconn.io", "v1alpha1"


def sla_body(name: str, *, window: str = "1d") -> dict[str, Any]:
    return tiny_sla_manifest(
        name,
        {
            "availability": {"targetPercent": 99.9},
            "ttft": {"thresholdMs": TTFT_THRESHOLD_MS, "targetPercent": 99},
            "tpot": {"thresholdMs": 1000, "targetPercent": 99},
            "window": {"duration": window},
        },
    )


def sla_ref(namespace: str, name: str = SLA_NAME, *, window: str = "1d") -> SLARef:
    return SLARef(
        uid=str(uuid.uuid4()),
        namespace=namespace,
        name=name,
        created=datetime.now(UTC) - timedelta(days=1),
        spec=AIInferenceSLASpec.model_validate(sla_body(name, window=window)["spec"]),
        status={},
    )


class CountingSession(requests.Session):
    """Counts the HTTP requests PrometheusConnect sends."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.count += 1
        return super().send(request, **kwargs)


def counting_source(url: str) -> tuple[PrometheusSource, CountingSession]:
    session = CountingSession()
    connect = PrometheusConnect(url=url, session=session, timeout=10)
    return PrometheusSource(connect, timeout_s=10), session


@dataclass
class Stack:
    namespace: str
    injector: FaultInjector
    gateway: GatewayThread
    prometheus: PrometheusServer
    vllm: Any

    def load(self, **kwargs: Any) -> LoadGenerator:
        return LoadGenerator(self.gateway.url, model=self.vllm.model, api_key=KEY, **kwargs)

    def scraped_requests(self) -> float:
        found = self.prometheus.query(
            f'sum({mn.GATEWAY_TTFT}_count{{namespace="{self.namespace}"}})'
        )
        return float(found[0]["value"][1]) if found else -1.0


@pytest.fixture(scope="module")
def sla_namespace(k8s: Any) -> Iterator[str]:
    with fresh_namespace(k8s, prefix="sla-") as name:
        yield name


@pytest.fixture(scope="module")
def stack(
    vllm_server: Any,
    sla_namespace: str,
    services_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    keys = write_keys(tmp_path_factory.mktemp("keys"), KEY)
    with FaultInjector(vllm_server.url) as injector:
        settings = sla_gateway_settings(
            SLA_NAME,
            sla_namespace,
            model=vllm_server.model,
            upstream=injector.url,
            keys_dir=keys,
            ttft_threshold_ms=TTFT_THRESHOLD_MS,
        )
        with GatewayThread(settings) as gateway:
            group = ProcessGroup(services_dir / f"prom-sla-{uuid.uuid4().hex[:6]}")
            prometheus = PrometheusServer(
                group=group,
                data_dir=group.state_dir / "data",
                targets=sla_pod_targets(
                    sla_namespace, SLA_NAME, gateway.metrics_url, vllm_server.url
                ),
                scrape_interval="1s",
            ).start()
            try:
                prometheus.wait_for_series(f'{mn.GATEWAY_UPSTREAM_UP}{{sla="{SLA_NAME}"}}')
                yield Stack(sla_namespace, injector, gateway, prometheus, vllm_server)
            finally:
                group.stop_all()


def wait_scraped(stack: Stack, records: list[RequestRecord]) -> None:
    served = sum(1 for r in records if r.status == 200)
    eventually(
        lambda: stack.scraped_requests() >= served,
        timeout=30,
        what=f"Prometheus to have scraped {served} requests",
    )


# The client's own overhead decides the tolerance: other tests' load would be in it.
@pytest.mark.serial
def test_ttft_attainment_agrees_with_the_clients_own_measurement(stack: Stack) -> None:
    # Requests alternate between no delay and 2 s injected between the gateway and vLLM, one at
    # a time (one worker), so half miss the 1 s threshold; vLLM itself never sees the delay.
    delays = (0.0, 2.0)

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
    # Now the two groups sit at vLLM's TTFT (well under 1 s even then) and over 2 s.
    # Tolerance: 2.5 points, two requests of 80.
    assert difference <= 2.5
    assert 25 <= client_side <= 75, "the injected delays put about half over the threshold"
    # The overhead split: vLLM's own TTFT did not see the delay the path added.
    assert result.inference_ttft_attainment_percent is not None
    assert result.inference_ttft_attainment_percent >= result.ttft_attainment_percent + 20


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


def test_prometheus_down_is_unknown_coverage_and_never_a_credit(
    stack: Stack, k8s: Any, tmp_path: Path
) -> None:
    custom = client.CustomObjectsApi(k8s)
    body = custom.create_namespaced_custom_object(
        G, V, stack.namespace, "aiinferenceslas", sla_body(SLA_NAME)
    )
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    settings = OperatorSettings(prometheus_url=stack.prometheus.url, coverage_floor_percent=90)
    source, _ = counting_source(stack.prometheus.url)
    evaluator = FleetEvaluator(kube=KubeApi(k8s), source=source, ledger=ledger, settings=settings)

    def sla_status() -> dict[str, Any]:
        found = custom.get_namespaced_custom_object(
            G, V, stack.namespace, "aiinferenceslas", SLA_NAME
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
