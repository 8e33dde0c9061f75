"""Keep an SLA placed: retry when room frees, fail over when its site fails, come back when stable.

A pure function of the SLA, the tiers, the observed capacity (the SLA's own pods left out, so
the GPUs it holds count as its own) and the clock; the operator's assurance loop
(`aiconn.operator.assurance`) applies what it says. One step per SLA and pass:

- Unplaceable: plan again; once a tier has room, place it (`Retry`). An SLA refused for any
  reason is retried, since only a plan can tell a capacity refusal from the others, and the
  plan is cheap; nothing is written while the answer stays no.
- Placed, and its site can no longer host it: no Ready, schedulable node there has room for
  its replicas, or its pods have been unschedulable for longer than `unschedulable_grace`. Plan
  again with that site avoided; the plan's residency, RTT-budget and latency checks still hold,
  so the new place is one the contract allows (`FailOver`). The site it left is its home and
  stays avoided (also by the reconcile of a spec edit, `held_off`) until it is back. A reconcile
  that gets there first (the resume of every SLA when the operator restarts during the outage)
  records the same failover (`displacement`).
- Failed over, and home can host the SLA again: note since when; once it has been able to for
  `stabilisation` without a break, and the plan without the avoidance would choose it, go back
  (`FailBack`). A break resets the clock, so a flapping site does not pull the SLA to and fro.
  A home that an edit took off the SLA's places is dropped (`HomeDropped`), not waited for.
- Otherwise: nothing. A step may name when a pass is `due` although nothing in the cluster
  changes (a stabilisation time or an unschedulable grace ends), so the loop need not poll fast
  to act on time. A placed SLA is never moved for a cheaper tier that freed up: moving
  costs a model load and the tenant's traffic a break.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from aiconn.inference.capacity import Capacity, SiteCapacity, schedulable
from aiconn.inference.placement import PlacementDecision, plan
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec
from aiconn.resources.v1alpha1.tier import SITE_LABEL, InferenceTierSpec
from aiconn.sla.timestamps import iso_seconds, parse_iso

Site = tuple[str, str | None]
"""(tier, site)."""


class Step(StrEnum):
    NONE = "None"
    RETRY = "Retry"
    FAIL_OVER = "FailOver"
    HOME_HEALTHY = "HomeHealthy"
    HOME_UNHEALTHY = "HomeUnhealthy"
    HOME_DROPPED = "HomeDropped"
    FAIL_BACK = "FailBack"


@dataclass(frozen=True)
class PlacementStep:
    """What the loop does for one SLA in one pass."""

    step: Step
    reason: str
    failover: Mapping[str, Any] | None = None
    """`status.assurance.failover` after the step (camelCase, as written)."""
    decision: PlacementDecision | None = None
    """The plan the step acts on, when it moves the SLA."""
    due: datetime | None = None
    """When a pass should look again although nothing changes in the cluster: the end of a
    stabilisation time or of the unschedulable grace."""


def held_off(status: Mapping[str, Any]) -> tuple[Site, ...]:
    """The site an SLA failed over from, which placement must avoid until it fails back."""
    failover = (status.get("assurance") or {}).get("failover")
    if not failover:
        return ()
    return ((failover["fromTier"], failover.get("fromSite")),)


def can_host(capacity: Capacity, site: Site, *, replicas: int, gpus_per_replica: int) -> bool:
    """Whether `site` has room for the replicas on Ready, schedulable nodes; a tier whose
    capacity is not observed is taken to have room (placement does not limit it either)."""
    tier, where = site
    if tier not in capacity:
        return True
    room = capacity[tier].get(where, SiteCapacity(allocatable=0, free_per_node=()))
    return room.replicas_that_fit(gpus_per_replica) >= replicas


def home_placement(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """`status.placement` of an SLA that is placed and not failed over, else None: only such
    an SLA can be found able to stay where it is without a plan."""
    placed = status.get("placement") or {}
    if status.get("phase") in ("Invalid", "Unplaceable") or not placed.get("tier"):
        return None
    if (status.get("assurance") or {}).get("failover"):
        return None
    return placed


def serving_in_place(
    *,
    status: Mapping[str, Any],
    replicas: int,
    own_pods: Iterable[Mapping[str, Any]],
    nodes: Mapping[str, Mapping[str, Any]],
) -> bool:
    """Whether a placed SLA, not failed over, has `replicas` pods bound to Ready, schedulable
    nodes of its site: then there is nothing to decide, and the pass skips the capacity it would
    otherwise work out for it alone (the cost that dominates a pass over a large fleet)."""
    placed = home_placement(status)
    if placed is None:
        return False
    site = placed.get("site")
    serving = 0
    for pod in own_pods:
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            # Not bound yet (a rollout's surge pod, a scale-out): it neither serves nor shows the
            # site lost; the replicas already serving decide.
            continue
        node = nodes.get(node_name)
        if node is None or not schedulable(node):
            return False
        if (
            site is not None
            and ((node.get("metadata") or {}).get("labels") or {}).get(SITE_LABEL) != site
        ):
            return False
        serving += 1
    return serving >= replicas


def placement_step(
    *,
    spec: AIInferenceSLASpec,
    status: Mapping[str, Any],
    tiers: Mapping[str, InferenceTierSpec],
    capacity: Capacity,
    now: datetime,
    stabilisation: timedelta,
    unschedulable_since: datetime | None = None,
    unschedulable_grace: timedelta = timedelta(minutes=2),
) -> PlacementStep:
    """The one step this pass takes for an SLA (see the module docstring)."""
    phase = status.get("phase")
    placed = status.get("placement") or {}
    failover = (status.get("assurance") or {}).get("failover")
    avoid = held_off(status)
    if phase == "Invalid":
        return PlacementStep(Step.NONE, "the spec is invalid")
    if phase == "Unplaceable":
        decision = plan(spec, tiers, capacity=capacity, avoid=avoid)
        if decision.placed:
            return PlacementStep(Step.RETRY, f"room freed: {decision.message}", failover, decision)
        return PlacementStep(Step.NONE, "still no tier can serve it")
    if not placed.get("tier"):
        # Not reconciled yet: the create handler places it.
        return PlacementStep(Step.NONE, "not placed yet")

    current: Site = (placed["tier"], placed.get("site"))
    gpus = int(placed.get("gpusPerReplica") or 1)
    replicas = spec.capacity.replicas
    failure = None
    if not can_host(capacity, current, replicas=replicas, gpus_per_replica=gpus):
        failure = f"{_name(current)} has no Ready node with room for {replicas} replica(s)"
    elif unschedulable_since is not None and now - unschedulable_since >= unschedulable_grace:
        failure = f"pods unschedulable at {_name(current)} since {iso_seconds(unschedulable_since)}"
    if failure is not None:
        home = avoid[0] if avoid else current
        decision = plan(spec, tiers, capacity=capacity, avoid={home, current})
        if not decision.placed:
            return PlacementStep(Step.NONE, f"{failure}; nowhere else: {decision.message}")
        state = {
            "fromTier": home[0],
            "fromSite": home[1],
            "at": iso_seconds(now),
            "reason": failure,
            "homeHealthySince": None,
        }
        return PlacementStep(Step.FAIL_OVER, f"{failure}: {decision.message}", state, decision)

    if not failover:
        due = None if unschedulable_since is None else unschedulable_since + unschedulable_grace
        return PlacementStep(Step.NONE, f"serving at {_name(current)}", due=due)
    home = avoid[0]
    if home == current:
        return PlacementStep(Step.FAIL_BACK, f"back at {_name(home)}", None)
    if not _allowed(spec, tiers, home):
        # A spec or tier edit took home off the SLA's places: nothing to wait for any more.
        return PlacementStep(
            Step.HOME_DROPPED,
            f"{_name(home)} is no longer a place of this SLA; it stays at {_name(current)}",
            None,
        )
    preferred = plan(spec, tiers, capacity=capacity)
    back = (preferred.tier, preferred.site) == home and can_host(
        capacity, home, replicas=replicas, gpus_per_replica=preferred.gpus_per_replica or 1
    )
    since = failover.get("homeHealthySince")
    if not back:
        if since is None:
            return PlacementStep(Step.NONE, f"{_name(home)} cannot host it yet")
        return PlacementStep(
            Step.HOME_UNHEALTHY,
            f"{_name(home)} cannot host it again",
            {**failover, "homeHealthySince": None},
        )
    if since is None:
        return PlacementStep(
            Step.HOME_HEALTHY,
            f"{_name(home)} can host it again; back after {stabilisation.total_seconds():g} s",
            {**failover, "homeHealthySince": iso_seconds(now)},
            due=now + stabilisation,
        )
    stable_for = now - parse_iso(since)
    if stable_for < stabilisation:
        return PlacementStep(
            Step.NONE,
            f"{_name(home)} stable for {stable_for.total_seconds():g} s",
            due=parse_iso(since) + stabilisation,
        )
    return PlacementStep(
        Step.FAIL_BACK,
        f"{_name(home)} stable for {stable_for.total_seconds():g} s: {preferred.message}",
        None,
        preferred,
    )


def displacement(
    *,
    spec: AIInferenceSLASpec,
    status: Mapping[str, Any],
    tiers: Mapping[str, InferenceTierSpec],
    capacity: Capacity,
    chosen: tuple[str | None, str | None],
    now: datetime,
) -> dict[str, Any] | None:
    """The failover record (`status.assurance.failover`) of a reconcile that moves a placed SLA
    off its site only because the site can no longer host it (no Ready, schedulable node with
    room: its nodes NotReady or gone, its GPUs taken), as the loop's `FailOver` would have: a
    reconcile at such a moment (the resume of every SLA when the operator restarts during a
    site's outage, a tier's or an offer's edit) would otherwise make the site it moved to the
    SLA's home for good. With the record, the loop brings it back once the site has been stable
    (`placement_step`). None when it stays, when it was failed over already, when the site is no
    longer one of its places, or when the plan would leave the site even with room there (an
    edit that prefers another place: a move the tenant or the provider chose, not a failure).
    `tiers`: those the SLA may be placed on (its offer's)."""
    placed = home_placement(status)
    if placed is None:
        return None
    current: Site = (placed["tier"], placed.get("site"))
    if chosen == current or not _allowed(spec, tiers, current):
        return None
    replicas = spec.capacity.replicas
    gpus = int(placed.get("gpusPerReplica") or 1)
    if can_host(capacity, current, replicas=replicas, gpus_per_replica=gpus):
        return None
    # The plan as if the site's tier had room everywhere: does it still choose the site?
    with_room = {tier: sites for tier, sites in capacity.items() if tier != current[0]}
    preferred = plan(spec, tiers, capacity=with_room)
    if (preferred.tier, preferred.site) != current:
        return None
    return {
        "fromTier": current[0],
        "fromSite": current[1],
        "at": iso_seconds(now),
        "reason": f"{_name(current)} has no Ready node with room for {replicas} replica(s)",
        "homeHealthySince": None,
    }


def _allowed(spec: AIInferenceSLASpec, tiers: Mapping[str, InferenceTierSpec], site: Site) -> bool:
    tier, where = site
    return (
        tier in tiers
        and spec.placement.tier in ("auto", tier)
        and (where is None or where in tiers[tier].sites)
        and (not spec.placement.sites or where in spec.placement.sites)
    )


def _name(site: Site) -> str:
    return f"{site[0]} {site[1]}" if site[1] else site[0]
