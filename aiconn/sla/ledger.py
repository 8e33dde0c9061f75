"""The double-entry ledger that SLA settlements move tokens and money in.

Every transfer moves a positive integer `amount` of one `unit` out of `debit_account` into
`credit_account`; an account's balance in a unit is what it received minus what it gave, so the
balances of all accounts in a unit always sum to zero (Σ debits == Σ credits). Transfers are
immutable: a correction is a new transfer.

Idempotency follows TigerBeetle: each transfer carries a client-chosen key, unique in the
database, `<sla uid>/<period start>/<kind>`. Posting it again returns the stored transfer when the
contents match and raises `TransferConflict` when they differ. Safety against double payment comes
from the database's unique constraints, not from locks in this process, so two settlers racing on
PostgreSQL are safe: the loser's insert waits for the winner's commit, fails, and re-reads.

Accounts and units (the scheme every settlement follows):

- `allowance` -> `wallet:<tenant>`, tokens (`allowance`): the period's commitment, funding the
  wallet the gateway checks before serving (402 when empty).
- `wallet:<tenant>` -> `revenue`, tokens (`usage`): tokens the tenant consumed.
- `wallet:<tenant>` -> `revenue`, `<CUR>-micro` (`charge`): what that usage costs.
- `sla-penalty` -> `wallet:<tenant>`, tokens (`credit`): the credit, paid back in tokens at the
  SLA's price, so the tenant can spend it through the gateway.
- `revenue` -> `sla-penalty`, `<CUR>-micro` (`penalty`): the same credit's money value, moved from
  revenue into the penalty expense; revenue in currency is then net of penalties.

Money is integer micro-units of the currency (see `aiconn.sla.credits`); tokens are integers.
Wallets may go negative: metering records what was served, even past the allowance.

Within an open period the wallet's transfers do not yet show what the tenant used: usage is posted
when the period settles. The SLA loop therefore records each SLA's tokens metered so far in the
period (`record_usage`, one row per SLA and period, overwritten each pass, not a transfer), and
`available_tokens` is the wallet balance minus the usage recorded for periods not yet settled:
what the gateway enforces (402 when spent). A held-for-review period's usage stays pending, so it
keeps counting against the wallet until it is settled.

Settling a period writes the settlement row (unique per SLA and period), its transfers and its
evidence (`aiconn.sla.evidence`: the minute verdicts, counts, queries and terms the credit was
decided on) in one database transaction, so a crash between computing and committing leaves
nothing, and a retry settles exactly once, with one evidence document.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Engine,
    Text,
    bindparam,
    create_engine,
    event,
    func,
)
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import ConnectionPoolEntry
from sqlmodel import Field, Session, SQLModel, col, select

from aiconn.sla.credits import attainment_percent, to_micros, tokens_for_amount
from aiconn.sla.evaluate import SLAEvaluation
from aiconn.sla.evidence import Decided, Measured, canonical, evidence_document, sha256_of
from aiconn.sla.exhaustion import OpenUsage
from aiconn.sla.migrations import migrate
from aiconn.sla.periods import Period
from aiconn.sla.terms import PeriodTerms
from aiconn.sla.timestamps import as_utc

TOKENS = "tokens"
ALLOWANCE = "allowance"
REVENUE = "revenue"
SLA_PENALTY = "sla-penalty"
SQLITE_BUSY_TIMEOUT_MS = 30_000
# uuid5 namespace for transfer ids: the same idempotency key always names the same transfer id.
_TRANSFER_NAMESPACE = uuid.UUID("6d1f1b2e-4a52-5b8e-9c1e-61696c656467")


class Kind(StrEnum):
    """Why a transfer exists; part of its idempotency key."""

    ALLOWANCE = "allowance"
    USAGE = "usage"
    CHARGE = "charge"
    CREDIT = "credit"
    PENALTY = "penalty"


class SettlementState(StrEnum):
    """Outcome of settling a period."""

    SETTLED = "Settled"
    HELD_FOR_REVIEW = "HeldForReview"


class HoldReason(StrEnum):
    """Why a closed period was held for review instead of paid."""

    LOW_COVERAGE = "LowCoverage"
    """Data coverage below the floor (or no minute judged at all)."""
    INEXACT_ATTAINMENT = "InexactAttainment"
    """A latency attainment interpolated inside a bucket could earn a different credit."""
    TERMS_UNKNOWN = "TermsUnknown"
    """No terms were pinned for the period and its offer is gone: the usage is recorded, the
    price is the reviewer's to settle (released, it charges nothing; corrections are new
    transfers)."""


def wallet_account(tenant: str) -> str:
    """The tenant's token wallet."""
    return f"wallet:{tenant}"


def currency_unit(currency: str) -> str:
    """The ledger unit for a currency: integer micro-units, e.g. `EUR-micro`."""
    return f"{currency}-micro"


def idempotency_key(sla_uid: str, period: Period, kind: str) -> str:
    """`<sla uid>/<period start>/<kind>`: one transfer of each kind per SLA and period."""
    return f"{sla_uid}/{period.start_iso}/{kind}"


class TransferConflict(Exception):
    """A transfer with this idempotency key exists with different contents."""

    def __init__(self, key: str, differences: Mapping[str, tuple[Any, Any]]) -> None:
        detail = ", ".join(f"{k}: stored {a!r}, posted {b!r}" for k, a, b in _triples(differences))
        super().__init__(f"transfer {key!r} already exists with different contents ({detail})")
        self.key = key
        self.differences = dict(differences)


class LedgerInvariantError(Exception):
    """Σ debits != Σ credits in some unit, or a malformed transfer: the ledger is corrupt."""


class TransferRow(SQLModel, table=True):
    """A stored transfer (table created by migration 1)."""

    __tablename__ = "transfers"

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(unique=True)
    idempotency_key: str = Field(unique=True)
    debit_account: str = Field(index=True)
    credit_account: str = Field(index=True)
    amount: int = Field(sa_type=BigInteger)
    unit: str
    kind: str
    sla_uid: str = Field(index=True)
    sla_namespace: str
    sla_name: str
    period_start: datetime = Field(sa_type=DateTime(timezone=True))
    period_end: datetime = Field(sa_type=DateTime(timezone=True))
    created_at: datetime = Field(sa_type=DateTime(timezone=True))
    meta: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column("metadata", JSON, nullable=False)
    )
    # Migration 9: the offer's price version a charge was made at (None: not a priced line).
    price_version: int | None = None


class SettlementRow(SQLModel, table=True):
    """A stored settlement, unique per SLA and period (table created by migration 1)."""

    __tablename__ = "settlements"

    seq: int | None = Field(default=None, primary_key=True)
    sla_uid: str
    sla_namespace: str
    sla_name: str
    tenant: str
    period_start: datetime = Field(sa_type=DateTime(timezone=True))
    period_end: datetime = Field(sa_type=DateTime(timezone=True))
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


class EvidenceRow(SQLModel, table=True):
    """The evidence of one settlement (table created by migration 5)."""

    __tablename__ = "settlement_evidence"

    seq: int | None = Field(default=None, primary_key=True)
    sla_uid: str
    sla_namespace: str
    sla_name: str
    period_start: datetime = Field(sa_type=DateTime(timezone=True))
    period_end: datetime = Field(sa_type=DateTime(timezone=True))
    document: str = Field(sa_type=Text)
    sha256: str
    created_at: datetime = Field(sa_type=DateTime(timezone=True))


class UsageRow(SQLModel, table=True):
    """Tokens metered so far in one SLA's open period (table created by migration 2)."""

    __tablename__ = "period_usage"

    seq: int | None = Field(default=None, primary_key=True)
    sla_uid: str
    tenant: str = Field(index=True)
    period_start: datetime = Field(sa_type=DateTime(timezone=True))
    period_end: datetime = Field(sa_type=DateTime(timezone=True))
    tokens: int = Field(sa_type=BigInteger)
    measured_at: datetime = Field(sa_type=DateTime(timezone=True))


class PeriodTermsRow(SQLModel, table=True):
    """The terms pinned for one SLA period (table created by migration 7)."""

    __tablename__ = "period_terms"

    seq: int | None = Field(default=None, primary_key=True)
    sla_uid: str
    period_start: datetime = Field(sa_type=DateTime(timezone=True))
    period_end: datetime = Field(sa_type=DateTime(timezone=True))
    terms: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column("terms", JSON, nullable=False)
    )
    pinned_at: datetime = Field(sa_type=DateTime(timezone=True))


@dataclass(frozen=True)
class TermsPin:
    """Terms to pin for one SLA period unless terms are pinned for it already."""

    sla_uid: str
    period: Period
    terms: PeriodTerms


_SETTLEMENT_OF_PERIOD = select(SettlementRow).where(
    SettlementRow.sla_uid == bindparam("sla_uid"),
    SettlementRow.period_start == bindparam("period_start"),
)
_TRANSFERS_OF_PERIOD = (
    select(TransferRow)
    .where(
        TransferRow.sla_uid == bindparam("sla_uid"),
        TransferRow.period_start == bindparam("period_start"),
    )
    .order_by(col(TransferRow.seq))
)
"""One SLA's transfers of one period, in posting order (params `sla_uid`, `period_start`)."""


@dataclass(frozen=True)
class StoredEvidence:
    """A settlement's evidence as stored: the document's text and the hash written with it."""

    sla_uid: str
    period: Period
    text: str
    sha256: str

    @property
    def document(self) -> dict[str, Any]:
        """The parsed document; ValueError when the stored text is not a JSON object."""
        parsed = json.loads(self.text)
        if not isinstance(parsed, dict):
            raise ValueError(f"a JSON {type(parsed).__name__}, not an object")
        return parsed


@dataclass(frozen=True)
class UsageReading:
    """One SLA's tokens metered from its period's start until `measured_at`."""

    sla_uid: str
    tenant: str
    period: Period
    tokens: int
    measured_at: datetime

    def __post_init__(self) -> None:
        if self.tokens < 0:
            raise ValueError(f"tokens must not be negative, got {self.tokens}")


@dataclass(frozen=True)
class TransferSpec:
    """The contents of a transfer to post; two posts with equal specs are the same transfer."""

    debit_account: str
    credit_account: str
    amount: int
    unit: str
    kind: str
    sla_uid: str
    sla_namespace: str
    sla_name: str
    period: Period
    metadata: dict[str, Any] = field(default_factory=dict)
    price_version: int | None = None
    """The offer's price version the line was charged at (settlement lines; None elsewhere)."""

    def __post_init__(self) -> None:
        if self.amount <= 0:
            raise ValueError(f"transfer amount must be a positive integer, got {self.amount}")
        if self.debit_account == self.credit_account:
            raise ValueError(f"transfer debits and credits the same account {self.debit_account!r}")

    @property
    def key(self) -> str:
        """The idempotency key."""
        return idempotency_key(self.sla_uid, self.period, self.kind)


@dataclass(frozen=True)
class Transfer:
    """A posted transfer."""

    seq: int
    id: str
    idempotency_key: str
    debit_account: str
    credit_account: str
    amount: int
    unit: str
    kind: str
    sla_uid: str
    sla_namespace: str
    sla_name: str
    period: Period
    created_at: datetime
    metadata: dict[str, Any]
    price_version: int | None = None
    """The offer's price version the line was charged at (None: not a priced line)."""

    def spec(self) -> TransferSpec:
        """The contents, for comparison with a replayed post."""
        return TransferSpec(
            debit_account=self.debit_account,
            credit_account=self.credit_account,
            amount=self.amount,
            unit=self.unit,
            kind=self.kind,
            sla_uid=self.sla_uid,
            sla_namespace=self.sla_namespace,
            sla_name=self.sla_name,
            period=self.period,
            metadata=self.metadata,
            price_version=self.price_version,
        )


@dataclass(frozen=True)
class Settlement:
    """A settled (or held) period of one SLA."""

    sla_uid: str
    sla_namespace: str
    sla_name: str
    tenant: str
    period: Period
    state: SettlementState
    currency: str
    tokens_used: int
    charges_micros: int
    credit_micros: int
    credit_tokens: int
    credit_percent: Decimal
    coverage_percent: float | None
    availability_percent: float | None
    ttft_attainment_percent: float | None
    tpot_attainment_percent: float | None
    transfer_ids: tuple[str, ...]
    created_at: datetime
    reviewed_by: str | None = None
    """Who released this period from review (None: settled when it closed, or still held)."""
    reviewed_at: datetime | None = None
    review_note: str | None = None
    ttft_exact: bool | None = None
    """False when the TTFT attainment was interpolated inside a bucket (None: not recorded)."""
    tpot_exact: bool | None = None
    """False when the TPOT attainment was interpolated inside a bucket (None: not recorded)."""
    hold_reason: HoldReason | None = None
    """Why the period was held for review; None when it settled."""
    judged_minutes: int | None = None
    """Minutes the availability objective covered (None: settled before this was recorded)."""
    good_minutes: int | None = None
    bad_minutes: int | None = None
    excused_minutes: int | None = None
    """Minutes excused by maintenance announced in advance (neither good, bad nor unknown)."""
    price_version: int | None = None
    """The offer's price version the period was charged at (None: settled before versions)."""
    units_per_million_tokens: int | None = None
    """The token plan's exchange rate for the SLA's model class: the usage and credit transfers
    moved `units(tokens)` wallet units (None: one unit per token)."""


def units(tokens: int, units_per_million_tokens: int | None) -> int:
    """Wallet units for `tokens` at a plan's exchange rate, rounded up to a whole unit (None:
    one unit per token)."""
    if units_per_million_tokens is None:
        return tokens
    return -(-tokens * units_per_million_tokens // 1_000_000)


@dataclass(frozen=True)
class Balance:
    """An account's totals in one unit."""

    debits: int
    credits: int

    @property
    def net(self) -> int:
        """Credits minus debits: what the account holds."""
        return self.credits - self.debits


@dataclass(frozen=True)
class StatementEntry:
    """One transfer seen from one account: positive when it received, negative when it gave."""

    transfer: Transfer
    signed_amount: int


@dataclass(frozen=True)
class StatementPage:
    """A page of an account's statement, oldest first; pass `next_after` to get the next page."""

    account: str
    entries: tuple[StatementEntry, ...]
    next_after: int | None


class Ledger:
    """The ledger on one database. Open it with `Ledger.open(url)`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str, *, echo: bool = False) -> Ledger:
        """Connect to `sqlite:///path` or `postgresql+psycopg://...` and apply pending migrations.

        SQLite gets WAL (readers never block the writer), a busy timeout, and write transactions
        that take the lock at BEGIN, so two settlers on one file serialize instead of failing on
        a lock upgrade.
        """
        if url.startswith("sqlite"):
            engine = create_engine(url, echo=echo)
            _configure_sqlite(engine)
        else:
            engine = create_engine(url, echo=echo, pool_pre_ping=True)
        migrate(engine)
        return cls(engine)

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    def post_transfer(self, spec: TransferSpec) -> Transfer:
        """Post once; a replay with equal contents returns the stored transfer.

        Raises TransferConflict when the key exists with different contents.
        """
        try:
            with Session(self.engine) as session, session.begin():
                row = _insert_transfer(session, spec)
                session.flush()
                return _transfer(row)
        except IntegrityError:
            existing = self.transfer_by_key(spec.key)
            if existing is None:
                raise
            _require_same(existing, spec)
            return existing

    def transfer_by_key(self, key: str) -> Transfer | None:
        """The transfer with this idempotency key, if posted."""
        with Session(self.engine) as session:
            row = session.exec(
                select(TransferRow).where(TransferRow.idempotency_key == key)
            ).first()
            return None if row is None else _transfer(row)

    def transfers(self, *, sla_uid: str | None = None, kind: str | None = None) -> list[Transfer]:
        """Transfers in posting order, optionally of one SLA and one kind."""
        query = select(TransferRow).order_by(col(TransferRow.seq))
        if sla_uid is not None:
            query = query.where(TransferRow.sla_uid == sla_uid)
        if kind is not None:
            query = query.where(TransferRow.kind == kind)
        with Session(self.engine) as session:
            return [_transfer(row) for row in session.exec(query)]

    def period_transfers(self, sla_uid: str, period: Period) -> list[Transfer]:
        """One SLA's transfers of one period, in posting order, in one indexed query (a report
        needs one period; `transfers` returns an SLA's whole history)."""
        params = {"sla_uid": sla_uid, "period_start": period.start}
        with Session(self.engine) as session:
            return [_transfer(row) for row in session.exec(_TRANSFERS_OF_PERIOD, params=params)]

    def balance(self, account: str, unit: str) -> Balance:
        """Debits and credits of one account in one unit."""
        with Session(self.engine) as session:
            debits = session.exec(
                select(func.coalesce(func.sum(TransferRow.amount), 0)).where(
                    TransferRow.debit_account == account, TransferRow.unit == unit
                )
            ).one()
            credits = session.exec(
                select(func.coalesce(func.sum(TransferRow.amount), 0)).where(
                    TransferRow.credit_account == account, TransferRow.unit == unit
                )
            ).one()
        return Balance(debits=int(debits), credits=int(credits))

    def balances(self) -> dict[tuple[str, str], Balance]:
        """Every account's totals, keyed by (account, unit)."""
        totals: dict[tuple[str, str], list[int]] = {}
        with Session(self.engine) as session:
            for side, column in ((0, TransferRow.debit_account), (1, TransferRow.credit_account)):
                rows = session.exec(
                    select(column, TransferRow.unit, func.sum(TransferRow.amount)).group_by(
                        column, TransferRow.unit
                    )
                )
                for account, unit, amount in rows:
                    totals.setdefault((account, unit), [0, 0])[side] += int(amount)
        return {key: Balance(debits=d, credits=c) for key, (d, c) in sorted(totals.items())}

    def wallet_balance(self, tenant: str) -> int:
        """Tokens left in the tenant's wallet (negative when usage ran past the allowance)."""
        return self.balance(wallet_account(tenant), TOKENS).net

    def record_usage(self, readings: Sequence[UsageReading]) -> None:
        """Store each SLA's usage so far in its period (one transaction; newer readings win)."""
        if not readings:
            return
        for attempt in (1, 2):
            try:
                with Session(self.engine) as session, session.begin():
                    self._upsert_usage(session, readings)
                return
            except IntegrityError:
                # Another writer inserted the same (SLA, period) first: the retry updates it.
                if attempt == 2:
                    raise

    @staticmethod
    def _upsert_usage(session: Session, readings: Sequence[UsageReading]) -> None:
        starts = {r.period.start for r in readings}
        uids = [r.sla_uid for r in readings]
        existing: dict[tuple[str, datetime], UsageRow] = {}
        for start in starts:
            for stored in session.exec(
                select(UsageRow).where(
                    UsageRow.period_start == start, col(UsageRow.sla_uid).in_(uids)
                )
            ):
                existing[(stored.sla_uid, start)] = stored
        for reading in readings:
            row = existing.get((reading.sla_uid, reading.period.start))
            if row is None:
                session.add(
                    UsageRow(
                        sla_uid=reading.sla_uid,
                        tenant=reading.tenant,
                        period_start=reading.period.start,
                        period_end=reading.period.end,
                        tokens=reading.tokens,
                        measured_at=reading.measured_at,
                    )
                )
            elif as_utc(row.measured_at) <= reading.measured_at:
                row.tokens = reading.tokens
                row.measured_at = reading.measured_at
                session.add(row)

    def pin_terms(self, pins: Sequence[TermsPin]) -> list[PeriodTerms]:
        """The terms in force for each pin's SLA period: those pinned first, else the pin's own,
        now stored (one transaction; a racing pinner's terms win and are read back)."""
        if not pins:
            return []
        for attempt in (1, 2):
            try:
                with Session(self.engine) as session, session.begin():
                    stored = self._pinned(session, pins)
                    now = datetime.now(UTC)
                    for pin in pins:
                        key = (pin.sla_uid, pin.period.start)
                        if key not in stored:
                            session.add(
                                PeriodTermsRow(
                                    sla_uid=pin.sla_uid,
                                    period_start=pin.period.start,
                                    period_end=pin.period.end,
                                    terms=pin.terms.to_json(),
                                    pinned_at=now,
                                )
                            )
                            stored[key] = pin.terms
                    return [stored[(pin.sla_uid, pin.period.start)] for pin in pins]
            except IntegrityError:
                # Another pinner stored the same (SLA, period) first: the retry reads theirs.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def pinned_terms(self, sla_uid: str, period_start: datetime) -> PeriodTerms | None:
        """The terms pinned for one SLA period, if any."""
        with Session(self.engine) as session:
            row = session.exec(
                select(PeriodTermsRow).where(
                    PeriodTermsRow.sla_uid == sla_uid, PeriodTermsRow.period_start == period_start
                )
            ).first()
            return None if row is None else PeriodTerms.from_json(row.terms)

    @staticmethod
    def _pinned(
        session: Session, pins: Sequence[TermsPin]
    ) -> dict[tuple[str, datetime], PeriodTerms]:
        found: dict[tuple[str, datetime], PeriodTerms] = {}
        for start in {p.period.start for p in pins}:
            uids = [p.sla_uid for p in pins if p.period.start == start]
            for row in session.exec(
                select(PeriodTermsRow).where(
                    PeriodTermsRow.period_start == start, col(PeriodTermsRow.sla_uid).in_(uids)
                )
            ):
                found[(row.sla_uid, start)] = PeriodTerms.from_json(row.terms)
        return found

    def pending_usage(self, tenant: str) -> int:
        """Tokens the tenant used in periods not yet settled (usage not yet posted)."""
        with Session(self.engine) as session:
            total = session.exec(
                select(func.coalesce(func.sum(UsageRow.tokens), 0)).where(
                    UsageRow.tenant == tenant, ~_settled_usage()
                )
            ).one()
        return int(total)

    def open_usage(self, tenant: str) -> list[OpenUsage]:
        """The tenant's usage readings of periods not yet settled (the burn's data,
        `aiconn.sla.exhaustion`)."""
        with Session(self.engine) as session:
            rows = session.exec(
                select(UsageRow).where(UsageRow.tenant == tenant, ~_settled_usage())
            ).all()
            return [
                OpenUsage(
                    tokens=row.tokens, since=as_utc(row.period_start), until=as_utc(row.measured_at)
                )
                for row in rows
            ]

    def available_tokens(self, tenant: str) -> int:
        """What the tenant may still spend: the wallet balance minus usage not yet settled."""
        return self.wallet_balance(tenant) - self.pending_usage(tenant)

    def statement(
        self, account: str, *, unit: str | None = None, after: int | None = None, limit: int = 100
    ) -> StatementPage:
        """Transfers touching `account`, oldest first, `limit` at a time after sequence `after`."""
        if not 1 <= limit <= 10_000:
            raise ValueError(f"limit must be between 1 and 10000, got {limit}")
        query = (
            select(TransferRow)
            .where((TransferRow.debit_account == account) | (TransferRow.credit_account == account))
            .order_by(col(TransferRow.seq))
            .limit(limit + 1)
        )
        if unit is not None:
            query = query.where(TransferRow.unit == unit)
        if after is not None:
            query = query.where(col(TransferRow.seq) > after)
        with Session(self.engine) as session:
            rows = list(session.exec(query))
        page = [_transfer(row) for row in rows[:limit]]
        entries = tuple(
            StatementEntry(
                transfer=t, signed_amount=t.amount if t.credit_account == account else -t.amount
            )
            for t in page
        )
        return StatementPage(
            account=account,
            entries=entries,
            next_after=page[-1].seq if len(rows) > limit else None,
        )

    def check_invariant(self) -> dict[str, int]:
        """Verify Σ debits == Σ credits per unit and that every transfer is well formed.

        Returns the total moved per unit; raises LedgerInvariantError otherwise.
        """
        with Session(self.engine) as session:
            malformed = session.exec(
                select(func.count()).where(
                    (col(TransferRow.amount) <= 0)
                    | (TransferRow.debit_account == TransferRow.credit_account)
                )
            ).one()
        if malformed:
            raise LedgerInvariantError(
                f"{malformed} transfers have a non-positive amount or one account"
            )
        debits: dict[str, int] = {}
        credits: dict[str, int] = {}
        for (_, unit), balance in self.balances().items():
            debits[unit] = debits.get(unit, 0) + balance.debits
            credits[unit] = credits.get(unit, 0) + balance.credits
        if debits != credits:
            raise LedgerInvariantError(f"debits {debits} != credits {credits}")
        return debits

    def settlement(self, sla_uid: str, period: Period) -> Settlement | None:
        """The settlement of one SLA's period, if any (a hot path of the reporting API: the
        statement is built once, so a call costs the query, not SQLAlchemy's construction)."""
        with Session(self.engine) as session:
            row = session.exec(
                _SETTLEMENT_OF_PERIOD, params={"sla_uid": sla_uid, "period_start": period.start}
            ).first()
            return None if row is None else _settlement(row)

    def evidence(self, sla_uid: str, period_start: datetime) -> StoredEvidence | None:
        """The evidence stored with one SLA's settlement of the period starting then, if any."""
        with Session(self.engine) as session:
            row = session.exec(
                select(EvidenceRow).where(
                    EvidenceRow.sla_uid == sla_uid, EvidenceRow.period_start == period_start
                )
            ).first()
            return None if row is None else _evidence(row)

    def evidence_by_name(
        self, namespace: str, name: str, period_start: datetime
    ) -> list[StoredEvidence]:
        """Evidence of the period starting then of every SLA that had this name (an SLA deleted
        and created again under its name has a new uid)."""
        with Session(self.engine) as session:
            rows = session.exec(
                select(EvidenceRow)
                .where(
                    EvidenceRow.sla_namespace == namespace,
                    EvidenceRow.sla_name == name,
                    EvidenceRow.period_start == period_start,
                )
                .order_by(col(EvidenceRow.seq))
            )
            return [_evidence(row) for row in rows]

    def settlements(self, *, sla_uid: str | None = None) -> list[Settlement]:
        """Settlements oldest first, optionally of one SLA."""
        query = select(SettlementRow).order_by(col(SettlementRow.seq))
        if sla_uid is not None:
            query = query.where(SettlementRow.sla_uid == sla_uid)
        with Session(self.engine) as session:
            return [_settlement(row) for row in session.exec(query)]


def _settled_usage() -> Any:
    """Whether a usage row's period is settled (its usage then posted as a transfer)."""
    return (
        select(SettlementRow.seq)
        .where(
            SettlementRow.sla_uid == UsageRow.sla_uid,
            SettlementRow.period_start == UsageRow.period_start,
            SettlementRow.state == SettlementState.SETTLED.value,
        )
        .exists()
    )


def fund_allowance(
    ledger: Ledger,
    *,
    sla_uid: str,
    namespace: str,
    name: str,
    tenant: str,
    period: Period,
    tokens: int,
) -> Transfer | None:
    """Fund the wallet with the period's token allowance, once per SLA and period.

    Returns None when the allowance is zero (nothing to move).
    """
    if tokens == 0:
        return None
    return ledger.post_transfer(
        TransferSpec(
            debit_account=ALLOWANCE,
            credit_account=wallet_account(tenant),
            amount=tokens,
            unit=TOKENS,
            kind=Kind.ALLOWANCE,
            sla_uid=sla_uid,
            sla_namespace=namespace,
            sla_name=name,
            period=period,
        )
    )


def settle_period(
    ledger: Ledger,
    *,
    sla_uid: str,
    namespace: str,
    name: str,
    tenant: str,
    period: Period,
    result: SLAEvaluation,
    coverage_floor_percent: float,
    currency: str = "EUR",
    evidence: Measured | None = None,
    hold: HoldReason | None = None,
    units_per_million_tokens: int | None = None,
    price_version: int | None = None,
) -> Settlement:
    """Settle a closed period once: hold it for review when data coverage is below the floor or
    an inexact latency attainment could change the credit (`result.credit_uncertain`), otherwise
    post usage, charge, credit and penalty and mark it Settled. With `evidence` (what was
    measured), the evidence document, completed with what was decided here, is stored too.

    Everything is one transaction; a replay (or a racing settler) gets the stored settlement. The
    first settlement of a period is final: corrections are new transfers, not a re-settlement.
    `hold` holds the period for that reason whatever the measurements say.
    `units_per_million_tokens` is the token plan's exchange rate for the SLA's model class: the
    wallet pays (and is credited) in plan units, `units(tokens, rate)`; None: one per token.
    `price_version` is the offer's price version the period's terms were pinned at; every line
    names it.
    """
    existing = ledger.settlement(sla_uid, period)
    if existing is not None:
        return existing
    coverage = result.coverage_percent
    reason = hold
    if reason is None and (coverage is None or coverage < coverage_floor_percent):
        reason = HoldReason.LOW_COVERAGE
    elif reason is None and result.credit_uncertain:
        reason = HoldReason.INEXACT_ATTAINMENT
    held = reason is not None
    charges = to_micros(result.charges)
    credit = to_micros(result.credit.amount)
    credit_tokens = tokens_for_amount(result.credit.amount, result.price_per_million_tokens)
    specs = (
        []
        if held
        else _settlement_transfers(
            sla_uid=sla_uid,
            namespace=namespace,
            name=name,
            wallet=wallet_account(tenant),
            period=period,
            tokens_used=result.tokens_used,
            charges=charges,
            credit=credit,
            credit_tokens=credit_tokens,
            unit=currency_unit(currency),
            credit_percent=str(result.credit.total_percent),
            rate=units_per_million_tokens,
            price_version=price_version,
        )
    )
    now = datetime.now(UTC)
    try:
        with Session(ledger.engine) as session, session.begin():
            # The settlement row goes first: it claims the period, so a racing settler blocks
            # here on the unique constraint and never reaches the transfers.
            row = SettlementRow(
                sla_uid=sla_uid,
                sla_namespace=namespace,
                sla_name=name,
                tenant=tenant,
                period_start=period.start,
                period_end=period.end,
                state=SettlementState.HELD_FOR_REVIEW if held else SettlementState.SETTLED,
                currency=currency,
                tokens_used=result.tokens_used,
                charges_micros=charges,
                credit_micros=0 if held else credit,
                credit_tokens=0 if held else credit_tokens,
                held_credit_micros=credit if held else None,
                held_credit_tokens=credit_tokens if held else None,
                credit_percent=str(result.credit.total_percent),
                coverage_percent=coverage,
                availability_percent=result.availability_percent,
                ttft_attainment_percent=result.ttft_attainment_percent,
                tpot_attainment_percent=result.tpot_attainment_percent,
                transfer_ids=_transfer_ids(specs),
                created_at=now,
                ttft_exact=result.ttft_exact,
                tpot_exact=result.tpot_exact,
                hold_reason=None if reason is None else reason.value,
                judged_minutes=result.judged_minutes,
                good_minutes=result.good_minutes,
                bad_minutes=result.bad_minutes,
                excused_minutes=result.excused_minutes,
                units_per_million_tokens=units_per_million_tokens,
                price_version=price_version,
            )
            session.add(row)
            session.flush()
            insert_transfers(session, specs, now=now)
            if evidence is not None:
                document = evidence_document(
                    evidence,
                    sla_uid=sla_uid,
                    tenant=tenant,
                    period_start=period.start_iso,
                    period_end=period.end_iso,
                    minutes=period.minutes,
                    decided=_decided(
                        result,
                        state=row.state,
                        reason=reason,
                        floor=coverage_floor_percent,
                        charges=charges,
                        credit=credit,
                        credit_tokens=credit_tokens,
                    ),
                )
                session.add(
                    EvidenceRow(
                        sla_uid=sla_uid,
                        sla_namespace=namespace,
                        sla_name=name,
                        period_start=period.start,
                        period_end=period.end,
                        document=canonical(document),
                        sha256=sha256_of(document),
                        created_at=now,
                    )
                )
            session.flush()
            settled = _settlement(row)
        return settled
    except IntegrityError:
        winner = ledger.settlement(sla_uid, period)
        if winner is None:
            raise
        return winner


def _decided(
    result: SLAEvaluation,
    *,
    state: str,
    reason: HoldReason | None,
    floor: float,
    charges: int,
    credit: int,
    credit_tokens: int,
) -> Decided:
    # The availability the credit tiers compared, as `evaluate_fleet` computed it.
    availability = attainment_percent(result.good_minutes, result.good_minutes + result.bad_minutes)
    return Decided(
        state=state,
        hold_reason=None if reason is None else reason.value,
        good_minutes=result.good_minutes,
        bad_minutes=result.bad_minutes,
        coverage_floor_percent=floor,
        coverage_percent=result.coverage_percent,
        availability_percent=None if availability is None else str(availability),
        tokens=result.tokens_used,
        charges_micros=charges,
        availability_credit_percent=str(result.credit.availability_percent),
        latency_credit_percent=str(result.credit.latency_percent),
        credit_percent=str(result.credit.total_percent),
        credit_micros=credit,
        credit_tokens=credit_tokens,
    )


def _evidence(row: EvidenceRow) -> StoredEvidence:
    return StoredEvidence(
        sla_uid=row.sla_uid,
        period=Period(start=as_utc(row.period_start), end=as_utc(row.period_end)),
        text=row.document,
        sha256=row.sha256,
    )


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # pysqlite's own transaction handling would BEGIN lazily (DEFERRED); take it over.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _transfer_id(key: str) -> str:
    return str(uuid.uuid5(_TRANSFER_NAMESPACE, key))


def _insert_transfer(
    session: Session, spec: TransferSpec, *, now: datetime | None = None
) -> TransferRow:
    row = TransferRow(
        id=_transfer_id(spec.key),
        idempotency_key=spec.key,
        debit_account=spec.debit_account,
        credit_account=spec.credit_account,
        amount=spec.amount,
        unit=spec.unit,
        kind=str(spec.kind),
        sla_uid=spec.sla_uid,
        sla_namespace=spec.sla_namespace,
        sla_name=spec.sla_name,
        period_start=spec.period.start,
        period_end=spec.period.end,
        created_at=now or datetime.now(UTC),
        meta=dict(spec.metadata),
        price_version=spec.price_version,
    )
    session.add(row)
    return row


def _transfer_ids(specs: Iterable[TransferSpec]) -> list[str]:
    """The ids the transfers of `specs` get: what a settlement row records as its transfers."""
    return [_transfer_id(spec.key) for spec in specs]


def insert_transfers(
    session: Session, specs: Sequence[TransferSpec], *, now: datetime
) -> list[str]:
    """Insert transfers in the caller's transaction; their ids, for the row that records them.

    For a module that posts several transfers together with a row claiming what they settle
    (a settlement, a plan period's close): the caller's transaction inserts the claim first, so
    a racing poster fails on the claim's unique key and none of the transfers is posted twice.
    Each transfer's own idempotency key still refuses a duplicate."""
    for spec in specs:
        _insert_transfer(session, spec, now=now)
    return _transfer_ids(specs)


def _transfer(row: TransferRow) -> Transfer:
    assert row.seq is not None
    return Transfer(
        seq=row.seq,
        id=row.id,
        idempotency_key=row.idempotency_key,
        debit_account=row.debit_account,
        credit_account=row.credit_account,
        amount=row.amount,
        unit=row.unit,
        kind=row.kind,
        sla_uid=row.sla_uid,
        sla_namespace=row.sla_namespace,
        sla_name=row.sla_name,
        period=Period(start=as_utc(row.period_start), end=as_utc(row.period_end)),
        created_at=as_utc(row.created_at),
        metadata=dict(row.meta),
        price_version=row.price_version,
    )


class NotHeld(Exception):
    """The period was settled when it closed: there is nothing to release."""


def release_held(
    ledger: Ledger, *, sla_uid: str, period_start: datetime, reviewer: str, note: str
) -> Settlement | None:
    """Release a period held for review: post the usage, charge, credit and penalty it was held
    with, mark it Settled and record who released it and why. None when no such settlement.

    One transaction, like settling: releasing twice, or two reviewers at once, pays once (the
    second finds it released, or loses on the transfers' unique keys and reads the winner's).
    Raises NotHeld for a period that was settled when it closed.
    """
    if not reviewer or not note.strip():
        raise ValueError("a release needs the reviewer and a note saying why")
    for attempt in (1, 2):
        try:
            with Session(ledger.engine) as session, session.begin():
                row = session.exec(
                    select(SettlementRow)
                    .where(
                        SettlementRow.sla_uid == sla_uid,
                        SettlementRow.period_start == period_start,
                    )
                    .with_for_update()
                ).first()
                if row is None:
                    return None
                if row.state == SettlementState.SETTLED.value:
                    if row.reviewed_by is None:
                        raise NotHeld(
                            f"the period from {as_utc(row.period_start).isoformat()} was settled"
                            " when it closed; only held periods are released"
                        )
                    return _settlement(row)
                period = Period(start=as_utc(row.period_start), end=as_utc(row.period_end))
                credit = row.held_credit_micros or 0
                credit_tokens = row.held_credit_tokens or 0
                specs = _settlement_transfers(
                    sla_uid=row.sla_uid,
                    namespace=row.sla_namespace,
                    name=row.sla_name,
                    wallet=wallet_account(row.tenant),
                    period=period,
                    tokens_used=row.tokens_used,
                    charges=row.charges_micros,
                    credit=credit,
                    credit_tokens=credit_tokens,
                    unit=currency_unit(row.currency),
                    credit_percent=row.credit_percent,
                    rate=row.units_per_million_tokens,
                    price_version=row.price_version,
                )
                now = datetime.now(UTC)
                row.transfer_ids = insert_transfers(session, specs, now=now)
                row.state = SettlementState.SETTLED.value
                row.credit_micros, row.credit_tokens = credit, credit_tokens
                row.reviewed_by, row.reviewed_at, row.review_note = reviewer, now, note[:1024]
                session.add(row)
                session.flush()
                return _settlement(row)
        except IntegrityError:
            # A racing reviewer posted the same transfers first; read what they stored.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _settlement_transfers(
    *,
    sla_uid: str,
    namespace: str,
    name: str,
    wallet: str,
    period: Period,
    tokens_used: int,
    charges: int,
    credit: int,
    credit_tokens: int,
    unit: str,
    credit_percent: str,
    rate: int | None = None,
    price_version: int | None = None,
) -> list[TransferSpec]:
    """The transfers that settle a period (zero amounts are not recorded). With a plan's
    exchange rate the wallet's usage and credit are plan units, and say so in their metadata."""
    planned: list[tuple[str, str, int, str, Kind]] = [
        (wallet, REVENUE, units(tokens_used, rate), TOKENS, Kind.USAGE),
        (wallet, REVENUE, charges, unit, Kind.CHARGE),
        (SLA_PENALTY, wallet, units(credit_tokens, rate), TOKENS, Kind.CREDIT),
        (REVENUE, SLA_PENALTY, credit, unit, Kind.PENALTY),
    ]
    converted = {Kind.USAGE: tokens_used, Kind.CREDIT: credit_tokens}
    return [
        TransferSpec(
            debit_account=debit,
            credit_account=credit_account,
            amount=amount,
            unit=amount_unit,
            kind=kind,
            sla_uid=sla_uid,
            sla_namespace=namespace,
            sla_name=name,
            period=period,
            metadata={"creditPercent": credit_percent}
            | (
                {"tokens": converted[kind], "unitsPerMillionTokens": rate}
                if rate is not None and kind in converted
                else {}
            ),
            price_version=price_version,
        )
        for debit, credit_account, amount, amount_unit, kind in planned
        # Ledgers refuse zero transfers (TigerBeetle does): nothing moved, nothing recorded.
        if amount > 0
    ]


def _settlement(row: SettlementRow) -> Settlement:
    return Settlement(
        sla_uid=row.sla_uid,
        sla_namespace=row.sla_namespace,
        sla_name=row.sla_name,
        tenant=row.tenant,
        period=Period(start=as_utc(row.period_start), end=as_utc(row.period_end)),
        state=SettlementState(row.state),
        currency=row.currency,
        tokens_used=row.tokens_used,
        charges_micros=row.charges_micros,
        credit_micros=row.credit_micros,
        credit_tokens=row.credit_tokens,
        credit_percent=Decimal(row.credit_percent),
        coverage_percent=row.coverage_percent,
        availability_percent=row.availability_percent,
        ttft_attainment_percent=row.ttft_attainment_percent,
        tpot_attainment_percent=row.tpot_attainment_percent,
        transfer_ids=tuple(row.transfer_ids),
        created_at=as_utc(row.created_at),
        reviewed_by=row.reviewed_by,
        reviewed_at=None if row.reviewed_at is None else as_utc(row.reviewed_at),
        review_note=row.review_note,
        ttft_exact=row.ttft_exact,
        tpot_exact=row.tpot_exact,
        hold_reason=None if row.hold_reason is None else HoldReason(row.hold_reason),
        judged_minutes=row.judged_minutes,
        good_minutes=row.good_minutes,
        bad_minutes=row.bad_minutes,
        excused_minutes=row.excused_minutes,
        units_per_million_tokens=row.units_per_million_tokens,
        price_version=row.price_version,
    )


def _require_same(existing: Transfer, spec: TransferSpec) -> None:
    stored = existing.spec()
    differences = {
        f.name: (getattr(stored, f.name), getattr(spec, f.name))
        for f in fields(TransferSpec)
        if getattr(stored, f.name) != getattr(spec, f.name)
    }
    if differences:
        raise TransferConflict(spec.key, differences)


def _triples(differences: Mapping[str, tuple[Any, Any]]) -> list[tuple[str, Any, Any]]:
    return [(k, a, b) for k, (a, b) in differences.items()]
