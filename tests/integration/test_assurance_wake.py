"""The assurance loop acts on Node changes and on its own deadlines, not only on its interval.

With a one-hour interval, the only passes after startup are the ones a Node change wakes and the
one a stabilisation time asks for: a site whose nodes go NotReady still fails over, and the SLA
still comes back once the site has been stable for the (2 s) stabilisation time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kopf.testing import KopfRunner

from tests.helpers import eventually
from tests.integration.test_assurance_placement import (
    Nodes,
    events,
    run_operator,
    status_of,
    where,
)
from tests.integration.test_capacity_placement import create, edge_or_regional

pytestmark = pytest.mark.integration

SLOW_LOOP = {
    "AICONN_ASSURANCE_INTERVAL_SECONDS": "3600",
    "AICONN_FAILBACK_STABILISATION_SECONDS": "2",
}
EDGE, REGIONAL = ("edge", "de-ber-edge-01"), ("regional", "fr-par-dc-01")


@pytest.fixture(scope="module")
def operator(control_plane: Any, k8s: Any) -> Iterator[KopfRunner]:
    yield from run_operator(control_plane, k8s, SLOW_LOOP)


@pytest.fixture
def nodes(k8s: Any) -> Iterator[Nodes]:
    with Nodes(k8s) as made:
        yield made


def test_a_node_going_not_ready_wakes_the_loop_and_the_stabilisation_time_brings_it_back(
    k8s: Any, namespace: str, operator: KopfRunner, nodes: Nodes
) -> None:
    # 4 GPUs: room even while pods of an earlier test's deleted namespace still hold 2 there.
    edge = nodes.add(*EDGE, gpus=4)
    nodes.add(*REGIONAL, gpus=8)
    sla = edge_or_regional("woken", replicas=1)
    sla["spec"]["placement"]["sites"] = [EDGE[1], REGIONAL[1]]
    create(k8s, namespace, sla)
    eventually(lambda: where(k8s, namespace, "woken") == EDGE, what="placed on edge")

    nodes.set_ready(edge, False)
    eventually(lambda: where(k8s, namespace, "woken") == REGIONAL, what="failed over")
    assert status_of(k8s, namespace, "woken")["assurance"]["failover"]["fromSite"] == EDGE[1]

    nodes.set_ready(edge, True)
    eventually(lambda: events(k8s, namespace, "woken", "HomeHealthy"), what="home healthy")
    eventually(lambda: where(k8s, namespace, "woken") == EDGE, what="back after 2 s")
    assert status_of(k8s, namespace, "woken")["assurance"].get("failover") is None
