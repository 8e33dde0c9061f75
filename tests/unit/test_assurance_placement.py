"""The assurance loop's placement step: retry, fail over within the contract, come back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aiconn.inference.assurance import (
    Step,
    can_host,
    displacement,
    held_off,
    placement_step,
    serving_in_place,
)
from aiconn.inference.capacity import SiteCapacity
from aiconn.inference.placement import default_tiers
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec
from tests.factories import small_sla_spec

TIERS = default_tiers()
NOW = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
STABLE = timedelta(seconds=300)
EDGE = ("edge", "de-fra-edge-01")
REGIONAL = ("regional", "de-fra-dc-01")


def spec(
    *, replicas: int = 1, rtt_budget_ms: int = 60, residency: str = "DE"
) -> AIInferenceSLASpec:
    return small_sla_spec(
        objectives={
            "ttft": {"thresholdMs": 1000, "targetPercent": 99},
            "tpot": {"thresholdMs": 100, "targetPercent": 99},
        },
        network={"rttBudgetMs": rtt_budget_ms},
        placement={
            "sites": [EDGE[1], REGIONAL[1]],
            "dataResidency": residency,
        },
        capacity={"replicas": replicas, "maxReplicas": replicas},
    )


def room(edge: int, regional: int) -> dict[str, dict[str | None, SiteCapacity]]:
    """Free GPUs on one node at each site (0 allocatable: the node is NotReady)."""
    return {
        "edge": {EDGE[1]: SiteCapacity(allocatable=edge, free_per_node=(edge,))},
        "regional": {REGIONAL[1]: SiteCapacity(allocatable=regional, free_per_node=(regional,))},
    }


def status(
    site: tuple[str, str] | None,
    *,
    phase: str = "Ready",
    failover: dict[str, Any] | None = None,
) -> dict[str, Any]:
    placed = {"tier": site[0], "site": site[1], "gpusPerReplica": 1} if site else {}
    return {"phase": phase, "placement": placed, "assurance": {"failover": failover}}


def away_from_edge(healthy_since: datetime | None = None) -> dict[str, Any]:
    return {
        "fromTier": "edge",
        "fromSite": EDGE[1],
        "at": "2026-12-02T02:00:00Z",
        "reason": "edge de-fra-edge-01 has no Ready node with room for 1 replica(s)",
        "homeHealthySince": healthy_since.isoformat() if healthy_since else None,
    }


def step(state: dict[str, Any], capacity: Any, **kwargs: Any) -> Any:
    return placement_step(
        spec=kwargs.pop("sla", spec()),
        status=state,
        tiers=TIERS,
        capacity=capacity,
        now=kwargs.pop("now", NOW),
        stabilisation=STABLE,
        **kwargs,
    )


@pytest.mark.parametrize(
    ("state", "capacity", "expected", "target"),
    [
        # Unplaceable while every site is full; placed on the cheapest once edge has room.
        (status(None, phase="Unplaceable"), room(0, 0), Step.NONE, None),
        (status(None, phase="Unplaceable"), room(1, 0), Step.RETRY, EDGE),
        (status(None, phase="Unplaceable"), room(0, 1), Step.RETRY, REGIONAL),
        # Not reconciled yet: the create handler places it, the loop does not race it.
        (status(None, phase="Provisioning"), room(1, 1), Step.NONE, None),
        # Serving where it fits: no move, even when nothing else has room.
        (status(EDGE), room(1, 0), Step.NONE, None),
        # The site lost its nodes: fail over to the next tier the contract allows.
        (status(EDGE), room(0, 8), Step.FAIL_OVER, REGIONAL),
        # ... and stay when nothing else can host it.
        (status(EDGE), room(0, 0), Step.NONE, None),
        ({"phase": "Invalid"}, room(1, 1), Step.NONE, None),
    ],
)
def test_the_step_for_each_situation(
    state: dict[str, Any], capacity: Any, expected: Step, target: tuple[str, str] | None
) -> None:
    result = step(state, capacity)
    assert result.step is expected, result.reason
    if target is None:
        assert result.decision is None
    else:
        assert result.decision is not None
        assert (result.decision.tier, result.decision.site) == target


def test_a_fail_over_keeps_residency_and_the_rtt_budget() -> None:
    # A 20 ms budget excludes regional (up to 50 ms): there is nowhere within the contract.
    result = step(status(EDGE), room(0, 8), sla=spec(rtt_budget_ms=20))
    assert result.step is Step.NONE
    assert "nowhere else" in result.reason
    assert "exceeds rttBudgetMs 20" in result.reason


def test_a_fail_over_records_the_home_it_left() -> None:
    result = step(status(EDGE), room(0, 8))
    assert result.failover is not None
    assert (result.failover["fromTier"], result.failover["fromSite"]) == EDGE
    assert result.failover["homeHealthySince"] is None
    assert "no Ready node with room for 1 replica(s)" in result.reason


def test_unschedulable_pods_past_the_grace_fail_over() -> None:
    since = NOW - timedelta(seconds=119)
    early = step(status(EDGE), room(1, 8), unschedulable_since=since)
    assert (early.step, early.due) == (Step.NONE, since + timedelta(minutes=2))
    late = step(status(EDGE), room(1, 8), unschedulable_since=since - timedelta(seconds=1))
    assert late.step is Step.FAIL_OVER
    assert "pods unschedulable at edge de-fra-edge-01" in late.reason


def test_coming_back_waits_for_the_home_to_be_stable_and_a_break_resets_the_clock() -> None:
    # Home still down: nothing.
    assert step(status(REGIONAL, failover=away_from_edge()), room(0, 8)).step is Step.NONE
    # Home can host again: the clock starts.
    started = step(status(REGIONAL, failover=away_from_edge()), room(1, 8))
    assert started.step is Step.HOME_HEALTHY
    assert started.failover is not None and started.failover["homeHealthySince"]
    assert started.due == NOW + STABLE  # the loop looks again then, whatever its interval
    # Within the stabilisation time: stay.
    within = NOW - STABLE + timedelta(seconds=1)
    waiting = step(status(REGIONAL, failover=away_from_edge(within)), room(1, 8))
    assert (waiting.step, waiting.due) == (Step.NONE, within + STABLE)
    # Home breaks again before it is stable: the clock resets.
    broke = step(status(REGIONAL, failover=away_from_edge(within)), room(0, 8))
    assert broke.step is Step.HOME_UNHEALTHY
    assert broke.failover is not None and broke.failover["homeHealthySince"] is None
    # Stable for the whole time: back home, failover cleared.
    back = step(status(REGIONAL, failover=away_from_edge(NOW - STABLE)), room(1, 8))
    assert back.step is Step.FAIL_BACK
    assert back.failover is None
    assert back.decision is not None and (back.decision.tier, back.decision.site) == EDGE


def test_the_failed_site_is_held_off_while_away() -> None:
    assert held_off(status(REGIONAL, failover=away_from_edge())) == (EDGE,)
    assert held_off(status(EDGE)) == ()
    # A retry while failed over does not go back to the site it left.
    state = status(None, phase="Unplaceable", failover=away_from_edge())
    assert step(state, room(1, 0)).step is Step.NONE


def test_a_tier_whose_capacity_is_not_observed_is_taken_to_have_room() -> None:
    assert can_host({}, EDGE, replicas=64, gpus_per_replica=8)
    assert not can_host(room(1, 0), EDGE, replicas=2, gpus_per_replica=1)


def test_an_sla_with_its_pods_on_ready_nodes_of_its_site_is_serving_in_place() -> None:
    def node(name: str, site: str, ready: bool) -> dict[str, Any]:
        return {
            "metadata": {"name": name, "labels": {"topology.aiconn.io/site": site}},
            "status": {"conditions": [{"type": "Ready", "status": str(ready)}]},
        }

    nodes = {
        "a": node("a", EDGE[1], True),
        "b": node("b", EDGE[1], False),
        "c": node("c", "de-muc-edge-01", True),
    }

    def pods(*names: str | None) -> list[dict[str, Any]]:
        return [{"spec": {"nodeName": n} if n else {}} for n in names]

    def serving(state: dict[str, Any], *on: str | None) -> bool:
        return serving_in_place(status=state, replicas=2, own_pods=pods(*on), nodes=nodes)

    assert serving(status(EDGE), "a", "a")
    assert not serving(status(EDGE), "a")  # one replica short
    assert not serving(status(EDGE), "a", "b")  # one on a NotReady node
    assert not serving(status(EDGE), "a", "c")  # one at another site
    assert not serving(status(EDGE), "a", None)  # one not bound yet
    assert serving(status(EDGE), "a", "a", None)  # a surge pod waiting does not move it
    assert not serving(status(EDGE, failover=away_from_edge()), "a", "a")
    assert not serving(status(None, phase="Unplaceable"), "a", "a")


def test_a_home_the_spec_no_longer_allows_is_dropped_not_waited_for() -> None:
    base = spec()
    regional_only = base.model_copy(
        update={"placement": base.placement.model_copy(update={"sites": [REGIONAL[1]]})}
    )
    result = step(status(REGIONAL, failover=away_from_edge()), room(1, 8), sla=regional_only)
    assert result.step is Step.HOME_DROPPED
    assert result.failover is None
    assert "no longer a place of this SLA" in result.reason


def test_a_reconcile_that_moves_an_sla_off_a_site_that_cannot_host_it_records_the_failover() -> (
    None
):
    """What a reconcile (an operator restarted during the outage, an offer's or a tier's edit)
    writes when it places an SLA elsewhere because its site is down: the failover the loop's
    own FailOver would have recorded, so the loop brings it back once the site is stable."""
    moved = displacement(
        spec=spec(), status=status(EDGE), tiers=TIERS, capacity=room(0, 8), chosen=REGIONAL, now=NOW
    )
    assert moved == {
        "fromTier": "edge",
        "fromSite": EDGE[1],
        "at": "2026-12-02T03:00:00Z",
        "reason": "edge de-fra-edge-01 has no Ready node with room for 1 replica(s)",
        "homeHealthySince": None,
    }
    # ... which the loop then treats as its own: home healthy again, then back once stable.
    state = status(REGIONAL, failover=moved)
    assert step(state, room(1, 8)).step is Step.HOME_HEALTHY


def test_a_reconcile_that_moves_an_sla_for_any_other_reason_records_no_failover() -> None:
    base = spec()
    regional_only = base.model_copy(
        update={"placement": base.placement.model_copy(update={"sites": [REGIONAL[1]]})}
    )
    cases = {
        "it stays": dict(status=status(EDGE), capacity=room(1, 8), chosen=EDGE),
        "the site has room: the plan chose another place": dict(
            status=status(EDGE), capacity=room(1, 8), chosen=REGIONAL
        ),
        "failed over already (the loop's move)": dict(
            status=status(EDGE, failover=away_from_edge()), capacity=room(0, 8), chosen=REGIONAL
        ),
        "never placed": dict(status=status(None), capacity=room(0, 8), chosen=REGIONAL),
        "unplaceable until now": dict(
            status=status(EDGE, phase="Unplaceable"), capacity=room(0, 8), chosen=REGIONAL
        ),
    }
    for case, args in cases.items():
        assert displacement(spec=base, tiers=TIERS, now=NOW, **args) is None, case
    # An edit that took the site off the SLA's places, or that prefers another place even with
    # room everywhere: a move the tenant or the provider chose.
    edited = dict(status=status(EDGE), tiers=TIERS, capacity=room(0, 8), chosen=REGIONAL, now=NOW)
    assert displacement(spec=regional_only, **edited) is None
    far = spec(rtt_budget_ms=20)  # an edit the regional site no longer meets (50 ms)
    assert (
        displacement(
            spec=far,
            status=status(REGIONAL),
            tiers=TIERS,
            capacity=room(1, 0),
            chosen=EDGE,
            now=NOW,
        )
        is None
    )
