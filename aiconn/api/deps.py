"""The dependencies every route declares: the app's parts, the caller, and what it may read.

Order matters for tenant isolation. A namespaced route first authenticates (401 without a valid
token), then asks whether the caller may `get` AIInferenceSLAs in the namespace, and only then
looks the SLA up. A refusal and a missing SLA both raise the same `not_found()`, so the status
code and body say nothing about another tenant's namespace or SLAs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry

from aiconn.api.auth import Authorizer, Caller
from aiconn.api.settings import ApiSettings
from aiconn.api.slas import SLA, SLAReader
from aiconn.resources.v1alpha1.names import DNS_LABEL_PATTERN, STRICT_DNS_SUBDOMAIN_PATTERN
from aiconn.sla.accounting import Settlement
from aiconn.sla.periods import Period
from aiconn.store.ledger import Ledger

NOT_FOUND = "not found"


@dataclass(frozen=True)
class AppParts:
    """What the routes work with, built once by `create_app`."""

    settings: ApiSettings
    ledger: Ledger
    reader: SLAReader
    authorizer: Authorizer
    registry: CollectorRegistry
    kube: Any = None
    """The API's Kubernetes ApiClient (the NOC's activity feed lists Events with it)."""


def not_found() -> HTTPException:
    """The one answer for "does not exist" and "not yours"."""
    return HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=NOT_FOUND)


def settlement_of(ledger: Ledger, sla: SLA, period: Period, *, missing: str = "") -> Settlement:
    """The settlement of the SLA's closed `period`; a 404 naming the period while it has none
    (`missing`: what else the caller is told is missing with it)."""
    settlement = ledger.settlement(sla.uid, period)
    if settlement is None:
        raise HTTPException(
            status_code=status.HTTP_404_NOT_FOUND,
            detail=f"period {period.start_iso} of this SLA has no settlement{missing}"
            " (closed periods are settled by the operator shortly after they end)",
        )
    return settlement


def page_size(settings: ApiSettings, limit: int | None, *, what: str, follow: str) -> int:
    """The page size asked for (`limit`), or the default; over the largest page a 422 that says
    how to get the rest (`follow`: the cursor to pass on)."""
    size = settings.default_page_size if limit is None else limit
    if size > settings.max_page_size:
        raise HTTPException(
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"query parameter 'limit': {size} is over the largest page,"
            f" {settings.max_page_size} {what}; follow {follow} for more",
        )
    return size


def _parts(request: Request) -> AppParts:
    parts: AppParts = request.app.state.parts
    return parts


Parts = Annotated[AppParts, Depends(_parts)]

_bearer = HTTPBearer(
    auto_error=False,
    description="A Kubernetes bearer token (checked with TokenReview), or a static token.",
)


def _caller(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)], parts: Parts
) -> Caller:
    if credentials is None or not credentials.credentials:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="send a bearer token: Authorization: Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    caller = parts.authorizer.authenticate(credentials.credentials)
    if caller is None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="the bearer token is not valid",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return caller


CurrentCaller = Annotated[Caller, Depends(_caller)]

NamespaceName = Annotated[
    str,
    Path(
        min_length=1,
        max_length=63,
        pattern=DNS_LABEL_PATTERN,
        description="Namespace of the SLA (a DNS label).",
    ),
]
SLAName = Annotated[
    str,
    Path(
        min_length=1,
        max_length=253,
        pattern=STRICT_DNS_SUBDOMAIN_PATTERN,
        description="Name of the AIInferenceSLA (a DNS subdomain).",
    ),
]


def _readable_namespace(namespace: NamespaceName, caller: CurrentCaller, parts: Parts) -> str:
    if not parts.authorizer.may_read_namespace(caller, namespace):
        raise not_found()
    return namespace


ReadableNamespace = Annotated[str, Depends(_readable_namespace)]


def _readable_sla(namespace: ReadableNamespace, name: SLAName, parts: Parts) -> SLA:
    sla = parts.reader.get(namespace, name)
    if sla is None:
        raise not_found()
    return sla


ReadableSLA = Annotated[SLA, Depends(_readable_sla)]


def _fleet_caller(caller: CurrentCaller, parts: Parts) -> Caller:
    if not parts.authorizer.may_read_fleet(caller):
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN,
            detail="fleet views need permission to list aiinferenceslas.aiconn.io"
            " in all namespaces (the NOC role)",
        )
    return caller


FleetCaller = Annotated[Caller, Depends(_fleet_caller)]
