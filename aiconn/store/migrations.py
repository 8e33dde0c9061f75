"""Versioned schema migrations for the ledger, applied in order at startup.

The ledger holds money, so its schema changes are explicit, numbered and recorded: each migration
is a function that runs once, inside the same transaction that records its number in
`schema_version`. Starting twice, or two processes starting at once, applies nothing twice: on
PostgreSQL an advisory lock serializes the migrators, on SQLite the write transaction does.

Migrations describe tables with their own SQLAlchemy definitions, frozen as they were when written,
so a later change to the models never rewrites history.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    select,
    text,
)

# An arbitrary constant naming "the aiconn ledger migrator" to pg_advisory_xact_lock.
_ADVISORY_LOCK_ID = 0x61696C6564676572

_version_metadata = MetaData()
schema_version = Table(
    "schema_version",
    _version_metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", String(200), nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)

_Seq = BigInteger().with_variant(Integer, "sqlite")


@dataclass(frozen=True)
class Migration:
    """One schema step."""

    version: int
    description: str
    apply: Callable[[Connection], None]


# The column sets below are shared by several migrations and frozen with them: changing one would
# change what an applied migration creates, so a later table that wants other columns spells them
# out itself.


def _seq_column() -> Column[int]:
    # INTEGER PRIMARY KEY on SQLite is the rowid: monotonic, so statements page by it.
    return Column("seq", _Seq, primary_key=True, autoincrement=True)


def _sla_columns(*, indexed_uid: bool = False) -> list[Column[str]]:
    """The SLA a row belongs to, by uid and by name."""
    return [
        Column("sla_uid", String(64), nullable=False, index=indexed_uid),
        Column("sla_namespace", String(253), nullable=False),
        Column("sla_name", String(253), nullable=False),
    ]


def _period_columns() -> list[Column[datetime]]:
    """The period a row is about, its end exclusive."""
    return [
        Column("period_start", DateTime(timezone=True), nullable=False),
        Column("period_end", DateTime(timezone=True), nullable=False),
    ]


def _add_columns(conn: Connection, table: str, columns: Iterable[tuple[str, str]]) -> None:
    """`ALTER TABLE ... ADD COLUMN` each (name, SQL type), in order."""
    for column, kind in columns:
        conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {kind}"))


def _v1_transfers_and_settlements(conn: Connection) -> None:
    metadata = MetaData()
    Table(
        "transfers",
        metadata,
        _seq_column(),
        Column("id", String(36), nullable=False, unique=True),
        Column("idempotency_key", String(512), nullable=False, unique=True),
        Column("debit_account", String(128), nullable=False, index=True),
        Column("credit_account", String(128), nullable=False, index=True),
        Column("amount", BigInteger, nullable=False),
        Column("unit", String(32), nullable=False),
        Column("kind", String(32), nullable=False),
        *_sla_columns(indexed_uid=True),
        *_period_columns(),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("metadata", JSON, nullable=False),
    )
    settlements = Table(
        "settlements",
        metadata,
        _seq_column(),
        *_sla_columns(),
        Column("tenant", String(63), nullable=False),
        *_period_columns(),
        Column("state", String(32), nullable=False),
        Column("currency", String(3), nullable=False),
        Column("tokens_used", BigInteger, nullable=False),
        Column("charges_micros", BigInteger, nullable=False),
        Column("credit_micros", BigInteger, nullable=False),
        Column("credit_tokens", BigInteger, nullable=False),
        Column("credit_percent", String(32), nullable=False),
        Column("coverage_percent", Float, nullable=True),
        Column("availability_percent", Float, nullable=True),
        Column("ttft_attainment_percent", Float, nullable=True),
        Column("tpot_attainment_percent", Float, nullable=True),
        Column("transfer_ids", JSON, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        UniqueConstraint("sla_uid", "period_start", name="uq_settlements_sla_period"),
    )
    Index("ix_settlements_namespace_name", settlements.c.sla_namespace, settlements.c.sla_name)
    metadata.create_all(conn)


def _v2_period_usage_and_wider_owners(conn: Connection) -> None:
    metadata = MetaData()
    Table(
        "period_usage",
        metadata,
        _seq_column(),
        Column("sla_uid", String(64), nullable=False),
        Column("tenant", String(128), nullable=False, index=True),
        *_period_columns(),
        Column("tokens", BigInteger, nullable=False),
        Column("measured_at", DateTime(timezone=True), nullable=False),
        UniqueConstraint("sla_uid", "period_start", name="uq_period_usage_sla_period"),
    )
    metadata.create_all(conn)
    # A held period keeps what it would have credited, for a reviewer who releases it.
    _add_columns(
        conn,
        "settlements",
        (
            ("held_credit_micros", "BIGINT"),
            ("held_credit_tokens", "BIGINT"),
            ("reviewed_by", "VARCHAR(253)"),
            ("reviewed_at", "TIMESTAMP WITH TIME ZONE"),
            ("review_note", "VARCHAR(1024)"),
        ),
    )
    # A wallet owner is `<namespace>/<tenant>`, up to 63 + 1 + 63 characters, and its account
    # `wallet:<owner>`: version 1's widths were too narrow for long names (SQLite ignores widths).
    if conn.dialect.name == "postgresql":
        conn.execute(text("ALTER TABLE settlements ALTER COLUMN tenant TYPE VARCHAR(128)"))
        for column in ("debit_account", "credit_account"):
            conn.execute(text(f"ALTER TABLE transfers ALTER COLUMN {column} TYPE VARCHAR(160)"))


def _v3_attainment_exactness_and_hold_reasons(conn: Connection) -> None:
    # Whether each latency attainment was exact, and why a held period was held: a period paid
    # on an interpolated attainment must be visible as such in the ledger itself.
    _add_columns(
        conn,
        "settlements",
        (("ttft_exact", "BOOLEAN"), ("tpot_exact", "BOOLEAN"), ("hold_reason", "VARCHAR(32)")),
    )


def _v4_wider_transfer_subjects(conn: Connection) -> None:
    # Plan funding and top-ups key their transfers by `plan:<namespace>/<tenant>:<offer>` and
    # `topup:<namespace>/<tenant>` in the `sla_uid` column, up to 5 + 127 + 1 + 253 characters;
    # version 1 sized it for an SLA uid (SQLite ignores widths, PostgreSQL refused the rest).
    if conn.dialect.name == "postgresql":
        conn.execute(text("ALTER TABLE transfers ALTER COLUMN sla_uid TYPE VARCHAR(512)"))


def _v5_settlement_evidence(conn: Connection) -> None:
    # The evidence of each settlement, written once in the settlement's own transaction (unique
    # per SLA and period like the settlement). A table of its own: reports list settlements often
    # and the minute verdicts of a month are read rarely. The document is text, not JSON, so the
    # stored bytes are the ones hashed (PostgreSQL's jsonb would reorder them).
    metadata = MetaData()
    evidence = Table(
        "settlement_evidence",
        metadata,
        _seq_column(),
        *_sla_columns(),
        *_period_columns(),
        Column("document", Text, nullable=False),
        Column("sha256", String(64), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        UniqueConstraint("sla_uid", "period_start", name="uq_settlement_evidence_sla_period"),
    )
    Index("ix_settlement_evidence_namespace_name", evidence.c.sla_namespace, evidence.c.sla_name)
    metadata.create_all(conn)


def _v6_minute_counts(conn: Connection) -> None:
    # The minutes behind the availability figure: judged (in force, in service hours, not
    # excused), good, bad and excused by announced maintenance, so a settlement shows what was
    # left out of the ratio and why the figure is what it is.
    minutes = ("judged_minutes", "good_minutes", "bad_minutes", "excused_minutes")
    _add_columns(conn, "settlements", ((column, "BIGINT") for column in minutes))


def _v7_period_terms(conn: Connection) -> None:
    # The terms (price, currency, credit schedules, plan) pinned for each SLA period when it was
    # first evaluated: a period is settled on them, not on the offer as edited since.
    metadata = MetaData()
    Table(
        "period_terms",
        metadata,
        _seq_column(),
        Column("sla_uid", String(64), nullable=False),
        *_period_columns(),
        Column("terms", JSON, nullable=False),
        Column("pinned_at", DateTime(timezone=True), nullable=False),
        UniqueConstraint("sla_uid", "period_start", name="uq_period_terms_sla_period"),
    )
    metadata.create_all(conn)


def _v8_plan_closes(conn: Connection) -> None:
    # Token plans: the close of each tenant's plan period (rollover, expiry, overage, fee) is
    # claimed by one row, unique per plan subject and period, written in the same transaction as
    # its transfers, so a close happens exactly once. Settlements record the exchange rate their
    # usage was converted to plan units at (NULL: one unit per token).
    metadata = MetaData()
    Table(
        "plan_closes",
        metadata,
        _seq_column(),
        Column("subject", String(512), nullable=False),
        Column("tenant", String(512), nullable=False),
        Column("offer", String(253), nullable=False),
        *_period_columns(),
        Column("summary", JSON, nullable=False),
        Column("transfer_ids", JSON, nullable=False),
        Column("closed_at", DateTime(timezone=True), nullable=False),
        UniqueConstraint("subject", "period_start", name="uq_plan_closes_subject_period"),
    )
    metadata.create_all(conn)
    conn.execute(text("ALTER TABLE settlements ADD COLUMN units_per_million_tokens BIGINT"))


def _v9_price_versions(conn: Connection) -> None:
    # The offer's price version each settlement and each of its transfers was charged at, so a
    # statement line names it (`aiconn.sla.prices`); NULL for rows written before versions.
    for table in ("settlements", "transfers"):
        conn.execute(text(f"ALTER TABLE {table} ADD COLUMN price_version INTEGER"))


def _v10_settled_budgets(conn: Connection) -> None:
    # The error budget left as the settlement decided it, an exact decimal in text like
    # `credit_percent`, so a report reads it instead of deriving it again from the availability
    # figure and the SLA's target as edited since; NULL for rows settled before.
    conn.execute(text("ALTER TABLE settlements ADD COLUMN budget_remaining_percent VARCHAR(32)"))


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "transfers and settlements", _v1_transfers_and_settlements),
    Migration(
        2,
        "period usage; wider wallet owners; reviews of held settlements",
        _v2_period_usage_and_wider_owners,
    ),
    Migration(
        3,
        "exactness of latency attainments; why a period was held",
        _v3_attainment_exactness_and_hold_reasons,
    ),
    Migration(
        4, "transfer subjects wide enough for plans and top-ups", _v4_wider_transfer_subjects
    ),
    Migration(5, "evidence stored with each settlement", _v5_settlement_evidence),
    Migration(6, "judged, good, bad and excused minutes of settlements", _v6_minute_counts),
    Migration(7, "terms pinned per SLA period", _v7_period_terms),
    Migration(8, "token plan closes; exchange rate of settled usage", _v8_plan_closes),
    Migration(9, "price version of settlements and transfers", _v9_price_versions),
    Migration(10, "error budget left as settled", _v10_settled_budgets),
)


def migrate(engine: Engine) -> int:
    """Apply every pending migration; returns the schema version now in place."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _ADVISORY_LOCK_ID})
        _version_metadata.create_all(conn)
        applied = set(conn.execute(select(schema_version.c.version)).scalars())
        for migration in MIGRATIONS:
            if migration.version in applied:
                continue
            migration.apply(conn)
            conn.execute(
                schema_version.insert().values(
                    version=migration.version,
                    description=migration.description,
                    applied_at=datetime.now(UTC),
                )
            )
        return max(m.version for m in MIGRATIONS)
