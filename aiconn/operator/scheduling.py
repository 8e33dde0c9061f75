"""Why an SLA's inference pods have no node: the scheduler's own words in the SLA's status.

A pod the scheduler cannot place (no node of the tier has the GPUs free, a taint it does not
tolerate) would otherwise leave the SLA `Provisioning` with "0/1 vLLM replicas available" and
nothing to act on. The scheduler writes its reason on the pod (`PodScheduled` False,
`Unschedulable`, "0/8 nodes are available: 1 Insufficient nvidia.com/gpu, ..."); this copies it
into the SLA's `PodsScheduled` condition, and sets that condition True again once every pod of
the SLA has a node. Only pod events that can change the answer cost an API call: an
unschedulable pod, or a scheduled pod of an SLA this process marked unschedulable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiconn.inference.capacity import unschedulable
from aiconn.inference.workload import label_value, pod_selector
from aiconn.operator.conditions import condition
from aiconn.operator.kubeapi import KubeApi
from aiconn.resources.v1alpha1.kinds import SLA

CONDITION = "PodsScheduled"

# SLAs (namespace, name) whose PodsScheduled this process last set to False.
_unscheduled: set[tuple[str, str]] = set()


def unschedulable_message(pod: Mapping[str, Any]) -> str | None:
    """The scheduler's message when it could not place `pod`, else None."""
    cond = unschedulable(pod)
    return None if cond is None else str(cond.get("message") or "the scheduler found no node")


async def _sla_named(kube: KubeApi, namespace: str, label: str) -> dict[str, Any] | None:
    sla = await kube.get(SLA.kind, label, namespace)
    if sla is not None:
        return sla
    # Names longer than a label value carry a hash suffix in the label.
    matches = [
        s
        for s in await kube.list(SLA.kind, namespace)
        if label_value(s["metadata"]["name"]) == label
    ]
    return matches[0] if matches else None


async def pod_changed(kube: KubeApi, namespace: str, label: str, pod: Mapping[str, Any]) -> None:
    """React to one event of an inference pod whose SLA label is `label`."""
    message = unschedulable_message(pod)
    if message is None and not any(ns == namespace for ns, _ in _unscheduled):
        return
    sla = await _sla_named(kube, namespace, label)
    if sla is None:
        return
    name = sla["metadata"]["name"]
    if message is None:
        if (namespace, name) not in _unscheduled:
            return
        pods = await kube.list("Pod", namespace, labels=_selector(name))
        waiting = [m for p in pods if (m := unschedulable_message(p)) is not None]
        if waiting:
            message = waiting[0]
    await _write(kube, sla, message)


async def _write(kube: KubeApi, sla: Mapping[str, Any], message: str | None) -> None:
    meta, status = sla["metadata"], sla.get("status") or {}
    key = (meta["namespace"], meta["name"])
    if message is None:
        cond = condition(
            CONDITION, True, "Scheduled", "every inference pod has a node", generation=None
        )
        _unscheduled.discard(key)
    else:
        cond = condition(CONDITION, False, "Unschedulable", message, generation=None)
        _unscheduled.add(key)
    before = {c.get("type"): c for c in status.get("conditions") or []}.get(CONDITION) or {}
    if all(before.get(k) == cond[k] for k in ("status", "reason", "message")):
        return
    await kube.update_status(
        SLA.kind, meta["name"], meta["namespace"], fields={}, conditions=[cond], current=sla
    )


def _selector(sla_name: str) -> str:
    return ",".join(f"{k}={v}" for k, v in pod_selector(sla_name).items())
