"""An SLA's objectives as a Sloth spec (`prometheus/v1`), from which `sloth generate` writes the
multi-window burn-rate recording and alerting rules.

Sloth counts events, so every objective goes in as error/total queries over `{{.window}}`; the
availability objective's errors are failed in-contract requests, exactly the error ratio of
aiconn's own PrometheusRule. Sloth's prometheus/v1 spec carries no period: it is chosen at
generate time (`--default-slo-period`), and `sloth_period` says which one matches the SLA's window.
"""

from __future__ import annotations

from typing import Any

from aiconn.export.indicators import indicators
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec, Window

SPEC_VERSION = "prometheus/v1"
WINDOW = "{{.window}}"
# Sloth ships window catalogs for these periods; a calendar month is budgeted as 30 days.
_PERIODS = {"1M": "30d", "30d": "30d", "28d": "28d", "4w": "28d"}


class UnsupportedWindow(ValueError):
    """The SLA's window has no Sloth period catalog."""


def sloth_period(window: Window) -> str:
    """The `--default-slo-period` for the SLA's window (a calendar month is 30 days)."""
    period = _PERIODS.get(window.duration)
    if period is None:
        raise UnsupportedWindow(
            f"spec.objectives.window.duration: {window.duration!r} has no Sloth period"
            f" (Sloth's windows are for {', '.join(sorted(set(_PERIODS.values())))})"
        )
    return period


def sloth_spec(*, namespace: str, name: str, spec: AIInferenceSLASpec) -> dict[str, Any]:
    """The Sloth spec of one SLA: one SLO per objective, paging and ticketing on its burn."""
    sloth_period(spec.objectives.window)
    slos = []
    for indicator in indicators(namespace=namespace, sla=name, spec=spec):
        title = indicator.name.upper() if indicator.name != "availability" else "Availability"
        slos.append(
            {
                "name": indicator.name,
                "objective": indicator.target_percent,
                "description": indicator.description,
                "sli": {
                    "events": {
                        "error_query": indicator.bad_rate(WINDOW),
                        "total_query": indicator.total_rate(WINDOW),
                    }
                },
                "alerting": {
                    "name": f"AIInferenceSLA{title}BudgetBurn",
                    "annotations": {
                        "summary": f"SLA {namespace}/{name} burns its {indicator.name} budget"
                    },
                    "page_alert": {"labels": {"severity": "critical"}},
                    "ticket_alert": {"labels": {"severity": "warning"}},
                },
            }
        )
    return {
        "version": SPEC_VERSION,
        "service": f"{namespace}-{name}",
        "labels": {"namespace": namespace, "sla": name, "tenant": spec.tenant or namespace},
        "slos": slos,
    }
