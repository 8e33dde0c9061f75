"""The operator's pure decisions, without a cluster: conditions and their transition times, the
phase from the children, compliance and exactness, which Events a period change posts, and how
instants are written in status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from aiconn.operator.conditions import condition, merge
from aiconn.operator.evaluation import (
    SLARef,
    _amount,
    _percent,
    _period_events,
    _unsettled_in_status,
    compliance,
    exactness,
    with_stale_windows_removed,
)
from aiconn.operator.reconcile import inference_ready, readiness, slice_ready
from aiconn.sla.periods import Period
from aiconn.sla.timestamps import as_utc, iso_seconds, iso_z, parse_iso
from tests.factories import sla_evaluation, sla_ref, small_sla_spec

SPEC = small_sla_spec(
    objectives={
        "availability": {"targetPercent": 99.9},
        "ttft": {"thresholdMs": 300, "targetPercent": 99},
        "tpot": {"thresholdMs": 50, "targetPercent": 95},
    },
)
SLICE_READY = {"status": {"conditions": [{"type": "SliceReady", "status": "True"}]}}
OLD = "2025-01-01T00:00:00Z"


def _result(
    availability: float | None = None,
    ttft: float | None = None,
    tpot: float | None = None,
    **rest: Any,
) -> Any:
    return sla_evaluation(
        minutes=60,
        good_minutes=60,
        bad_minutes=0,
        availability_percent=availability,
        ttft_attainment_percent=ttft,
        tpot_attainment_percent=tpot,
        tokens_used=0,
        price_per_million_tokens=Decimal(1),
        charges=Decimal(0),
        **rest,
    )


def _deployment(
    *, generation: int = 1, observed: int = 1, updated: int = 2, available: int = 2
) -> dict[str, Any]:
    return {
        "metadata": {"generation": generation},
        "status": {
            "observedGeneration": observed,
            "updatedReplicas": updated,
            "availableReplicas": available,
        },
    }


# --- conditions ------------------------------------------------------------------------------


def test_a_condition_says_unknown_true_or_false_and_names_the_generation_it_saw() -> None:
    assert condition("Ready", None, "R", "m", generation=None) == {
        "type": "Ready",
        "status": "Unknown",
        "reason": "R",
        "message": "m",
    }
    assert condition("Ready", True, "R", "m", generation=3)["status"] == "True"
    assert condition("Ready", False, "R", "m", generation=3)["observedGeneration"] == 3


def test_merge_keeps_the_transition_time_while_the_status_holds() -> None:
    previous = [{"type": "Ready", "status": "True", "reason": "A", "lastTransitionTime": OLD}]
    merged = merge(previous, [condition("Ready", True, "B", "again", generation=2)])
    assert merged == [
        {
            "type": "Ready",
            "status": "True",
            "reason": "B",
            "message": "again",
            "observedGeneration": 2,
            "lastTransitionTime": OLD,
        }
    ]


def test_merge_moves_the_transition_time_when_the_status_flips() -> None:
    previous = [{"type": "Ready", "status": "True", "lastTransitionTime": OLD}]
    before = datetime.now(UTC).replace(microsecond=0)
    (flipped,) = merge(previous, [condition("Ready", False, "Down", "", generation=1)])
    stamp = datetime.fromisoformat(flipped["lastTransitionTime"].replace("Z", "+00:00"))
    assert flipped["status"] == "False"
    assert stamp >= before and flipped["lastTransitionTime"].endswith("Z")


def test_merge_keeps_types_not_updated_and_stamps_new_ones() -> None:
    kept = {"type": "Placed", "status": "True", "lastTransitionTime": OLD}
    merged = merge([kept], [condition("Compliant", None, "NoData", "", generation=1)])
    assert merged[0] == kept
    assert merged[1]["type"] == "Compliant" and merged[1]["lastTransitionTime"] != OLD
    assert len(merged) == 2


# --- readiness ---------------------------------------------------------------------------------


def test_a_slice_without_its_condition_is_pending_not_failed() -> None:
    assert slice_ready(None)[:2] == (None, "SlicePending")
    assert slice_ready({"status": {}})[0] is None
    failed = {"status": {"conditions": [{"type": "SliceReady", "status": "False", "reason": "X"}]}}
    assert slice_ready(failed)[:2] == (False, "X")
    assert slice_ready(SLICE_READY)[0] is True


@pytest.mark.parametrize(
    ("deployment", "expected"),
    [
        (None, (False, "RollingOut")),
        (_deployment(generation=2, observed=1), (False, "RollingOut")),
        (_deployment(updated=1), (False, "RollingOut")),
        (_deployment(available=1), (False, "ReplicasUnavailable")),
        (_deployment(), (True, "ReplicasAvailable")),
        (_deployment(available=3), (True, "ReplicasAvailable")),
    ],
)
def test_inference_is_ready_only_when_the_current_spec_has_its_replicas(
    deployment: dict[str, Any] | None, expected: tuple[bool, str]
) -> None:
    assert inference_ready(deployment, 2)[:2] == expected


def test_inference_ready_says_how_many_replicas_are_available() -> None:
    assert inference_ready(_deployment(available=1), 2)[2] == "1/2 vLLM replicas available"


def test_readiness_is_provisioning_then_ready_and_degraded_when_the_slice_fails() -> None:
    phase, conds = readiness(slice_obj=None, deployment=_deployment(), replicas=2, generation=4)
    assert phase == "Provisioning"
    assert [(c["type"], c["status"]) for c in conds] == [
        ("SliceReady", "Unknown"),
        ("InferenceReady", "True"),
        ("Ready", "False"),
    ]
    assert all(c["observedGeneration"] == 4 for c in conds)
    failed = {"status": {"conditions": [{"type": "SliceReady", "status": "False", "message": "m"}]}}
    phase, conds = readiness(slice_obj=failed, deployment=_deployment(), replicas=2, generation=4)
    assert phase == "Degraded"
    assert conds[2]["reason"] == "SliceNotReady" and conds[2]["message"] == "m"
    phase, conds = readiness(
        slice_obj=SLICE_READY, deployment=_deployment(), replicas=2, generation=4
    )
    assert phase == "Ready"
    assert conds[2] == condition(
        "Ready", True, "Serving", "placed, sliced and serving", generation=4
    )


def test_readiness_with_a_serving_slice_but_no_replicas_is_provisioning() -> None:
    phase, conds = readiness(
        slice_obj=SLICE_READY, deployment=_deployment(available=0), replicas=2, generation=1
    )
    assert phase == "Provisioning"
    assert conds[2]["status"] == "False" and "0/2 vLLM replicas" in conds[2]["message"]


# --- compliance and exactness -------------------------------------------------------------------


def test_compliance_without_data_is_unknown() -> None:
    assert compliance(SPEC, _result())[:2] == (None, "NoData")


def test_compliance_names_the_first_objective_missed_and_every_miss() -> None:
    ok, reason, detail = compliance(SPEC, _result(availability=99.0, ttft=99.5, tpot=90.0))
    assert (ok, reason) == (False, "AvailabilityMissed")
    assert detail == "Availability 99.000 % < target 99.9 %; TPOT 90.000 % < target 95.0 %"
    assert compliance(SPEC, _result(ttft=98.0))[:2] == (False, "TTFTMissed")


def test_compliance_is_met_on_the_target_itself() -> None:
    ok, reason, detail = compliance(SPEC, _result(availability=99.9, tpot=95.0))
    assert (ok, reason) == (True, "ObjectivesMet")
    assert detail == "Availability 99.900 % >= 99.9 %, TPOT 95.000 % >= 95.0 %"


def test_exactness_flags_only_measured_interpolated_attainments() -> None:
    assert exactness(_result(ttft=99.0, ttft_exact=True))[:2] == (True, "BucketBounds")
    # An unmeasured attainment cannot be inexact.
    assert exactness(_result(ttft=None, ttft_exact=False))[0] is True
    ok, reason, message = exactness(
        _result(ttft=99.0, tpot=99.0, ttft_exact=False, tpot_exact=False)
    )
    assert (ok, reason) == (False, "Interpolated")
    assert message.startswith("TTFT and TPOT attainment interpolated")
    assert message.endswith("the credit is the same anywhere in the bucket")
    held = exactness(_result(tpot=99.0, tpot_exact=False, credit_uncertain=True))[2]
    assert held.startswith("TPOT attainment") and "held for review" in held


# --- status.period and its Events ----------------------------------------------------------------


def test_windows_no_longer_measured_are_removed_with_null() -> None:
    new = {"burnRates": {"w5m": 1.0}, "start": OLD}
    assert with_stale_windows_removed({"burnRates": {"w5m": 2.0}}, new) is new
    patched = with_stale_windows_removed({"burnRates": {"w5M": 3.0, "w5m": 2.0}}, new)
    assert patched == {"burnRates": {"w5M": None, "w5m": 1.0}, "start": OLD}


def test_period_events_say_which_alerts_started_and_stopped() -> None:
    events = _period_events(
        {"alerts": ["page-1h", "ticket-3d"]},
        {"alerts": ["page-5m", "page-1h"], "burnRates": {"w5m": 20.0}},
    )
    assert [(kind, reason) for kind, reason, _ in events] == [
        ("Warning", "BurnRateAlertStarted"),
        ("Normal", "BurnRateAlertStopped"),
    ]
    assert events[0][2].startswith("burn-rate alert page-5m started: burn rate 20")
    assert events[1][2] == "burn-rate alert ticket-3d stopped"
    assert _period_events({"alerts": ["a"]}, {"alerts": ["a"]}) == []


def test_a_spent_budget_is_said_once_per_period() -> None:
    spent = {"start": OLD, "budgetRemainingPercent": -5.0}
    (event,) = _period_events({"start": OLD, "budgetRemainingPercent": 1.0}, spent)
    assert event[:2] == ("Warning", "ErrorBudgetExhausted")
    assert event[2] == (
        f"availability error budget of the period from {OLD} is spent (-5.0 % remaining)"
    )
    assert _period_events(spent, {**spent, "budgetRemainingPercent": -6.0}) == []
    # A new period that starts spent is said again.
    assert len(_period_events({**spent, "start": "2024-12-01T00:00:00Z"}, spent)) == 1
    assert _period_events({}, {"start": OLD, "budgetRemainingPercent": 0.5}) == []


def test_status_amounts_are_exact_and_percentages_two_decimals() -> None:
    assert _amount(18267) == "0.018267"
    assert _amount(5_000_000) == "5.000000"
    assert _percent(99.996) == "100.00" and _percent(None) is None


def test_a_held_or_absent_settlement_is_unsettled_in_status() -> None:
    jan = Period(start=datetime(2025, 1, 1, tzinfo=UTC), end=datetime(2025, 2, 1, tzinfo=UTC))

    def ref(last: dict[str, Any] | None) -> SLARef:
        status = {} if last is None else {"lastSettlement": last}
        return sla_ref("chat", SPEC, created=jan.start, status=status)

    assert _unsettled_in_status(ref(None), jan)
    assert _unsettled_in_status(ref({"periodStart": jan.start_iso, "state": "HeldForReview"}), jan)
    assert not _unsettled_in_status(ref({"periodStart": jan.start_iso, "state": "Settled"}), jan)
    assert _unsettled_in_status(ref({"periodStart": "2024-12-01T00:00:00Z"}), jan)


def test_instants_are_written_in_utc_with_z() -> None:
    berlin = timezone(timedelta(hours=1))
    at = datetime(2025, 1, 1, 8, 30, 15, 123456, tzinfo=berlin)
    assert iso_seconds(at) == "2025-01-01T07:30:15Z"
    assert iso_z(at) == "2025-01-01T07:30:15.123456Z"
    assert parse_iso("2025-01-01T07:30:15Z") == at.replace(microsecond=0)
    assert as_utc(datetime(2025, 1, 1, 7, 30)) == datetime(2025, 1, 1, 7, 30, tzinfo=UTC)
