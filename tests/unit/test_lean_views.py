"""Deployments and pods reach the operator's handlers cut to what the handlers read
(`aiconn.operator.leanwatch.VIEWS`): the readiness judged on the cut objects is the readiness
judged on the whole ones. (The reconcile's own cut of the Deployment its apply answers:
`test_desired_children`.)"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from typing import Any

from kopf._cogs.structs.references import Resource

from aiconn.operator.leanwatch import lean_events
from aiconn.operator.reconcile import inference_inputs, readiness
from tests.unit.test_desired_children import render

DEPLOYMENTS = Resource(group="apps", version="v1", plural="deployments")
PODS = Resource(group="", version="v1", plural="pods")
SLAS = Resource(group="aiconn.io", version="v1alpha1", plural="aiinferenceslas")


def served(obj: dict[str, Any], **status: Any) -> dict[str, Any]:
    """`obj` as the API server has it: uid, generation, managedFields and a status."""
    answer = copy.deepcopy(obj)
    answer["metadata"].update(
        uid="uid-1",
        generation=2,
        resourceVersion="7",
        managedFields=[{"manager": "aiconn-operator", "fieldsV1": {"f:spec": {}}}],
    )
    answer["status"] = status
    return answer


def deployment(**status: Any) -> dict[str, Any]:
    (obj,) = [o for o in render().to_apply() if o["kind"] == "Deployment"]
    return served(obj, **status)


def through_the_watch(resource: Resource, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    async def stream(**_: Any) -> AsyncIterator[Any]:
        for obj in objects:
            yield {"type": "MODIFIED", "object": copy.deepcopy(obj)}

    async def collect() -> list[dict[str, Any]]:
        return [event["object"] async for event in lean_events(stream)(resource=resource)]

    return asyncio.run(collect())


STATES = [
    {},  # just created: no status yet
    {"observedGeneration": 1, "updatedReplicas": 0, "availableReplicas": 0},  # rolling out
    {"observedGeneration": 2, "updatedReplicas": 1, "availableReplicas": 0},
    {"observedGeneration": 2, "updatedReplicas": 1, "availableReplicas": 1},
]


def test_a_deployment_event_carries_what_readiness_reads_and_not_its_pod_template() -> None:
    whole = [deployment(**state) for state in STATES]
    seen = through_the_watch(DEPLOYMENTS, whole)
    for full, cut in zip(whole, seen, strict=True):
        assert set(cut["spec"]) == {"replicas"}
        assert "managedFields" not in cut["metadata"]
        assert cut["metadata"]["labels"] == full["metadata"]["labels"]  # Kopf's label filter
        assert inference_inputs(cut) == inference_inputs(full)
        assert readiness(slice_obj=None, deployment=cut, replicas=1, generation=2) == readiness(
            slice_obj=None, deployment=full, replicas=1, generation=2
        )
    assert [readiness(slice_obj=None, deployment=d, replicas=1, generation=2) for d in seen] != [
        readiness(slice_obj=None, deployment=seen[0], replicas=1, generation=2)
    ] * len(seen), "the states judge differently: the comparison above is not vacuous"


def test_a_pod_event_carries_its_metadata_and_status_only() -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "acme", "labels": {"aiconn.io/sla": "s"}},
        "spec": {"containers": [{"name": "vllm", "image": "vllm:test"}]},
        "status": {
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]
        },
    }
    (seen,) = through_the_watch(PODS, [pod])
    assert seen == {key: pod[key] for key in ("apiVersion", "kind", "metadata", "status")}


def test_other_kinds_come_whole_but_for_managed_fields() -> None:
    sla = served(
        {
            "apiVersion": "aiconn.io/v1alpha1",
            "kind": "AIInferenceSLA",
            "metadata": {"name": "s", "namespace": "acme"},
            "spec": {"model": {}},
        }
    )
    (seen,) = through_the_watch(SLAS, [sla])
    del sla["metadata"]["managedFields"]
    assert seen == sla
