"""Fixtures of the integration tests that several files share.

`stack`: the SLA engine's stack on loopback (tests/integration/sla_stack.py), one per file that
asks for it: test_sla_engine.py and its two outage files, which the parallel suite
(tests/parallel.py) runs as work units of their own so that their waits overlap. Each file's stack
has its own namespace, gateway and Prometheus (seconds to start) and uses its worker's vLLM
(`vllm_server`, a session fixture)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aiconn.devstack.gateway import GatewayThread, write_keys
from aiconn.devstack.injector import FaultInjector
from aiconn.devstack.processes import ProcessGroup
from aiconn.devstack.prometheus import PrometheusServer
from aiconn.sla import metricnames as mn
from tests.factories import sla_gateway_settings, sla_pod_targets
from tests.helpers import fresh_namespace
from tests.integration.sla_stack import KEY, SLA_NAME, TTFT_THRESHOLD_MS, Stack


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
