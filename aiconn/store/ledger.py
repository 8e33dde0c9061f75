"""The ledger store: transfers, settlements, evidence, usage and terms on one database.

The scheme (accounts, units, transfers, idempotency keys) is `aiconn.sla.accounting`; what a
period's settlement is, `aiconn.sla.settlement`. This module stores them. Safety against double
payment comes from the database's unique constraints, not from locks in this process, so two
settlers racing on PostgreSQL are safe: the loser's insert waits for the winner's commit, fails,
and re-reads.

Within an open period the wallet's transfers do not yet show what the tenant used: usage is posted
when the period settles. The SLA loop therefore records each SLA's tokens metered so far in the
period (`record_usage`, one row per SLA and period, overwritten each pass, not a transfer), and
`available_tokens` is the wallet balance minus the usage recorded for periods not yet settled:
what the gateway enforces (402 when spent). A held-for-review period's usage stays pending, so it
keeps counting against the wallet until it is settled.

Settling a period writes the settlement row (unique per SLA and period), its transfers and its
evidence (`aiconn.sla.evidence`: the minute verdicts, counts, queries and terms the credit was
decided on) in one database transaction (`record_settlement`), so a crash between computing and
committing leaves nothing, and a retry settles exactly once, with one evidence document.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import Engine, bindparam, create_engine, event, func
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import ConnectionPoolEntry
from sqlmodel import Session, SQLModel, col, select
from sqlmodel.sql.expression import SelectOfScalar

from aiconn.sla.accounting import (
    TOKENS,
    Balance,
    HoldReason,
    LedgerInvariantError,
    NotHeld,
    Settlement,
    SettlementState,
    StatementEntry,
    StatementPage,
    StoredEvidence,
    TermsPin,
    Transfer,
    TransferConflict,
    TransferSpec,
    UsageReading,
    currency_unit,
    transfer_id,
    wallet_account,
)
from aiconn.sla.evidence import canonical, sha256_of
from aiconn.sla.exhaustion import OpenUsage
from aiconn.sla.periods import Period
from aiconn.sla.plans import PlanClose
from aiconn.sla.settlement import SettlementDecision, settlement_transfers
from aiconn.sla.terms import PeriodTerms
from aiconn.sla.timestamps import as_utc
from aiconn.store.migrations import migrate
from aiconn.store.schema import (
    EvidenceRow,
    PeriodRow,
    PeriodTermsRow,
    PlanCloseRow,
    SettlementRow,
    TransferRow,
    UsageRow,
)

SQLITE_BUSY_TIMEOUT_MS = 30_000
_Row = TypeVar("_Row", bound=SQLModel)
_Value = TypeVar("_Value")
_CONVERTED = frozenset(
    {"period", "state", "credit_percent", "budget_remaining_percent", "transfer_ids", "hold_reason"}
)
"""Fields of `Settlement` that its row stores in another form; the others are stored as they are."""
_SETTLEMENT_READ = _CONVERTED | {"created_at", "reviewed_at"}
"""Fields of `Settlement` read back from its row in another form (timestamps come back as UTC)."""
_SPEC_CONVERTED = frozenset({"kind", "period", "metadata"})
"""Fields of `TransferSpec` that a `TransferRow` stores in another form (or under another name)."""
_TRANSFER_READ = frozenset({"seq", "period", "created_at", "metadata"})
"""Fields of `Transfer` read back from its row in another form."""

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

    def _first(
        self,
        query: SelectOfScalar[_Row],
        read: Callable[[_Row], _Value],
        *,
        params: Mapping[str, Any] | None = None,
    ) -> _Value | None:
        """What `read` makes of the first row `query` finds, if any (in a session of its own)."""
        with Session(self.engine) as session:
            row = session.exec(query, params=params).first()
            return None if row is None else read(row)

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
        return self._first(select(TransferRow).where(TransferRow.idempotency_key == key), _transfer)

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
                        **_period_columns(reading.period),
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
                                    **_period_columns(pin.period),
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
        return self._first(
            select(PeriodTermsRow).where(
                PeriodTermsRow.sla_uid == sla_uid, PeriodTermsRow.period_start == period_start
            ),
            _terms,
        )

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

    def usage_recorded_through(self, tenant: str) -> datetime | None:
        """The instant up to which the tenant's usage is in `available_tokens`: the newest of its
        open usage readings and of the ends of its settled periods with usage; None when none
        was ever recorded. A gateway counts what it metered after it against the balance itself
        (`aiconn.gateway.allowance`). One instant for all the tenant's SLAs: the SLA loop reads
        them in one pass, so their readings share it."""
        with Session(self.engine) as session:
            measured = session.exec(
                select(func.max(UsageRow.measured_at)).where(
                    UsageRow.tenant == tenant, ~_settled_usage()
                )
            ).one()
            settled = session.exec(
                select(func.max(UsageRow.period_end)).where(
                    UsageRow.tenant == tenant, _settled_usage()
                )
            ).one()
        found = [as_utc(at) for at in (measured, settled) if at is not None]
        return max(found) if found else None

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
        params = {"sla_uid": sla_uid, "period_start": period.start}
        return self._first(_SETTLEMENT_OF_PERIOD, _settlement, params=params)

    def evidence(self, sla_uid: str, period_start: datetime) -> StoredEvidence | None:
        """The evidence stored with one SLA's settlement of the period starting then, if any."""
        return self._first(
            select(EvidenceRow).where(
                EvidenceRow.sla_uid == sla_uid, EvidenceRow.period_start == period_start
            ),
            _evidence,
        )

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

    def record_settlement(self, decision: SettlementDecision) -> Settlement:
        """Store a decided settlement with its transfers and its evidence, in one transaction.

        A racing settler that stored the period first wins: its settlement is returned."""
        decided = decision.settlement
        try:
            with Session(self.engine) as session, session.begin():
                # The settlement row goes first: it claims the period, so a racing settler blocks
                # here on the unique constraint and never reaches the transfers.
                row = SettlementRow(
                    **_same_fields(Settlement, decided, besides=_CONVERTED),
                    **_period_columns(decided.period),
                    state=decided.state,
                    credit_percent=str(decided.credit_percent),
                    budget_remaining_percent=(
                        None
                        if decided.budget_remaining_percent is None
                        else str(decided.budget_remaining_percent)
                    ),
                    transfer_ids=list(decided.transfer_ids),
                    hold_reason=None if decided.hold_reason is None else decided.hold_reason.value,
                    held_credit_micros=decision.held_credit_micros,
                    held_credit_tokens=decision.held_credit_tokens,
                )
                session.add(row)
                session.flush()
                insert_transfers(session, decision.transfers, now=decided.created_at)
                if decision.evidence is not None:
                    session.add(
                        EvidenceRow(
                            sla_uid=decided.sla_uid,
                            sla_namespace=decided.sla_namespace,
                            sla_name=decided.sla_name,
                            **_period_columns(decided.period),
                            document=canonical(decision.evidence),
                            sha256=sha256_of(decision.evidence),
                            created_at=decided.created_at,
                        )
                    )
                session.flush()
                settled = _settlement(row)
            return settled
        except IntegrityError:
            winner = self.settlement(decided.sla_uid, decided.period)
            if winner is None:
                raise
            return winner

    def latest_transfer(
        self, *, credit_account: str, kind: str, subject_prefix: str
    ) -> Transfer | None:
        """The last transfer of this kind into `credit_account` whose subject (the `sla_uid`
        column) starts with `subject_prefix`, if any."""
        return self._first(
            select(TransferRow)
            .where(
                TransferRow.credit_account == credit_account,
                TransferRow.kind == kind,
                col(TransferRow.sla_uid).startswith(subject_prefix),
            )
            .order_by(col(TransferRow.seq).desc())
            .limit(1),
            _transfer,
        )

    def plan_close(self, subject: str, period: Period) -> PlanClose | None:
        """The stored close of one plan period, if closed."""
        return self._first(
            select(PlanCloseRow).where(
                PlanCloseRow.subject == subject, PlanCloseRow.period_start == period.start
            ),
            _close,
        )

    def record_plan_close(
        self, subject: str, close: PlanClose, transfers: Sequence[TransferSpec]
    ) -> PlanClose:
        """Store a plan period's close with its transfers, in one transaction; a racing closer
        that stored the period first wins and its close is returned."""
        try:
            with Session(self.engine) as session, session.begin():
                # The close's row first: it claims the period, so a racing closer stops here.
                row = PlanCloseRow(
                    subject=subject,
                    tenant=close.tenant,
                    offer=close.offer,
                    **_period_columns(close.period),
                    summary=close.summary,
                    transfer_ids=list(close.transfer_ids),
                    closed_at=close.closed_at,
                )
                session.add(row)
                session.flush()
                insert_transfers(session, transfers, now=close.closed_at)
                return _close(row)
        except IntegrityError:
            winner = self.plan_close(subject, close.period)
            if winner is None:
                raise
            return winner


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


def _terms(row: PeriodTermsRow) -> PeriodTerms:
    return PeriodTerms.from_json(row.terms)


def _evidence(row: EvidenceRow) -> StoredEvidence:
    return StoredEvidence(
        sla_uid=row.sla_uid,
        period=_period(row),
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


def _insert_transfer(
    session: Session, spec: TransferSpec, *, now: datetime | None = None
) -> TransferRow:
    row = TransferRow(
        **_same_fields(TransferSpec, spec, besides=_SPEC_CONVERTED),
        **_period_columns(spec.period),
        id=transfer_id(spec.key),
        idempotency_key=spec.key,
        kind=str(spec.kind),
        created_at=now or datetime.now(UTC),
        meta=dict(spec.metadata),
    )
    session.add(row)
    return row


def _transfer_ids(specs: Iterable[TransferSpec]) -> list[str]:
    """The ids the transfers of `specs` get: what a settlement row records as its transfers."""
    return [transfer_id(spec.key) for spec in specs]


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
        **_same_fields(Transfer, row, besides=_TRANSFER_READ),
        seq=row.seq,
        period=_period(row),
        created_at=as_utc(row.created_at),
        metadata=dict(row.meta),
    )


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
                period = _period(row)
                credit = row.held_credit_micros or 0
                credit_tokens = row.held_credit_tokens or 0
                specs = settlement_transfers(
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


def _settlement(row: SettlementRow) -> Settlement:
    return Settlement(
        **_same_fields(Settlement, row, besides=_SETTLEMENT_READ),
        period=_period(row),
        state=SettlementState(row.state),
        credit_percent=Decimal(row.credit_percent),
        transfer_ids=tuple(row.transfer_ids),
        created_at=as_utc(row.created_at),
        reviewed_at=None if row.reviewed_at is None else as_utc(row.reviewed_at),
        hold_reason=None if row.hold_reason is None else HoldReason(row.hold_reason),
        budget_remaining_percent=(
            None if row.budget_remaining_percent is None else Decimal(row.budget_remaining_percent)
        ),
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


def _close(row: PlanCloseRow) -> PlanClose:
    return PlanClose(
        tenant=row.tenant,
        offer=row.offer,
        period=_period(row),
        summary=dict(row.summary),
        transfer_ids=tuple(row.transfer_ids),
        closed_at=as_utc(row.closed_at),
    )


def _same_fields(
    value_type: type[Any], source: object, *, besides: frozenset[str]
) -> dict[str, Any]:
    """`source`'s values of the fields of the dataclass `value_type` but `besides`: the fields a
    row and its value hold alike, so a field added to both is mapped without a line here."""
    return {f.name: getattr(source, f.name) for f in fields(value_type) if f.name not in besides}


def _period_columns(period: Period) -> dict[str, Any]:
    """A period as the `period_start` and `period_end` columns every ledger table has."""
    return {"period_start": period.start, "period_end": period.end}


def _period(row: PeriodRow) -> Period:
    """A row's period, its columns read back as UTC."""
    return Period(start=as_utc(row.period_start), end=as_utc(row.period_end))
