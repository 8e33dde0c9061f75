"""Realizing a NetworkSlice with its backend.

kubernetes: a NetworkPolicy owned by the slice, and the shared PriorityClass of its SST/5QI
class. nsmf: a SliceProfile PUT at the 5G core's slice manager; a refusing or unreachable slice
manager leaves SliceReady=False with its reason, never a silent success. Even with nsmf the pods
get the PriorityClass: the radio slice does not schedule pods.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiconn.operator.conditions import condition, merge
from aiconn.operator.kubeapi import KubeApi
from aiconn.operator.settings import OperatorSettings
from aiconn.resources.v1alpha1.kinds import NETWORK_SLICE
from aiconn.resources.v1alpha1.meta import API_VERSION
from aiconn.resources.v1alpha1.slice import NetworkSliceSpec
from aiconn.resources.v1alpha1.status import typed_status
from aiconn.slices import kubernetes as k8s_backend
from aiconn.slices.nsmf import NsmfClient, PlmnId, slice_profile_id


def _owner(body: Mapping[str, Any]) -> dict[str, str]:
    meta = body["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": NETWORK_SLICE.kind,
        "name": meta["name"],
        "uid": meta["uid"],
    }


async def realize_slice(
    kube: KubeApi, body: Mapping[str, Any], settings: OperatorSettings
) -> dict[str, Any]:
    """Realize the slice; return its status patch."""
    meta = body["metadata"]
    generation = meta.get("generation")
    spec = NetworkSliceSpec.model_validate(body["spec"])
    old = (body.get("status") or {}).get("conditions", [])
    priority_class = k8s_backend.priority_class(spec)
    await kube.apply(priority_class)
    realized = [f"PriorityClass/{priority_class['metadata']['name']}"]
    attachment = k8s_backend.pod_attachment(spec)
    if spec.backend == "kubernetes":
        policy = k8s_backend.network_policy(
            meta["name"],
            meta["namespace"],
            spec,
            _owner(body),
            monitoring_namespace=settings.monitoring_namespace,
        )
        await kube.apply(policy)
        realized.append(f"NetworkPolicy/{policy['metadata']['name']}")
        ok, reason, message = (
            True,
            "Realized",
            "NetworkPolicy, bandwidth annotations and PriorityClass in place",
        )
    else:
        assert spec.nsmf is not None  # the CRD's CEL rule requires it for backend nsmf
        plmn = PlmnId(mcc=settings.nsmf_plmn_mcc, mnc=settings.nsmf_plmn_mnc)
        async with NsmfClient(spec.nsmf, plmn=plmn) as nsmf:
            result = await nsmf.provision(
                spec, namespace=meta["namespace"], name=meta["name"], uid=meta["uid"]
            )
        ok, message = result.ok, result.reason
        reason = "Provisioned" if result.ok else "NsmfFailed"
        if result.ok:
            realized.append(f"SliceProfile/{result.profile_id}")
    return typed_status(
        NETWORK_SLICE.kind,
        {
            "observedGeneration": generation,
            "phase": "Ready" if ok else "Failed",
            "realized": realized,
            "priorityClassName": attachment.priority_class_name,
            "bandwidthAnnotations": dict(attachment.annotations),
            "conditions": merge(
                old, [condition("SliceReady", ok, reason, message, generation=generation)]
            ),
        },
    )


def failed_status(body: Mapping[str, Any], message: str) -> dict[str, Any]:
    """The status patch of a slice whose realization raised (a refused object, a bad spec)."""
    generation = body["metadata"].get("generation")
    old = (body.get("status") or {}).get("conditions", [])
    return typed_status(
        NETWORK_SLICE.kind,
        {
            "observedGeneration": generation,
            "phase": "Failed",
            "conditions": merge(
                old,
                [condition("SliceReady", False, "RealizeFailed", message, generation=generation)],
            ),
        },
    )


async def release_slice(body: Mapping[str, Any], settings: OperatorSettings) -> str:
    """Remove the SliceProfile of an nsmf slice being deleted; raise to retry on failure."""
    meta = body["metadata"]
    spec = NetworkSliceSpec.model_validate(body["spec"])
    assert spec.nsmf is not None
    plmn = PlmnId(mcc=settings.nsmf_plmn_mcc, mnc=settings.nsmf_plmn_mnc)
    async with NsmfClient(spec.nsmf, plmn=plmn) as nsmf:
        result = await nsmf.delete(slice_profile_id(meta["namespace"], meta["name"], meta["uid"]))
    if not result.ok:
        raise RuntimeError(result.reason)
    return result.reason
