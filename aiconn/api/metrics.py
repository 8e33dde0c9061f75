"""Per-SLA gauges for Prometheus, computed from the SLAs at scrape time.

The API does not keep its own copy of the numbers: each scrape reads the SLAs (from the cache when
it is on) and emits one sample per SLA, so a deleted SLA's series simply ends. The availability
budget is exported exactly, in millionths of a percent and labelled with the SLA's window, so the
PrometheusRule's burn-rate alerts compare each SLA's bad minutes with the same integer budget, over
the same windows, as the operator (`aiconn.sla.alertrules`). Evaluation age is the alarm for a
stalled SLA engine: numbers that stop moving look healthy on every other gauge.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from aiconn.api.fleetview import fleet_items
from aiconn.api.slas import SLAReader
from aiconn.sla import metricnames as mn
from aiconn.sla.budget import budget_millionths

COMPLIANT = "aiconn_sla_compliant"
BUDGET_REMAINING = "aiconn_sla_budget_remaining_percent"
CREDITS_ACCRUED = "aiconn_sla_credits_accrued"
EVALUATION_AGE = "aiconn_sla_evaluation_age_seconds"
AVAILABILITY = "aiconn_sla_availability_percent"
TTFT_ATTAINMENT = "aiconn_sla_ttft_attainment_percent"
TPOT_ATTAINMENT = "aiconn_sla_tpot_attainment_percent"
AVAILABILITY_OBJECTIVE = "aiconn_sla_availability_objective_ratio"
AVAILABILITY_BUDGET = mn.SLA_AVAILABILITY_BUDGET
BURN_RATE = "aiconn_sla_burn_rate"
BURN_WINDOW_LABEL = "burn_window"
LABELS = (mn.NAMESPACE_LABEL, mn.SLA_LABEL, "tenant", "tier", "site")
_FAMILIES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (COMPLIANT, "1 when the Compliant condition is True, 0 when False", LABELS),
    (BUDGET_REMAINING, "Availability error budget left this period", LABELS),
    (
        CREDITS_ACCRUED,
        "Credits this period would pay if it closed now, in the SLA currency",
        (*LABELS, "currency"),
    ),
    (EVALUATION_AGE, "Seconds since the SLA engine last evaluated the SLA", LABELS),
    (AVAILABILITY, "Availability this period", LABELS),
    (TTFT_ATTAINMENT, "Requests within the TTFT threshold this period", LABELS),
    (TPOT_ATTAINMENT, "Requests within the TPOT threshold this period", LABELS),
    (AVAILABILITY_OBJECTIVE, "Availability target as a ratio (0.999)", LABELS),
    (
        AVAILABILITY_BUDGET,
        "Availability error budget in millionths of a percent (99.9 % gives 100000)",
        (*LABELS, mn.WINDOW_LABEL),
    ),
    (
        BURN_RATE,
        "Availability burn rate the SLA engine measured, by window (1 = on budget)",
        (*LABELS, BURN_WINDOW_LABEL),
    ),
)
"""Each gauge's name, help and labels, in the order a scrape lists them."""


class FleetCollector(Collector):
    """Yields the fleet's gauges on every collect."""

    def __init__(self, reader: SLAReader, *, clock: Callable[[], datetime] | None = None) -> None:
        self._reader = reader
        self._clock = clock or (lambda: datetime.now(UTC))

    def collect(self) -> Iterator[Metric]:
        slas = self._reader.all()
        items = fleet_items(slas, self._clock())
        families = {
            name: GaugeMetricFamily(name, documentation, labels=labels)
            for name, documentation, labels in _FAMILIES
        }
        targets = {
            (s.namespace, s.name): s.spec.objectives.availability.target_percent for s in slas
        }
        windows = {(s.namespace, s.name): s.spec.objectives.window.duration for s in slas}
        burns = {
            (s.namespace, s.name): (s.status.period.burn_rates or {}) if s.status.period else {}
            for s in slas
        }
        for item in items:
            labels = [item.namespace, item.name, item.tenant, item.tier or "", item.site or ""]
            if item.compliant != "Unknown":
                families[COMPLIANT].add_metric(labels, 1.0 if item.compliant == "True" else 0.0)
            optional = (
                (BUDGET_REMAINING, item.budget_remaining_percent),
                (EVALUATION_AGE, item.evaluation_age_seconds),
                (AVAILABILITY, item.availability_percent),
                (TTFT_ATTAINMENT, item.ttft_attainment_percent),
                (TPOT_ATTAINMENT, item.tpot_attainment_percent),
            )
            for name, value in optional:
                if value is not None:
                    families[name].add_metric(labels, value)
            if item.credits_accrued is not None:
                # A Prometheus sample is a float: the exact amount is the API's (creditsAccrued).
                credits = float(item.credits_accrued)
                families[CREDITS_ACCRUED].add_metric([*labels, item.currency], credits)
            target = targets[(item.namespace, item.name)]
            families[AVAILABILITY_OBJECTIVE].add_metric(labels, round(target / 100.0, 9))
            families[AVAILABILITY_BUDGET].add_metric(
                [*labels, windows[(item.namespace, item.name)]],
                float(budget_millionths([target])[0]),
            )
            for window, rate in burns[(item.namespace, item.name)].items():
                if rate is not None:
                    families[BURN_RATE].add_metric([*labels, window], rate)
        yield from families.values()


def fleet_registry(reader: SLAReader) -> CollectorRegistry:
    """A registry of its own per app, so two apps in one process never share series."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(reader))
    return registry
