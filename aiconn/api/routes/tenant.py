"""Tenant endpoints: SLAs, period reports, the wallet and its statement, all in one namespace.

Each route reads only after `deps` has authorized the namespace; the SLA's tenant picks the
wallet, so a statement never shows another tenant's transfers.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Literal, TypeVar

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import Response

from aiconn.api.csvout import CSV_MEDIA_TYPE, report_csv, statement_csv
from aiconn.api.deps import (
    Parts,
    ReadableNamespace,
    ReadableSLA,
    not_found,
    page_size,
    settlement_of,
)
from aiconn.api.models import (
    NamespaceWallets,
    PeriodReport,
    SLADetail,
    SLAList,
    Statement,
    StatementEntryOut,
)
from aiconn.api.reports import (
    CURRENT,
    current_report,
    detail,
    period_transfers,
    resolve_period,
    settled_report,
    summary,
)
from aiconn.api.routes.responses import TENANT, problem
from aiconn.api.wallets import currencies_by_tenant
from aiconn.api.wallets import wallet as wallet_of
from aiconn.sla.accounting import wallet_account
from aiconn.sla.periods import current_period

router = APIRouter(prefix="/v1/namespaces/{namespace}", tags=["tenant"], responses=TENANT)

Format = Literal["json", "csv"]
CSV_CONTENT = {CSV_MEDIA_TYPE: {"schema": {"type": "string"}}}
_Result = TypeVar("_Result")


def _wants_csv(
    fmt: Annotated[
        Format | None,
        Query(alias="format", description="json or csv; without it the Accept header decides."),
    ] = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> bool:
    if fmt is not None:
        return fmt == "csv"
    return accept is not None and CSV_MEDIA_TYPE in accept and "application/json" not in accept


WantsCsv = Annotated[bool, Depends(_wants_csv)]
"""Whether a route that answers JSON or CSV answers CSV: `?format=`, else the Accept header."""


def _as_asked(
    result: _Result, wants_csv: bool, to_csv: Callable[[_Result], str], filename: str
) -> _Result | Response:
    """`result` as JSON, or when CSV was asked for, as a CSV download named `filename`."""
    if not wants_csv:
        return result
    return Response(
        content=to_csv(result),
        media_type=f"{CSV_MEDIA_TYPE}; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/slas", response_model=SLAList, summary="The namespace's SLAs with compliance")
def list_slas(namespace: ReadableNamespace, parts: Parts) -> SLAList:
    return SLAList(
        namespace=namespace, items=[summary(s) for s in parts.reader.in_namespace(namespace)]
    )


@router.get("/slas/{name}", response_model=SLADetail, summary="One SLA: spec, status, compliance")
def get_sla(sla: ReadableSLA) -> SLADetail:
    return detail(sla)


@router.get(
    "/slas/{name}/report",
    response_model=PeriodReport,
    summary="A period report: attainment, budget, usage, credits and penalties",
    responses={
        200: {"content": CSV_CONTENT},
        400: problem("`period` names no reportable period."),
    },
)
def report(
    sla: ReadableSLA,
    parts: Parts,
    wants_csv: WantsCsv,
    period: Annotated[
        str,
        Query(
            max_length=64,
            description="current, a month YYYY-MM, or a period start such as 2025-01-01T00:00:00Z",
        ),
    ] = CURRENT,
) -> PeriodReport | Response:
    now = datetime.now(UTC)
    closed = resolve_period(period, sla.spec.objectives.window, now)
    if closed is None:
        open_period = current_period(sla.spec.objectives.window, now)
        result = current_report(sla, now, parts.ledger.pinned_terms(sla.uid, open_period.start))
    else:
        settlement = settlement_of(parts.ledger, sla, closed)
        result = settled_report(
            sla,
            settlement,
            period_transfers(parts.ledger, sla.uid, settlement.period),
            parts.ledger.pinned_terms(sla.uid, settlement.period.start),
        )
    stamp = result.period_start.strftime("%Y-%m-%d")
    return _as_asked(result, wants_csv, report_csv, f"{sla.namespace}-{sla.name}-{stamp}.csv")


@router.get(
    "/slas/{name}/statement",
    response_model=Statement,
    summary="The SLA tenant's wallet transfers, oldest first, one page at a time",
    responses={200: {"content": CSV_CONTENT}},
)
def statement(
    sla: ReadableSLA,
    parts: Parts,
    wants_csv: WantsCsv,
    limit: Annotated[
        int | None, Query(ge=1, description="Entries per page (at most the server's page limit).")
    ] = None,
    after: Annotated[
        int | None, Query(ge=0, le=2**62, description="`nextAfter` of the previous page.")
    ] = None,
    unit: Annotated[
        str | None,
        Query(max_length=32, pattern=r"^[A-Za-z0-9-]+$", description="tokens or e.g. EUR-micro."),
    ] = None,
) -> Statement | Response:
    size = page_size(parts.settings, limit, what="entries", follow="nextAfter")
    account = wallet_account(sla.tenant)
    page = parts.ledger.statement(account, unit=unit, after=after, limit=size)
    result = Statement(
        tenant=sla.tenant,
        account=account,
        unit=unit,
        entries=[
            StatementEntryOut(
                seq=e.transfer.seq,
                id=e.transfer.id,
                created_at=e.transfer.created_at,
                kind=e.transfer.kind,
                sla_namespace=e.transfer.sla_namespace,
                sla_name=e.transfer.sla_name,
                period_start=e.transfer.period.start,
                debit_account=e.transfer.debit_account,
                credit_account=e.transfer.credit_account,
                amount=e.transfer.amount,
                signed_amount=e.signed_amount,
                unit=e.transfer.unit,
                price_version=e.transfer.price_version,
            )
            for e in page.entries
        ],
        next_after=page.next_after,
    )
    return _as_asked(result, wants_csv, statement_csv, f"{sla.tenant}-statement.csv")


@router.get(
    "/wallet",
    response_model=NamespaceWallets,
    summary="Balances, burn and projected exhaustion of the namespace's tenants' wallets",
)
def wallet(namespace: ReadableNamespace, parts: Parts) -> NamespaceWallets:
    """Balances, the recent burn and the projected exhaustion date of each tenant's tokens
    (method: aiconn.sla.exhaustion)."""
    slas = parts.reader.in_namespace(namespace)
    if not slas:
        raise not_found()
    currencies = currencies_by_tenant(slas)
    found = [wallet_of(parts.ledger, tenant, held) for tenant, held in sorted(currencies.items())]
    return NamespaceWallets(namespace=namespace, wallets=found)
