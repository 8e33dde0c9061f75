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
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiconn.inference import workload
from aiconn.inference.capacity import Capacity, GpuPod, node_view, observe
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
    if not observe(nodes=nodes, pods=[], tiers=tiers):
        return {}
    pods = await kube.fresh_list(PODS.path(None), [("fieldSelector", LIVE_PODS)], keep=GpuPod.of)
    own = workload.pod_selector(sla_name)
    return observe(
        nodes=nodes,
        pods=[
            p for p in pods if not _owned(p.namespace, p.labels, namespace=namespace, selector=own)
        ],
        tiers=tiers,
    )


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
