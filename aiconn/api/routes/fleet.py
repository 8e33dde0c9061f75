"""NOC endpoints: the whole fleet, its per-tier and per-site summary, its history (budget over
time, settled credits, Events) and Prometheus metrics.

All of them need `list` on AIInferenceSLAs cluster-wide, `/metrics` included: per-SLA gauges name
every tenant's SLAs, so Prometheus scrapes with a service-account token bound to the NOC role.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from urllib3.exceptions import HTTPError

from aiconn.api.deps import FleetCaller, Parts
from aiconn.api.fleetview import fleet_items, group_summaries
from aiconn.api.models import (
    Activity,
    CreditsByPeriod,
    Fleet,
    FleetHistory,
    FleetSummary,
    FleetWallets,
)
from aiconn.api.nochistory import HistoryUnavailable, activity, credits_by_period, history
from aiconn.api.routes.responses import NOC, problem
from aiconn.api.slas import SLAUnavailable
from aiconn.api.wallets import currencies_by_tenant, wallets
from aiconn.kube import KubeError

router = APIRouter(tags=["noc"], responses=NOC)
MAX_HISTORY_MINUTES = 7 * 24 * 60
MAX_PERIODS = 120
MAX_EVENTS = 1000

HistoryMinutes = Annotated[
    int, Query(ge=1, le=MAX_HISTORY_MINUTES, description="How far back, in minutes.")
]
NewestPeriods = Annotated[
    int, Query(ge=1, le=MAX_PERIODS, description="The newest this many periods.")
]
EventLimit = Annotated[int, Query(ge=1, le=MAX_EVENTS, description="At most this many.")]


@router.get("/v1/fleet", response_model=Fleet, summary="Every SLA, riskiest first")
def fleet(_: FleetCaller, parts: Parts) -> Fleet:
    now = datetime.now(UTC)
    return Fleet(generated_at=now, items=fleet_items(parts.reader.all(), now))


@router.get("/v1/fleet/summary", response_model=FleetSummary, summary="The fleet per tier and site")
def fleet_summary(_: FleetCaller, parts: Parts) -> FleetSummary:
    now = datetime.now(UTC)
    items = fleet_items(parts.reader.all(), now)
    return FleetSummary(
        generated_at=now,
        by_tier=group_summaries(items, lambda i: i.tier),
        by_site=group_summaries(items, lambda i: i.site),
    )


@router.get(
    "/v1/fleet/wallets",
    response_model=FleetWallets,
    summary="Every tenant's balance, burn and projected exhaustion, soonest first",
)
def fleet_wallets(_: FleetCaller, parts: Parts) -> FleetWallets:
    currencies = currencies_by_tenant(parts.reader.all())
    return FleetWallets(generated_at=datetime.now(UTC), wallets=wallets(parts.ledger, currencies))


@router.get(
    "/metrics",
    summary="Per-SLA gauges in the Prometheus text format",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def metrics(_: FleetCaller, parts: Parts) -> Response:
    return Response(content=generate_latest(parts.registry), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/v1/fleet/history",
    response_model=FleetHistory,
    summary="Budget and attainment of every SLA over time (from Prometheus)",
    responses={
        404: problem("No Prometheus is configured for the API."),
        503: problem("Prometheus did not answer."),
    },
)
def fleet_history(_: FleetCaller, parts: Parts, minutes: HistoryMinutes = 60) -> FleetHistory:
    url = parts.settings.prometheus_url
    if url is None:
        raise HTTPException(
            status_code=status.HTTP_404_NOT_FOUND,
            detail="no history: the API has no Prometheus (set AICONN_API_PROMETHEUS_URL)",
        )
    now = datetime.now(UTC)
    try:
        step, found = history(url, minutes=minutes, now=now)
    except HistoryUnavailable as err:
        raise HTTPException(
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=f"{err}; retry shortly",
            headers={"Retry-After": "5"},
        ) from err
    return FleetHistory(start=now - timedelta(minutes=minutes), end=now, step_seconds=step, **found)


@router.get(
    "/v1/fleet/credits",
    response_model=CreditsByPeriod,
    summary="Credits settled in the ledger per period, every SLA together",
)
def fleet_credits(_: FleetCaller, parts: Parts, periods: NewestPeriods = 12) -> CreditsByPeriod:
    return CreditsByPeriod(items=credits_by_period(parts.ledger.settlements(), periods=periods))


@router.get(
    "/v1/fleet/events",
    response_model=Activity,
    summary="Kubernetes Events on SLAs and their slices in every namespace, newest first",
)
def fleet_events(
    _: FleetCaller,
    parts: Parts,
    limit: EventLimit = 100,
    warnings_only: Annotated[bool, Query(alias="warningsOnly")] = False,
) -> Activity:
    try:
        items = activity(parts.kube, limit=limit, warnings_only=warnings_only)
    except (KubeError, HTTPError) as err:
        raise SLAUnavailable(f"events not listed: {type(err).__name__}") from err
    return Activity(items=items)
