"""The InferenceTiers' sites as Kubernetes nodes, so that placement reaches a real scheduler.

Each site of a tier becomes `nodes_per_site` nodes carrying what the tier's pods select and
tolerate: the tier's `nodeSelector` labels, the site label the operator pins a placed
Deployment to, a taint for every toleration the tier declares (dedicated GPU nodes are tainted
so that only pods meant for them land there), and `nvidia.com/gpu` capacity of
`gpu.countPerNode`. Simulated nodes are annotated for KWOK, which plays their kubelet; the same
labels and taints describe the real node standing in for one site.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from aiconn.inference.capacity import GPU_RESOURCE
from aiconn.resources.v1alpha1.tier import SITE_LABEL, InferenceTierSpec

KWOK_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_MANAGED = "fake"
"""The annotation's value KWOK is started to select: it plays these nodes' kubelet."""
SIMULATED_LABEL = "aiconn.io/simulated"
# The capacity of a simulated GPU server apart from its GPUs.
NODE_CAPACITY = {"cpu": "64", "memory": "512Gi", "pods": "110", "ephemeral-storage": "1Ti"}


def node_name(site: str, index: int) -> str:
    return re.sub(r"[^a-z0-9-]", "-", f"{site.lower()}-gpu-{index}")


def tier_labels(tier: str, spec: InferenceTierSpec, site: str) -> dict[str, str]:
    return {**spec.node_selector, SITE_LABEL: site, "aiconn.io/tier-name": tier}


def tier_taints(spec: InferenceTierSpec) -> list[dict[str, str]]:
    """One NoSchedule/NoExecute taint per toleration: `Equal` tolerations name the value,
    `Exists` ones take any value, so the taint carries "present"."""
    taints = []
    for toleration in spec.tolerations:
        if "key" not in toleration:
            continue
        value = toleration.get("value", "") if toleration.get("operator") == "Equal" else "present"
        taints.append(
            {
                "key": toleration["key"],
                "value": value,
                "effect": toleration.get("effect") or "NoSchedule",
            }
        )
    return taints


def simulated_node(tier: str, spec: InferenceTierSpec, site: str, index: int) -> dict[str, Any]:
    name = node_name(site, index)
    capacity = {**NODE_CAPACITY, GPU_RESOURCE: str(spec.gpu.count_per_node)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_ANNOTATION: KWOK_MANAGED, "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                **tier_labels(tier, spec, site),
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                SIMULATED_LABEL: "true",
            },
        },
        "spec": {"taints": tier_taints(spec)},
        "status": {"capacity": capacity, "allocatable": capacity},
    }


def simulated_nodes(
    tiers: Mapping[str, InferenceTierSpec],
    *,
    nodes_per_site: int = 1,
    skip_sites: frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    """Node objects for every site of every tier except `skip_sites` (e.g. the site the real
    node stands for)."""
    return [
        simulated_node(tier, spec, site, index)
        for tier, spec in sorted(tiers.items())
        for site in spec.sites
        if site not in skip_sites
        for index in range(nodes_per_site)
    ]


def set_site_ready(core: Any, site: str, *, ready: bool) -> list[str]:
    """Take the simulated nodes of `site` down (NotReady) or bring them back; returns their names.

    Down: KWOK stops playing their kubelet (its annotation no longer selects them, so nothing
    reports them Ready again) and each node reports `Ready` False, as the node lifecycle
    controller would once their heartbeats stop, without waiting out its grace period. Back: the
    node reports Ready and KWOK plays its kubelet again. `core` is a kubernetes CoreV1Api."""
    names = [
        n.metadata.name
        for n in core.list_node(label_selector=f"{SITE_LABEL}={site},{SIMULATED_LABEL}=true").items
    ]
    condition = {
        "type": "Ready",
        "status": "True" if ready else "False",
        "reason": "KubeletReady" if ready else "KubeletNotReady",
        "message": "the site is back" if ready else "the site's nodes stopped reporting",
    }
    for name in names:
        if not ready:
            core.patch_node(name, {"metadata": {"annotations": {KWOK_ANNOTATION: "down"}}})
        core.patch_node_status(name, {"status": {"conditions": [condition]}})
        if ready:
            core.patch_node(name, {"metadata": {"annotations": {KWOK_ANNOTATION: KWOK_MANAGED}}})
    return names
