"""The kubernetes slice backend: a NetworkSlice realized with plain Kubernetes objects.

Inside a cluster a slice is three things a 5G slice is too: isolation (a NetworkPolicy admitting
only the slice's sources), bandwidth (the CNI bandwidth plugin's pod annotations) and priority (a
PriorityClass by slice type, so URLLC inference preempts eMBB, which preempts MIoT, when GPUs run
short). Pure builders: the operator applies what they return.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from aiconn.contracts.gateway_pod import GATEWAY_PORT_NAME, METRICS_PORT_NAME
from aiconn.inference.workload import SliceAttachment, owner_reference
from aiconn.resources.v1alpha1.slice import NetworkSliceSpec, SliceServiceType

INGRESS_BANDWIDTH = "kubernetes.io/ingress-bandwidth"
EGRESS_BANDWIDTH = "kubernetes.io/egress-bandwidth"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
SLICE_LABEL = "aiconn.io/network-slice"

# Each class sits a full step above the next, and a delay-critical 5QI adds less than a step, so
# the bump reorders pods within a class but never across classes.
_CLASS_VALUES: dict[int, tuple[str, int]] = {
    SliceServiceType.URLLC: ("urllc", 1_000_000),
    SliceServiceType.EMBB: ("embb", 600_000),
    SliceServiceType.MIOT: ("miot", 300_000),
}
_DEFAULT_CLASS = ("default", 100_000)
DELAY_CRITICAL_BUMP = 100_000
DELAY_CRITICAL_5QI = range(82, 86)
"""Delay-critical GBR 5QIs of TS 23.501 table 5.7.4-1 (5-30 ms packet delay budget)."""


def priority_class_name(slice_spec: NetworkSliceSpec) -> str:
    """The PriorityClass of a slice's pods, e.g. aiconn-urllc or aiconn-urllc-delay-critical."""
    name, _ = _priority(slice_spec)
    return name


def _priority(slice_spec: NetworkSliceSpec) -> tuple[str, int]:
    label, value = _CLASS_VALUES.get(slice_spec.sst, _DEFAULT_CLASS)
    if slice_spec.five_qi in DELAY_CRITICAL_5QI:
        return f"aiconn-{label}-delay-critical", value + DELAY_CRITICAL_BUMP
    return f"aiconn-{label}", value


def priority_class(slice_spec: NetworkSliceSpec) -> dict[str, Any]:
    """The cluster-scoped PriorityClass for a slice's SST and 5QI.

    Shared by every slice of the same class, so it has no owner: deleting one slice must not
    take it from the others.
    """
    name, value = _priority(slice_spec)
    return {
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "aiconn"}},
        "value": value,
        "globalDefault": False,
        "preemptionPolicy": "PreemptLowerPriority",
        "description": (
            f"aiconn inference pods on SST {slice_spec.sst} slices"
            + (" with a delay-critical 5QI" if slice_spec.five_qi in DELAY_CRITICAL_5QI else "")
        ),
    }


def _megabits(kbps: int) -> str:
    # Rounded up: shaping below the contracted maximum would break the contract.
    return f"{max(1, math.ceil(kbps / 1000))}M"


def bandwidth_annotations(slice_spec: NetworkSliceSpec) -> dict[str, str]:
    """CNI bandwidth-plugin annotations for the slice's maximum throughput.

    3GPP directions are seen from the device: downlink carries the model's tokens out of the pod
    (pod egress), uplink carries prompts into it (pod ingress).
    """
    return {
        INGRESS_BANDWIDTH: _megabits(slice_spec.u_l_thpt_per_slice.max_thpt),
        EGRESS_BANDWIDTH: _megabits(slice_spec.d_l_thpt_per_slice.max_thpt),
    }


def pod_attachment(slice_spec: NetworkSliceSpec) -> SliceAttachment:
    """What the slice puts on the inference pods: its PriorityClass and bandwidth annotations."""
    return SliceAttachment(
        priority_class_name=priority_class_name(slice_spec),
        annotations=bandwidth_annotations(slice_spec),
    )


def network_policy(
    name: str,
    namespace: str,
    slice_spec: NetworkSliceSpec,
    owner: Mapping[str, str],
    *,
    monitoring_namespace: str = "monitoring",
) -> dict[str, Any]:
    """The NetworkPolicy isolating a slice's pods.

    NON_SHARED admits only the allowed sources and the monitoring namespace on the gateway's port,
    and the monitoring namespace alone on the metrics port (for scraping). SHARED admits everyone;
    the policy still exists so every slice is realized by the same set of objects and switching
    isolation is an update, not a create.
    """
    if slice_spec.network_slice_sharing_indicator == "SHARED":
        ingress: list[dict[str, Any]] = [{}]
    else:
        peers: list[dict[str, Any]] = []
        for source in slice_spec.allowed_sources:
            if source.namespace is not None:
                peers.append(_namespace_peer(source.namespace))
            if source.cidr is not None:
                peers.append({"ipBlock": {"cidr": source.cidr}})
        peers.append(_namespace_peer(monitoring_namespace))
        ingress = [
            {"from": peers, "ports": [{"protocol": "TCP", "port": GATEWAY_PORT_NAME}]},
            # The gateway's metrics port is outside the Service; only monitoring scrapes it.
            {
                "from": [_namespace_peer(monitoring_namespace)],
                "ports": [{"protocol": "TCP", "port": METRICS_PORT_NAME}],
            },
        ]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {SLICE_LABEL: name, "app.kubernetes.io/managed-by": "aiconn"},
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": {
            "podSelector": {"matchLabels": dict(slice_spec.pod_selector)},
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    }


def _namespace_peer(namespace: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}}}
