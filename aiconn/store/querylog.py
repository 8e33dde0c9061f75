"""Recording the Prometheus queries a settlement was measured with, for its evidence.

`QueryRecorder` wraps the source's client and keeps every query and answer of one settlement
pass. The queries are batched over the fleet, so an answer holds other SLAs' series too; each
SLA's evidence hashes only its own part (the series carrying its `namespace` and `sla` labels,
plus aggregates that carry neither, such as whether Prometheus was scraping at all). Someone
holding the same Prometheus data can ask the same query and compare the hash, and no tenant's
evidence reveals another's traffic.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Unpack

from aiconn.sla import metricnames as mn
from aiconn.sla.evidence import QueryRecord, result_sha256
from aiconn.sla.timestamps import iso_z
from aiconn.store.prometheus import QueryClient, QueryOptions, RangeOptions


@dataclass(frozen=True)
class _Call:
    query: str
    by_sla: dict[tuple[str | None, str | None], list[Any]]
    """The answer's series by (namespace, sla) label: each SLA's evidence finds its own part
    without scanning the fleet's (a month's settlement hashes every SLA's)."""
    time: str | None = None
    start: str | None = None
    end: str | None = None
    step: str | None = None


class QueryRecorder:
    """A QueryClient that forwards to `client` and remembers each query and its answer."""

    def __init__(self, client: QueryClient) -> None:
        self.client = client
        self._calls: list[_Call] = []

    def custom_query(self, query: str, **options: Unpack[QueryOptions]) -> Any:
        result = self.client.custom_query(query, **options)
        at = (options.get("params") or {}).get("time")
        self._calls.append(
            _Call(query, _by_sla(result), time=None if at is None else _iso(float(at)))
        )
        return result

    def custom_query_range(self, query: str, **options: Unpack[RangeOptions]) -> Any:
        result = self.client.custom_query_range(query, **options)
        self._calls.append(
            _Call(
                query,
                _by_sla(result),
                start=_iso(options["start_time"].timestamp()),
                end=_iso(options["end_time"].timestamp()),
                step=options["step"],
            )
        )
        return result

    def records_for(self, namespace: str, name: str) -> tuple[QueryRecord, ...]:
        """Every recorded query, in order, with the hash of the series about this SLA."""
        return tuple(
            QueryRecord(
                query=call.query,
                result_sha256=result_sha256(
                    call.by_sla.get((namespace, name), []) + call.by_sla.get((None, None), [])
                ),
                time=call.time,
                start=call.start,
                end=call.end,
                step=call.step,
            )
            for call in self._calls
        )


def _by_sla(result: Any) -> dict[tuple[str | None, str | None], list[Any]]:
    grouped: dict[tuple[str | None, str | None], list[Any]] = {}
    for series in result if isinstance(result, list) else []:
        labels = series.get("metric", {}) if isinstance(series, dict) else {}
        key = (labels.get(mn.NAMESPACE_LABEL), labels.get(mn.SLA_LABEL))
        grouped.setdefault(key, []).append(series)
    return grouped


def _iso(timestamp: float) -> str:
    return iso_z(datetime.fromtimestamp(timestamp, UTC))
