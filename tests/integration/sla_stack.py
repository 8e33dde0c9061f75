"""The SLA engine's stack on loopback, shared by the files that test the engine against real
components: Prometheus scraping a gateway in front of a real vLLM. The `stack` fixture that starts
it lives in tests/integration/conftest.py.

The stack is what a cluster runs: the load generator calls the token gateway (served in a thread),
the gateway calls vLLM through the fault injector, and a real Prometheus scrapes the gateway and
vLLM every second with the labels the in-cluster pod monitor gives them (namespace, sla, pod).

The outage tests live in files of their own, so that the parallel suite (tests/parallel.py) runs
them at the same time on different workers.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect

from aiconn.devstack.gateway import GatewayThread
from aiconn.devstack.injector import FaultInjector
from aiconn.devstack.loadgen import LoadGenerator
from aiconn.devstack.prometheus import PrometheusServer
from aiconn.operator.evaluation import SLARef
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec
from aiconn.sla import metricnames as mn
from aiconn.store.prometheus import PrometheusSource
from tests.factories import tiny_sla_manifest

KEY = "sk-sla-engine-7c1d"
SLA_NAME = "gold"
TTFT_THRESHOLD_MS = 1000


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
