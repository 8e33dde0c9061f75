"""Credit schedules tied to the objectives (issue 11, item 5), refused by the real API server.

A first tier above its objective's target pays a credit to an SLA reported Compliant (a 95 %
latency target with a first tier at 99 %): the CRD's CEL rule refuses it, naming the field. A
schedule left out is derived from the targets by the operator's model, never a static default.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from aiconn.resources.v1alpha1.meta import GROUP, VERSION
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec
from tests.factories import sla_manifest, small_sla_doc

pytestmark = [pytest.mark.integration]

BASE: dict[str, Any] = sla_manifest(
    "schedule",
    small_sla_doc(
        objectives={
            "availability": {"targetPercent": 99.5},
            "ttft": {"thresholdMs": 500, "targetPercent": 99},
            "tpot": {"thresholdMs": 100, "targetPercent": 95},
        },
    ),
)


def body(credits: dict[str, Any] | None = None) -> dict[str, Any]:
    obj = copy.deepcopy(BASE)
    if credits is not None:
        obj["spec"]["credits"] = credits
    return obj


def create(k8s: Any, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
    created: dict[str, Any] = client.CustomObjectsApi(k8s).create_namespaced_custom_object(
        GROUP, VERSION, namespace, "aiinferenceslas", obj
    )
    return created


@pytest.mark.parametrize(
    ("credits", "field"),
    [
        ({"availability": [{"belowPercent": 99.9, "creditPercent": 10}]}, "credits.availability"),
        # 99 % is at the TTFT target but above the TPOT target (95 %): the worse one counts.
        ({"latency": [{"belowPercent": 99, "creditPercent": 5}]}, "credits.latency"),
    ],
)
def test_a_first_tier_above_the_target_is_refused_naming_the_field(
    k8s: Any, namespace: str, credits: dict[str, Any], field: str
) -> None:
    with pytest.raises(ApiException) as refused:
        create(k8s, namespace, body(credits))
    assert refused.value.status == 422
    message = json.loads(refused.value.body)["message"]
    assert f"spec.{field}" in message, message


def test_tiers_at_the_targets_are_accepted(k8s: Any, namespace: str) -> None:
    create(
        k8s,
        namespace,
        body(
            {
                "availability": [{"belowPercent": 99.5, "creditPercent": 10}],
                "latency": [{"belowPercent": 95, "creditPercent": 5}],
            }
        ),
    )


def test_schedules_left_out_are_derived_from_the_targets(k8s: Any, namespace: str) -> None:
    stored = create(k8s, namespace, body())
    assert "credits" not in stored["spec"]  # no static default from the API server
    spec = AIInferenceSLASpec.model_validate(stored["spec"])
    assert [(t.below_percent, t.credit_percent) for t in spec.credits.availability] == [
        (99.5, 10),
        (95.0, 25),
        (75.0, 100),
    ]
    # From the stricter latency target (TPOT 95 %): nothing is paid while both are met.
    assert [(t.below_percent, t.credit_percent) for t in spec.credits.latency] == [
        (95.0, 5),
        (75.0, 10),
        (50.0, 25),
    ]
