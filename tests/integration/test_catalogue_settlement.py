"""Settlement on the provider's terms as they were, on the real API server, a real Prometheus and
a real ledger (SQLite and PostgreSQL): an offer edited mid-period re-prices nothing before the
next period; a deleted SLA is cut only once its pods stopped serving, so every token served is
charged; an SLA whose offer was deleted is still settled (on the pinned terms) or held for review
(no terms ever pinned), never kept waiting.

The SLAs are real objects on the API server; only their creation (and deletion) times are moved
back to the start of a scrape history written into Prometheus (`tests.integration.promdata`), so
whole periods of past traffic can be evaluated and settled now.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from aiconn.devstack.prometheus import PrometheusServer, prometheus_binary
from aiconn.inference import workload
from aiconn.operator.evaluation import FleetEvaluator, SLARef, measure
from aiconn.operator.kubeapi import KubeApi
from aiconn.operator.retirement import STOPPED_ANNOTATION, NotYet, settle_deleted
from aiconn.operator.settings import OperatorSettings
from aiconn.resources.v1alpha1.meta import GROUP, VERSION
from aiconn.sla import metricnames as mn
from aiconn.sla.accounting import HoldReason, Settlement, SettlementState
from aiconn.sla.periods import Period
from aiconn.store.ledger import Ledger
from aiconn.store.prometheus import PrometheusSource
from tests.factories import offer_manifest, sla_manifest
from tests.helpers import backend_ledger, deleted_afterwards, eventually, play_kubelet
from tests.integration.promdata import History, backfilled_prometheus, gateway_pod

pytestmark = pytest.mark.integration

NS = f"cat-{uuid.uuid4().hex[:8]}"
HOUR = timedelta(hours=1)
T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - 3 * HOUR
"""Start of the hour-long period every test settles (the SLAs' window is 1h, calendar-aligned)."""
PRICE = 2  # EUR per million tokens: a token costs exactly 2 micro-EUR
EDITED_PRICE = 50
# SLA name -> the minutes (from T0) its one gateway replica served 100 requests of 10 tokens.
SERVED = {"repriced": range(1, 60), "retired": range(1, 41), "orphan": range(1, 31)}
SERVED["unpriced"] = range(1, 31)


def serve(history: History, sla: str, minutes: range) -> None:
    """One replica of `sla` in NS, scraped from minute 0 (counters at 0) to its last minute."""
    labels = {**gateway_pod(sla, "0"), "namespace": NS}
    scraped = range(0, minutes.stop)
    history.gauge("up", labels, 1, scraped)
    history.gauge(mn.GATEWAY_UPSTREAM_UP, labels, 1, scraped)
    history.counter(
        mn.GATEWAY_REQUESTS,
        {**labels, "outcome": "success"},
        dict.fromkeys(minutes, 100),
        scraped,
    )
    history.counter(
        mn.GATEWAY_TOKENS, {**labels, "type": "completion"}, dict.fromkeys(minutes, 1000), scraped
    )


@pytest.fixture(scope="module")
def prometheus(services_dir: Path) -> Iterator[PrometheusServer]:
    history = History(start=T0)
    history.gauge("up", {"job": "prometheus", "instance": "self"}, 1, range(3 * 60))
    for name, minutes in SERVED.items():
        serve(history, name, minutes)
    server, group = backfilled_prometheus(history, services_dir, binary=prometheus_binary())
    try:
        yield server
    finally:
        group.stop_all()


@pytest.fixture(scope="module")
def tenant_ns(k8s: Any) -> Iterator[str]:
    core = client.CoreV1Api(k8s)
    core.create_namespace({"metadata": {"name": NS}})
    yield NS
    core.delete_namespace(NS)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    yield from backend_ledger(request, tmp_path)


@pytest.fixture
def cleanup(k8s: Any) -> Iterator[list[str]]:
    """SLA names to delete after the test (no operator runs: no finalizer holds them)."""
    custom = client.CustomObjectsApi(k8s)

    def listed(name: str) -> bool:
        slas = custom.list_namespaced_custom_object(GROUP, VERSION, NS, "aiinferenceslas")
        return any(s["metadata"]["name"] == name for s in slas["items"])

    def delete(name: str) -> None:
        custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "aiinferenceslas", name)
        eventually(lambda: not listed(name), what=f"SLA {name} gone")

    with deleted_afterwards(delete) as names:
        yield names


def offer(k8s: Any, price: float) -> str:
    name = f"cat-{uuid.uuid4().hex[:8]}"
    client.CustomObjectsApi(k8s).create_cluster_custom_object(
        GROUP,
        VERSION,
        "aiinferenceoffers",
        offer_manifest(
            name,
            {
                "modelClasses": [
                    {
                        "name": "tiny",
                        "models": [{"name": "tiny-chat"}],
                        "pricePerMillionTokens": price,
                    }
                ],
                "plan": {"includedTokensPerPeriod": 1_000_000, "period": "1M"},
                "sliceProfiles": [{"name": "embb", "sst": 1, "fiveQI": 9}],
                "allowedTiers": ["edge"],
            },
        ),
    )
    return name


def set_price(k8s: Any, name: str, price: float) -> None:
    client.CustomObjectsApi(k8s).patch_cluster_custom_object(
        GROUP,
        VERSION,
        "aiinferenceoffers",
        name,
        {
            "spec": {
                "modelClasses": [
                    {
                        "name": "tiny",
                        "models": [{"name": "tiny-chat"}],
                        "pricePerMillionTokens": price,
                    }
                ]
            }
        },
    )


def delete_offer(k8s: Any, name: str) -> None:
    client.CustomObjectsApi(k8s).delete_cluster_custom_object(
        GROUP, VERSION, "aiinferenceoffers", name
    )


def sla(k8s: Any, name: str, offer_name: str, *, cleanup: list[str]) -> dict[str, Any]:
    """SLA `name` under offer `offer_name` in NS, on `cleanup`'s list to delete after the test."""
    body: dict[str, Any] = client.CustomObjectsApi(k8s).create_namespaced_custom_object(
        GROUP,
        VERSION,
        NS,
        "aiinferenceslas",
        sla_manifest(
            name,
            {
                "offer": offer_name,
                "model": {
                    "name": "tiny-chat",
                    "source": "hf://aiconn/tiny",
                    "parametersBillions": 1,
                },
                "objectives": {
                    "availability": {"targetPercent": 99.0},
                    "window": {"duration": "1h"},
                },
                "network": {"rttBudgetMs": 50},
            },
        ),
    )
    cleanup.append(name)
    return body


def evaluator(
    k8s: Any, ledger: Ledger, prometheus: PrometheusServer, *, at: datetime
) -> FleetEvaluator:
    """A fleet evaluator whose clock reads `at` and which sees NS's SLAs as created at T0."""
    settings = OperatorSettings(namespaces=[NS], prometheus_url=prometheus.url)
    fleet = FleetEvaluator(
        kube=KubeApi(k8s),
        source=PrometheusSource.from_url(prometheus.url),
        ledger=ledger,
        settings=settings,
        clock=lambda: at,
    )
    listed = fleet.list_slas

    async def backdated() -> list[SLARef]:
        return [dataclasses.replace(s, created=T0) for s in await listed()]

    fleet.list_slas = backdated  # type: ignore[method-assign]
    return fleet


def deleted(k8s: Any, name: str, *, at: datetime) -> dict[str, Any]:
    """The SLA as the delete handler gets it: created at T0, deleted `at`."""
    body: dict[str, Any] = client.CustomObjectsApi(k8s).get_namespaced_custom_object(
        GROUP, VERSION, NS, "aiinferenceslas", name
    )
    body["metadata"]["creationTimestamp"] = T0.isoformat()
    body["metadata"]["deletionTimestamp"] = at.isoformat()
    return body


def settle_without_pods(
    fleet: FleetEvaluator, k8s: Any, name: str, *, at: datetime
) -> tuple[dict[str, Any], list[Settlement]]:
    """Delete `name` `at`; no pod of it runs, so serving stopped then; settle after the grace."""
    with pytest.raises(NotYet, match="scraped"):
        asyncio.run(settle_deleted(fleet, deleted(k8s, name, at=at), now=at))
    body = deleted(k8s, name, at=at)
    return body, asyncio.run(settle_deleted(fleet, body, now=at + timedelta(minutes=5)))


def served_tokens(prometheus: PrometheusServer, ref: SLARef) -> int:
    """Every token the history says `ref` served, measured over the whole history."""
    everything = Period(start=T0, end=T0 + 3 * HOUR)
    source = PrometheusSource.from_url(prometheus.url)
    tokens: int = measure(source, [ref], everything, lookback_minutes=0).sla(0).tokens_used
    return tokens


def test_an_offer_edited_mid_period_prices_from_the_next_period(
    k8s: Any, tenant_ns: str, prometheus: PrometheusServer, ledger: Ledger, cleanup: list[str]
) -> None:
    name = offer(k8s, PRICE)
    uid = sla(k8s, "repriced", name, cleanup=cleanup)["metadata"]["uid"]
    try:
        asyncio.run(evaluator(k8s, ledger, prometheus, at=T0 + timedelta(minutes=30)).run_once())
        set_price(k8s, name, EDITED_PRICE)
        report = asyncio.run(
            evaluator(k8s, ledger, prometheus, at=T0 + HOUR + timedelta(minutes=5)).run_once()
        )
    finally:
        delete_offer(k8s, name)
    settled = ledger.settlement(uid, Period(start=T0, end=T0 + HOUR))
    assert settled is not None and settled in report.settled
    assert settled.tokens_used > 0
    assert settled.charges_micros == settled.tokens_used * PRICE  # not EDITED_PRICE
    following = ledger.pinned_terms(uid, T0 + HOUR)
    assert following is not None and following.price_per_million_tokens == EDITED_PRICE


def test_a_deleted_sla_is_cut_once_its_pods_stopped_serving(
    k8s: Any, tenant_ns: str, prometheus: PrometheusServer, ledger: Ledger, cleanup: list[str]
) -> None:
    name = offer(k8s, PRICE)
    sla(k8s, "retired", name, cleanup=cleanup)
    apps, core = client.AppsV1Api(k8s), client.CoreV1Api(k8s)
    # The pod serves on a node: its deletion is graceful (it is left, terminating, until its
    # kubelet confirms it stopped). A pod never bound to a node is removed at once, and has
    # served nothing: it would not show a deletion waiting for a pod that still serves.
    node = f"{NS}-node"
    core.create_node({"metadata": {"name": node}})
    selector = workload.pod_selector("retired")
    apps.create_namespaced_deployment(
        NS,
        {
            "metadata": {"name": workload.child_names("retired").deployment},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {"labels": selector},
                    "spec": {
                        "nodeName": node,
                        "containers": [{"name": "gateway", "image": "aiconn:test"}],
                    },
                },
            },
        },
    )
    labels = ",".join(f"{k}={v}" for k, v in selector.items())

    def pods() -> list[Any]:
        return list(core.list_namespaced_pod(NS, label_selector=labels).items)

    def kubelet_confirms_stopped() -> None:
        """What the node's kubelet does once a terminating pod's containers have exited."""
        for pod in pods():
            if pod.metadata.deletion_timestamp is not None:
                core.delete_namespaced_pod(pod.metadata.name, NS, grace_period_seconds=0)

    play_kubelet(k8s, NS, labels)
    fleet = evaluator(k8s, ledger, prometheus, at=T0)
    deleted_at = T0 + timedelta(minutes=20)
    try:
        # Deleted at minute 20 while its pod still serves: nothing is settled yet, the pod is
        # stopped first.
        with pytest.raises(NotYet, match="still serving"):
            asyncio.run(
                settle_deleted(fleet, deleted(k8s, "retired", at=deleted_at), now=deleted_at)
            )
        stopped = apps.read_namespaced_deployment(workload.child_names("retired").deployment, NS)
        assert stopped.spec.replicas == 0
        # Terminating is not gone: the pod may still serve until its kubelet confirms.
        eventually(
            lambda: all(p.metadata.deletion_timestamp is not None for p in pods()) and pods(),
            what="the ReplicaSet controller to delete the inference pod",
        )
        with pytest.raises(NotYet, match="still serving"):
            asyncio.run(
                settle_deleted(
                    fleet,
                    deleted(k8s, "retired", at=deleted_at),
                    now=deleted_at + timedelta(minutes=1),
                )
            )
        kubelet_confirms_stopped()
        eventually(lambda: not pods(), what="the inference pod to go")
        # The history's pod served until minute 40: the operator saw it gone at 40:05.
        gone_at = T0 + timedelta(minutes=40, seconds=5)
        with pytest.raises(NotYet, match="scraped"):
            asyncio.run(settle_deleted(fleet, deleted(k8s, "retired", at=deleted_at), now=gone_at))
        body = deleted(k8s, "retired", at=deleted_at)
        assert body["metadata"]["annotations"][STOPPED_ANNOTATION] == gone_at.isoformat()
        (settled,) = asyncio.run(settle_deleted(fleet, body, now=T0 + timedelta(minutes=45)))
    finally:
        delete_offer(k8s, name)
        apps.delete_namespaced_deployment(
            workload.child_names("retired").deployment, NS, propagation_policy="Foreground"
        )

        def all_gone() -> bool:
            kubelet_confirms_stopped()
            return not apps.list_namespaced_deployment(NS).items and not pods()

        eventually(all_gone, what="the Deployment and its pods to go")
        core.delete_node(node)
    assert settled.period == Period(start=T0, end=T0 + timedelta(minutes=41))
    assert settled.state == SettlementState.SETTLED
    ref = SLARef.from_body(body)
    # Every token the pod served, the 20 minutes after the deletion included, is charged.
    assert settled.tokens_used == served_tokens(prometheus, ref) > 0
    assert settled.charges_micros == settled.tokens_used * PRICE


def test_a_deleted_offer_settles_on_the_pinned_terms(
    k8s: Any, tenant_ns: str, prometheus: PrometheusServer, ledger: Ledger, cleanup: list[str]
) -> None:
    name = offer(k8s, PRICE)
    sla(k8s, "orphan", name, cleanup=cleanup)
    fleet = evaluator(k8s, ledger, prometheus, at=T0 + timedelta(minutes=10))
    asyncio.run(fleet.run_once())  # pins the period's terms
    delete_offer(k8s, name)
    body, (settled,) = settle_without_pods(fleet, k8s, "orphan", at=T0 + timedelta(minutes=31))
    assert settled.state == SettlementState.SETTLED
    assert settled.tokens_used == served_tokens(prometheus, SLARef.from_body(body)) > 0
    assert settled.charges_micros == settled.tokens_used * PRICE


def test_no_terms_and_no_offer_is_held_for_review_with_its_usage(
    k8s: Any, tenant_ns: str, prometheus: PrometheusServer, ledger: Ledger, cleanup: list[str]
) -> None:
    uid = sla(k8s, "unpriced", "no-such-offer", cleanup=cleanup)["metadata"]["uid"]
    fleet = evaluator(k8s, ledger, prometheus, at=T0)
    body, (held,) = settle_without_pods(fleet, k8s, "unpriced", at=T0 + timedelta(minutes=31))
    assert (held.state, held.hold_reason) == (
        SettlementState.HELD_FOR_REVIEW,
        HoldReason.TERMS_UNKNOWN,
    )
    assert held.tokens_used == served_tokens(prometheus, SLARef.from_body(body)) > 0
    assert held.charges_micros == 0  # the tenant-written price is never used
    events = client.CoreV1Api(k8s).list_namespaced_event(
        NS, field_selector=f"involvedObject.uid={uid}"
    )
    warning = [e for e in events.items if e.reason == "SettledOnDeletion"]
    assert warning and warning[-1].type == "Warning"
    assert "no-such-offer" in warning[-1].message


def test_pods_that_never_go_do_not_hold_the_deletion_forever(
    k8s: Any, tenant_ns: str, prometheus: PrometheusServer, ledger: Ledger, cleanup: list[str]
) -> None:
    name = offer(k8s, PRICE)
    uid = sla(k8s, "stuck", name, cleanup=cleanup)["metadata"]["uid"]
    core = client.CoreV1Api(k8s)
    # A pod of the SLA that scaling does not remove (no ReplicaSet owns it; think of a node gone
    # dark): the deletion waits for it, but not forever.
    pod = f"stuck-{uuid.uuid4().hex[:6]}"
    core.create_namespaced_pod(
        NS,
        {
            "metadata": {"name": pod, "labels": workload.pod_selector("stuck")},
            "spec": {"containers": [{"name": "gateway", "image": "aiconn:test"}]},
        },
    )
    fleet = evaluator(k8s, ledger, prometheus, at=T0)
    at = T0 + timedelta(minutes=5)
    try:
        with pytest.raises(NotYet, match="still serving"):
            asyncio.run(settle_deleted(fleet, deleted(k8s, "stuck", at=at), now=at))
        late = at + timedelta(minutes=11)
        with pytest.raises(NotYet, match="scraped"):
            asyncio.run(settle_deleted(fleet, deleted(k8s, "stuck", at=at), now=late))
        body = deleted(k8s, "stuck", at=at)
        assert body["metadata"]["annotations"][STOPPED_ANNOTATION] == late.isoformat()
        events = core.list_namespaced_event(NS, field_selector=f"involvedObject.uid={uid}")
        assert any(e.reason == "ServingNotStopped" and e.type == "Warning" for e in events.items)
    finally:
        core.delete_namespaced_pod(pod, NS, grace_period_seconds=0)
        delete_offer(k8s, name)
