"""Two writers of one SLA's conditions against the real API server.

The reconcile owns Placed / SliceReady / InferenceReady / Ready and the SLA loop owns Compliant,
in the same `status.conditions` list that a merge patch replaces whole. `update_status` merges
into the version the writer read and, when someone wrote in between, re-reads and merges again.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from aiconn.devstack.kube import load_documents
from aiconn.operator.conditions import condition, merge
from aiconn.operator.kubeapi import KubeApi

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "samples"
G, V, KIND = "aiconn.io", "v1alpha1", "AIInferenceSLA"


def create_sla(k8s: Any, namespace: str) -> str:
    body = next(iter(load_documents([SAMPLES / "sla-edge-urllc.yaml"])))
    body["metadata"] = {"name": "writers"}
    client.CustomObjectsApi(k8s).create_namespaced_custom_object(
        G, V, namespace, "aiinferenceslas", body
    )
    return "writers"


def types(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in body["status"]["conditions"]}


def test_a_stale_writer_keeps_the_other_writers_conditions(k8s: Any, namespace: str) -> None:
    name = create_sla(k8s, namespace)
    kube = KubeApi(k8s)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        # Both writers read the SLA now; the SLA loop writes first.
        seen = await kube.get(KIND, name, namespace)
        assert seen is not None
        first = await kube.update_status(
            KIND,
            name,
            namespace,
            fields={"period": {"start": "2026-11-28T00:00:00Z"}},
            conditions=[condition("Compliant", True, "ObjectivesMet", "ok", generation=1)],
            current=seen,
        )
        # The reconcile still holds the version from before Compliant existed.
        second = await kube.update_status(
            KIND,
            name,
            namespace,
            fields={"phase": "Ready"},
            conditions=[condition("Ready", True, "Serving", "all replicas ready", generation=1)],
            current=seen,
        )
        return first, second

    first, second = asyncio.run(scenario())
    conditions = types(second)
    assert set(conditions) == {"Compliant", "Ready"}
    assert (
        conditions["Compliant"]["lastTransitionTime"]
        == (types(first)["Compliant"]["lastTransitionTime"])
    )
    assert second["status"]["phase"] == "Ready"
    assert second["status"]["period"] == {"start": "2026-11-28T00:00:00Z"}


def test_a_plain_merge_patch_from_a_stale_read_would_drop_them(k8s: Any, namespace: str) -> None:
    """Why update_status exists: the same two writes as plain merge patches lose Compliant."""
    name = create_sla(k8s, namespace)
    kube = KubeApi(k8s)

    async def scenario() -> dict[str, Any]:
        seen = await kube.get(KIND, name, namespace)
        assert seen is not None
        old = (seen.get("status") or {}).get("conditions") or []
        compliant = condition("Compliant", True, "ObjectivesMet", "ok", generation=1)
        await kube.patch_status(KIND, name, namespace, {"conditions": merge(old, [compliant])})
        ready = condition("Ready", True, "Serving", "all replicas ready", generation=1)
        return await kube.patch_status(KIND, name, namespace, {"conditions": merge(old, [ready])})

    assert set(types(asyncio.run(scenario()))) == {"Ready"}


def test_status_of_a_missing_sla_is_a_404(k8s: Any, namespace: str) -> None:
    kube = KubeApi(k8s)
    with pytest.raises(ApiException) as raised:
        asyncio.run(
            kube.update_status(KIND, "absent", namespace, fields={}, conditions=[], current=None)
        )
    assert raised.value.status == 404
