"""NOC endpoints: the whole fleet, its per-tier and per-site summary, and Prometheus metrics.

All three need `list` on AIInferenceSLAs cluster-wide, `/metrics` included: per-SLA gauges name
every tenant's SLAs, so Prometheus scrapes with a service-account token bound to the NOC role.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from aiconn.api.deps import FleetCaller, Parts
from aiconn.api.fleetview import fleet_items, group_summaries
from aiconn.api.models import Fleet, FleetSummary
from aiconn.api.routes.responses import NOC

router = APIRouter(tags=["noc"], responses=NOC)


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
    "/metrics",
    summary="Per-SLA gauges in the Prometheus text format",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def metrics(_: FleetCaller, parts: Parts) -> Response:
    return Response(content=generate_latest(parts.registry), media_type=CONTENT_TYPE_LATEST)
