"""The assurance loop: one pass over the fleet every `assurance_interval_seconds`.

Each pass lists the tiers, the Nodes and the Pods that request GPUs once, then for each SLA works
out the capacity without its own pods and asks `aiconn.inference.assurance.placement_step` what
to do: retry an unplaced SLA once room frees, fail over from a site that can no longer host it,
come back once the site has been stable. A move writes `status.assurance` first (the failover
state the reconcile honours), then runs the same reconcile a spec edit would, so a crash between
the two is finished by the next pass. Every move is an Event and a line of the placement history.

A fleet loop rather than a Kopf timer per SLA: the Nodes and Pods are read once per pass, not
once per SLA. It needs no Prometheus, so unlike the evaluation loop it is always on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import kopf
from pydantic import ValidationError

from aiconn.inference.assurance import (
    PlacementStep,
    Step,
    can_host,
    home_placement,
    placement_step,
    serving_in_place,
)
from aiconn.inference.capacity import (
    GPU_RESOURCE,
    node_view,
    observe,
    observes_any,
    pod_view,
    schedulable,
    unschedulable,
)
from aiconn.inference.fulfilment import horizon, objectives, reading
from aiconn.inference.stakes import Forecast, Weighing, capacity_cost, forecast, weigh
from aiconn.inference.throughput import ReplicaThroughput
from aiconn.kube import KINDS, KubeError, without_managed_fields
from aiconn.operator import state
from aiconn.operator.autoscale import scale
from aiconn.operator.capacity import LIVE_PODS, NODES, PODS, owned
from aiconn.operator.kubeapi import KubeApi
from aiconn.operator.offers import OfferProblem, fetch_offers, offered_tiers, resolve
from aiconn.operator.reconcile import reconcile_sla, refresh_readiness
from aiconn.operator.settings import OperatorSettings
from aiconn.operator.signals import read_signals
from aiconn.operator.slaevents import involved, post_event
from aiconn.resources.v1alpha1.assurance import HISTORY_LENGTH
from aiconn.resources.v1alpha1.kinds import SLA, TIER
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec
from aiconn.resources.v1alpha1.tier import InferenceTierSpec
from aiconn.sla.timestamps import iso_seconds, parse_iso

if TYPE_CHECKING:
    from aiconn.store.prometheus import QueryClient

log = logging.getLogger(__name__)

SLAS = KINDS[SLA.kind]  # listed across all namespaces (no namespace: path(None))
TIERS = KINDS[TIER.kind]
MOVES = {Step.RETRY: "Retried", Step.FAIL_OVER: "FailedOver", Step.FAIL_BACK: "FailedBack"}

SignalReader = Callable[
    [Mapping[tuple[str, str], float]], dict[tuple[str, str], tuple[float | None, float | None]]
]
"""TTFT thresholds (s) per (namespace, SLA) in, (in flight, TTFT attainment %) per SLA out."""

_task: asyncio.Task[None] | None = None
_loop: AssuranceLoop | None = None
_nodes: dict[str, tuple[bool, Any]] = {}
"""Each Node's (schedulable, allocatable GPUs) as last seen, to tell a change from a heartbeat."""


class AssuranceLoop:
    """One pass at a time over every AIInferenceSLA."""

    def __init__(
        self,
        kube: KubeApi,
        settings: OperatorSettings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        signal_reader: SignalReader | None = None,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.clock = clock
        self.signal_reader = signal_reader
        """Where the scaling signals come from; None reads them from `prometheus_url`. A test
        plays simulated signals through it, on a simulated clock, to cover minutes in a moment."""
        self.wake = asyncio.Event()
        """Set when a Node's readiness or GPUs change: the next pass starts at once."""
        self.next_due: datetime | None = None
        """The earliest time a step of the last pass asked to be looked at again."""
        self.signals: dict[tuple[str, str], tuple[float | None, float | None]] = {}
        """This pass's scaling signals per SLA (empty while scaling is off)."""
        self._prometheus: QueryClient | None = None

    async def run_once(self) -> dict[Step, int]:
        """One pass; returns how many SLAs took each step."""
        tiers = await self._tiers()
        # Held for the whole pass: read in pages, each Node and Pod cut down to what the pass
        # reads of it (`node_view`, `pod_view`), each SLA without managedFields (`list_all`).
        nodes = await self.kube.list_all(NODES.path(None), keep=node_view)
        pods: list[dict[str, Any]] = []
        if observes_any(nodes, tiers):
            pods = await self.kube.list_all(
                PODS.path(None), [("fieldSelector", LIVE_PODS)], keep=pod_view
            )
        slas: list[dict[str, Any]] = []
        for path in self._sla_paths():
            slas += await self.kube.list_all(path, keep=without_managed_fields)
        fleet = _Fleet(nodes=nodes, pods=pods, tiers=tiers, offers=await fetch_offers(self.kube))
        self.signals = await self._signals(slas)
        counts: dict[Step, int] = {}
        dues: list[datetime] = []
        for sla in slas:
            try:
                taken = await self._assure(sla, tiers=tiers, fleet=fleet)
            except KubeError as err:
                # One SLA's refused write must not hold back the rest of the fleet.
                meta = sla["metadata"]
                log.warning("assurance of %s/%s failed: %s", meta["namespace"], meta["name"], err)
                continue
            counts[taken.step] = counts.get(taken.step, 0) + 1
            if taken.due is not None:
                dues.append(taken.due)
        self.next_due = min(dues, default=None)
        return counts

    def _sla_paths(self) -> list[str]:
        """Where the SLAs it serves are listed: in each namespace of `settings.namespaces`, or
        across the cluster when it serves them all. An operator given some namespaces neither
        reads nor moves another's SLAs (nor needs to be allowed to list them)."""
        if not self.settings.namespaces:
            return [SLAS.path(None)]
        return [KINDS[SLA.kind].path(ns) for ns in dict.fromkeys(self.settings.namespaces)]

    async def _signals(
        self, slas: list[dict[str, Any]]
    ) -> dict[tuple[str, str], tuple[float | None, float | None]]:
        """The fleet's scaling signals, when scaling is on; none when Prometheus cannot answer
        (no signal holds the count where it is)."""
        url = self.settings.prometheus_url
        if not (self.settings.scaling_enabled and (url or self.signal_reader)):
            return {}
        thresholds = {}
        for sla in slas:
            ttft = ((sla.get("spec") or {}).get("objectives") or {}).get("ttft") or {}
            key = (sla["metadata"]["namespace"], sla["metadata"]["name"])
            thresholds[key] = int(ttft.get("thresholdMs") or 500) / 1000
        if self.signal_reader is not None:
            return self.signal_reader(thresholds)
        if self._prometheus is None:
            # Imported on first use: an operator without Prometheus loads no SLA engine.
            from aiconn.store.prometheus import PrometheusSource

            self._prometheus = PrometheusSource.from_url(str(url)).client
        client = self._prometheus
        try:
            return await asyncio.to_thread(read_signals, client, thresholds)
        except Exception as err:  # an unreachable Prometheus is no signal, not a failed pass
            log.warning("scaling signals not read: %s", err)
            return {}

    async def _tiers(self) -> dict[str, InferenceTierSpec]:
        tiers = {}
        for item in (await self.kube.call("GET", TIERS.path(None))).get("items", []):
            with contextlib.suppress(ValidationError):
                tiers[item["metadata"]["name"]] = InferenceTierSpec.model_validate(item["spec"])
        return tiers

    async def _assure(
        self,
        sla: dict[str, Any],
        *,
        tiers: Mapping[str, InferenceTierSpec],
        fleet: _Fleet,
    ) -> PlacementStep:
        meta = sla["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        if meta.get("deletionTimestamp"):
            return PlacementStep(Step.NONE, "being deleted")
        try:
            spec = AIInferenceSLASpec.model_validate(sla["spec"])
        except ValidationError:
            return PlacementStep(Step.NONE, "the spec is invalid")
        try:
            # The provider's terms, never the tenant's: the offer's prices, schedules and tiers.
            offer_body = fleet.offers.get(spec.offer) if spec.offer else None
            spec, offer = resolve(spec, offer_body, require_offer=self.settings.require_offer)
        except OfferProblem:
            return PlacementStep(Step.NONE, "not served under its offer")
        # Decide among the offer's tiers; a move still reconciles with every tier, so the
        # placement status lists the tiers the offer excludes, as every reconcile does.
        offered = offered_tiers(tiers, offer)
        status = sla.get("status") or {}
        own = [p for p in fleet.pods_in(namespace) if owned(p, namespace=namespace, sla_name=name)]
        now = self.clock()
        waiting = unschedulable_since(own)
        if serving_in_place(
            status=status, replicas=spec.capacity.replicas, own_pods=own, nodes=fleet.nodes
        ) or (waiting is None and fleet.site_up(status, replicas=spec.capacity.replicas)):
            step = PlacementStep(Step.NONE, "serving in place")
        else:
            mine = {id(p) for p in own}
            step = placement_step(
                spec=spec,
                status=status,
                tiers=offered,
                capacity=observe(
                    nodes=fleet.nodes.values(),
                    pods=[p for p in fleet.pods if id(p) not in mine],
                    tiers=offered,
                ),
                now=now,
                stabilisation=timedelta(seconds=self.settings.failback_stabilisation_seconds),
                unschedulable_since=waiting,
                unschedulable_grace=timedelta(seconds=self.settings.unschedulable_grace_seconds),
            )
        observed = reading(spec, status.get("period") or {}, now)
        predicted = forecast(spec, observed)
        if step.step in MOVES:
            await self._move(
                sla, step, tiers=tiers, now=now, weighing=self._weigh(spec, step, predicted, now)
            )
            return step
        assurance: dict[str, Any] = {}
        goals = objectives(spec, observed, predicted)
        if goals != (status.get("assurance") or {}).get("objectives"):
            assurance["objectives"] = goals
        if step.step in (Step.HOME_HEALTHY, Step.HOME_UNHEALTHY, Step.HOME_DROPPED):
            assurance["failover"] = step.failover
            await self._event(sla, "Normal", step.step.value, step.reason)
        elif (namespace, name) in self.signals and not (status.get("assurance") or {}).get(
            "failover"
        ):
            await scale(
                kube=self.kube,
                settings=self.settings,
                post_event=self._event,
                sla=sla,
                spec=spec,
                tiers=tiers,
                signals=self.signals[(namespace, name)],
                predicted=predicted,
                now=now,
            )
        history = _history(status, now=now, reason="Placed")
        if history is not None:
            assurance["placementHistory"] = history
        if assurance:
            assurance["evaluatedAt"] = iso_seconds(now)
            await self.kube.patch_status(SLA.kind, name, namespace, {"assurance": assurance})
        return step

    @staticmethod
    def _weigh(
        spec: AIInferenceSLASpec, step: PlacementStep, predicted: Forecast, now: datetime
    ) -> Weighing | None:
        """The move's capacity cost against the expected credit; None when the chosen tier's
        replicas could not be sized for a rate (no cost to weigh)."""
        decision = step.decision
        if decision is None or not isinstance(decision.throughput, ReplicaThroughput):
            return None
        _, seconds = horizon(spec.objectives.window, now)
        cost = capacity_cost(
            replicas=spec.capacity.replicas,
            replica_tokens_per_second=decision.throughput.replica_tokens_per_second,
            price_per_million_tokens=decision.price_per_million_tokens or 0.0,
            seconds=seconds,
        )
        return weigh(
            cost=cost,
            expected_credit=predicted.credit,
            restores_service=step.step is not Step.FAIL_BACK,
            currency=decision.currency or spec.tokens.currency,
        )

    async def _move(
        self,
        sla: dict[str, Any],
        step: PlacementStep,
        *,
        tiers: Mapping[str, InferenceTierSpec],
        now: datetime,
        weighing: Weighing | None,
    ) -> None:
        """Write the failover state, then reconcile as a spec edit would, then record the move.

        A move is always made: it restores service, or returns to a home that is stable again;
        the money is weighed and recorded beside it."""
        meta = sla["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        assurance = (sla.get("status") or {}).get("assurance") or {}
        if weighing is None:
            money = "capacity not sized for a rate"
        elif step.step is Step.FAIL_BACK:
            # Taken because home is stable again, not for the money; the numbers are recorded.
            money = f"home is stable again ({weighing.amounts})"
        else:
            money = weighing.reason
        action: dict[str, Any] = {
            "at": iso_seconds(now),
            "action": step.step.value,
            "decision": "Act",
            "reason": f"{step.reason}; {money}"[:1024],
        }
        if weighing is not None and step.decision is not None:
            action["capacityCost"] = str(weighing.capacity_cost)
            action["expectedCredit"] = str(weighing.expected_credit)
            action["currency"] = step.decision.currency
        actions = [*(assurance.get("actions") or []), action][-HISTORY_LENGTH:]
        await self.kube.patch_status(
            SLA.kind,
            name,
            namespace,
            {"assurance": {"failover": step.failover, "actions": actions}},
        )
        body = await self.kube.get(SLA.kind, name, namespace)
        if body is None:
            return
        outcome = await reconcile_sla(self.kube, body, tiers, self.settings)
        for event in outcome.events:
            await self._event(body, event.type, event.reason, event.message)
        # The history goes in the same write as the placement, so neither is seen without the other.
        history = _history(
            {**(body.get("status") or {}), "placement": outcome.status.get("placement")},
            now=now,
            reason=f"{MOVES[step.step]}: {step.reason}",
        )
        fields = dict(outcome.status)
        if history is not None:
            fields["assurance"] = {"placementHistory": history}
        written = await self.kube.update_status(
            SLA.kind,
            name,
            namespace,
            fields=fields,
            conditions=outcome.conditions,
            current=body,
        )
        # The readiness above was judged on the Deployment as its apply answered; it may have
        # moved on since, and its watch events found the status before this write.
        await refresh_readiness(self.kube, namespace, name, sla=written)
        await self._event(
            body,
            "Warning" if step.step is Step.FAIL_OVER else "Normal",
            MOVES[step.step],
            action["reason"],
        )

    async def _event(self, sla: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """A core/v1 Event on the SLA; failing to post one never fails the pass."""
        await post_event(self.kube, involved(sla), type_=type_, reason=reason, message=message)


class _Fleet:
    """The Nodes by name, the GPU Pods by namespace and the offers by name, read once per pass."""

    def __init__(
        self,
        *,
        nodes: Sequence[Mapping[str, Any]],
        pods: Sequence[Mapping[str, Any]],
        tiers: Mapping[str, InferenceTierSpec],
        offers: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.nodes = {n["metadata"]["name"]: n for n in nodes}
        self.offers = offers or {}
        self.pods = pods
        self.allocatable = observe(nodes=nodes, pods=[], tiers=tiers)
        self._by_namespace: dict[str, list[Mapping[str, Any]]] = {}
        for pod in pods:
            self._by_namespace.setdefault(pod["metadata"].get("namespace", ""), []).append(pod)

    def pods_in(self, namespace: str) -> list[Mapping[str, Any]]:
        return self._by_namespace.get(namespace, [])

    def site_up(self, status: Mapping[str, Any], *, replicas: int) -> bool:
        """Whether a placed SLA, not failed over and with no pod the scheduler gave up on, is at
        a site whose Ready nodes could hold its replicas were nothing else there. Its pods are
        then the scheduler's to place: contention shows as Unschedulable pods, which the next
        pass sees. Checked before the SLA's own capacity, which costs a pass over every pod."""
        placed = home_placement(status)
        if placed is None:
            return False
        site = (placed["tier"], placed.get("site"))
        gpus = int(placed.get("gpusPerReplica") or 1)
        return can_host(self.allocatable, site, replicas=replicas, gpus_per_replica=gpus)


def _history(
    status: Mapping[str, Any], *, now: datetime, reason: str
) -> list[dict[str, Any]] | None:
    """The placement history with the current placement appended; None when it is already the
    last entry (or the SLA is not placed)."""
    placement = status.get("placement") or {}
    if not placement.get("tier"):
        return None
    history = list((status.get("assurance") or {}).get("placementHistory") or [])
    last = history[-1] if history else {}
    if (last.get("tier"), last.get("site")) == (placement["tier"], placement.get("site")):
        return None
    entry = {
        "at": iso_seconds(now),
        "tier": placement["tier"],
        "site": placement.get("site"),
        "reason": reason[:1024],
    }
    return [*history, entry][-HISTORY_LENGTH:]


def unschedulable_since(pods: Sequence[Mapping[str, Any]]) -> datetime | None:
    """Since when the earliest of `pods` the scheduler could not place has been so; None when
    all were placed (or none was tried: no scheduler has looked at them yet)."""
    moments = [
        parse_iso(cond["lastTransitionTime"])
        for cond in map(unschedulable, pods)
        if cond is not None and cond.get("lastTransitionTime")
    ]
    return min(moments, default=None)


async def run_forever(loop_: AssuranceLoop, interval_s: float) -> None:
    """A pass every `interval_s` (start to start), at once when a Node changes, and when a step
    asked for one (`next_due`); a failed pass is logged, not fatal."""
    clock = asyncio.get_running_loop()
    while True:
        started = clock.time()
        # Cleared before the pass: a Node that changes during it wakes the next one.
        loop_.wake.clear()
        try:
            counts = await loop_.run_once()
            moved = {k.value: v for k, v in counts.items() if k is not Step.NONE}
            if moved:
                log.info("assurance pass: %s", moved)
        except Exception:
            log.exception("assurance pass failed; retrying in %.0f s", interval_s)
        wait = interval_s - (clock.time() - started)
        if loop_.next_due is not None:
            wait = min(wait, (loop_.next_due - loop_.clock()).total_seconds())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(loop_.wake.wait(), timeout=max(0.0, wait))


@kopf.on.event("v1", "nodes")
async def node_changed(type: str | None, body: kopf.Body, **_: Any) -> None:
    """Wake the loop when a Node's readiness, cordon or GPUs change (not on every heartbeat):
    a site that loses its nodes fails over within one pass, not one interval."""
    name = body["metadata"]["name"]
    seen = (
        schedulable(body),
        ((body.get("status") or {}).get("allocatable") or {}).get(GPU_RESOURCE),
    )
    if type == "DELETED":
        _nodes.pop(name, None)
    elif _nodes.get(name) == seen:
        return
    else:
        _nodes[name] = seen
    if _loop is not None:
        _loop.wake.set()


@kopf.on.startup()
async def start_assurance_loop(**_: Any) -> None:
    global _task, _loop
    runtime = state.open_runtime()
    _loop = AssuranceLoop(runtime.kube, runtime.settings)
    _task = asyncio.create_task(
        run_forever(_loop, runtime.settings.assurance_interval_seconds), name="assurance"
    )


@kopf.on.cleanup()
async def stop_assurance_loop(**_: Any) -> None:
    global _task, _loop
    _loop = None
    _nodes.clear()
    if _task is not None:
        _task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await _task
        _task = None
