"""What the NOC page shows of the past, read from where it is kept, never from the browser tab.

- Budget and attainment over time come from Prometheus (`query_range` over the per-SLA gauges the
  API itself exports on /metrics, aiconn.api.metrics), so an engineer who opens the page after an
  incident sees the dip, not a flat line that starts at page load.
- Settled credits by period come from the ledger: the money actually paid, period by period.
- The activity feed is the Kubernetes Events on AIInferenceSLAs (placements, breaches,
  settlements, reconcile failures) and on their NetworkSlices (a slice that cannot be
  realized), newest first, as `kubectl get events` would show them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from aiconn.api import metrics as gauges
from aiconn.api.models import (
    ActivityEvent,
    HistorySeries,
    PeriodCredits,
)
from aiconn.kube import KINDS, LIST_PAGE, Kube, parse_list
from aiconn.resources.v1alpha1.kinds import NETWORK_SLICE, SLA
from aiconn.sla import metricnames as mn
from aiconn.sla.accounting import Settlement, SettlementState
from aiconn.sla.timestamps import parse_iso

HISTORY_GAUGES = {
    "budget": gauges.BUDGET_REMAINING,
    "availability": gauges.AVAILABILITY,
    "ttft": gauges.TTFT_ATTAINMENT,
    "tpot": gauges.TPOT_ATTAINMENT,
}
# At most this many points per series: enough for a 640-unit-wide chart, small on the wire.
MAX_POINTS = 360
PROMETHEUS_TIMEOUT_SECONDS = 10.0
FEED_KINDS = (SLA.kind, NETWORK_SLICE.kind)
# Events kept by the API server are bounded by their TTL (1 h by default); this caps a list
# on a cluster configured to keep far more.
MAX_EVENTS_LISTED = 5000
MICROS = Decimal(1_000_000)


class HistoryUnavailable(Exception):
    """Prometheus could not answer (the API answers 503 with this message)."""


def step_seconds(minutes: int) -> int:
    """The query_range step that gives at most MAX_POINTS points over `minutes`."""
    return max(math.ceil(minutes * 60 / MAX_POINTS), 1)


def history(
    prometheus_url: str, *, minutes: int, now: datetime
) -> tuple[int, dict[str, list[HistorySeries]]]:
    """Every SLA's series for each gauge in HISTORY_GAUGES over the last `minutes`."""
    step = step_seconds(minutes)
    end = now.timestamp()
    start = (now - timedelta(minutes=minutes)).timestamp()
    found: dict[str, list[HistorySeries]] = {}
    with httpx.Client(base_url=prometheus_url, timeout=PROMETHEUS_TIMEOUT_SECONDS) as client:
        for key, metric in HISTORY_GAUGES.items():
            query = f"max by ({mn.NAMESPACE_LABEL}, {mn.SLA_LABEL}) ({metric})"
            params: dict[str, str | float] = {
                "query": query,
                "start": start,
                "end": end,
                "step": step,
            }
            found[key] = _series(_query_range(client, params))
    return step, found


def _query_range(client: httpx.Client, params: dict[str, str | float]) -> list[dict[str, Any]]:
    try:
        response = client.get("/api/v1/query_range", params=params)
        body = response.json()
    except (httpx.HTTPError, ValueError) as err:
        raise HistoryUnavailable(f"Prometheus did not answer: {type(err).__name__}") from err
    if response.status_code != httpx.codes.OK or body.get("status") != "success":
        raise HistoryUnavailable(f"Prometheus refused the query: {body.get('error', response)}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _series(result: list[dict[str, Any]]) -> list[HistorySeries]:
    series = [
        HistorySeries(
            namespace=r["metric"].get(mn.NAMESPACE_LABEL, ""),
            name=r["metric"].get(mn.SLA_LABEL, ""),
            points=[(float(t), round(float(v), 4)) for t, v in r["values"] if _finite(v)],
        )
        for r in result
    ]
    return sorted(series, key=lambda s: (s.namespace, s.name))


def _finite(value: str) -> bool:
    return math.isfinite(float(value))


def credits_by_period(settlements: Sequence[Settlement], *, periods: int) -> list[PeriodCredits]:
    """Credits settled per period and currency, the newest `periods` periods, oldest first."""
    groups: dict[tuple[datetime, datetime, str], list[Settlement]] = defaultdict(list)
    for s in settlements:
        groups[(s.period.start, s.period.end, s.currency)].append(s)
    starts = sorted({start for start, _, _ in groups}, reverse=True)[:periods]
    kept = [k for k in sorted(groups) if k[0] in starts]
    out = []
    for start, end, currency in kept:
        members = groups[(start, end, currency)]
        settled = [s for s in members if s.state != SettlementState.HELD_FOR_REVIEW]
        micros = sum(s.credit_micros for s in settled)
        out.append(
            PeriodCredits(
                period_start=start,
                period_end=end,
                currency=currency,
                credit_micros=micros,
                credits=Decimal(micros) / MICROS,
                slas=len(members),
                held_for_review=len(members) - len(settled),
            )
        )
    return out


def activity(kube: Any, *, limit: int, warnings_only: bool) -> list[ActivityEvent]:
    """The newest `limit` Events on FEED_KINDS in every namespace, newest first (`kube`: the
    API's ApiClient; a refusal is raised as `aiconn.kube.KubeError`)."""
    events = Kube(kube)
    found: list[tuple[ActivityEvent, int]] = []
    for kind in FEED_KINDS:
        # Field selectors cannot say "one of", so each kind is its own list.
        selector = f"involvedObject.kind={kind}" + (",type=Warning" if warnings_only else "")
        token: str | None = None
        listed = 0
        while listed < MAX_EVENTS_LISTED:
            query = [
                ("fieldSelector", selector),
                ("limit", LIST_PAGE),
                *((("continue", token),) if token else ()),
            ]
            # Each Event read as the feed shows it as it is parsed: a page is never whole.
            answer = events.api.request("GET", KINDS["Event"].path(None), query=query)
            page, token = parse_list(answer, _entry)
            found.extend(page)
            listed += len(page)
            if not token:
                break
    # Event timestamps have whole seconds; within one second, the later write comes first.
    found.sort(key=lambda pair: (pair[0].time, pair[1]), reverse=True)
    return [event for event, _ in found[:limit]]


def _entry(event: dict[str, Any]) -> tuple[ActivityEvent, int]:
    return _activity(event), _revision(event)


def _revision(event: dict[str, Any]) -> int:
    """The etcd revision of the Event's last write, when the server exposes it as a number."""
    version = (event.get("metadata") or {}).get("resourceVersion") or ""
    return int(version) if version.isdigit() else 0


def _activity(event: dict[str, Any]) -> ActivityEvent:
    meta = event.get("metadata") or {}
    at = (
        event.get("lastTimestamp")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or meta.get("creationTimestamp")
    )
    obj = event.get("involvedObject") or {}
    source = event.get("source") or {}
    return ActivityEvent(
        time=parse_iso(at).astimezone(UTC) if at else datetime.fromtimestamp(0, UTC),
        type=event.get("type") or "Normal",
        reason=event.get("reason") or "",
        kind=obj.get("kind") or "",
        namespace=obj.get("namespace") or meta.get("namespace") or "",
        name=obj.get("name") or "",
        message=event.get("message") or "",
        count=event.get("count") or 1,
        source=source.get("component") or event.get("reportingComponent"),
    )
