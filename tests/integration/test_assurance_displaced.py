"""A reconcile that moves an SLA off a site that is down records the failover, so it comes back.

The assurance loop fails an SLA over when its site goes down, and brings it back once the site
has been stable. A reconcile can get there first: every SLA resumes when the operator starts, so
an operator restarted during a site's outage reconciles the SLAs placed there while their nodes
are NotReady (as do a tier's or an offer's edit). Placement then chooses another site; without a
failover record that site became the SLA's home for good. Here the reconcile (what the
operator's handler runs) and the loop's passes (on a simulated clock) are driven in turn on a
cluster that schedules (KWOK nodes, kube-scheduler), with no operator running in between.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client

from aiconn.devstack.cluster import Cluster
from aiconn.devstack.tiernodes import set_site_ready
from aiconn.inference.assurance import Step
from aiconn.inference.placement import default_tiers
from aiconn.operator.assurance import AssuranceLoop
from aiconn.operator.kubeapi import KubeApi
from aiconn.operator.reconcile import Outcome, reconcile_sla
from aiconn.operator.settings import OperatorSettings
from aiconn.resources.v1alpha1.kinds import SLA
from tests.helpers import fresh_namespace
from tests.integration.test_assurance_placement import status_of, where
from tests.integration.test_capacity_placement import create, edge_or_regional

pytestmark = pytest.mark.integration

HOME, AWAY = ("edge", "de-muc-edge-01"), ("regional", "fr-par-dc-01")


@pytest.fixture(scope="module")
def k8s(kwok_k8s: Any) -> Any:
    """The admin client of this module's KWOK cluster (`kwok_cluster`, tests/conftest.py)."""
    return kwok_k8s


@pytest.fixture
def namespace(k8s: Any) -> Iterator[str]:
    with fresh_namespace(k8s, wait_deleted=True) as name:
        yield name


def reconciled(api: Any, ns: str, name: str) -> Outcome:
    """What the operator's SLA handler does on a create, an edit or a resume: reconcile, then
    write the outcome's status."""

    async def run() -> Outcome:
        kube = KubeApi(api)
        body = await kube.get(SLA.kind, name, ns)
        assert body is not None
        outcome = await reconcile_sla(kube, body, default_tiers(), OperatorSettings())
        await kube.update_status(
            SLA.kind, name, ns, fields=outcome.status, conditions=outcome.conditions, current=body
        )
        return outcome

    return asyncio.run(run())


def test_a_reconcile_while_the_site_is_down_records_the_failover_and_the_loop_brings_it_back(
    k8s: Any, namespace: str, kwok_cluster: Cluster
) -> None:
    core = client.CoreV1Api(k8s)
    sla = edge_or_regional("restarted", replicas=1)
    sla["spec"]["placement"]["sites"] = [HOME[1], AWAY[1]]
    create(k8s, namespace, sla)
    reconciled(k8s, namespace, "restarted")
    assert where(k8s, namespace, "restarted") == HOME

    set_site_ready(core, HOME[1], ready=False)
    try:
        # The operator restarts now: the SLA's resume is a reconcile with its site down.
        outcome = reconciled(k8s, namespace, "restarted")
        assert where(k8s, namespace, "restarted") == AWAY
        failover = status_of(k8s, namespace, "restarted")["assurance"]["failover"]
        assert (failover["fromTier"], failover["fromSite"]) == HOME
        assert (
            failover["reason"]
            == f"{HOME[0]} {HOME[1]} has no Ready node with room for 1 replica(s)"
        )
        assert [e.reason for e in outcome.events if e.type == "Warning"] == ["FailedOver"]
        # Reconciled again while the site is still down (another restart): it stays away, its
        # home still the site it left.
        reconciled(k8s, namespace, "restarted")
        assert where(k8s, namespace, "restarted") == AWAY
        again = status_of(k8s, namespace, "restarted")["assurance"]["failover"]
        assert (again["fromTier"], again["fromSite"]) == HOME
    finally:
        set_site_ready(core, HOME[1], ready=True)

    api = kwok_cluster.api_client()
    now = datetime.now(UTC)
    loop = AssuranceLoop(
        KubeApi(api), OperatorSettings(failback_stabilisation_seconds=2), clock=lambda: now
    )
    try:
        assert asyncio.run(loop.run_once()).get(Step.HOME_HEALTHY) == 1
        now += timedelta(seconds=3)
        assert asyncio.run(loop.run_once()).get(Step.FAIL_BACK) == 1
    finally:
        api.close()
    assert where(k8s, namespace, "restarted") == HOME
    assert status_of(k8s, namespace, "restarted")["assurance"].get("failover") is None
