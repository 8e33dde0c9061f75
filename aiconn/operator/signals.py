"""The scaling signals of the whole fleet from Prometheus, in three queries per pass.

In flight: the mean requests in flight at each SLA's gateways over the last minute, by Little's
law from the duration histogram's sum (`aiconn.inference.scaling.in_flight_query`, here summed by
SLA for the fleet at once). TTFT attainment over the last five minutes: the bucket at each SLA's
threshold (the gateway adds it to its buckets, so the count is exact) over the count; the buckets
come back by `le` for the fleet and each SLA picks its own, parsing `le` as a float because
Prometheus 3 writes `le="1"` as `le="1.0"`. The burn rate is not read here: the SLA engine writes
its burn rates to `status.period.burnRates`, and the shortest window's (w5m for a monthly SLA) is
the current burn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aiconn.sla import metricnames as mn

if TYPE_CHECKING:
    from aiconn.store.prometheus import QueryClient

_BY = f"{mn.NAMESPACE_LABEL}, {mn.SLA_LABEL}"
IN_FLIGHT = f"sum by ({_BY}) (rate({mn.GATEWAY_DURATION}_sum[1m]))"
TTFT_BUCKETS = f"sum by ({_BY}, le) (rate({mn.GATEWAY_TTFT}_bucket[5m]))"
TTFT_COUNT = f"sum by ({_BY}) (rate({mn.GATEWAY_TTFT}_count[5m]))"

Key = tuple[str, str]
"""(namespace, SLA name)."""


def read_signals(
    client: QueryClient, ttft_thresholds_s: Mapping[Key, float], *, timeout_s: int = 10
) -> dict[Key, tuple[float | None, float | None]]:
    """(requests in flight, TTFT attainment percent) per SLA; None where nothing was measured
    (no traffic in the window is no TTFT signal, not 100 %)."""
    in_flight = {
        key: value for key, value in _rows(client.custom_query(IN_FLIGHT, timeout=timeout_s))
    }
    counts = {
        key: value for key, value in _rows(client.custom_query(TTFT_COUNT, timeout=timeout_s))
    }
    within: dict[Key, float] = {}
    for series in client.custom_query(TTFT_BUCKETS, timeout=timeout_s):
        labels = series["metric"]
        key = (labels.get(mn.NAMESPACE_LABEL, ""), labels.get(mn.SLA_LABEL, ""))
        threshold = ttft_thresholds_s.get(key)
        if threshold is not None and float(labels.get("le", "nan")) == threshold:
            within[key] = float(series["value"][1])
    result: dict[Key, tuple[float | None, float | None]] = {}
    for key in ttft_thresholds_s:
        total = counts.get(key)
        attainment = None
        if total and key in within:
            attainment = 100.0 * within[key] / total
        result[key] = (in_flight.get(key), attainment)
    return result


def _rows(series: Sequence[Mapping[str, Any]]) -> list[tuple[Key, float]]:
    return [
        (
            (s["metric"].get(mn.NAMESPACE_LABEL, ""), s["metric"].get(mn.SLA_LABEL, "")),
            float(s["value"][1]),
        )
        for s in series
    ]
