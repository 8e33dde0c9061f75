"""The PromQL both readers of the gateway's metrics share: the operator's Prometheus reader
(`aiconn.store.prometheus`) and the alert rules Prometheus evaluates itself
(`aiconn.sla.alertrules`). Written once, so the two count the same series the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiconn.sla import metricnames as mn

UP_SELECTOR = 'up{sla!=""}'
"""The scrape state of the SLAs' targets (the ServiceMonitor gives them the `sla` label)."""
MONITORING_SELECTOR = "up"
"""Any scrape at all: a minute without one is a minute monitoring did not see."""
BY_SLA = f"{mn.NAMESPACE_LABEL}, {mn.SLA_LABEL}"
"""The labels every per-SLA aggregate is grouped by."""
POD_LABEL = "pod"
"""The label that tells one gateway's series from another's (the ServiceMonitor sets it)."""


def pod_counter(
    counter: str, outcomes: Sequence[str] = (), *, by: str = "", offset: str = ""
) -> str:
    """A counter's latest value per pod (and `by`) at each evaluation time (`offset` before it),
    summed over the pod's other series: the sum of one process's counters is itself a counter.

    A plain instant selector: the latest sample at or before the evaluation time (within
    Prometheus's 5-minute look-back, and none after a staleness marker); a boundary without one
    carries the previous value (`aiconn.store.prometheus.counter_increments`).
    """
    matcher = f'{{{mn.OUTCOME_LABEL}=~"{"|".join(outcomes)}"}}' if outcomes else ""
    extra = f", {by}" if by else ""
    shift = f" offset {offset}" if offset else ""
    return f"sum by ({BY_SLA}, {POD_LABEL}{extra}) ({counter}{matcher}{shift})"
