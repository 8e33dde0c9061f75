"""The cluster's free GPUs, read for one placement: Nodes and the Pods that request GPUs.

Read at each reconcile rather than kept in an informer: placement happens when an SLA is
created or changed, not on a hot path, and a fresh list cannot be stale by an event the
operator has not yet seen. Reconciles that run at once share their lists (`KubeApi.fresh_list`:
each still gets lists the API server answered after it asked), so a burst of new SLAs costs a
list per round of concurrent reconciles, not two per SLA; the lists are read in pages and keep
only what placement reads of each Node and Pod (`node_view`, `GpuPod`: a pod that holds no
GPUs is not kept at all). A cluster without any node of a tier costs one list of Nodes (no
Pods are read), which is the case of the tests and the demo without simulated nodes.

The SLA's own inference pods are left out, so re-planning an SLA that already runs counts the
GPUs it holds as its own, not as taken: it stays where it is while its site still fits it.

An SLA that has no pod among those listed (every new one) gets the capacity of the lists as
they are, worked out once for all the reconciles that share them (`_SharedObservation`): in a
burst, working it out again per SLA from the same two lists (every node of every tier, every GPU
pod) took about as much of the operator's CPU as all its JSON parsing (a profile of a burst of
1000 SLAs, `bench/RESULTS.md`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiconn.inference import workload
from aiconn.inference.capacity import Capacity, GpuPod, node_view, observe, observes_any
from aiconn.kube import KINDS, Kind
from aiconn.operator.kubeapi import KubeApi
from aiconn.resources.v1alpha1.tier import InferenceTierSpec

NODES = Kind("v1", "nodes", namespaced=False)
PODS = KINDS["Pod"]  # listed across all namespaces (no namespace: path(None))
LIVE_PODS = "status.phase!=Succeeded,status.phase!=Failed"


async def observe_capacity(
    kube: KubeApi,
    tiers: Mapping[str, InferenceTierSpec],
    *,
    namespace: str,
    sla_name: str,
) -> Capacity:
    """Free GPUs per observed tier and site, not counting the pods of `namespace/sla_name`."""
    nodes = await kube.fresh_list(NODES.path(None), None, keep=node_view)
    if not observes_any(nodes, tiers):
        return {}
    pods = await kube.fresh_list(PODS.path(None), [("fieldSelector", LIVE_PODS)], keep=GpuPod.of)
    own = workload.pod_selector(sla_name)
    others = [
        p for p in pods if not _owned(p.namespace, p.labels, namespace=namespace, selector=own)
    ]
    if len(others) < len(pods):
        return observe(nodes=nodes, pods=others, tiers=tiers)
    return _SHARED.observe(nodes, pods, tiers)


class _SharedObservation:
    """The capacity of the last pair of lists observed whole. `KubeApi.fresh_list` hands the
    reconciles that asked at once the same list objects, so the lists' identity tells that the
    answer is the same; the lists are held here until the next pair replaces them (a few hundred
    bytes per GPU pod, `GpuPod`)."""

    def __init__(self) -> None:
        self._last: tuple[object, object, object, Capacity] | None = None

    def observe(
        self,
        nodes: list[dict[str, Any]],
        pods: list[GpuPod],
        tiers: Mapping[str, InferenceTierSpec],
    ) -> Capacity:
        last = self._last
        if last is not None and last[0] is nodes and last[1] is pods and last[2] == tiers:
            return last[3]
        capacity = observe(nodes=nodes, pods=pods, tiers=tiers)
        self._last = (nodes, pods, dict(tiers), capacity)
        return capacity


_SHARED = _SharedObservation()


def _owned(
    pod_namespace: str | None,
    labels: Mapping[str, str],
    *,
    namespace: str,
    selector: Mapping[str, str],
) -> bool:
    return pod_namespace == namespace and all(
        labels.get(key) == value for key, value in selector.items()
    )


def owned(pod: Mapping[str, Any], *, namespace: str, sla_name: str) -> bool:
    """Whether `pod` is one of the inference pods of `namespace/sla_name`."""
    meta = pod.get("metadata") or {}
    return _owned(
        meta.get("namespace"),
        meta.get("labels") or {},
        namespace=namespace,
        selector=workload.pod_selector(sla_name),
    )
