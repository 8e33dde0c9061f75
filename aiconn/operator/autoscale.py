"""Scale an SLA's Deployment within `[replicas, maxReplicas]`, deciding with money.

Called by the assurance loop for a placed SLA that is not failed over, when
`AICONN_SCALING_ENABLED` is set and Prometheus is configured. The count comes from
`aiconn.inference.scaling.decide_replicas`; a scale-out is then weighed
(`aiconn.inference.stakes.weigh`): the tier's price for the added replicas until the period ends
against the credit the period pays if the current burn continues. When paying the credit is
cheaper the loop holds, and says so once (not every pass). A scale-in frees capacity and is
always taken. The chosen count is written to `status.assurance.replicas` first and the reconcile
applies it (`aiconn.inference.scaling.scaled`), so a spec edit or a restart keeps it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

from aiconn.inference.fulfilment import horizon
from aiconn.inference.scaling import Direction, ScalingPolicy, ScalingSignals, decide_replicas
from aiconn.inference.stakes import Forecast, capacity_cost, weigh
from aiconn.inference.throughput import ReplicaThroughput, replica_throughput
from aiconn.operator.kubeapi import KubeApi
from aiconn.operator.reconcile import reconcile_sla, refresh_readiness
from aiconn.operator.settings import OperatorSettings
from aiconn.resources.v1alpha1.assurance import HISTORY_LENGTH
from aiconn.resources.v1alpha1.kinds import SLA
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec
from aiconn.resources.v1alpha1.tier import InferenceTierSpec
from aiconn.sla.burnwindows import shortest_burn_rate
from aiconn.sla.timestamps import iso_seconds, parse_iso

PostEvent = Callable[[Mapping[str, Any], str, str, str], Awaitable[None]]
POLICY = ScalingPolicy()


async def scale(
    *,
    kube: KubeApi,
    settings: OperatorSettings,
    post_event: PostEvent,
    sla: Mapping[str, Any],
    spec: AIInferenceSLASpec,
    tiers: Mapping[str, InferenceTierSpec],
    signals: tuple[float | None, float | None],
    predicted: Forecast,
    now: datetime,
) -> None:
    """One scaling decision for `sla`, applied and recorded (see the module docstring)."""
    status = sla.get("status") or {}
    assurance = status.get("assurance") or {}
    placed = status.get("placement") or {}
    tier = tiers.get(placed.get("tier") or "")
    if tier is None or spec.capacity.max_replicas == spec.capacity.replicas:
        return
    current = int(assurance.get("replicas") or spec.capacity.replicas)
    scaled_at = assurance.get("scaledAt")
    in_flight, ttft = signals
    burn = shortest_burn_rate((status.get("period") or {}).get("burnRates") or {})
    decision = decide_replicas(
        current=current,
        low=spec.capacity.replicas,
        high=spec.capacity.max_replicas,
        signals=ScalingSignals(in_flight=in_flight, ttft_attainment_percent=ttft, burn_rate=burn),
        ttft_target_percent=spec.objectives.ttft.target_percent,
        policy=POLICY,
        now=now,
        last_change=None if scaled_at is None else parse_iso(scaled_at),
    )
    if decision.replicas == current:
        return
    throughput = replica_throughput(
        model=spec.model,
        gpu=tier.gpu,
        tensor_parallel_size=int(placed.get("tensorParallelSize") or 1),
        rate=spec.tokens.rate_limit,
        tpot_ms=spec.objectives.tpot.threshold_ms,
    )
    per_replica = (
        throughput.replica_tokens_per_second if isinstance(throughput, ReplicaThroughput) else 0.0
    )
    _, seconds = horizon(spec.objectives.window, now)
    cost = capacity_cost(
        replicas=abs(decision.replicas - current),
        replica_tokens_per_second=per_replica,
        price_per_million_tokens=tier.price_per_million_tokens,
        seconds=seconds,
    )
    weighing = weigh(
        cost=cost,
        expected_credit=predicted.credit,
        restores_service=False,
        currency=tier.currency,
    )
    act = weighing.act or decision.direction is Direction.IN
    why = (
        weighing.reason
        if decision.direction is Direction.OUT
        else (f"frees capacity ({weighing.amounts})")
    )
    action = {
        "at": iso_seconds(now),
        "action": decision.direction.value,
        "decision": "Act" if act else "Hold",
        "reason": f"{current} -> {decision.replicas}: {decision.reason}; {why}"[:1024],
        "capacityCost": str(cost),
        "expectedCredit": str(predicted.credit),
        "currency": tier.currency,
    }
    actions = list(assurance.get("actions") or [])
    if not act:
        last = actions[-1] if actions else {}
        if (last.get("action"), last.get("decision")) == (action["action"], "Hold"):
            return  # said once; the numbers move every pass
        actions.append(action)
        await kube.patch_status(
            SLA.kind,
            sla["metadata"]["name"],
            sla["metadata"]["namespace"],
            {"assurance": {"actions": actions[-HISTORY_LENGTH:]}},
        )
        await post_event(sla, "Normal", "ScaleHeld", action["reason"])
        return
    actions.append(action)
    meta = sla["metadata"]
    await kube.patch_status(
        SLA.kind,
        meta["name"],
        meta["namespace"],
        {
            "assurance": {
                "replicas": decision.replicas,
                "scaledAt": iso_seconds(now),
                "actions": actions[-HISTORY_LENGTH:],
            }
        },
    )
    body = await kube.get(SLA.kind, meta["name"], meta["namespace"])
    if body is None:
        return
    outcome = await reconcile_sla(kube, body, tiers, settings)
    written = await kube.update_status(
        SLA.kind,
        meta["name"],
        meta["namespace"],
        fields=outcome.status,
        conditions=outcome.conditions,
        current=body,
    )
    # Judged on the Deployment as its apply answered: look again now that the status is there.
    await refresh_readiness(kube, meta["namespace"], meta["name"], sla=written)
    reason = "ScaledOut" if decision.direction is Direction.OUT else "ScaledIn"
    await post_event(body, "Normal", reason, action["reason"])
