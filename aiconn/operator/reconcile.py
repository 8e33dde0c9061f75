"""One idempotent, level-based reconcile of an AIInferenceSLA.

spec -> placement plan (pure) -> child objects (pure builders) -> server-side apply -> status.
Every child has a deterministic name and an owner reference, so a crash at any point and a
replay converge on exactly one child of each kind, and deleting the SLA lets the garbage
collector remove them all. The API-key Secret is created only when absent, so a replay never
rotates a tenant's keys.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from aiconn.contracts.gateway_pod import GATEWAY_PORT
from aiconn.inference import workload
from aiconn.inference.assurance import displacement, held_off
from aiconn.inference.placement import PlacementDecision
from aiconn.inference.scaling import scaled
from aiconn.kube import KINDS, Conflict
from aiconn.operator.capacity import observe_capacity
from aiconn.operator.conditions import condition, merge
from aiconn.operator.desired import Children, apply_children, render_children
from aiconn.operator.failures import short
from aiconn.operator.health import serving_phase
from aiconn.operator.kubeapi import KubeApi, first_in_line
from aiconn.operator.leanwatch import deployment_view
from aiconn.operator.offers import (
    OfferProblem,
    check_namespace,
    offered_tiers,
    place,
    terms_for,
)
from aiconn.operator.settings import OperatorSettings
from aiconn.resources.v1alpha1.kinds import NETWORK_SLICE, SLA
from aiconn.resources.v1alpha1.meta import API_VERSION
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec
from aiconn.resources.v1alpha1.status import typed_status
from aiconn.resources.v1alpha1.tier import InferenceTierSpec

# Phases without children to follow: nothing placed, or the last reconcile failed.
UNSERVED_PHASES = (None, "Unplaceable", "Invalid", "Failed")
API_KEY_PREFIX = "aic_"


@dataclass
class Event:
    type: str
    reason: str
    message: str


@dataclass
class Outcome:
    """What a reconcile wants written back: status fields, the conditions it owns (set by type,
    others' left alone) and the Events to post."""

    status: dict[str, Any]
    conditions: list[dict[str, Any]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Written as the typed status model writes it: a field it lacks or a wrong type fails
        # here, in the operator, not as a status the API server prunes or a reader misreads.
        self.status = typed_status(SLA.kind, self.status)


def owner_of(body: Mapping[str, Any]) -> dict[str, str]:
    meta = body["metadata"]
    return {"apiVersion": API_VERSION, "kind": SLA.kind, "name": meta["name"], "uid": meta["uid"]}


def _not_chosen(tier: str, reason: str) -> str:
    """`Tier edge not chosen: ...` (placement reasons already start with the tier's name, followed
    by a colon or, for a capacity reason, by the site)."""
    why = reason
    for prefix in (f"{tier}: ", f"{tier} "):
        if reason.startswith(prefix):
            why = reason[len(prefix) :]
            break
    return short(f"Tier {tier} not chosen: {why}")


def _placement_events(decision: PlacementDecision, previous: Mapping[str, Any]) -> list[Event]:
    """Events only when the decision changes, so a resync does not flood the namespace.

    A tier not chosen is Normal (placement worked; it says why not there); Warning is for an SLA
    that no tier can serve."""
    before = previous.get("placement") or {}
    before_rejected = [(r.get("tier"), r.get("reason")) for r in before.get("rejected", [])]
    if before.get("tier") == decision.tier and before_rejected == list(decision.rejected):
        return []
    if not decision.placed:
        return [Event("Warning", "Unplaceable", short(decision.message))]
    events = [Event("Normal", "TierNotChosen", _not_chosen(t, r)) for t, r in decision.rejected]
    events.append(Event("Normal", "Placed", short(decision.message)))
    return events


def slice_ready(slice_obj: Mapping[str, Any] | None) -> tuple[bool | None, str, str]:
    conds = {
        c.get("type"): c for c in ((slice_obj or {}).get("status") or {}).get("conditions", [])
    }
    ready = conds.get("SliceReady")
    if ready is None:
        return None, "SlicePending", "the network slice has not been realized yet"
    return ready.get("status") == "True", ready.get("reason", ""), ready.get("message", "")


def inference_ready(deployment: Mapping[str, Any] | None, replicas: int) -> tuple[bool, str, str]:
    status = (deployment or {}).get("status") or {}
    generation = ((deployment or {}).get("metadata") or {}).get("generation", 0)
    if (
        int(status.get("observedGeneration") or 0) < generation
        or int(status.get("updatedReplicas") or 0) < replicas
    ):
        # Old pods stay Ready while a new spec's pods still load the model: not ready yet.
        return False, "RollingOut", "the vLLM Deployment is rolling out the current spec"
    available = int(status.get("availableReplicas") or 0)
    if available >= replicas:
        return True, "ReplicasAvailable", f"{available}/{replicas} vLLM replicas available"
    return False, "ReplicasUnavailable", f"{available}/{replicas} vLLM replicas available"


def inference_inputs(deployment: Mapping[str, Any]) -> tuple[Any, ...]:
    """All that `inference_ready` and `refresh_readiness` read of a Deployment: two states of
    it with equal inputs give the SLA the same readiness."""
    status = deployment.get("status") or {}
    return (
        (deployment.get("metadata") or {}).get("generation"),
        (deployment.get("spec") or {}).get("replicas"),
        status.get("observedGeneration"),
        status.get("updatedReplicas"),
        status.get("availableReplicas"),
    )


def readiness(
    *,
    slice_obj: Mapping[str, Any] | None,
    deployment: Mapping[str, Any] | None,
    replicas: int,
    generation: int | None,
    health: Mapping[str, Any] | None = None,
) -> tuple[str, list[dict[str, Any]]]:
    """Phase and the SliceReady / InferenceReady / Ready conditions from the children; `health`
    (the SLA's status) turns a serving phase into AtRisk or Breached (see `health`)."""
    s_ok, s_reason, s_msg = slice_ready(slice_obj)
    i_ok, i_reason, i_msg = inference_ready(deployment, replicas)
    ready = bool(s_ok) and i_ok
    if ready:
        phase, r_reason, r_msg = (
            serving_phase(health or {}),
            "Serving",
            "placed, sliced and serving",
        )
    elif s_ok is False:
        phase, r_reason, r_msg = "Degraded", "SliceNotReady", s_msg
    else:
        phase, r_reason, r_msg = "Provisioning", "Provisioning", f"{s_msg}; {i_msg}"
    return phase, [
        condition("SliceReady", s_ok, s_reason or "SlicePending", s_msg, generation=generation),
        condition("InferenceReady", i_ok, i_reason, i_msg, generation=generation),
        condition("Ready", ready, r_reason, r_msg, generation=generation),
    ]


def _wallet_ca_bundle(settings: OperatorSettings) -> str | None:
    """The provider's CA bundle for the wallet API, when the gateways call one and a bundle is
    mounted (the manifests mount it optionally: a public CA's certificate needs none)."""
    path = settings.wallet_ca_file
    if not settings.wallet_api_url or path is None or not path.is_file():
        return None
    return path.read_text()


_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def _apply_turns(settings: OperatorSettings) -> asyncio.Semaphore:
    """The turns to render and apply children, `settings.concurrent_applies` at once (one set
    per event loop: tests run operators on loops of their own).

    A reconcile applies its children one request after another, and the operator's threads serve
    32 requests at once, so a few dozen reconciles in their apply loops keep every thread busy.
    Without turns, a burst of a thousand new SLAs puts a thousand apply loops in the threads'
    queue together, each holding its rendered child (a Deployment is 34 KB of Python objects)
    while the queue moves, and every SLA's handler stays in flight, its SLA held by Kopf, until
    the burst's last writes. With turns, the SLAs waiting for one hold only their body and
    placement, and those written finish their handlers while the rest wait. Placement takes no
    turn (capacity reads are shared by every reconcile waiting for them), nor do status writes.
    A turn's calls, and the handler's status write and readiness read after it, go
    `first_in_line` on the operator's threads, before the watch events' refreshes and the Events
    of the SLAs already written. The price, measured at 1000 SLAs (`bench/RESULTS.md`): a later
    last pod than when every reconcile wrote at once, since each SLA's handler now ends (its
    status written) before the later SLAs' children are written."""
    loop = asyncio.get_running_loop()
    turns = _turns.get(loop)
    if turns is None:
        turns = _turns[loop] = asyncio.Semaphore(settings.concurrent_applies)
    return turns


def sla_children(
    body: Mapping[str, Any],
    spec: AIInferenceSLASpec,
    decision: PlacementDecision,
    settings: OperatorSettings,
) -> Children:
    """What the SLA `body` (as the API server wrote it) should have under `decision`: a fresh
    API key for its Secret (created only when absent, so a replay never rotates it) and the
    wallet CA bundle read now, so a rotated bundle reaches the pods' mounted copy at the next
    reconcile."""
    meta = body["metadata"]
    return render_children(
        sla_name=meta["name"],
        namespace=meta["namespace"],
        owner=owner_of(body),
        spec=spec,
        decision=decision,
        settings=settings,
        new_keys=[API_KEY_PREFIX + secrets.token_urlsafe(32)],
        wallet_ca=_wallet_ca_bundle(settings),
    )


async def reconcile_sla(
    kube: KubeApi,
    body: Mapping[str, Any],
    tiers: Mapping[str, InferenceTierSpec],
    settings: OperatorSettings,
) -> Outcome:
    meta = body["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    generation = meta.get("generation")
    previous = body.get("status") or {}
    try:
        spec = AIInferenceSLASpec.model_validate(body["spec"])
    except ValidationError as err:
        message = short(
            "; ".join(
                f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()
            )
        )
        return Outcome(
            status={
                "observedGeneration": generation,
                "phase": "Invalid",
            },
            conditions=[condition("Ready", False, "InvalidSpec", message, generation=generation)],
            events=[Event("Warning", "InvalidSpec", message)],
        )

    try:
        spec, offer = await terms_for(kube, spec, require_offer=settings.require_offer)
        await check_namespace(kube, namespace, spec, offer)
    except OfferProblem as problem:
        # Operator-only knowledge (the offer is missing or no longer covers the SLA): nothing is
        # provisioned or funded until the tenant or the provider fixes it, and what already runs
        # stops serving: the SLA loop cannot meter an SLA it has no terms for.
        message = str(problem)
        if await _stop_serving(kube, namespace, name):
            message = short(f"{message}; its inference pods are stopped until this is fixed")
        return Outcome(
            status={"observedGeneration": generation, "phase": "Invalid"},
            conditions=[condition("Ready", False, problem.reason, message, generation=generation)],
            events=[Event("Warning", problem.reason, message)],
        )
    capacity = await observe_capacity(kube, tiers, namespace=namespace, sla_name=name)
    decision = place(spec, tiers, offer, capacity=capacity, avoid=held_off(previous))
    events = _placement_events(decision, previous)
    placement = decision.to_status().to_k8s()
    if not decision.placed and previous.get("inForceGeneration") is not None:
        return _edit_unplaceable(decision, previous, generation)
    if not decision.placed:
        return Outcome(
            status={
                "observedGeneration": generation,
                "phase": "Unplaceable",
                "placement": placement,
            },
            conditions=[
                condition(
                    "Placed", False, "NoFeasibleTier", decision.message, generation=generation
                ),
                condition("Ready", False, "Unplaceable", decision.message, generation=generation),
            ],
            events=events,
        )

    failover = displacement(
        spec=spec,
        status=previous,
        tiers=offered_tiers(tiers, offer),
        capacity=capacity,
        chosen=(decision.tier, decision.site),
        now=datetime.now(UTC),
    )
    if failover is not None:
        events.append(
            Event(
                "Warning",
                "FailedOver",
                f"{failover['reason']}: {decision.message}; back once it has been stable",
            )
        )
    spec = scaled(spec, previous)  # placed for its base replicas; runs the loop's count
    async with _apply_turns(settings):
        with first_in_line():
            children = sla_children(body, spec, decision, settings)
            if not previous and generation == 1:
                children = _nothing_to_remove(children)
            applied = await apply_children(kube, namespace, children)
    phase, ready_conditions = readiness(
        slice_obj=applied[NETWORK_SLICE.kind],
        deployment=applied["Deployment"],
        replicas=spec.capacity.replicas,
        generation=generation,
        health=previous,
    )
    return Outcome(
        status={
            "observedGeneration": generation,
            "phase": phase,
            "placement": placement,
            "children": children.refs,
            "endpoint": f"http://{children.refs['service']}.{namespace}.svc:{GATEWAY_PORT}/v1",
            "inForceGeneration": generation,
            "pending": None,
            **({} if failover is None else {"assurance": {"failover": failover}}),
        },
        conditions=[
            condition("Placed", True, "TierChosen", decision.message, generation=generation),
            *ready_conditions,
        ],
        events=events,
    )


def _nothing_to_remove(children: Children) -> Children:
    """The children of a new SLA (generation 1, no status), less the deletes of those it must
    not have: every attempt at it rendered from this same spec, unscaled (no status, so no
    count of the assurance loop), and the spec alone decides them (a PodDisruptionBudget from
    two replicas up), so none of them was ever made. A DELETE less per new SLA (0.97 per SLA at
    1000 SLAs). One left by a deleted SLA of the same name goes with its owner (the garbage
    collector), as before; from the first status on, each reconcile deletes them again."""
    return dataclasses.replace(children, absent=())


def _edit_unplaceable(
    decision: PlacementDecision,
    previous: Mapping[str, Any],
    generation: int | None,
) -> Outcome:
    """An edit no tier can serve: the children of the generation in force keep running, and the
    status says which generation that is, where it runs and what waits (the placement and the
    TIER column stay those of the running children)."""
    in_force = previous.get("inForceGeneration")
    where = (previous.get("placement") or {}).get("tier") or "its tier"
    message = short(
        f"generation {generation} cannot be placed ({decision.message}); generation {in_force}"
        f" stays in force on {where}"
    )
    return Outcome(
        status={
            "observedGeneration": generation,
            "phase": "EditUnplaceable",
            "pending": {"generation": generation, "reason": "NoFeasibleTier", "message": message},
        },
        conditions=[
            condition("Placed", False, "EditUnplaceable", message, generation=generation),
        ],
        events=[Event("Warning", "EditUnplaceable", message)],
    )


async def _stop_serving(kube: KubeApi, namespace: str, sla_name: str) -> bool:
    """Scale the SLA's inference Deployment to 0 (a merge patch: the next apply restores the
    count once the SLA is servable again); False when it has none running."""
    deployment = workload.child_names(sla_name).deployment
    current = await kube.get("Deployment", deployment, namespace)
    if current is None or not (current.get("spec") or {}).get("replicas"):
        return False
    await kube.call(
        "PATCH",
        KINDS["Deployment"].path(namespace, deployment),
        body={"spec": {"replicas": 0}},
        content_type="application/merge-patch+json",
    )
    return True


async def refresh_readiness(
    kube: KubeApi,
    namespace: str,
    sla_name: str,
    *,
    sla: Mapping[str, Any] | None = None,
    deployment: Mapping[str, Any] | None = None,
    slice_obj: Mapping[str, Any] | None = None,
    attempts: int = 5,
) -> dict[str, Any] | None:
    """Recompute the readiness conditions after a child changed; None when nothing changed.

    `sla`, `deployment` and `slice_obj` are the objects as the caller has them from the API
    server just now (a write's answer, a watch event), read here when not given.

    The conditions are judged on the children as read, so a write that conflicts (another
    writer changed the SLA since it was read) is judged again on everything read afresh, never
    re-applied: the other writer may have judged a newer state of a child (a watch event
    handled meanwhile), and putting this older judgement over it would leave the SLA in a phase
    no later event corrects."""
    for _ in range(max(attempts, 1)):
        try:
            return await _refresh_once(
                kube, namespace, sla_name, sla=sla, deployment=deployment, slice_obj=slice_obj
            )
        except Conflict:
            sla = deployment = slice_obj = None
    raise Conflict(reason=f"{SLA.kind} {namespace}/{sla_name} kept changing; readiness not written")


async def _refresh_once(
    kube: KubeApi,
    namespace: str,
    sla_name: str,
    *,
    sla: Mapping[str, Any] | None,
    deployment: Mapping[str, Any] | None,
    slice_obj: Mapping[str, Any] | None,
) -> dict[str, Any] | None:
    """One judgement of readiness and its write on the version of the SLA it was judged with
    (Conflict when that version is no longer the current one)."""
    if sla is None:
        sla = await kube.get(SLA.kind, sla_name, namespace)
    if sla is None or (sla.get("status") or {}).get("phase") in UNSERVED_PHASES:
        return None
    names = workload.child_names(sla_name)
    if slice_obj is None or (slice_obj.get("metadata") or {}).get("name") != names.network_slice:
        slice_obj = await kube.get(NETWORK_SLICE.kind, names.network_slice, namespace)
    if deployment is None or (deployment.get("metadata") or {}).get("name") != names.deployment:
        # Only the part readiness reads is kept: a burst has a thousand refreshes waiting on
        # their status writes.
        read = await kube.get("Deployment", names.deployment, namespace)
        deployment = None if read is None else deployment_view(read)
    # The count the Deployment runs (the assurance loop may have scaled it), else the spec's.
    replicas = int(
        ((deployment or {}).get("spec") or {}).get("replicas")
        or (sla.get("spec", {}).get("capacity") or {}).get("replicas", 1)
    )
    status = sla.get("status") or {}
    phase, conds = readiness(
        slice_obj=slice_obj,
        deployment=deployment,
        replicas=replicas,
        generation=status.get("observedGeneration"),
        health=status,
    )
    # An edit that could not be placed keeps its phase (EditUnplaceable) while generation 1
    # serves.
    if status.get("pending"):
        phase = status.get("phase") or phase
    old = status.get("conditions", [])
    if phase == status.get("phase") and merge(old, conds) == old:
        return None
    return await kube.update_status(
        SLA.kind,
        sla_name,
        namespace,
        fields={"phase": phase},
        conditions=conds,
        current=sla,
        attempts=1,
    )
