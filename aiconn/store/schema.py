"""The ledger's tables as SQLModel rows: what `aiconn.store.ledger` reads and writes.

The tables themselves are created and changed by the numbered migrations
(`aiconn.store.migrations`), which describe them with their own frozen definitions; these rows
follow the schema the migrations leave, column for column.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, Text
from sqlmodel import Field, SQLModel


class PeriodRow(SQLModel):
    """The columns every ledger table has (the migrations' `_seq_column` and `_period_columns`):
    the row's place, for paging, and the period it is about, its end exclusive."""

    seq: int | None = Field(default=None, primary_key=True)
    period_start: datetime = Field(sa_type=DateTime(timezone=True))
    period_end: datetime = Field(sa_type=DateTime(timezone=True))


class SlaPeriodRow(PeriodRow):
    """A row about one SLA's period, the SLA by uid and by name (the migrations' `_sla_columns`)."""

    sla_uid: str
    sla_namespace: str
    sla_name: str


class TransferRow(SlaPeriodRow, table=True):
    """A stored transfer (table created by migration 1)."""

    __tablename__ = "transfers"

    # Indexed here alone, as migration 1 made it (`_sla_columns(indexed_uid=True)`).
    sla_uid: str = Field(index=True)
    id: str = Field(unique=True)
    idempotency_key: str = Field(unique=True)
    debit_account: str = Field(index=True)
    credit_account: str = Field(index=True)
    amount: int = Field(sa_type=BigInteger)
    unit: str
    kind: str
    created_at: datetime = Field(sa_type=DateTime(timezone=True))
    meta: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column("metadata", JSON, nullable=False)
    )
    # Migration 9: the offer's price version a charge was made at (None: not a priced line).
    price_version: int | None = None


class SettlementRow(SlaPeriodRow, table=True):
    """A stored settlement, unique per SLA and period (table created by migration 1)."""

    __tablename__ = "settlements"

    tenant: str
    state: str
    currency: str
    tokens_used: int = Field(sa_type=BigInteger)
    charges_micros: int = Field(sa_type=BigInteger)
    credit_micros: int = Field(sa_type=BigInteger)
    credit_tokens: int = Field(sa_type=BigInteger)
    credit_percent: str
    coverage_percent: float | None
    availability_percent: float | None
    ttft_attainment_percent: float | None
    tpot_attainment_percent: float | None
    transfer_ids: list[str] = Field(
        default_factory=list, sa_column=Column("transfer_ids", JSON, nullable=False)
    )
    created_at: datetime = Field(sa_type=DateTime(timezone=True))
    # Migration 2: what a held period would credit, and the review that released it.
    held_credit_micros: int | None = Field(default=None, sa_type=BigInteger)
    held_credit_tokens: int | None = Field(default=None, sa_type=BigInteger)
    reviewed_by: str | None = None
    reviewed_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    review_note: str | None = None
    # Migration 3: whether the latency attainments were exact, and why a period was held.
    ttft_exact: bool | None = None
    tpot_exact: bool | None = None
    hold_reason: str | None = None
    # Migration 5: the minutes behind the availability figure.
    judged_minutes: int | None = Field(default=None, sa_type=BigInteger)
    good_minutes: int | None = Field(default=None, sa_type=BigInteger)
    bad_minutes: int | None = Field(default=None, sa_type=BigInteger)
    excused_minutes: int | None = Field(default=None, sa_type=BigInteger)
    # Migration 8: the plan's exchange rate the usage was converted to wallet units at.
    units_per_million_tokens: int | None = Field(default=None, sa_type=BigInteger)
    # Migration 9: the offer's price version the period was charged at.
    price_version: int | None = None
    # Migration 10: the error budget left as settled, an exact decimal like `credit_percent`.
    budget_remaining_percent: str | None = None


class EvidenceRow(SlaPeriodRow, table=True):
    """The evidence of one settlement (table created by migration 5)."""

    __tablename__ = "settlement_evidence"

    document: str = Field(sa_type=Text)
    sha256: str
    created_at: datetime = Field(sa_type=DateTime(timezone=True))


class UsageRow(PeriodRow, table=True):
    """Tokens metered so far in one SLA's open period (table created by migration 2)."""

    __tablename__ = "period_usage"

    sla_uid: str
    tenant: str = Field(index=True)
    tokens: int = Field(sa_type=BigInteger)
    measured_at: datetime = Field(sa_type=DateTime(timezone=True))


class PeriodTermsRow(PeriodRow, table=True):
    """The terms pinned for one SLA period (table created by migration 7)."""

    __tablename__ = "period_terms"

    sla_uid: str
    terms: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column("terms", JSON, nullable=False)
    )
    pinned_at: datetime = Field(sa_type=DateTime(timezone=True))


class PlanCloseRow(PeriodRow, table=True):
    """The close of one tenant's plan period (table created by migration 8)."""

    __tablename__ = "plan_closes"

    subject: str
    tenant: str
    offer: str
    summary: dict[str, Any] = Field(default_factory=dict, sa_column=Column("summary", JSON))
    transfer_ids: list[str] = Field(default_factory=list, sa_column=Column("transfer_ids", JSON))
    closed_at: datetime = Field(sa_type=DateTime(timezone=True))
