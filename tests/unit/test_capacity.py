"""Free GPUs per tier and site from Nodes and Pods, counted the way the scheduler counts them."""

from __future__ import annotations

from typing import Any

import pytest

from aiconn.inference.capacity import (
    GpuPod,
    SiteCapacity,
    node_view,
    observe,
    observes_any,
    pod_gpu_request,
    pod_view,
)
from aiconn.inference.placement import default_tiers
from aiconn.operator.assurance import unschedulable_since
from aiconn.resources.v1alpha1.tier import SITE_LABEL

TIERS = default_tiers()
EDGE_LABELS = dict(TIERS["edge"].node_selector)
REGIONAL_LABELS = dict(TIERS["regional"].node_selector)


def node(
    name: str,
    site: str | None = "de-fra-edge-01",
    *,
    gpus: int | str = 2,
    labels: dict[str, str] | None = None,
    ready: str | None = "True",
    cordoned: bool = False,
) -> dict[str, Any]:
    all_labels = dict(EDGE_LABELS if labels is None else labels)
    if site is not None:
        all_labels[SITE_LABEL] = site
    status: dict[str, Any] = {"allocatable": {"nvidia.com/gpu": str(gpus), "cpu": "32"}}
    if ready is not None:
        status["conditions"] = [{"type": "Ready", "status": ready}]
    return {
        "metadata": {"name": name, "labels": all_labels},
        "spec": {"unschedulable": True} if cordoned else {},
        "status": status,
    }


def pod(
    gpus: int,
    *,
    on: str | None = None,
    site: str | None = None,
    phase: str = "Running",
    limits_only: bool = False,
    selector: dict[str, str] | None = None,
) -> dict[str, Any]:
    amount = {"nvidia.com/gpu": str(gpus)}
    resources = {"limits": amount} if limits_only else {"requests": amount, "limits": amount}
    spec: dict[str, Any] = {"containers": [{"name": "vllm", "resources": resources}]}
    if on is not None:
        spec["nodeName"] = on
    node_selector = dict(EDGE_LABELS if selector is None else selector)
    if site is not None:
        node_selector[SITE_LABEL] = site
    spec["nodeSelector"] = node_selector
    return {"metadata": {"name": "p", "namespace": "ns"}, "spec": spec, "status": {"phase": phase}}


def edge_fra(nodes: list[dict[str, Any]], pods: list[dict[str, Any]]) -> SiteCapacity:
    return observe(nodes=nodes, pods=pods, tiers=TIERS)["edge"]["de-fra-edge-01"]


@pytest.mark.parametrize(
    ("case", "nodes", "pods", "allocatable", "free_per_node"),
    [
        ("empty nodes", [node("a"), node("b")], [], 4, (2, 2)),
        ("a bound pod takes from its node", [node("a"), node("b")], [pod(1, on="a")], 4, (2, 1)),
        ("finished pods hold nothing", [node("a")], [pod(2, on="a", phase="Succeeded")], 2, (2,)),
        ("failed pods hold nothing", [node("a")], [pod(2, on="a", phase="Failed")], 2, (2,)),
        ("pending pods hold their GPUs", [node("a")], [pod(2, on="a", phase="Pending")], 2, (0,)),
        ("a limit alone is the request", [node("a")], [pod(1, on="a", limits_only=True)], 2, (1,)),
        ("a NotReady node offers nothing", [node("a", ready="False")], [], 0, (0,)),
        ("a node without conditions offers nothing", [node("a", ready=None)], [], 0, (0,)),
        ("a cordoned node offers nothing", [node("a", cordoned=True)], [], 0, (0,)),
        ("an overcommitted node is full, not negative", [node("a")], [pod(3, on="a")], 2, (0,)),
        (
            "an unbound pod pinned to the site reserves best-fit",
            [node("a", gpus=4), node("b", gpus=2)],
            [pod(1, on="a"), pod(2, site="de-fra-edge-01")],
            6,
            (3, 0),
        ),
        (
            "an unbound pod that fits no node reserves nothing",
            [node("a"), node("b")],
            [pod(4, site="de-fra-edge-01")],
            4,
            (2, 2),
        ),
        (
            "an unbound pod pinned to another site takes nothing here",
            [node("a"), node("m", site="de-muc-edge-01")],
            [pod(2, site="de-muc-edge-01")],
            2,
            (2,),
        ),
        (
            "an unbound pod for another tier takes nothing here",
            [node("a")],
            [pod(2, selector=REGIONAL_LABELS, site="de-fra-edge-01")],
            2,
            (2,),
        ),
        (
            "a pod bound to an unknown node takes nothing here",
            [node("a")],
            [pod(2, on="elsewhere")],
            2,
            (2,),
        ),
        ("pods without GPUs take nothing", [node("a")], [pod(0, on="a")], 2, (2,)),
    ],
)
def test_free_gpus_per_site(
    case: str,
    nodes: list[dict[str, Any]],
    pods: list[dict[str, Any]],
    allocatable: int,
    free_per_node: tuple[int, ...],
) -> None:
    room = edge_fra(nodes, pods)
    assert (room.allocatable, room.free_per_node) == (allocatable, free_per_node), case
    # What the operator keeps of each listed Node and Pod observes the same.
    assert edge_fra([node_view(n) for n in nodes], [pod_view(p) for p in pods]) == room, case


def test_nodes_are_matched_to_tiers_by_every_selector_label_and_to_listed_sites() -> None:
    product_only = {"nvidia.com/gpu.product": "NVIDIA-L40S"}
    nodes = [
        node("edge-a"),
        node("regional-a", "de-fra-dc-01", gpus=8, labels=REGIONAL_LABELS),
        node("half-labelled", labels=product_only),
        node("unlisted-site", "xx-nowhere-01"),
        node("no-site", None),
    ]
    observed = observe(nodes=nodes, pods=[], tiers=TIERS)
    assert set(observed) == {"edge", "regional"}
    assert observed["edge"]["de-fra-edge-01"].allocatable == 2
    assert observed["regional"]["de-fra-dc-01"].allocatable == 8


def test_an_observed_tier_has_zero_at_its_sites_without_nodes() -> None:
    observed = observe(nodes=[node("a")], pods=[], tiers=TIERS)
    assert observed["edge"]["de-muc-edge-01"] == SiteCapacity(allocatable=0, free_per_node=())
    assert observed["edge"]["de-ber-edge-01"].free == 0


def test_a_tier_without_nodes_is_not_observed() -> None:
    assert observe(nodes=[], pods=[pod(1, on="a")], tiers=TIERS) == {}


@pytest.mark.parametrize(
    "nodes",
    [
        [],
        [node("a")],
        [node("half", labels={"aiconn.io/product": "x"}), node("nowhere", "xx-nowhere-01")],
        [node("no-site", None), node("b", "de-fra-dc-01", labels=REGIONAL_LABELS)],
        [node("cordoned", cordoned=True, ready="False")],
    ],
)
def test_observes_any_tells_whether_observe_finds_a_tier(nodes: list[dict[str, Any]]) -> None:
    assert observes_any(nodes, TIERS) == bool(observe(nodes=nodes, pods=[], tiers=TIERS))


def test_reconciles_that_share_the_lists_share_their_capacity_unless_they_have_pods(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """New SLAs placed at once read the same two lists (`KubeApi.fresh_list`): their capacity
    is worked out once; an SLA with pods among them gets its own, without its pods."""
    import asyncio

    from aiconn.inference import workload
    from aiconn.operator import capacity

    nodes = [node_view(node("a", gpus=4)), node_view(node("b", gpus=4))]
    mine = pod(2, on="a")
    mine["metadata"] = {"namespace": "t", "labels": dict(workload.pod_selector("s1"))}
    pods = [p for p in (GpuPod.of(pod(1, on="b")), GpuPod.of(mine)) if p is not None]

    class Shared:
        async def fresh_list(self, path: str, query: Any, *, keep: Any) -> list[Any]:
            return nodes if path == "/api/v1/nodes" else pods

    worked_out: list[int] = []

    def counted(**kwargs: Any) -> Any:
        worked_out.append(len(kwargs["pods"]))
        return observe(**kwargs)

    monkeypatch.setattr(capacity, "observe", counted)

    async def place(namespace: str, name: str) -> Any:
        return await capacity.observe_capacity(
            Shared(),  # type: ignore[arg-type]
            TIERS,
            namespace=namespace,
            sla_name=name,
        )

    new = [asyncio.run(place("t", f"new-{i}")) for i in range(3)]
    running = asyncio.run(place("t", "s1"))
    assert worked_out == [2, 1]
    assert all(c == observe(nodes=nodes, pods=pods, tiers=TIERS) for c in new)
    assert new[0]["edge"]["de-fra-edge-01"].free_per_node == (3, 2)
    assert running["edge"]["de-fra-edge-01"].free_per_node == (4, 3)


def test_a_tier_without_sites_pools_all_its_nodes_under_no_site() -> None:
    tiers = {"lab": TIERS["edge"].model_copy(update={"sites": []})}
    observed = observe(nodes=[node("a", None), node("b", "anywhere")], pods=[], tiers=tiers)
    assert observed == {"lab": {None: SiteCapacity(allocatable=4, free_per_node=(2, 2))}}


@pytest.mark.parametrize(
    ("free_per_node", "gpus_per_replica", "replicas"),
    [
        ((2, 2), 1, 4),
        ((2, 2), 2, 2),
        ((1, 1, 1, 1), 2, 0),
        ((3, 1), 2, 1),
        ((8,), 4, 2),
        ((), 1, 0),
    ],
)
def test_a_replica_needs_its_gpus_on_one_node(
    free_per_node: tuple[int, ...], gpus_per_replica: int, replicas: int
) -> None:
    room = SiteCapacity(allocatable=sum(free_per_node), free_per_node=free_per_node)
    assert room.replicas_that_fit(gpus_per_replica) == replicas


def test_a_pod_requests_its_containers_sum_or_its_largest_init_container() -> None:
    def container(gpus: int) -> dict[str, Any]:
        return {"resources": {"requests": {"nvidia.com/gpu": str(gpus)}}}

    spec = {"containers": [container(1), container(2)], "initContainers": [container(2)]}
    assert pod_gpu_request({"spec": spec}) == 3
    spec["initContainers"] = [container(4), container(1)]
    assert pod_gpu_request({"spec": spec}) == 4
    assert pod_gpu_request({"spec": {"containers": [{"name": "no-resources"}]}}) == 0
    # The init containers' requests survive the operator's cut of a listed pod.
    assert pod_gpu_request(pod_view({"spec": spec})) == 4


def test_a_listed_pod_is_kept_without_what_placement_does_not_read() -> None:
    listed = pod(1, on="a")
    listed["metadata"]["managedFields"] = [{"manager": "kube-controller-manager"}]
    listed["spec"]["containers"][0]["env"] = [{"name": "VLLM_ARGS", "value": "--x"}]
    unschedulable = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "lastTransitionTime": "2026-12-02T10:00:00Z",
    }
    listed["status"]["conditions"] = [{"type": "Ready", "status": "False"}, unschedulable]
    kept = pod_view(listed)
    assert "managedFields" not in kept["metadata"]
    assert kept["spec"]["containers"] == [
        {"resources": listed["spec"]["containers"][0]["resources"]}
    ]
    assert kept["status"] == {"phase": "Running", "conditions": [unschedulable]}
    # The assurance loop reads the same of it.
    assert unschedulable_since([kept]) == unschedulable_since([listed]) is not None
