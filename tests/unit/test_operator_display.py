"""What people read about an SLA: rounded figures, a phase that says Breached or AtRisk, plain
Events, and failures that are said once and retried with a backoff."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aiconn.inference.placement import PlacementDecision
from aiconn.kube import error_for
from aiconn.operator import failures, health
from aiconn.operator.conditions import condition
from aiconn.operator.reconcile import _placement_events, readiness


def _status(**period: Any) -> dict[str, Any]:
    return {"phase": "Ready", "period": period, "conditions": []}


@pytest.mark.parametrize(
    ("value", "decimals", "text"),
    [
        (33.333333333333336, 2, "33.33%"),
        (-66566.66666667046, 1, "-66566.7%"),
        (99.996, 2, "99.99%"),
        (100.0, 2, "100.00%"),
        (0.0, 1, "0.0%"),
        (None, 1, None),
    ],
)
def test_percentages_are_rounded_and_never_round_up_to_100(
    value: float | None, decimals: int, text: str | None
) -> None:
    assert health.percent(value, decimals=decimals) == text


def test_summary_is_strings_for_the_printed_table() -> None:
    status = _status(availabilityPercent=33.333333333333336, budgetRemainingPercent=-66566.66666667)
    status["period"]["creditsAccrued"] = 1.23456
    status["conditions"] = [condition("Compliant", False, "AvailabilityMissed", "", generation=1)]
    assert health.summary(status, currency="EUR") == {
        "availability": "33.33%",
        "budget": "-66566.7%",
        "credits": "1.23 EUR",
        "compliant": "No",
    }
    assert health.summary({}, currency="EUR") == {"compliant": "Unknown"}


def test_serving_phase_says_breached_then_at_risk_then_ready() -> None:
    breached = _status(budgetRemainingPercent=90.0)
    breached["conditions"] = [condition("Compliant", False, "Missed", "", generation=1)]
    assert health.serving_phase(breached) == "Breached"
    assert health.serving_phase(_status(alerts=["page-1h"])) == "AtRisk"
    assert health.serving_phase(_status(budgetRemainingPercent=10.0)) == "AtRisk"
    assert health.serving_phase(_status(budgetRemainingPercent=80.0)) == "Ready"


def test_display_update_patches_only_what_changed() -> None:
    body = {"spec": {"tokens": {"currency": "USD"}}, "status": _status(alerts=["page-1h"])}
    patch = health.display_update(body)
    assert patch == {"summary": {"compliant": "Unknown"}, "phase": "AtRisk"}
    body["status"].update(patch)
    assert health.display_update(body) is None
    # A phase that is not a serving one (Provisioning, Unplaceable ...) is left alone.
    provisioning = {"status": {"phase": "Provisioning", "summary": {"compliant": "Unknown"}}}
    assert health.display_update(provisioning) is None
    # A figure that disappeared is removed with an explicit null (merge patch).
    summary = {"compliant": "Unknown", "budget": "1%"}
    stale = {"status": {"phase": "Provisioning", "summary": summary}}
    assert health.display_update(stale) == {"summary": {"budget": None, "compliant": "Unknown"}}


def test_a_serving_sla_that_misses_is_breached_not_ready() -> None:
    slice_obj = {"status": {"conditions": [{"type": "SliceReady", "status": "True"}]}}
    deployment = {
        "metadata": {"generation": 1},
        "status": {"observedGeneration": 1, "updatedReplicas": 1, "availableReplicas": 1},
    }
    status = _status()
    status["conditions"] = [condition("Compliant", False, "Missed", "", generation=1)]
    phase, conds = readiness(
        slice_obj=slice_obj, deployment=deployment, replicas=1, generation=1, health=status
    )
    assert phase == "Breached"
    assert {c["type"]: c["status"] for c in conds}["Ready"] == "True"


def test_a_tier_not_chosen_is_a_normal_event_without_a_doubled_name() -> None:
    decision = PlacementDecision(
        placed=True,
        message="placed on edge",
        tier="edge",
        rejected=(("regional", "regional: costs 2.0 per 1M tokens, more than edge"),),
    )
    events = _placement_events(decision, {})
    assert [(e.type, e.reason) for e in events] == [
        ("Normal", "TierNotChosen"),
        ("Normal", "Placed"),
    ]
    assert events[0].message == "Tier regional not chosen: costs 2.0 per 1M tokens, more than edge"
    assert _placement_events(decision, {"placement": decision.to_status().to_k8s()}) == []


def test_an_unplaceable_sla_is_one_warning() -> None:
    decision = PlacementDecision(
        placed=False, message="no tier can serve this SLA: edge: x", rejected=(("edge", "edge: x"),)
    )
    assert [(e.type, e.reason) for e in _placement_events(decision, {})] == [
        ("Warning", "Unplaceable")
    ]


def test_messages_are_bounded_and_on_one_line() -> None:
    huge = "site " + "s" * 200_000 + "\nnext line"
    message = condition("Ready", False, "ReconcileFailed", huge, generation=1)["message"]
    assert len(message) == failures.MAX_MESSAGE
    assert "\n" not in message and message.endswith("…")


def test_an_api_refusal_is_described_by_the_servers_message() -> None:
    body = json.dumps({"message": 'Service "x" is invalid: spec.ports: Required value'})
    err = error_for(422, reason="Unprocessable Entity", body=body)
    assert failures.describe(err) == (
        'the API server answered 422: Service "x" is invalid: spec.ports: Required value'
    )
    assert not failures.transient(err)
    assert failures.transient(error_for(409)) and failures.transient(error_for(503))
    assert failures.describe(ValueError("bad")) == "ValueError: bad"


def test_backoff_doubles_and_is_capped() -> None:
    delays = [failures.backoff(r) for r in range(8)]
    assert delays[:3] == [15.0, 30.0, 60.0]
    assert delays == sorted(delays) and delays[-1] == failures.MAX_RETRY_S
    assert failures.backoff(10_000) == failures.MAX_RETRY_S


def test_a_failure_already_on_a_condition_is_not_said_again() -> None:
    conds = [condition("Ready", False, "ReconcileFailed", "boom", generation=3)]
    assert failures.already_said(conds, reason="ReconcileFailed", message="boom")
    assert not failures.already_said(conds, reason="ReconcileFailed", message="other")


def test_a_slice_that_cannot_be_realized_says_so_in_its_condition() -> None:
    from aiconn.operator.slicing import failed_status

    body = {"metadata": {"generation": 4}, "status": {"conditions": []}}
    status = failed_status(body, "the API server answered 422: NetworkPolicy is invalid")
    assert status["phase"] == "Failed"
    (cond,) = status["conditions"]
    assert cond["type"] == "SliceReady" and cond["status"] == "False"
    assert cond["reason"] == "RealizeFailed"
    assert cond["observedGeneration"] == 4 and "422" in cond["message"]


def test_the_event_limiter_says_a_thing_once_per_window() -> None:
    now = [0.0]
    limiter = failures.EventLimiter(repeat_after_s=3600, size=2, clock=lambda: now[0])
    assert limiter.allow("uid", "ReconcileFailed", "boom")
    assert not limiter.allow("uid", "ReconcileFailed", "boom")
    now[0] = 3601.0
    assert limiter.allow("uid", "ReconcileFailed", "boom")
    assert limiter.allow("uid", "Placed", "x", repeat_after_s=60)
    now[0] = 3662.0
    assert limiter.allow("uid", "Placed", "x", repeat_after_s=60)


def test_the_event_limiter_is_bounded() -> None:
    limiter = failures.EventLimiter(repeat_after_s=3600, size=2, clock=lambda: 0.0)
    for key in ("a", "b", "c"):
        assert limiter.allow(key)
    assert not limiter.allow("c")
    assert limiter.allow("a")  # forgotten: the oldest went when "c" came in


def test_burn_rates_read_as_a_sentence_not_a_dict() -> None:
    text = health.burn_rates_sentence({"w5m": 200.00000000001137, "w1h": 14.4, "w6h": None})
    assert text == "burn rate 200x over 5 min, 14.4x over 1 h"
    assert "{" not in text and "None" not in text
    assert health.burn_rates_sentence({}) == "no burn rate yet"


def test_a_burn_rate_alert_event_reads_as_a_sentence_not_a_dict() -> None:
    from aiconn.operator.evaluation import _period_events

    events = _period_events(
        {"alerts": []},
        {"alerts": ["page-1h"], "burnRates": {"w5M": 200.00000000001137, "w1H": 14.4}},
    )
    assert events[0][:2] == ("Warning", "BurnRateAlertStarted")
    message = events[0][2]
    assert message.startswith("burn-rate alert page-1h started: burn rate 200x over ")
    assert "{" not in message and "0000000" not in message


def test_the_last_settlement_in_status_shows_settled_figures_and_exact_amounts() -> None:
    from datetime import UTC, datetime
    from decimal import Decimal

    from aiconn.operator.evaluation import settlement_status
    from aiconn.sla.accounting import HoldReason, Settlement, SettlementState
    from aiconn.sla.periods import Period

    period = Period(start=datetime(2026, 2, 1, tzinfo=UTC), end=datetime(2026, 3, 1, tzinfo=UTC))
    settled = Settlement(
        sla_uid="u",
        sla_namespace="ns",
        sla_name="sla",
        tenant="t",
        period=period,
        state=SettlementState.HELD_FOR_REVIEW,
        currency="EUR",
        tokens_used=20297,
        charges_micros=18267,
        credit_micros=3,
        credit_tokens=0,
        credit_percent=Decimal("100.0"),
        coverage_percent=100.0,
        availability_percent=50.0,
        ttft_attainment_percent=68.5185185,
        tpot_attainment_percent=None,
        transfer_ids=("a", "b"),
        created_at=datetime(2026, 3, 1, tzinfo=UTC),
        hold_reason=HoldReason.LOW_COVERAGE,
    )
    shown = settlement_status(settled)
    assert shown["charges"] == "0.018267" and shown["credits"] == "0.000003"
    assert (shown["chargesMicros"], shown["creditsMicros"]) == (18267, 3)
    assert shown["availabilityPercent"] == "50.00"
    assert shown["ttftAttainmentPercent"] == "68.52"
    assert "tpotAttainmentPercent" not in shown
    assert shown["holdReason"] == "LowCoverage" and shown["currency"] == "EUR"
    assert not any(isinstance(v, float) for v in shown.values())


def test_a_last_settlement_written_with_numbers_by_an_earlier_version_still_reads() -> None:
    from aiconn.resources.v1alpha1.sla import SettlementStatus

    old = SettlementStatus.model_validate({"state": "Settled", "charges": 0.018267, "credits": 0})
    assert (old.charges, old.credits) == ("0.018267", "0.000000")
