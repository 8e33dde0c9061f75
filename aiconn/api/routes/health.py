"""Probes: `/healthz` says the process serves; `/readyz` says it can answer real requests, i.e.
the ledger database and the Kubernetes API both respond. Neither needs a token (kubelets call
them) and neither says more than which dependency is down."""

from __future__ import annotations

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from aiconn.api.auth import AuthUnavailable
from aiconn.api.deps import Parts
from aiconn.api.models import Health
from aiconn.api.slas import SLAUnavailable

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness")
def healthz() -> Health:
    return Health(status="ok", checks={})


@router.get(
    "/readyz",
    response_model=Health,
    summary="Readiness: ledger and Kubernetes API reachable",
    responses={503: {"model": Health, "description": "A dependency is unreachable."}},
)
def readyz(parts: Parts) -> Health | JSONResponse:
    checks: dict[str, str] = {}
    try:
        with parts.ledger.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["ledger"] = "ok"
    except SQLAlchemyError as err:
        checks["ledger"] = f"unreachable ({type(err).__name__})"
    try:
        parts.reader.ping()
        checks["kubernetes"] = "ok"
    except (SLAUnavailable, AuthUnavailable):
        checks["kubernetes"] = "unreachable"
    if all(v == "ok" for v in checks.values()):
        return Health(status="ok", checks=checks)
    body = Health(status="unavailable", checks=checks).model_dump(by_alias=True)
    return JSONResponse(status_code=status.HTTP_503_SERVICE_UNAVAILABLE, content=body)
