"""The assurance loop's must-shows on a cluster that schedules: control plane, kube-scheduler and
KWOK nodes for every site of the shipped tiers (one node each: an edge site has 2 L40S, a
regional site 8 H100). Pods are made by the controller-manager, bound by the scheduler and run
by KWOK; nothing here writes a pod's node or status.

- a full site sends the next SLA to the next tier, with the reason in its status;
- a site whose KWOK nodes go NotReady fails over (pods Running at another site) and comes back
  after it recovers and the stabilisation time passes;
- ten minutes of simulated signals at the threshold, played through the loop on a simulated
  clock, change the Deployment once and never back;
- a surge never takes the Deployment past maxReplicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kopf.testing import KopfRunner
from kubernetes import client, watch

from aiconn.devstack.cluster import Cluster
from aiconn.devstack.kube import apply_objects, load_documents
from aiconn.devstack.tiernodes import set_site_ready
from aiconn.inference import workload
from aiconn.operator.assurance import AssuranceLoop
from aiconn.operator.kubeapi import KubeApi
from aiconn.operator.settings import OperatorSettings
from aiconn.resources.v1alpha1.meta import GROUP, VERSION
from tests.helpers import eventually, fresh_namespace
from tests.integration.test_assurance_placement import events, run_operator, status_of, where
from tests.integration.test_capacity_placement import (
    SAMPLES,
    create,
    edge_or_regional,
)

pytestmark = pytest.mark.integration

SETTINGS = {
    # The default interval: a Node change wakes the loop, so the fail-over does not wait for it.
    "AICONN_FAILBACK_STABILISATION_SECONDS": "2",
    "AICONN_UNSCHEDULABLE_GRACE_SECONDS": "5",
}


@pytest.fixture(scope="module")
def k8s(kwok_k8s: Any) -> Any:
    """The admin client of this module's KWOK cluster (`kwok_cluster`, tests/conftest.py)."""
    return kwok_k8s


@pytest.fixture(scope="module")
def operator(kwok_cluster: Cluster, k8s: Any) -> Iterator[KopfRunner]:
    yield from run_operator(kwok_cluster.control_plane, k8s, SETTINGS)


@pytest.fixture
def namespace(k8s: Any) -> Iterator[str]:
    """A namespace per test, deleted and waited for, so its pods free their GPUs."""
    with fresh_namespace(k8s, wait_deleted=True) as name:
        yield name


def running_at(k8s: Any, ns: str, sla: str) -> dict[str, int]:
    """Running, not terminating inference pods of `sla` per site of their node."""
    core = client.CoreV1Api(k8s)
    sites: dict[str, int] = {}
    for pod in core.list_namespaced_pod(ns, label_selector=f"aiconn.io/sla={sla}").items:
        if pod.status.phase != "Running" or pod.metadata.deletion_timestamp is not None:
            continue
        site = core.read_node(pod.spec.node_name).metadata.labels["topology.aiconn.io/site"]
        sites[site] = sites.get(site, 0) + 1
    return sites


def test_a_full_site_sends_the_next_sla_to_the_next_tier_with_the_reason(
    k8s: Any, namespace: str, operator: KopfRunner
) -> None:
    # The edge site's one node has 2 L40S: the first SLA's two replicas run there and fill it.
    create(k8s, namespace, edge_or_regional("first", replicas=2))
    eventually(
        lambda: running_at(k8s, namespace, "first") == {"de-fra-edge-01": 2},
        what="first's 2 pods Running on the edge site",
    )

    create(k8s, namespace, edge_or_regional("second", replicas=1))
    eventually(
        lambda: running_at(k8s, namespace, "second") == {"de-fra-dc-01": 1},
        what="second's pod Running on the regional site",
    )
    # KWOK runs the pod at once; the status is written after the Deployment.
    eventually(
        lambda: where(k8s, namespace, "second") == ("regional", "de-fra-dc-01"),
        what="second's status placed on the regional site",
    )
    status = status_of(k8s, namespace, "second")
    rejected = {r["tier"]: r["reason"] for r in status["placement"]["rejected"]}
    assert rejected["edge"] == "edge de-fra-edge-01: 0 of 2 L40S free, 1 needed (1 replica(s) x 1)"
    placed = next(c for c in status["conditions"] if c["type"] == "Placed")
    assert "8 of 8 H100 free at the site" in placed["message"], placed


def test_a_site_whose_kwok_nodes_go_not_ready_fails_over_and_comes_back(
    k8s: Any, namespace: str, operator: KopfRunner
) -> None:
    core = client.CoreV1Api(k8s)
    home, away = "de-muc-edge-01", "fr-par-dc-01"
    sla = edge_or_regional("moving", replicas=1)
    sla["spec"]["placement"]["sites"] = [home, away]
    create(k8s, namespace, sla)
    eventually(lambda: running_at(k8s, namespace, "moving") == {home: 1}, what="Running at home")
    # The loop's first pass (its interval, 15 s) records where the SLA started.
    eventually(
        lambda: (status_of(k8s, namespace, "moving").get("assurance") or {}).get(
            "placementHistory"
        ),
        what="the first placement in the history",
    )

    set_site_ready(core, home, ready=False)
    try:
        eventually(
            lambda: running_at(k8s, namespace, "moving").get(away) == 1,
            what="a pod Running at the other site",
        )
        # KWOK runs the new pod at once; the status is written after the Deployment.
        eventually(
            lambda: where(k8s, namespace, "moving") == ("regional", away), what="placed away"
        )
        failover = status_of(k8s, namespace, "moving")["assurance"]["failover"]
        assert (failover["fromTier"], failover["fromSite"]) == ("edge", home)
        assert "has no Ready node with room" in failover["reason"]
        eventually(lambda: events(k8s, namespace, "moving", "FailedOver"), what="FailedOver")
    finally:
        set_site_ready(core, home, ready=True)

    eventually(lambda: events(k8s, namespace, "moving", "HomeHealthy"), what="home healthy")
    eventually(
        lambda: running_at(k8s, namespace, "moving") == {home: 1},
        what="back home, Running there and gone from the other site",
    )
    # As on the way out: the placement (and the history in the same write) follows the pods.
    eventually(lambda: where(k8s, namespace, "moving") == ("edge", home), what="placed at home")
    status = status_of(k8s, namespace, "moving")
    assert status["assurance"].get("failover") is None
    moves = [(h["tier"], h["site"]) for h in status["assurance"]["placementHistory"]]
    assert moves == [("edge", home), ("regional", away), ("edge", home)]
    assert [a["action"] for a in status["assurance"]["actions"]] == ["FailOver", "FailBack"]


class SimulatedLoop:
    """The assurance loop in this process, on the cluster, with scaling on, a simulated clock and
    simulated signals for one SLA: each `play` is one pass, `step` of simulated time apart."""

    def __init__(self, cluster: Cluster, ns: str, sla: str) -> None:
        self.api = cluster.api_client()
        self.now = datetime.now(UTC)
        self.load: tuple[float | None, float | None] = (None, None)
        self.key = (ns, sla)
        settings = OperatorSettings(scaling_enabled=True, failback_stabilisation_seconds=2)
        self.loop = AssuranceLoop(
            KubeApi(self.api), settings, clock=lambda: self.now, signal_reader=self._signals
        )

    def _signals(
        self, thresholds: Mapping[tuple[str, str], float]
    ) -> dict[tuple[str, str], tuple[float | None, float | None]]:
        return {self.key: self.load} if self.key in thresholds else {}

    def play(self, in_flight: float, *, step: timedelta) -> None:
        self.load = (in_flight, 100.0)  # TTFT within its objective: only the load signal moves
        asyncio.run(self.loop.run_once())
        self.now += step

    def close(self) -> None:
        self.api.close()


@contextlib.contextmanager
def replicas_seen(k8s: Any, ns: str, sla: str) -> Iterator[list[int]]:
    """Every `spec.replicas` the SLA's Deployment takes while the block runs, from a watch (so a
    value held for a moment is seen too)."""
    seen: list[int] = []
    name = workload.child_names(sla).deployment
    stream = watch.Watch()
    apps = client.AppsV1Api(k8s)

    def follow() -> None:
        for event in stream.stream(
            apps.list_namespaced_deployment, ns, field_selector=f"metadata.name={name}"
        ):
            replicas = event["object"].spec.replicas
            if not seen or seen[-1] != replicas:
                seen.append(replicas)

    worker = threading.Thread(target=follow, daemon=True)
    worker.start()
    eventually(lambda: seen, what=f"the Deployment {name} watched")
    try:
        yield seen
    finally:
        stream.stop()
        # The watch ends at its next event or server timeout; a daemon thread need not be joined.


@contextlib.contextmanager
def free_capacity(k8s: Any) -> Iterator[None]:
    """The regional tier priced at nothing while the block runs: no credit is at stake without
    the SLA engine, so only free capacity makes a scale-out worth it (see the scaling test)."""
    custom = client.CustomObjectsApi(k8s)
    custom.patch_cluster_custom_object(
        GROUP, VERSION, "inferencetiers", "regional", {"spec": {"pricePerMillionTokens": 0}}
    )
    try:
        yield
    finally:
        apply_objects(k8s, load_documents([SAMPLES / "tiers.yaml"]))


def regional_sla(name: str, *, replicas: int, max_replicas: int) -> dict[str, Any]:
    sla = edge_or_regional(name, replicas=replicas)
    sla["spec"]["placement"]["sites"] = ["fr-par-dc-01"]
    sla["spec"]["capacity"] = {"replicas": replicas, "maxReplicas": max_replicas}
    return sla


def scaled_to(k8s: Any, ns: str, sla: str) -> Callable[[int], bool]:
    def check(count: int) -> bool:
        return running_at(k8s, ns, sla) == {"fr-par-dc-01": count}

    return check


def one_replica_running(
    kwok_cluster: Cluster, k8s: Any, ns: str, sla: str
) -> tuple[Callable[[int], bool], SimulatedLoop]:
    """SLA `sla` created with 1 of at most 3 replicas, its one replica Running: how many run (as
    `scaled_to` asks it) and the assurance loop simulated on it."""
    create(k8s, ns, regional_sla(sla, replicas=1, max_replicas=3))
    at = scaled_to(k8s, ns, sla)
    eventually(lambda: at(1), what="one replica Running")
    return at, SimulatedLoop(kwok_cluster, ns, sla)


def test_ten_simulated_minutes_at_the_threshold_scale_once_and_never_flap(
    kwok_cluster: Cluster, k8s: Any, namespace: str, operator: KopfRunner
) -> None:
    at, loop = one_replica_running(kwok_cluster, k8s, namespace, "steady")
    step = timedelta(seconds=15)
    try:
        with free_capacity(k8s), replicas_seen(k8s, namespace, "steady") as seen:
            # 8 in flight per replica is the threshold; the load sits 5 % above and below it in
            # turn, a pass every 15 s for 10 minutes, past both cooldowns (60 s out, 5 min in).
            for index in range(40):
                loop.play(8 * (1.05 if index % 2 == 0 else 0.95), step=step)
            eventually(lambda: at(2), what="the added replica Running")
            counts = list(seen)
    finally:
        loop.close()
    # One scale-out on the first pass above the threshold; 7.6 in flight then sits inside the
    # hysteresis band of 2 replicas (scale-in needs <= 4 on one), so never back.
    assert counts == [1, 2], counts
    acts = status_of(k8s, namespace, "steady")["assurance"]["actions"]
    assert [(a["action"], a["decision"]) for a in acts] == [("ScaleOut", "Act")]
    assert acts[0]["reason"].startswith("1 -> 2: 8.4 in flight per replica > 8")
    assert len(events(k8s, namespace, "steady", "ScaledOut")) == 1
    assert not events(k8s, namespace, "steady", "ScaledIn")


def test_a_surge_never_takes_the_deployment_past_max_replicas(
    kwok_cluster: Cluster, k8s: Any, namespace: str, operator: KopfRunner
) -> None:
    at, loop = one_replica_running(kwok_cluster, k8s, namespace, "surging")
    try:
        with free_capacity(k8s), replicas_seen(k8s, namespace, "surging") as seen:
            # 500 in flight asks for 63 replicas; three minutes of it, a pass every 15 s.
            for _ in range(12):
                loop.play(500, step=timedelta(seconds=15))
            eventually(lambda: at(3), what="maxReplicas Running")
            counts = list(seen)
    finally:
        loop.close()
    assert counts == [1, 3], counts
    assurance = status_of(k8s, namespace, "surging")["assurance"]
    assert assurance["replicas"] == 3
    assert [(a["action"], a["decision"]) for a in assurance["actions"]] == [("ScaleOut", "Act")]
    pods = client.CoreV1Api(k8s).list_namespaced_pod(
        namespace, label_selector="aiconn.io/sla=surging"
    )
    assert len([p for p in pods.items if p.metadata.deletion_timestamp is None]) == 3
