"""Deleting an SLA loses no money, end to end: Kopf, the real API server, Prometheus, the gateway
in front of the real vLLM, and a real ledger.

A tenant's SLA under an offer serves traffic for a whole minute and is then deleted mid-period.
The operator's finalizer holds it until its open period is settled: the usage it served is
charged at the offer's price, exactly once, and the usage recorded for the open period no
longer counts as pending. Re-creating the SLA funds nothing more: the plan funds the tenant once
per period.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from aiconn.devstack.gateway import GatewayThread, write_keys
from aiconn.devstack.kube import apply_objects, load_documents
from aiconn.devstack.loadgen import LoadGenerator
from aiconn.resources.v1alpha1.meta import GROUP, VERSION
from aiconn.sla import metricnames as mn
from aiconn.sla.accounting import Kind, SettlementState
from aiconn.sla.periods import ceil_minute
from aiconn.sla.wallets import wallet_owner
from aiconn.store.ledger import Ledger
from tests.factories import offer_manifest, sla_gateway_settings, sla_manifest, sla_pod_targets
from tests.helpers import created_offer, eventually, operator_kubeconfig, running_operator

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "manifests" / "samples"
KEY = "sk-e2e-deletion-51c2"
NAME = "short-lived"
PRICE_PER_MILLION = 1000  # EUR: one token is 1000 micro-EUR, so charges are exact by hand
INCLUDED = 5_000_000


def offer_body(name: str) -> dict[str, Any]:
    return offer_manifest(
        name,
        {
            "modelClasses": [
                {
                    "name": "tiny",
                    "models": [{"name": "tiny-llama"}],
                    "pricePerMillionTokens": PRICE_PER_MILLION,
                }
            ],
            "plan": {"includedTokensPerPeriod": INCLUDED, "period": "1M"},
            "sliceProfiles": [{"name": "embb", "sst": 1, "fiveQI": 9}],
            "allowedTiers": ["edge", "regional", "cloud"],
        },
    )


def sla_body(offer: str) -> dict[str, Any]:
    return sla_manifest(
        NAME,
        {
            "offer": offer,
            "model": {"name": "tiny-llama", "source": "hf://aiconn/tiny", "parametersBillions": 1},
            "objectives": {
                "ttft": {"thresholdMs": 5000, "targetPercent": 90},
                "tpot": {"thresholdMs": 1000, "targetPercent": 90},
                "window": {"duration": "1d"},
            },
            "network": {"rttBudgetMs": 50},
        },
    )


@pytest.fixture
def offer(k8s: Any) -> Iterator[str]:
    with created_offer(k8s, offer_body(f"deletion-{uuid.uuid4().hex[:8]}")) as name:
        yield name


@pytest.fixture
def prometheus_url(
    vllm_server: Any, namespace: str, prometheus_factory: Any, tmp_path: Path
) -> Iterator[str]:
    """The gateway (labelled as the SLA's pod) in front of vLLM, scraped, under steady load."""
    keys = write_keys(tmp_path / "keys", KEY)
    settings = sla_gateway_settings(
        NAME, namespace, model=vllm_server.model, upstream=vllm_server.url, keys_dir=keys
    )
    with GatewayThread(settings) as gateway:
        prometheus = prometheus_factory(
            sla_pod_targets(namespace, NAME, gateway.metrics_url), scrape_interval="1s"
        )
        prometheus.wait_for_series(f'{mn.GATEWAY_UPSTREAM_UP}{{namespace="{namespace}"}}')
        load = LoadGenerator(
            gateway.url, model=vllm_server.model, api_key=KEY, rate_rps=2, timeout_s=10
        )
        with load:
            yield prometheus.url


@pytest.fixture
def operator(
    control_plane: Any, k8s: Any, namespace: str, prometheus_url: str, tmp_path: Path
) -> Iterator[str]:
    apply_objects(k8s, load_documents([SAMPLES / "tiers.yaml"]))
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    kubeconfig = operator_kubeconfig(control_plane, k8s)
    environment = {
        "AICONN_PROMETHEUS_URL": prometheus_url,
        "AICONN_LEDGER_URL": ledger_url,
        "AICONN_NAMESPACES": f'["{namespace}"]',
        "AICONN_EVALUATION_INTERVAL_SECONDS": "5",
        "AICONN_SETTLEMENT_GRACE_SECONDS": "10",
    }
    with running_operator(kubeconfig, environment, namespace=namespace):
        yield ledger_url


def test_a_deleted_slas_usage_is_charged_once_and_recreating_it_funds_nothing(
    k8s: Any, namespace: str, offer: str, operator: str
) -> None:
    custom = client.CustomObjectsApi(k8s)
    created = custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "aiinferenceslas", sla_body(offer)
    )
    uid = created["metadata"]["uid"]
    in_force = ceil_minute(
        datetime.fromisoformat(created["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
    )
    ledger = Ledger.open(operator)
    wallet = wallet_owner(namespace, None)

    def current() -> dict[str, Any]:
        return dict(
            custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "aiinferenceslas", NAME)
        )

    # The finalizer is on, the plan is funded, and a whole judged minute has seen traffic.
    eventually(lambda: current()["metadata"].get("finalizers"), what="the operator's finalizer")
    eventually(lambda: ledger.wallet_balance(wallet) == INCLUDED, what="the plan's funding")
    eventually(
        lambda: (
            datetime.now(UTC) > in_force + timedelta(seconds=65)
            and (current().get("status") or {}).get("period", {}).get("tokensUsed")
        ),
        timeout=240,
        what="a whole minute of measured usage",
    )
    assert ledger.pending_usage(wallet) > 0, "usage of the open period counts as pending"

    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "aiinferenceslas", NAME)
    deleted_at = datetime.now(UTC)
    eventually(
        lambda: (
            NAME
            not in [
                s["metadata"]["name"]
                for s in custom.list_namespaced_custom_object(
                    GROUP, VERSION, namespace, "aiinferenceslas"
                )["items"]
            ]
        ),
        timeout=240,
        what="the finalizer to settle and let the SLA go",
    )
    gone_at = datetime.now(UTC)

    settlements = ledger.settlements(sla_uid=uid)
    assert len(settlements) == 1, settlements
    settled = settlements[0]
    assert settled.state == SettlementState.SETTLED, settled
    # Cut at the end of the minute its pods were seen gone (issue 16): not before the deletion's.
    assert ceil_minute(deleted_at) <= settled.period.end <= ceil_minute(gone_at)
    assert settled.tokens_used > 0
    assert settled.charges_micros == settled.tokens_used * PRICE_PER_MILLION
    usage = ledger.transfers(sla_uid=uid, kind=Kind.USAGE)
    assert [t.amount for t in usage] == [settled.tokens_used]
    assert ledger.pending_usage(wallet) == 0, "the settled period's usage is posted, not pending"
    assert ledger.wallet_balance(wallet) == INCLUDED - settled.tokens_used + settled.credit_tokens

    # The same tenant re-creates the SLA: the plan has funded this period already.
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "aiinferenceslas", sla_body(offer)
    )
    eventually(lambda: current()["metadata"].get("finalizers"), what="the new SLA to be served")
    eventually(
        lambda: (current().get("status") or {}).get("conditions"),
        what="the new SLA to be reconciled",
    )
    funded = [
        t for t in ledger.transfers(kind=Kind.ALLOWANCE) if t.credit_account == f"wallet:{wallet}"
    ]
    assert [t.amount for t in funded] == [INCLUDED]
    # Deleted while the operator runs, so no finalizer outlives it (the namespace can go).
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "aiinferenceslas", NAME)
    eventually(
        lambda: (
            not custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "aiinferenceslas")[
                "items"
            ]
        ),
        timeout=240,
        what="the second SLA to be settled and gone",
    )
    ledger.close()
