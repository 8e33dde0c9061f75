"""An SLA's objectives as the SLO tools see them: which gateway series count as good, bad and
total, with the labels the PodMonitor gives every gateway series (`namespace`, `sla`).

The same counting as the SLA engine and the shipped PrometheusRule (`aiconn.sla.metricnames`):
availability is failed over in-contract requests; a latency objective is the histogram's bucket
at the threshold (the gateway adds it, so the count is exact) over its `+Inf` bucket.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec, LatencyObjective
from aiconn.sla import metricnames as mn
from aiconn.sla.sli import FAILED_PERCENT_LIMIT

TIMESLICE = "1m"
"""The availability verdict's slice: one minute, as the SLA engine judges it."""


class Budgeting(StrEnum):
    """How an objective spends its budget (OpenSLO's budgetingMethod)."""

    TIMESLICES = "Timeslices"
    OCCURRENCES = "Occurrences"


@dataclass(frozen=True)
class Indicator:
    """One objective of one SLA over the gateway's counters.

    `good`, `bad` and `total` are PromQL instant selectors of counters (summed over the SLA's
    replicas); the exporters wrap them in `rate(...[window])` or hand them to a tool that does.
    """

    name: str
    description: str
    target_percent: float
    budgeting: Budgeting
    good: str
    total: str
    bad: str | None = None
    """The failed requests' counter, where there is one; else bad is total minus good."""
    timeslice_good_percent: float | None = None
    """For Timeslices: the share of a slice's requests that must succeed for it to be good."""

    def total_rate(self, window: str) -> str:
        """Events per second over `window`, the SLA's replicas summed after the rate."""
        return f"sum(rate({self.total}[{window}]))"

    def bad_rate(self, window: str) -> str:
        """Bad events per second over `window`."""
        if self.bad is not None:
            return f"sum(rate({self.bad}[{window}]))"
        return f"({self.total_rate(window)} - sum(rate({self.good}[{window}])))"


def selector(namespace: str, sla: str, **matchers: str) -> str:
    """The label matchers of one SLA's gateway series; values with `~` prefix match as regex."""
    parts = [f'{mn.NAMESPACE_LABEL}="{namespace}"', f'{mn.SLA_LABEL}="{sla}"']
    for label, value in matchers.items():
        if value.startswith("~"):
            parts.append(f'{label}=~"{value[1:]}"')
        else:
            parts.append(f'{label}="{value}"')
    return "{" + ",".join(parts) + "}"


def le_pattern(threshold_seconds: float) -> str:
    """A regex for the `le` label of the threshold's bucket in either spelling: Prometheus 2
    keeps what the client wrote (`0.3`, `1.0`), Prometheus 3 normalizes (`1` may become `1.0`)."""
    value = round(threshold_seconds, 6)
    spellings = {repr(float(value)), f"{value:g}"}
    if float(value).is_integer():
        spellings.add(str(int(value)))
    return "|".join(sorted(s.replace(".", "\\\\.") for s in spellings))


def _latency(
    name: str, histogram: str, objective: LatencyObjective, namespace: str, sla: str
) -> Indicator:
    threshold = objective.threshold_ms / 1000
    good = f"{histogram}_bucket{selector(namespace, sla, le='~' + le_pattern(threshold))}"
    total = f"{histogram}_bucket{selector(namespace, sla, le='+Inf')}"
    return Indicator(
        name=name,
        description=(
            f"{name.upper()} at the token gateway at or under {objective.threshold_ms} ms"
            f" for {objective.target_percent} % of requests"
        ),
        target_percent=objective.target_percent,
        budgeting=Budgeting.OCCURRENCES,
        good=good,
        total=total,
    )


def indicators(*, namespace: str, sla: str, spec: AIInferenceSLASpec) -> list[Indicator]:
    """Availability (timeslices) and TTFT / TPOT (occurrences) of one SLA."""
    outcomes = "|".join(mn.IN_CONTRACT_OUTCOMES)
    failed = "|".join(mn.FAILED_OUTCOMES)
    requests = mn.GATEWAY_REQUESTS
    objectives = spec.objectives
    availability = Indicator(
        name="availability",
        description=(
            f"minutes in which at least {100 - FAILED_PERCENT_LIMIT} % of in-contract requests"
            f" succeeded, for {objectives.availability.target_percent} % of minutes"
        ),
        target_percent=objectives.availability.target_percent,
        budgeting=Budgeting.TIMESLICES,
        good=f"{requests}{selector(namespace, sla, outcome=mn.OUTCOME_SUCCESS)}",
        bad=f"{requests}{selector(namespace, sla, outcome='~' + failed)}",
        total=f"{requests}{selector(namespace, sla, outcome='~' + outcomes)}",
        timeslice_good_percent=float(100 - FAILED_PERCENT_LIMIT),
    )
    return [
        availability,
        _latency("ttft", mn.GATEWAY_TTFT, objectives.ttft, namespace, sla),
        _latency("tpot", mn.GATEWAY_TPOT, objectives.tpot, namespace, sla),
    ]
