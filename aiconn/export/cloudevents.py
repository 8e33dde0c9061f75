"""The ledger's transfers and settlements as CloudEvents (spec 1.0, JSON structured mode), the
format OpenMeter and other billing systems ingest.

Ids are stable: a transfer's event id is the transfer's own id (a uuid5 of its idempotency key),
a settlement's a uuid5 of its SLA and period, so exporting again, or from a restored database,
names every event the same and a consumer deduplicates on (source, id). Amounts are integers
(tokens, currency micro-units) with the exact decimal beside money; attainments are decimal
strings. Never a float: a billing system must not round.

The feed is read with a cursor `<transfer seq>.<settlement seq>`: the highest of each already
read, so a page never skips a row whichever of the two tables grew.
"""

from __future__ import annotations

import heapq
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlmodel import Session, col, select

from aiconn.sla.timestamps import as_utc, iso_z
from aiconn.store.ledger import Ledger
from aiconn.store.schema import SettlementRow, TransferRow

SPEC_VERSION = "1.0"
SOURCE_PREFIX = "/aiconn/namespaces/"
TRANSFER_TYPE = "io.aiconn.ledger.transfer.{kind}.v1"
SETTLEMENT_TYPE = "io.aiconn.sla.settlement.v1"
WALLET_PREFIX = "wallet:"
MICRO_SUFFIX = "-micro"
MICROS = Decimal(1_000_000)
# uuid5 namespace of settlement event ids.
_SETTLEMENT_NAMESPACE = uuid.UUID("4c0d3e8a-6f0b-5c35-8a8e-736574746c65")
START = "0.0"
_CURSOR = re.compile(r"([0-9]{1,18})\.([0-9]{1,18})")


class BadCursor(ValueError):
    """The cursor is not `<transfer seq>.<settlement seq>`."""


@dataclass(frozen=True)
class Cursor:
    """Where a page ends: the last transfer and settlement sequence numbers read."""

    transfer: int = 0
    settlement: int = 0

    @classmethod
    def parse(cls, text: str) -> Cursor:
        match = _CURSOR.fullmatch(text)
        if match is None:
            raise BadCursor(f"cursor {text!r} is not <transfer seq>.<settlement seq>")
        return cls(transfer=int(match[1]), settlement=int(match[2]))

    def __str__(self) -> str:
        return f"{self.transfer}.{self.settlement}"


@dataclass(frozen=True)
class Page:
    """Events oldest first; `next_cursor` continues after them, now or once more is written."""

    events: list[dict[str, Any]]
    next_cursor: Cursor
    more: bool
    """Whether more events were already there than the page held."""


def _time(at: datetime) -> str:
    """`at` in RFC 3339 with `Z`; the ledger's naive datetimes are UTC."""
    return iso_z(as_utc(at))


def _decimal(value: float | None) -> str | None:
    """A stored percentage as the decimal it was written as (`repr` is the shortest exact)."""
    return None if value is None else str(Decimal(repr(value)))


def _money(micros: int) -> str:
    return str((Decimal(micros) / MICROS).quantize(Decimal("0.000001")))


def settlement_id(sla_uid: str, period_start: datetime) -> str:
    """The stable event id of one SLA's settlement of the period starting at `period_start`."""
    return str(uuid.uuid5(_SETTLEMENT_NAMESPACE, f"{sla_uid}/{_time(period_start)}"))


def _tenant_of(row: TransferRow, tenants: dict[str, str]) -> str:
    for account in (row.credit_account, row.debit_account):
        if account.startswith(WALLET_PREFIX):
            return account.removeprefix(WALLET_PREFIX)
    return tenants.get(row.sla_uid, row.sla_namespace)


def _envelope(
    *, id: str, type: str, namespace: str, subject: str, at: datetime, data: dict[str, Any]
) -> dict[str, Any]:
    return {
        "specversion": SPEC_VERSION,
        "id": id,
        "source": f"{SOURCE_PREFIX}{namespace}",
        "type": type,
        "subject": subject,
        "time": _time(at),
        "datacontenttype": "application/json",
        "data": data,
    }


def transfer_event(row: TransferRow, tenant: str) -> dict[str, Any]:
    """One ledger transfer: usage, charge, allowance, credit, penalty or top-up."""
    data: dict[str, Any] = {
        "transferId": row.id,
        "kind": row.kind,
        "tenant": tenant,
        "namespace": row.sla_namespace,
        "sla": row.sla_name,
        "slaUid": row.sla_uid,
        "debitAccount": row.debit_account,
        "creditAccount": row.credit_account,
        "amount": row.amount,
        "unit": row.unit,
        "periodStart": _time(row.period_start),
        "periodEnd": _time(row.period_end),
    }
    if row.unit.endswith(MICRO_SUFFIX):
        data["currency"] = row.unit.removesuffix(MICRO_SUFFIX)
        data["amountDecimal"] = _money(row.amount)
    return _envelope(
        id=row.id,
        type=TRANSFER_TYPE.format(kind=row.kind),
        namespace=row.sla_namespace,
        subject=f"{tenant}/{row.sla_name}",
        at=row.created_at,
        data=data,
    )


def settlement_event(row: SettlementRow) -> dict[str, Any]:
    """One period's settlement (or hold): usage, charges and credit with the attainments."""
    data: dict[str, Any] = {
        "tenant": row.tenant,
        "namespace": row.sla_namespace,
        "sla": row.sla_name,
        "slaUid": row.sla_uid,
        "periodStart": _time(row.period_start),
        "periodEnd": _time(row.period_end),
        "state": row.state,
        "currency": row.currency,
        "tokensUsed": row.tokens_used,
        "chargesMicros": row.charges_micros,
        "charges": _money(row.charges_micros),
        "creditMicros": row.credit_micros,
        "credit": _money(row.credit_micros),
        "creditTokens": row.credit_tokens,
        "creditPercent": row.credit_percent,
        "coveragePercent": _decimal(row.coverage_percent),
        "availabilityPercent": _decimal(row.availability_percent),
        "ttftAttainmentPercent": _decimal(row.ttft_attainment_percent),
        "tpotAttainmentPercent": _decimal(row.tpot_attainment_percent),
        "holdReason": row.hold_reason,
        "transferIds": list(row.transfer_ids),
    }
    return _envelope(
        id=settlement_id(row.sla_uid, row.period_start),
        type=SETTLEMENT_TYPE,
        namespace=row.sla_namespace,
        subject=f"{row.tenant}/{row.sla_name}",
        at=row.created_at,
        data=data,
    )


def export_page(ledger: Ledger, *, namespace: str | None, cursor: Cursor, limit: int) -> Page:
    """Up to `limit` events after `cursor`, of one namespace (all when None), oldest first."""
    transfers = select(TransferRow).where(col(TransferRow.seq) > cursor.transfer)
    settlements = select(SettlementRow).where(col(SettlementRow.seq) > cursor.settlement)
    if namespace is not None:
        transfers = transfers.where(TransferRow.sla_namespace == namespace)
        settlements = settlements.where(SettlementRow.sla_namespace == namespace)
    with Session(ledger.engine) as session:
        t_rows = list(session.exec(transfers.order_by(col(TransferRow.seq)).limit(limit + 1)))
        s_rows = list(session.exec(settlements.order_by(col(SettlementRow.seq)).limit(limit + 1)))
        uids = {r.sla_uid for r in t_rows}
        tenants = {
            r.sla_uid: r.tenant
            for r in session.exec(select(SettlementRow).where(col(SettlementRow.sla_uid).in_(uids)))
        }
    # Each table is taken in its own sequence order, so the cursor never passes an unread row.
    merged = heapq.merge(
        [(_time(r.created_at), 0, r.seq or 0, r) for r in t_rows],
        [(_time(r.created_at), 1, r.seq or 0, r) for r in s_rows],
        key=lambda item: (item[0], item[1], item[2]),
    )
    events: list[dict[str, Any]] = []
    last_t, last_s = cursor.transfer, cursor.settlement
    for _at, _table, seq, row in merged:
        if len(events) == limit:
            break
        if isinstance(row, TransferRow):
            events.append(transfer_event(row, _tenant_of(row, tenants)))
            last_t = seq
        elif isinstance(row, SettlementRow):
            events.append(settlement_event(row))
            last_s = seq
    more = len(t_rows) + len(s_rows) > len(events)
    return Page(events=events, next_cursor=Cursor(transfer=last_t, settlement=last_s), more=more)
