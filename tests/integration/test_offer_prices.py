"""Prices that never surprise, on the real API server: a price change announced with less notice
than the offer states is refused at admission naming the field (the API server judges it against
its own record of the request's time), a price in force is never edited in place, the history is
append-only; and the operator, without the policy, never applies a change sooner than the
offer's creation plus its notice.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from aiconn.operator.offers import parse_offer, price_notice_problems
from aiconn.resources.v1alpha1.meta import GROUP, VERSION
from aiconn.sla.prices import price_at
from tests.factories import offer_manifest
from tests.helpers import deleted_afterwards, price_notice_policy

pytestmark = pytest.mark.integration

PLURAL = "aiinferenceoffers"
NOTICE_DAYS = 30


def minute(t: datetime) -> str:
    return t.replace(second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M:00Z")


def offer_body(name: str, changes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return offer_manifest(
        name,
        {
            "modelClasses": [
                {"name": "small", "models": [{"name": "tiny-chat"}], "pricePerMillionTokens": 2},
                {"name": "large", "models": [{"name": "big-chat"}], "pricePerMillionTokens": 8},
            ],
            "priceNoticeDays": NOTICE_DAYS,
            "priceChanges": changes or [],
            "plan": {"includedTokensPerPeriod": 1_000_000, "period": "1M"},
            "sliceProfiles": [{"name": "embb", "sst": 1, "fiveQI": 9}],
            "allowedTiers": ["edge"],
        },
    )


def change(version: int, effective: datetime, price: float = 3) -> dict[str, Any]:
    return {
        "version": version,
        "effectiveFrom": minute(effective),
        "prices": [{"modelClass": "small", "pricePerMillionTokens": price}],
    }


@pytest.fixture
def policy(k8s: Any) -> Iterator[None]:
    """The price-notice policy, removed after the test."""
    with price_notice_policy(k8s):
        yield


@pytest.fixture
def names(k8s: Any) -> Iterator[list[str]]:
    custom = client.CustomObjectsApi(k8s)
    with deleted_afterwards(
        lambda name: custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)
    ) as created:
        yield created


def create(k8s: Any, body: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
    created: dict[str, Any] = client.CustomObjectsApi(k8s).create_cluster_custom_object(
        GROUP, VERSION, PLURAL, body, dry_run="All" if dry_run else None
    )
    return created


def replace(k8s: Any, body: dict[str, Any]) -> dict[str, Any]:
    replaced: dict[str, Any] = client.CustomObjectsApi(k8s).replace_cluster_custom_object(
        GROUP, VERSION, PLURAL, body["metadata"]["name"], body
    )
    return replaced


def refused(call: Any) -> str:
    with pytest.raises(ApiException) as err:
        call()
    assert err.value.status == 422, err.value.body
    return str(json.loads(err.value.body)["message"])


def test_a_price_change_with_too_short_a_notice_is_refused_naming_the_field(
    k8s: Any, policy: None, names: list[str]
) -> None:
    now = datetime.now(UTC)
    name = f"prices-{uuid.uuid4().hex[:8]}"
    short = offer_body(name, [change(2, now + timedelta(days=NOTICE_DAYS - 1))])
    message = refused(lambda: create(k8s, short))
    assert "spec.priceChanges[].effectiveFrom" in message
    assert "version 2" in message
    assert f"priceNoticeDays ({NOTICE_DAYS})" in message

    stored = create(k8s, offer_body(name, [change(2, now + timedelta(days=NOTICE_DAYS + 1))]))
    names.append(name)
    assert [c["version"] for c in stored["spec"]["priceChanges"]] == [2]

    # An edit adding version 3 is judged against the edit's own time, not the offer's creation.
    hurried = json.loads(json.dumps(stored))
    hurried["spec"]["priceChanges"].append(change(3, now + timedelta(days=NOTICE_DAYS + 2), 4))
    hurried["spec"]["priceNoticeDays"] = NOTICE_DAYS + 5
    message = refused(lambda: replace(k8s, hurried))
    assert "spec.priceChanges[].effectiveFrom: version 3" in message

    # Lowering the notice in the same edit does not shorten the notice the change is owed.
    plain_name = f"prices-{uuid.uuid4().hex[:8]}"
    plain = create(k8s, offer_body(plain_name))
    names.append(plain_name)
    lowered = json.loads(json.dumps(plain))
    lowered["spec"]["priceNoticeDays"] = 1
    lowered["spec"]["priceChanges"] = [change(2, now + timedelta(days=NOTICE_DAYS - 2))]
    message = refused(lambda: replace(k8s, lowered))
    assert "spec.priceChanges[].effectiveFrom: version 2" in message

    announced = json.loads(json.dumps(stored))
    announced["spec"]["priceChanges"].append(change(3, now + timedelta(days=NOTICE_DAYS + 2), 4))
    after = replace(k8s, announced)
    assert [c["version"] for c in after["spec"]["priceChanges"]] == [2, 3]


def test_a_price_in_force_is_never_edited_and_history_is_append_only(
    k8s: Any, policy: None, names: list[str]
) -> None:
    now = datetime.now(UTC)
    name = f"prices-{uuid.uuid4().hex[:8]}"
    stored = create(k8s, offer_body(name, [change(2, now + timedelta(days=NOTICE_DAYS + 1))]))
    names.append(name)

    edited = json.loads(json.dumps(stored))
    edited["spec"]["modelClasses"][0]["pricePerMillionTokens"] = 2.5
    message = refused(lambda: replace(k8s, edited))
    assert "spec.modelClasses[].pricePerMillionTokens" in message

    rewritten = json.loads(json.dumps(stored))
    rewritten["spec"]["priceChanges"][0]["prices"][0]["pricePerMillionTokens"] = 9
    assert "append-only" in refused(lambda: replace(k8s, rewritten))

    withdrawn = json.loads(json.dumps(stored))
    withdrawn["spec"]["priceChanges"] = []
    assert "append-only" in refused(lambda: replace(k8s, withdrawn))


def test_without_the_policy_the_operator_never_applies_a_hurried_change(
    k8s: Any, names: list[str]
) -> None:
    now = datetime.now(UTC)
    name = f"prices-{uuid.uuid4().hex[:8]}"
    soon = now + timedelta(days=1)
    stored = create(
        k8s, offer_body(name, [change(2, soon), change(3, now + timedelta(days=60), 5)])
    )
    names.append(name)
    problems = price_notice_problems(stored)
    assert [(p.field, p.version) for p in problems] == [("spec.priceChanges[0].effectiveFrom", 2)]
    offer = parse_offer(stored)
    assert [c.version for c in offer.price_changes] == [3]
    in_force = price_at(offer, "small", soon + timedelta(days=1))
    assert (in_force.version, str(in_force.price_per_million_tokens)) == (1, "2.0")
