"""Free GPUs per tier and site, worked out from Nodes and Pods as the scheduler would see them.

Placement must not treat a tier as infinite: an SLA placed on a full site gets pods that wait
forever. This module turns the cluster's Nodes and Pods (plain dicts, as the API returns them)
into what placement needs, and nothing here talks to the API, so the rules are table-tested.

- A node belongs to a tier when it carries every label of the tier's `nodeSelector`, and to a
  site by its `SITE_LABEL` label, when the tier lists that site (a tier without sites pins no
  site on its pods, so all its nodes are one pool, under the site None).
- It offers its `status.allocatable` `nvidia.com/gpu` only while it is Ready and not cordoned
  (`spec.unschedulable`): the scheduler places nothing else there.
- A pod bound to a node (`spec.nodeName`) takes its GPU request from that node until it has
  Succeeded or Failed (a terminating pod still holds its GPUs). A pod not yet bound takes its
  request from the site its `nodeSelector` pins it to, placed best-fit on that site's nodes: an
  SLA placed a moment ago reserves its GPUs before the scheduler has bound its pods. A pending
  pod that fits no node reserves nothing (it stays Pending, and the scheduler says why).
- A pod's request is its containers' requests added up, or its largest init container's when
  that is larger; an extended resource given only as a limit is requested at the limit.
- A replica is one pod of `tensor_parallel_size` GPUs and cannot span nodes, so the replicas a
  site can host are the sum over nodes of free GPUs // GPUs per replica, not free // GPUs.

A tier none of whose nodes exist is absent from the result: its capacity is not observed (for
instance a cloud tier whose nodes a cluster autoscaler adds on demand) and placement does not
limit it. A tier with nodes at some sites has 0 GPUs at the others.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from aiconn.resources.quantity import parse_quantity
from aiconn.resources.v1alpha1.tier import SITE_LABEL, InferenceTierSpec

GPU_RESOURCE = "nvidia.com/gpu"


@functools.lru_cache(maxsize=64)
def _gpus(value: str | int) -> int:
    """A GPU quantity as an integer: the same few strings on every Node and Pod, parsed once."""
    return int(parse_quantity(value))


FINISHED_PHASES = frozenset({"Succeeded", "Failed"})


@dataclass(frozen=True)
class SiteCapacity:
    """GPUs at one site of one tier."""

    allocatable: int
    """GPUs of the site's Ready, schedulable nodes."""
    free_per_node: tuple[int, ...]
    """Free GPUs of each of those nodes, after bound and pending pods, largest first."""

    @property
    def free(self) -> int:
        """Free GPUs at the site, however they are spread."""
        return sum(self.free_per_node)

    def replicas_that_fit(self, gpus_per_replica: int) -> int:
        """Replicas of `gpus_per_replica` GPUs each (one node per replica) the site can host."""
        return sum(free // gpus_per_replica for free in self.free_per_node)


Capacity = Mapping[str, Mapping[str | None, SiteCapacity]]
"""Tier name -> site -> capacity. A tier that is absent is not observed and not limited."""


@dataclass
class _Node:
    name: str
    labels: Mapping[str, str]
    tier: str
    site: str | None
    allocatable: int
    free: int


@dataclass(frozen=True, slots=True)
class GpuPod:
    """What placement reads of a pod that holds GPUs or waits for them: a cluster's pod list
    read as these (`GpuPod.of` as the list's cut) is a few hundred bytes a GPU pod, and costs
    each placement that reads it no quantity parsing."""

    namespace: str | None
    labels: Mapping[str, str]
    node_name: str | None
    node_selector: Mapping[str, str]
    gpus: int

    @classmethod
    def of(cls, pod: Mapping[str, Any]) -> GpuPod | None:
        """`pod` as placement reads it; None when it holds no GPUs (finished, or none asked)."""
        if (pod.get("status") or {}).get("phase") in FINISHED_PHASES:
            return None
        gpus = pod_gpu_request(pod)
        if gpus == 0:
            return None
        meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        return cls(
            namespace=meta.get("namespace"),
            labels=meta.get("labels") or {},
            node_name=spec.get("nodeName") or None,
            node_selector=spec.get("nodeSelector") or {},
            gpus=gpus,
        )


def observe(
    *,
    nodes: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any] | GpuPod],
    tiers: Mapping[str, InferenceTierSpec],
) -> dict[str, dict[str | None, SiteCapacity]]:
    """Free GPUs per tier and site from the cluster's Nodes and the Pods that request GPUs
    (as listed, or already read as `GpuPod`s)."""
    observed: list[_Node] = []
    ordered = sorted(tiers.items())
    for node in nodes:
        labels = _labels(node)
        for tier_name, site in _memberships(labels, ordered):
            gpus = _allocatable(node) if schedulable(node) else 0
            observed.append(_Node(node["metadata"]["name"], labels, tier_name, site, gpus, gpus))

    by_name: dict[str, list[_Node]] = {}
    for n in observed:
        by_name.setdefault(n.name, []).append(n)
    pending: list[tuple[int, Mapping[str, str]]] = []
    for item in pods:
        pod = item if isinstance(item, GpuPod) else GpuPod.of(item)
        if pod is None:
            continue
        if pod.node_name:
            for n in by_name.get(pod.node_name, []):
                n.free -= pod.gpus
        else:
            pending.append((pod.gpus, pod.node_selector))

    # Largest pending requests first, each on the fullest node that still takes it (best fit,
    # what the scheduler's MostAllocated scoring does). A site's total of free GPUs is exact;
    # their spread over nodes is an estimate until the pods are bound, since the default
    # LeastAllocated scoring spreads pods and can leave less room for multi-GPU replicas.
    eligible: dict[frozenset[tuple[str, str]], list[_Node]] = {}
    for gpus, selector in sorted(pending, key=lambda p: -p[0]):
        key = frozenset(selector.items())
        if key not in eligible:
            eligible[key] = [n for n in observed if _matches(n.labels, selector)]
        fitting = [n for n in eligible[key] if n.free >= gpus]
        if fitting:
            min(fitting, key=lambda n: (n.free, n.name)).free -= gpus

    result: dict[str, dict[str | None, SiteCapacity]] = {}
    grouped: dict[tuple[str, str | None], list[_Node]] = {}
    for n in observed:
        grouped.setdefault((n.tier, n.site), []).append(n)
    for (tier_name, site), members in sorted(grouped.items(), key=lambda kv: str(kv[0])):
        result.setdefault(tier_name, {})[site] = SiteCapacity(
            allocatable=sum(n.allocatable for n in members),
            free_per_node=tuple(sorted((max(n.free, 0) for n in members), reverse=True)),
        )
    for tier_name in result:
        for site in tiers[tier_name].sites:
            result[tier_name].setdefault(site, SiteCapacity(allocatable=0, free_per_node=()))
    return result


def observes_any(
    nodes: Iterable[Mapping[str, Any]], tiers: Mapping[str, InferenceTierSpec]
) -> bool:
    """Whether any of `nodes` belongs to a tier and site of `tiers`: whether `observe` finds a
    tier at all (without working out its capacity)."""
    ordered = sorted(tiers.items())
    return any(next(_memberships(_labels(node), ordered), None) for node in nodes)


def _memberships(
    labels: Mapping[str, str], tiers: Iterable[tuple[str, InferenceTierSpec]]
) -> Iterator[tuple[str, str | None]]:
    """The (tier, site) pairs a node with `labels` belongs to."""
    for tier_name, tier in tiers:
        if not _matches(labels, tier.node_selector):
            continue
        # A tier without sites pins no site on its pods: all its nodes are one pool.
        site = labels.get(SITE_LABEL) if tier.sites else None
        if tier.sites and site not in tier.sites:
            continue
        yield tier_name, site


def node_view(node: Mapping[str, Any]) -> dict[str, Any]:
    """What `observe` reads of a Node: a listed Node cut down to it observes the same."""
    meta, spec, status = (node.get(k) or {} for k in ("metadata", "spec", "status"))
    return {
        "metadata": {"name": meta.get("name"), "labels": meta.get("labels") or {}},
        "spec": {"unschedulable": spec.get("unschedulable")},
        "status": {
            "allocatable": {
                k: v for k, v in (status.get("allocatable") or {}).items() if k == GPU_RESOURCE
            },
            "conditions": [
                {"type": c.get("type"), "status": c.get("status")}
                for c in status.get("conditions") or []
                if c.get("type") == "Ready"
            ],
        },
    }


def pod_view(pod: Mapping[str, Any]) -> dict[str, Any]:
    """What `observe` reads of a Pod, what tells whose pod it is (its name, namespace and
    labels) and its PodScheduled condition (whether and since when the scheduler could not
    place it): a listed Pod cut down to it observes the same."""
    meta, spec, status = (pod.get(k) or {} for k in ("metadata", "spec", "status"))

    def requests(containers: Iterable[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
        return [{"resources": c.get("resources") or {}} for c in containers or []]

    return {
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "labels": meta.get("labels") or {},
        },
        "spec": {
            "nodeName": spec.get("nodeName"),
            "nodeSelector": spec.get("nodeSelector") or {},
            "containers": requests(spec.get("containers")),
            "initContainers": requests(spec.get("initContainers")),
        },
        "status": {
            "phase": status.get("phase"),
            "conditions": [
                c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"
            ],
        },
    }


def unschedulable(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The pod's PodScheduled condition when the scheduler could not place it, else None."""
    conditions: list[Mapping[str, Any]] = (pod.get("status") or {}).get("conditions") or []
    for cond in conditions:
        if (
            cond.get("type") == "PodScheduled"
            and cond.get("status") == "False"
            and cond.get("reason") == "Unschedulable"
        ):
            return cond
    return None


def pod_gpu_request(pod: Mapping[str, Any]) -> int:
    """GPUs the scheduler reserves for `pod`."""
    spec = pod.get("spec") or {}
    containers = sum(_container_gpus(c) for c in spec.get("containers") or [])
    init = max((_container_gpus(c) for c in spec.get("initContainers") or []), default=0)
    return max(containers, init)


def _container_gpus(container: Mapping[str, Any]) -> int:
    resources = container.get("resources") or {}
    value = (resources.get("requests") or {}).get(GPU_RESOURCE)
    if value is None:
        value = (resources.get("limits") or {}).get(GPU_RESOURCE)
    return 0 if value is None else _gpus(value)


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    labels: Mapping[str, str] = (obj.get("metadata") or {}).get("labels") or {}
    return labels


def _matches(labels: Mapping[str, str], selector: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def schedulable(node: Mapping[str, Any]) -> bool:
    """Whether the scheduler places pods on `node`: Ready and not cordoned."""
    if (node.get("spec") or {}).get("unschedulable"):
        return False
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _allocatable(node: Mapping[str, Any]) -> int:
    value = ((node.get("status") or {}).get("allocatable") or {}).get(GPU_RESOURCE)
    return 0 if value is None else _gpus(value)
