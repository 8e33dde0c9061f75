"""The operator's SLA loop end to end: Kopf, the real API server, Prometheus, the gateway, vLLM.

One SLA with a 5-minute period (set in its spec, nothing else is special) is served by a gateway
in front of the real vLLM, through the fault injector, under steady load. The operator runs as
`kopf run` with its ServiceAccount's rights, evaluating every 5 s. The test breaks the path to
vLLM for about a minute and mends it, and watches `status.period`, the `Compliant` condition, the
burn-rate Events and the settlement of the closed period in the ledger.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kopf.testing import KopfRunner
from kubernetes import client

from aiconn.devstack.gateway import GatewayThread, write_keys
from aiconn.devstack.injector import FaultInjector
from aiconn.devstack.kube import apply_objects, load_documents
from aiconn.devstack.loadgen import LoadGenerator
from aiconn.resources.v1alpha1.meta import GROUP, VERSION
from aiconn.resources.v1alpha1.sla import Window
from aiconn.sla import metricnames as mn
from aiconn.sla.accounting import SettlementState
from aiconn.sla.burnwindows import alert_rules
from aiconn.store.ledger import Ledger
from tests.factories import sla_gateway_settings, sla_pod_targets, tiny_sla_manifest
from tests.helpers import eventually, operator_kubeconfig, running_operator

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "manifests" / "samples"
KEY = "sk-e2e-sla-3b9e"
NAME = "gold"


def sla_body() -> dict[str, Any]:
    return tiny_sla_manifest(
        NAME,
        {
            "availability": {"targetPercent": 99.9},
            # Generous latency objectives: this test moves availability only.
            "ttft": {"thresholdMs": 5000, "targetPercent": 90},
            "tpot": {"thresholdMs": 1000, "targetPercent": 90},
            "window": {"duration": "5m"},
        },
        monthlyCommitment=1000000,
    )


@dataclass
class Served:
    injector: FaultInjector
    prometheus_url: str


@pytest.fixture
def served(
    vllm_server: Any, namespace: str, prometheus_factory: Any, tmp_path: Path
) -> Iterator[Served]:
    """Injector, gateway (labelled as the SLA), Prometheus scraping both, and steady load."""
    keys = write_keys(tmp_path / "keys", KEY)
    with FaultInjector(vllm_server.url) as injector:
        settings = sla_gateway_settings(
            NAME, namespace, model=vllm_server.model, upstream=injector.url, keys_dir=keys
        )
        with GatewayThread(settings) as gateway:
            prometheus = prometheus_factory(
                sla_pod_targets(namespace, NAME, gateway.metrics_url, vllm_server.url),
                scrape_interval="1s",
            )
            prometheus.wait_for_series(f'{mn.GATEWAY_UPSTREAM_UP}{{namespace="{namespace}"}}')
            load = LoadGenerator(
                gateway.url, model=vllm_server.model, api_key=KEY, rate_rps=2, timeout_s=10
            )
            with load:
                yield Served(injector, prometheus.url)


@pytest.fixture
def operator(
    control_plane: Any, k8s: Any, served: Served, tmp_path: Path
) -> Iterator[tuple[KopfRunner, str]]:
    apply_objects(k8s, load_documents([SAMPLES / "tiers.yaml"]))
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    kubeconfig = operator_kubeconfig(control_plane, k8s)
    environment = {
        "AICONN_PROMETHEUS_URL": served.prometheus_url,
        "AICONN_LEDGER_URL": ledger_url,
        "AICONN_EVALUATION_INTERVAL_SECONDS": "5",
        "AICONN_SETTLEMENT_GRACE_SECONDS": "10",
    }
    with running_operator(kubeconfig, environment) as runner:
        yield runner, ledger_url


# Issue 11 item 10: burn windows scale with the SLA window, so this 5-minute SLA pages on its
# own 1-minute windows (`page-1m`), no longer on a monthly SLA's 1h/5m (`page-1h`).
PAGE = alert_rules(Window(duration="5m"))[0].name


# About 13 minutes: vLLM's start, a clean minute, the fault, then the burn window and the period
# close that the alert's end and the settlement wait for.
@pytest.mark.timeout(1800)
def test_status_and_compliant_follow_faults_and_the_closed_period_settles_once(
    k8s: Any, namespace: str, served: Served, operator: tuple[KopfRunner, str]
) -> None:
    _, ledger_url = operator
    custom = client.CustomObjectsApi(k8s)
    core = client.CoreV1Api(k8s)
    created = custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "aiinferenceslas", sla_body()
    )
    uid = created["metadata"]["uid"]

    def status() -> dict[str, Any]:
        body = custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, "aiinferenceslas", NAME
        )
        return dict(body.get("status") or {})

    def compliant(expected: str) -> dict[str, Any] | None:
        current = status()
        conditions = {c["type"]: c for c in current.get("conditions", [])}
        cond = conditions.get("Compliant")
        return current if cond and cond["status"] == expected and current.get("period") else None

    def events(reason: str) -> list[Any]:
        found = core.list_namespaced_event(namespace).items
        return [e for e in found if e.reason == reason and e.involved_object.name == NAME]

    # The SLA is judged from its first whole minute: availability appears once one has passed.
    healthy = eventually(
        lambda: (s := compliant("True")) and "availabilityPercent" in s["period"] and s,
        timeout=240,
        interval=2,
        what="Compliant True with a measured availability",
    )
    assert healthy["period"]["availabilityPercent"] == 100.0

    served.injector.refuse = True
    try:
        broken = eventually(lambda: compliant("False"), interval=2, what="Compliant False")
        cond = next(c for c in broken["conditions"] if c["type"] == "Compliant")
        assert cond["reason"] == "AvailabilityMissed", cond
        assert broken["period"]["availabilityPercent"] < 99.9
        assert broken["period"]["evaluatedAt"] >= healthy["period"]["evaluatedAt"]
        started = eventually(
            lambda: [e for e in events("BurnRateAlertStarted") if PAGE in e.message],
            interval=2,
            what=f"{PAGE} alert Event",
        )
        assert started[0].type == "Warning"
        assert PAGE in status()["period"]["alerts"]
    finally:
        served.injector.refuse = False
    faulty_period = broken["period"]["start"]

    # The fault leaves the burn windows (1 minute for this SLA) after it stopped; a new period
    # then starts, measured clean.
    eventually(
        lambda: events("BurnRateAlertStopped"), timeout=480, interval=5, what="alert stopped"
    )
    recovered = eventually(
        lambda: (s := compliant("True")) and s["period"]["start"] > faulty_period and s,
        timeout=420,
        interval=5,
        what="Compliant True in a later period",
    )
    # The page stops with its short window.
    assert PAGE not in recovered["period"]["alerts"]

    settled = eventually(
        lambda: (s := status().get("lastSettlement")) and s["periodStart"] >= faulty_period and s,
        timeout=420,
        interval=5,
        what="the faulty period settled",
    )
    assert settled["state"] in ("Settled", "HeldForReview")  # a later period may show here
    assert eventually(lambda: events(settled["state"]), what="settlement Event")
    time.sleep(15)  # three more passes: none may settle again

    ledger = Ledger.open(ledger_url)
    try:
        settlements = ledger.settlements(sla_uid=uid)
        per_period = Counter(s.period.start_iso for s in settlements)
        assert all(count == 1 for count in per_period.values()), per_period
        assert per_period[faulty_period] == 1
        transfers = ledger.transfers(sla_uid=uid)
        per_key = Counter((t.period.start_iso, t.kind) for t in transfers)
        assert all(count == 1 for count in per_key.values()), per_key
        # By now a later period may have settled too: status shows the latest settlement.
        shown = next(s for s in settlements if s.period.start_iso == settled["periodStart"])
        assert list(shown.transfer_ids) == settled["transferIds"]
        assert str(shown.state) == settled["state"]
        # The SLA is judged from its first whole minute, and Prometheus scraped the gateway since
        # before then: the faulty period is fully covered, so it is settled, not held, and the
        # missed availability earns a credit.
        settlement = next(s for s in settlements if s.period.start_iso == faulty_period)
        assert settlement.state == SettlementState.SETTLED, settlement
        assert (settlement.coverage_percent or 0) >= 90.0, settlement  # the floor
        assert settlement.credit_micros > 0, "a missed availability objective earns a credit"
        assert per_key[(faulty_period, "credit")] == per_key[(faulty_period, "penalty")] == 1
        ledger.check_invariant()
        print(
            f"settled {faulty_period}: {settlement.state}, coverage"
            f" {settlement.coverage_percent}, availability {settlement.availability_percent},"
            f" credit {settlement.credit_micros} micros; transfers {dict(per_key)}"
        )
    finally:
        ledger.close()
