"""The assurance loop on the real API server: an SLA refused for want of room is placed once room
frees, and an SLA whose site's nodes go NotReady fails over and comes back after they recover.

GPU nodes are Node objects with a patched status, as a kubelet or KWOK would report them; the
test control plane runs no node lifecycle controller, so a node is NotReady exactly when the test
patches it so. The operator runs with a 1 s loop and a 2 s stabilisation time, so the test polls
for outcomes instead of sleeping.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from kopf.testing import KopfRunner
from kubernetes import client

from aiconn.devstack.kube import apply_objects, load_documents
from aiconn.resources.v1alpha1.meta import GROUP, VERSION
from aiconn.resources.v1alpha1.tier import SITE_LABEL
from tests.helpers import eventually, operator_kubeconfig, running_operator
from tests.integration.test_capacity_placement import (
    SAMPLES,
    TIERS,
    create,
    edge_or_regional,
    pods_of,
)

pytestmark = pytest.mark.integration

LOOP_SETTINGS = {
    "AICONN_ASSURANCE_INTERVAL_SECONDS": "1",
    "AICONN_FAILBACK_STABILISATION_SECONDS": "2",
    "AICONN_UNSCHEDULABLE_GRACE_SECONDS": "1",
}


def run_operator(control_plane: Any, k8s: Any, settings: dict[str, str]) -> Iterator[KopfRunner]:
    """The operator as its ServiceAccount, with `settings` in its environment."""
    apply_objects(k8s, load_documents([SAMPLES / "tiers.yaml", SAMPLES / "offers.yaml"]))
    with running_operator(operator_kubeconfig(control_plane, k8s), settings) as runner:
        yield runner
    assert "assurance pass failed" not in runner.output, runner.output[-4000:]


@pytest.fixture(scope="module")
def operator(control_plane: Any, k8s: Any) -> Iterator[KopfRunner]:
    yield from run_operator(control_plane, k8s, LOOP_SETTINGS)


class Nodes:
    """GPU nodes made by a test and deleted after it. Nodes are cluster-wide and the pods of a
    deleted namespace hold their GPUs until it is gone, so each test uses sites of its own."""

    def __init__(self, k8s: Any) -> None:
        self.core = client.CoreV1Api(k8s)
        self.suffix = uuid.uuid4().hex[:6]
        self.names: list[str] = []

    def __enter__(self) -> Nodes:
        return self

    def __exit__(self, *_: object) -> None:
        for name in self.names:
            self.core.delete_node(name)

    def add(self, tier: str, site: str, gpus: int) -> str:
        name = f"gpu-{tier}-{len(self.names)}-{self.suffix}"
        labels = {**TIERS[tier].node_selector, SITE_LABEL: site}
        self.core.create_node({"metadata": {"name": name, "labels": labels}})
        resources = {"nvidia.com/gpu": str(gpus), "cpu": "64", "pods": "110"}
        self.core.patch_node_status(
            name, {"status": {"capacity": resources, "allocatable": resources}}
        )
        self.set_ready(name, True)
        self.names.append(name)
        return name

    def set_ready(self, name: str, ready: bool) -> None:
        """Report the node Ready or NotReady, as its kubelet would."""
        self.core.patch_node_status(
            name,
            {
                "status": {
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True" if ready else "False",
                            "reason": "KubeletReady" if ready else "KubeletNotReady",
                        }
                    ]
                }
            },
        )


@pytest.fixture
def nodes(k8s: Any) -> Iterator[Nodes]:
    with Nodes(k8s) as made:
        yield made


def status_of(k8s: Any, ns: str, name: str) -> dict[str, Any]:
    sla = client.CustomObjectsApi(k8s).get_namespaced_custom_object(
        GROUP, VERSION, ns, "aiinferenceslas", name
    )
    status: dict[str, Any] = sla.get("status") or {}
    return status


def where(k8s: Any, ns: str, name: str) -> tuple[str | None, str | None]:
    placement = status_of(k8s, ns, name).get("placement") or {}
    return placement.get("tier"), placement.get("site")


def events(k8s: Any, ns: str, name: str, reason: str) -> list[str]:
    return [
        e.message
        for e in client.CoreV1Api(k8s)
        .list_namespaced_event(ns, field_selector=f"involvedObject.name={name}")
        .items
        if e.reason == reason
    ]


def test_an_sla_turned_away_for_want_of_room_is_placed_once_room_frees(
    k8s: Any, namespace: str, operator: KopfRunner, nodes: Nodes
) -> None:
    nodes.add("edge", "de-ber-edge-01", 2)
    edge_only = {"tier": "edge", "sites": ["de-ber-edge-01"]}
    first = edge_or_regional("first", replicas=2)
    first["spec"]["placement"] = edge_only
    create(k8s, namespace, first)
    eventually(lambda: where(k8s, namespace, "first") == ("edge", "de-ber-edge-01"), what="first")
    pods_of(k8s, namespace, "first", 2)

    second = edge_or_regional("second", replicas=2)
    second["spec"]["placement"] = edge_only
    create(k8s, namespace, second)
    eventually(
        lambda: status_of(k8s, namespace, "second").get("phase") == "Unplaceable",
        what="second refused for want of room",
    )
    rejected = {
        r["tier"]: r["reason"] for r in status_of(k8s, namespace, "second")["placement"]["rejected"]
    }
    assert rejected["edge"].startswith("edge de-ber-edge-01: 0 of 2 L40S free"), rejected

    # Deleting the first SLA frees its GPUs (the garbage collector removes its pods); no spec
    # edit and no tier edit touches the second, so only the loop can place it.
    client.CustomObjectsApi(k8s).delete_namespaced_custom_object(
        GROUP, VERSION, namespace, "aiinferenceslas", "first"
    )
    eventually(
        lambda: where(k8s, namespace, "second") == ("edge", "de-ber-edge-01"),
        what="second placed once room freed",
    )
    pods_of(k8s, namespace, "second", 2)
    eventually(lambda: events(k8s, namespace, "second", "Retried"), what="a Retried event")
    history = status_of(k8s, namespace, "second")["assurance"]["placementHistory"]
    assert [(h["tier"], h["site"]) for h in history] == [("edge", "de-ber-edge-01")]
    assert history[0]["reason"].startswith("Retried: room freed: placed on edge")


def test_a_site_whose_nodes_go_not_ready_fails_over_and_comes_back_once_stable(
    k8s: Any, namespace: str, operator: KopfRunner, nodes: Nodes
) -> None:
    home, away = ("edge", "de-muc-edge-01"), ("regional", "fr-par-dc-01")
    edge = nodes.add(*home, 2)
    nodes.add(*away, 8)
    moving = edge_or_regional("moving", replicas=1)
    moving["spec"]["placement"]["sites"] = ["de-muc-edge-01", "fr-par-dc-01"]
    create(k8s, namespace, moving)
    eventually(
        lambda: (status_of(k8s, namespace, "moving").get("assurance") or {}).get(
            "placementHistory"
        ),
        what="the first placement in the history",
    )
    assert where(k8s, namespace, "moving") == home

    nodes.set_ready(edge, False)
    eventually(lambda: where(k8s, namespace, "moving") == away, what="failed over to regional")
    pods = eventually(
        lambda: [
            p
            for p in client.CoreV1Api(k8s)
            .list_namespaced_pod(namespace, label_selector="aiconn.io/sla=moving")
            .items
            if p.spec.node_selector.get(SITE_LABEL) == "fr-par-dc-01"
            and p.metadata.deletion_timestamp is None
        ],
        what="a pod pinned to the regional site",
    )
    assert pods
    failover = status_of(k8s, namespace, "moving")["assurance"]["failover"]
    assert (failover["fromTier"], failover["fromSite"]) == home
    assert "has no Ready node with room" in failover["reason"]
    eventually(lambda: events(k8s, namespace, "moving", "FailedOver"), what="a FailedOver event")
    rejected = {
        r["tier"]: r["reason"] for r in status_of(k8s, namespace, "moving")["placement"]["rejected"]
    }
    assert rejected["edge"].startswith("edge: failed over from de-muc-edge-01"), rejected

    # A spec edit during the failover re-plans without returning to the failed site.
    client.CustomObjectsApi(k8s).patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "aiinferenceslas",
        "moving",
        {"spec": {"objectives": {"tpot": {"thresholdMs": 60, "targetPercent": 99}}}},
    )
    eventually(
        lambda: status_of(k8s, namespace, "moving").get("observedGeneration") == 2,
        what="the edit reconciled",
    )
    assert where(k8s, namespace, "moving") == away

    nodes.set_ready(edge, True)
    eventually(
        lambda: where(k8s, namespace, "moving") == home,
        what="back on edge after the stabilisation time",
    )
    status = status_of(k8s, namespace, "moving")
    assert status["assurance"].get("failover") is None
    assert events(k8s, namespace, "moving", "HomeHealthy")
    eventually(lambda: events(k8s, namespace, "moving", "FailedBack"), what="a FailedBack event")
    moves = [(h["tier"], h["site"]) for h in status["assurance"]["placementHistory"]]
    assert moves == [home, away, home]
    actions = status["assurance"]["actions"]
    assert [a["action"] for a in actions] == ["FailOver", "FailBack"]
    # Each move weighed the capacity's cost against the credit (none measured yet: 0), exactly.
    failed_over = actions[0]
    assert Decimal(failed_over["capacityCost"]) > 0
    assert failed_over["expectedCredit"] == "0.000000"
    assert failed_over["currency"] == "EUR"
    assert "restores service (capacity " in failed_over["reason"]
    assert "home is stable again (capacity " in actions[1]["reason"]
    assert any("restores service" in m for m in events(k8s, namespace, "moving", "FailedOver"))
    goals = {o["objective"]: o for o in status["assurance"]["objectives"]}
    assert goals["availability"]["goalPercent"] == 99.9
    assert goals["ttft"]["goalPercent"] == 99
    assert goals["availability"].get("observedPercent") is None  # no Prometheus in this test


def test_pods_the_scheduler_cannot_place_fail_the_sla_over(
    k8s: Any, namespace: str, operator: KopfRunner, nodes: Nodes
) -> None:
    nodes.add("edge", "de-ber-edge-01", 4)
    nodes.add("regional", "fr-par-dc-01", 8)
    sla = edge_or_regional("stuck", replicas=1)
    sla["spec"]["placement"]["sites"] = ["de-ber-edge-01", "fr-par-dc-01"]
    create(k8s, namespace, sla)
    eventually(lambda: where(k8s, namespace, "stuck") == ("edge", "de-ber-edge-01"), what="edge")
    [pod] = pods_of(k8s, namespace, "stuck", 1)

    # What kube-scheduler writes when no node takes the pod (here: a taint the tier's
    # tolerations do not cover); the site still shows free GPUs, so only this says it is stuck.
    now = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    client.CoreV1Api(k8s).patch_namespaced_pod_status(
        pod.metadata.name,
        namespace,
        {
            "status": {
                "phase": "Pending",
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": "0/1 nodes are available: 1 node(s) had untolerated taint",
                        "lastTransitionTime": now,
                    }
                ],
            }
        },
    )
    # Read in the same status as the move: the SLA comes back once edge has been stable.
    moved = eventually(
        lambda: (
            (st := status_of(k8s, namespace, "stuck")).get("placement", {}).get("tier")
            == "regional"
            and st
        ),
        what="failed over from the unschedulable site",
    )
    assert moved["placement"]["site"] == "fr-par-dc-01"
    failover = moved["assurance"]["failover"]
    assert failover["reason"].startswith("pods unschedulable at edge de-ber-edge-01 since ")
