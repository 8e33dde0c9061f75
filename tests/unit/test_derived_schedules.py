"""Credit schedules derived from the targets (issue 11, item 5): meeting the targets never pays."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from aiconn.resources.v1alpha1.sla import BEDROCK_SCHEDULE, LATENCY_SCHEDULE, AIInferenceSLASpec
from aiconn.sla.credits import period_credit
from tests.factories import small_sla_doc

BASE = small_sla_doc()


def spec(objectives: dict[str, Any], credits: dict[str, Any] | None = None) -> AIInferenceSLASpec:
    body = {**BASE, "objectives": objectives}
    if credits is not None:
        body["credits"] = credits
    return AIInferenceSLASpec.model_validate(body)


def test_default_targets_give_the_published_schedules() -> None:
    derived = AIInferenceSLASpec.model_validate(BASE).credits
    assert derived.availability == list(BEDROCK_SCHEDULE)
    assert derived.latency == list(LATENCY_SCHEDULE)


@pytest.mark.parametrize(
    ("target", "tiers"),
    [
        (99.95, [(99.95, 10), (99.5, 25), (97.5, 100)]),
        (99.0, [(99.0, 10), (90.0, 25), (50.0, 100)]),
        (97.0, [(97.0, 10), (70.0, 25)]),  # 100 - 50 x 3 is below 0: left out
    ],
)
def test_availability_tiers_scale_with_the_error_budget(
    target: float, tiers: list[tuple[float, float]]
) -> None:
    derived = spec({"availability": {"targetPercent": target}}).credits.availability
    assert [(t.below_percent, t.credit_percent) for t in derived] == tiers


def test_a_compliant_sla_with_default_schedules_earns_no_credit() -> None:
    # The case: a 95 % latency target used to get a first latency tier at 99 %.
    derived = spec({"ttft": {"thresholdMs": 500, "targetPercent": 95}}).credits
    credit = period_credit(
        charges=Decimal(100),
        availability=Decimal("99.9"),
        ttft=Decimal("95.5"),
        tpot=Decimal("99.5"),
        schedule=derived,
    )
    assert credit.amount == 0
    assert derived.latency[0].below_percent == 95.0


def test_written_schedules_are_kept_and_only_the_missing_one_is_derived() -> None:
    written = spec(
        {"availability": {"targetPercent": 99.5}},
        {"availability": [{"belowPercent": 99.0, "creditPercent": 7}], "capPercent": 50},
    ).credits
    assert [(t.below_percent, t.credit_percent) for t in written.availability] == [(99.0, 7)]
    assert written.latency == list(LATENCY_SCHEDULE)
    assert written.cap_percent == 50
    assert spec({}, {"availability": [], "latency": []}).credits.availability == []
