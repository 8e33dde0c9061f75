"""An SLA's objectives as OpenSLO v1 documents: a Service and one SLO per objective.

Availability is budgeted in Timeslices, as the SLA engine judges it: a one-minute slice is good
when at least 95 % of its in-contract requests succeeded, and the target is the share of good
minutes. TTFT and TPOT are budgeted in Occurrences: requests under the threshold (the gateway's
histogram bucket at it) over all requests. The metrics are counters (`counter: true`): the tool
reading them takes their rates, as it does for any Prometheus counter.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from aiconn.export.indicators import TIMESLICE, Indicator, indicators
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec, Window
from aiconn.sla.periods import period_containing

API_VERSION = "openslo/v1"
MAX_NAME = 63
CALENDAR_ORIGIN = datetime(2020, 1, 1, tzinfo=UTC)
"""Near where the calendar starts: the exported start is the aiconn period holding it."""


def dns_label(name: str) -> str:
    """OpenSLO names are RFC 1123 labels (63 characters); a longer one keeps its start and a
    hash of the whole, so distinct SLAs keep distinct names."""
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: MAX_NAME - 9].rstrip('-')}-{digest}"


def calendar_start(window: Window) -> str:
    """The start of an aiconn period of `window` (weeks start on Mondays, months on the 1st), so
    the exported calendar windows are the periods aiconn settles."""
    start = period_containing(window, CALENDAR_ORIGIN).start
    return start.strftime("%Y-%m-%d %H:%M:%S")


def _source(query: str) -> dict[str, Any]:
    return {"metricSource": {"type": "Prometheus", "spec": {"query": query}}}


def _time_window(window: Window) -> dict[str, Any]:
    if window.calendar_aligned:
        return {
            "duration": window.duration,
            "isRolling": False,
            "calendar": {"startTime": calendar_start(window), "timeZone": "UTC"},
        }
    return {"duration": window.duration, "isRolling": True}


def _objective(indicator: Indicator) -> dict[str, Any]:
    objective: dict[str, Any] = {
        "displayName": indicator.description,
        "target": round(indicator.target_percent / 100, 8),
    }
    if indicator.timeslice_good_percent is not None:
        objective["timeSliceTarget"] = round(indicator.timeslice_good_percent / 100, 8)
        objective["timeSliceWindow"] = TIMESLICE
    return objective


def openslo_documents(
    *, namespace: str, name: str, spec: AIInferenceSLASpec
) -> list[dict[str, Any]]:
    """The Service and the three SLOs of one SLA, in document order."""
    service = dns_label(f"{namespace}-{name}")
    labels = {"namespace": [namespace], "sla": [name], "tenant": [spec.tenant or namespace]}
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": API_VERSION,
            "kind": "Service",
            "metadata": {"name": service, "displayName": f"{namespace}/{name}", "labels": labels},
            "spec": {"description": f"Inference of {spec.model.name} under SLA {namespace}/{name}"},
        }
    ]
    for indicator in indicators(namespace=namespace, sla=name, spec=spec):
        slo_name = dns_label(f"{namespace}-{name}-{indicator.name}")
        docs.append(
            {
                "apiVersion": API_VERSION,
                "kind": "SLO",
                "metadata": {"name": slo_name, "labels": labels},
                "spec": {
                    "description": indicator.description,
                    "service": service,
                    "indicator": {
                        "metadata": {"name": dns_label(f"{namespace}-{name}-{indicator.name}-sli")},
                        "spec": {
                            "ratioMetric": {
                                "counter": True,
                                "good": _source(f"sum({indicator.good})"),
                                "total": _source(f"sum({indicator.total})"),
                            }
                        },
                    },
                    "timeWindow": [_time_window(spec.objectives.window)],
                    "budgetingMethod": indicator.budgeting.value,
                    "objectives": [_objective(indicator)],
                },
            }
        )
    return docs
