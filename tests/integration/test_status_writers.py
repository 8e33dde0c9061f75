"""The operator's status writes against the real API server: two writers of one SLA's
conditions, and a held settlement that a reviewer released.

The reconcile owns Placed / SliceReady / InferenceReady / Ready and the SLA loop owns Compliant,
in the same `status.conditions` list that a merge patch replaces whole. `update_status` merges
into the version the writer read and, when someone wrote in between, re-reads and merges again.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest
from kubernetes import client

from aiconn.devstack.kube import apply_objects, load_documents
from aiconn.kube import NotFound
from aiconn.operator.conditions import condition, merge
from aiconn.operator.evaluation import FleetEvaluator, SLARef
from aiconn.operator.kubeapi import KubeApi
from aiconn.operator.settings import OperatorSettings
from aiconn.resources.v1alpha1.meta import GROUP, VERSION
from aiconn.sla.accounting import SettlementState
from aiconn.sla.periods import previous_period
from aiconn.store.ledger import Ledger, release_held
from aiconn.store.prometheus import PrometheusSource, SourceUnavailable
from tests.factories import fully_available, settle_ref

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "samples"
KIND = "AIInferenceSLA"


def sample_sla(k8s: Any, name: str, *, window: str | None = None) -> dict[str, Any]:
    """The edge sample named `name` (its window `window` when given), with the sample offers it
    buys under installed (the provider's)."""
    apply_objects(k8s, load_documents([SAMPLES / "offers.yaml"]))
    body: dict[str, Any] = next(iter(load_documents([SAMPLES / "sla-edge-urllc.yaml"])))
    body["metadata"] = {"name": name}
    if window is not None:
        body["spec"]["objectives"]["window"] = {"duration": window}
    return body


def create_sla(k8s: Any, namespace: str) -> str:
    body = sample_sla(k8s, "writers")
    client.CustomObjectsApi(k8s).create_namespaced_custom_object(
        GROUP, VERSION, namespace, "aiinferenceslas", body
    )
    return "writers"


def types(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in body["status"]["conditions"]}


def test_a_stale_writer_keeps_the_other_writers_conditions(k8s: Any, namespace: str) -> None:
    name = create_sla(k8s, namespace)
    kube = KubeApi(k8s)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        # Both writers read the SLA now; the SLA loop writes first.
        seen = await kube.get(KIND, name, namespace)
        assert seen is not None
        first = await kube.update_status(
            KIND,
            name,
            namespace,
            fields={"period": {"start": "2026-11-28T00:00:00Z"}},
            conditions=[condition("Compliant", True, "ObjectivesMet", "ok", generation=1)],
            current=seen,
        )
        # The reconcile still holds the version from before Compliant existed.
        second = await kube.update_status(
            KIND,
            name,
            namespace,
            fields={"phase": "Ready"},
            conditions=[condition("Ready", True, "Serving", "all replicas ready", generation=1)],
            current=seen,
        )
        return first, second

    first, second = asyncio.run(scenario())
    conditions = types(second)
    assert set(conditions) == {"Compliant", "Ready"}
    assert (
        conditions["Compliant"]["lastTransitionTime"]
        == (types(first)["Compliant"]["lastTransitionTime"])
    )
    assert second["status"]["phase"] == "Ready"
    assert second["status"]["period"] == {"start": "2026-11-28T00:00:00Z"}


def test_a_plain_merge_patch_from_a_stale_read_would_drop_them(k8s: Any, namespace: str) -> None:
    """Why update_status exists: the same two writes as plain merge patches lose Compliant."""
    name = create_sla(k8s, namespace)
    kube = KubeApi(k8s)

    async def scenario() -> dict[str, Any]:
        seen = await kube.get(KIND, name, namespace)
        assert seen is not None
        old = (seen.get("status") or {}).get("conditions") or []
        compliant = condition("Compliant", True, "ObjectivesMet", "ok", generation=1)
        await kube.patch_status(KIND, name, namespace, {"conditions": merge(old, [compliant])})
        ready = condition("Ready", True, "Serving", "all replicas ready", generation=1)
        return await kube.patch_status(KIND, name, namespace, {"conditions": merge(old, [ready])})

    assert set(types(asyncio.run(scenario()))) == {"Ready"}


def test_status_of_a_missing_sla_is_a_404(k8s: Any, namespace: str) -> None:
    kube = KubeApi(k8s)
    with pytest.raises(NotFound) as raised:
        asyncio.run(
            kube.update_status(KIND, "absent", namespace, fields={}, conditions=[], current=None)
        )
    assert raised.value.status == 404


class _PrometheusDown:
    """Stands in for Prometheus being unreachable: this test is about settlement status."""

    def fetch_fleet(self, *_: Any, **__: Any) -> Any:
        raise SourceUnavailable("connection refused")


def test_a_released_held_period_shows_settled_in_status(
    k8s: Any, namespace: str, tmp_path: Path
) -> None:
    body = sample_sla(k8s, "held", window="5m")
    created = client.CustomObjectsApi(k8s).create_namespaced_custom_object(
        GROUP, VERSION, namespace, "aiinferenceslas", body
    )
    sla = SLARef.from_body(created)
    # Ten minutes on: the previous 5-minute period closed after the SLA came into force.
    later = datetime.now(UTC) + timedelta(minutes=10)
    closed = previous_period(sla.spec.objectives.window, later)
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    # Coverage under the 90 % floor, every measured minute good: the settlement waits for review.
    partly_measured = fully_available(
        1000, minutes=5, good_minutes=2, price=Decimal("2"), coverage_percent=50.0
    )
    held = settle_ref(ledger, sla, period=closed, result=partly_measured)
    assert held.state == SettlementState.HELD_FOR_REVIEW
    evaluator = FleetEvaluator(
        kube=KubeApi(k8s),
        source=cast(PrometheusSource, _PrometheusDown()),
        ledger=ledger,
        settings=OperatorSettings(settlement_grace_seconds=0),
        clock=lambda: later,
    )

    def last_settlement() -> dict[str, Any]:
        found = client.CustomObjectsApi(k8s).get_namespaced_custom_object(
            GROUP, VERSION, namespace, "aiinferenceslas", "held"
        )
        return dict(found["status"]["lastSettlement"])

    try:
        asyncio.run(evaluator.run_once())
        assert last_settlement()["state"] == "HeldForReview"
        released = release_held(
            ledger, sla_uid=sla.uid, period_start=closed.start, reviewer="noc", note="checked"
        )
        assert released is not None
        asyncio.run(evaluator.run_once())
        shown = last_settlement()
        assert shown["state"] == "Settled"
        assert shown["transferIds"] == list(released.transfer_ids) != []
        assert shown["periodStart"] == closed.start_iso
    finally:
        ledger.close()
