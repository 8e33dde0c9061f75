"""How many replicas an SLA runs, within `[replicas, maxReplicas]`, from its SLO signals.

A pure function of the signals the gateway measures, the current count and the time of the last
change, so the table test can play ten minutes of load in microseconds. Three signals ask for
more replicas; only one allows fewer:

- load: requests in flight at the gateways (queued ones included, since a request queued in vLLM
  is in flight at the gateway) per replica above `target_in_flight_per_replica` asks for as many
  replicas as put each at the target;
- latency: short-window TTFT attainment below the objective's target asks for one more;
- budget: a short-window availability burn rate above `burn_rate_out` asks for one more.

Fewer replicas only when none of them asks for more, the burn is at most 1 (on budget), and the
load would fit on one replica fewer at `scale_in_fraction` of the target or less. The gap
between the two thresholds is the hysteresis: after scaling out at the target, the same load
sits far above the scale-in line, so a steady load held at the threshold scales at most once
and never back. Cooldowns after each change (short for out, long for in) let the new replica
take load before the signal is read again; a missing signal never scales in.

In-flight requests come from the gateway's duration histogram by Little's law: the mean number
in flight over a window is `rate(aiconn_gateway_request_duration_seconds_sum[w])` summed over
the SLA's gateways (`in_flight_query`), so no new metric is needed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec
from aiconn.sla.metricnames import GATEWAY_DURATION, NAMESPACE_LABEL, SLA_LABEL


class Direction(StrEnum):
    OUT = "ScaleOut"
    IN = "ScaleIn"
    HOLD = "Hold"


@dataclass(frozen=True)
class ScalingPolicy:
    """Thresholds and cooldowns; the defaults suit an interactive chat workload."""

    target_in_flight_per_replica: float = 8.0
    """Concurrent requests a replica serves within its TTFT objective."""
    scale_in_fraction: float = 0.5
    """Scale in only when the load fits one replica fewer at this share of the target."""
    burn_rate_out: float = 2.0
    """Short-window availability burn above which one more replica is asked for."""
    up_cooldown: timedelta = timedelta(seconds=60)
    """No second scale-out within this time of a change."""
    down_cooldown: timedelta = timedelta(minutes=5)
    """No scale-in within this time of a change."""


@dataclass(frozen=True)
class ScalingSignals:
    """What the gateways measured over the short window; None where nothing was measured."""

    in_flight: float | None = None
    """Requests in flight over all replicas, queued ones included."""
    ttft_attainment_percent: float | None = None
    """Share of requests within the TTFT threshold over the short window."""
    burn_rate: float | None = None
    """Availability burn rate over the short window (1 = on budget)."""


@dataclass(frozen=True)
class ScalingDecision:
    replicas: int
    direction: Direction
    reason: str


def decide_replicas(
    *,
    current: int,
    low: int,
    high: int,
    signals: ScalingSignals,
    ttft_target_percent: float,
    policy: ScalingPolicy,
    now: datetime,
    last_change: datetime | None,
) -> ScalingDecision:
    """The replica count for now, never outside `[low, high]` (see the module docstring)."""
    if current < low or current > high:
        bounded = min(max(current, low), high)
        direction = Direction.OUT if bounded > current else Direction.IN
        return ScalingDecision(bounded, direction, f"{current} is outside [{low}, {high}]")
    since = now - last_change if last_change is not None else None

    wants: list[tuple[int, str]] = []
    target = policy.target_in_flight_per_replica
    if signals.in_flight is not None and signals.in_flight > target * current:
        wants.append(
            (
                math.ceil(signals.in_flight / target),
                f"{signals.in_flight / current:.1f} in flight per replica > {target:g}",
            )
        )
    ttft = signals.ttft_attainment_percent
    if ttft is not None and ttft < ttft_target_percent:
        wants.append((current + 1, f"TTFT attainment {ttft:.2f} % < {ttft_target_percent:g} %"))
    burn = signals.burn_rate
    if burn is not None and burn > policy.burn_rate_out:
        wants.append((current + 1, f"burn rate {burn:.2f} > {policy.burn_rate_out:g}"))

    if wants:
        wanted, _ = max(wants)
        why = "; ".join(reason for _, reason in wants)
        if current >= high:
            return ScalingDecision(current, Direction.HOLD, f"{why}; at maxReplicas {high}")
        if since is not None and since < policy.up_cooldown:
            return ScalingDecision(current, Direction.HOLD, f"{why}; cooling down")
        return ScalingDecision(min(wanted, high), Direction.OUT, why)

    if current <= low or signals.in_flight is None or (burn is not None and burn > 1):
        return ScalingDecision(current, Direction.HOLD, "no signal asks for a change")
    floor = target * policy.scale_in_fraction
    per_replica_after = signals.in_flight / (current - 1)
    if per_replica_after > floor:
        return ScalingDecision(current, Direction.HOLD, "within the hysteresis band")
    if since is not None and since < policy.down_cooldown:
        return ScalingDecision(current, Direction.HOLD, "load is low; cooling down")
    return ScalingDecision(
        current - 1,
        Direction.IN,
        f"{per_replica_after:.1f} in flight per replica on {current - 1} <= {floor:g}",
    )


def scaled(spec: AIInferenceSLASpec, status: Mapping[str, Any]) -> AIInferenceSLASpec:
    """`spec` with the replica count the loop chose (`status.assurance.replicas`), kept within
    `[replicas, maxReplicas]` so a spec edit that narrows the range wins at once."""
    chosen = (status.get("assurance") or {}).get("replicas")
    if chosen is None:
        return spec
    capacity = spec.capacity
    count = min(max(int(chosen), capacity.replicas), capacity.max_replicas)
    return spec.model_copy(update={"capacity": capacity.model_copy(update={"replicas": count})})


def in_flight_query(*, namespace: str, sla: str, window: str = "1m") -> str:
    """PromQL for the mean requests in flight at the SLA's gateways over `window` (Little's law)."""
    selector = f'{NAMESPACE_LABEL}="{namespace}",{SLA_LABEL}="{sla}"'
    return f"sum(rate({GATEWAY_DURATION}_sum{{{selector}}}[{window}]))"
