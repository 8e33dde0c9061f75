"""Exception handlers: every failure becomes a JSON `{"detail": ...}` with the right status.

Client mistakes are 4xx with a message that names the parameter and what would be accepted;
an unreachable API server or database is 503 (the client may retry); anything else is a 500
that is logged here and says nothing about internals to the caller.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from aiconn.api.auth import AuthUnavailable
from aiconn.api.reports import PeriodError
from aiconn.api.slas import SLAUnavailable

RETRY_AFTER_SECONDS = "5"
log = logging.getLogger(__name__)


def _problem(code: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=code, content={"detail": detail}, headers=headers)


def _unavailable(what: str) -> JSONResponse:
    """503: `what` did not answer, and the client may retry after a while."""
    return _problem(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        f"{what} is unavailable; retry shortly",
        {"Retry-After": RETRY_AFTER_SECONDS},
    )


def describe_validation(err: RequestValidationError) -> str:
    """One line per problem: where it is and what was wrong."""
    parts = []
    for problem in err.errors():
        location = [str(p) for p in problem.get("loc", ())]
        where = f"{location[0]} parameter {'.'.join(location[1:])!r}" if location else "request"
        parts.append(f"{where}: {problem.get('msg', 'invalid')}")
    return "; ".join(parts) or "the request is not valid"


def install(app: FastAPI) -> None:
    """Register the handlers on `app`."""

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, err: RequestValidationError) -> JSONResponse:
        return _problem(status.HTTP_422_UNPROCESSABLE_CONTENT, describe_validation(err))

    @app.exception_handler(PeriodError)
    async def _period(_: Request, err: PeriodError) -> JSONResponse:
        return _problem(status.HTTP_400_BAD_REQUEST, str(err))

    @app.exception_handler(SLAUnavailable)
    @app.exception_handler(AuthUnavailable)
    async def _kube_down(_: Request, err: Exception) -> JSONResponse:
        log.warning("Kubernetes API unavailable: %s", err)
        return _unavailable("the Kubernetes API")

    @app.exception_handler(SQLAlchemyError)
    async def _ledger_down(_: Request, err: SQLAlchemyError) -> JSONResponse:
        log.warning("ledger unavailable: %s", type(err).__name__)
        return _unavailable("the ledger")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _problem(status.HTTP_500_INTERNAL_SERVER_ERROR, "internal error")
