"""The ledger on SQLite: idempotent settlement, the double-entry invariant, crash safety."""

from __future__ import annotations

import contextlib
import dataclasses
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, text
from sqlmodel import Session

from aiconn.sla.accounting import (
    REVENUE,
    SLA_PENALTY,
    TOKENS,
    NotHeld,
    Settlement,
    SettlementState,
    TransferConflict,
    TransferSpec,
    UsageReading,
    wallet_account,
)
from aiconn.sla.periods import Period
from aiconn.sla.settlement import fund_allowance
from aiconn.store.ledger import Ledger, release_held
from aiconn.store.migrations import MIGRATIONS, migrate
from tests import factories
from tests.factories import month_evaluation, usage_transfer

JAN = Period(start=datetime(2025, 1, 1, tzinfo=UTC), end=datetime(2025, 2, 1, tzinfo=UTC))
FEB = Period(start=datetime(2025, 2, 1, tzinfo=UTC), end=datetime(2025, 3, 1, tzinfo=UTC))


def settle(
    ledger: Ledger, period: Period = JAN, *, coverage: float = 100.0, credit: str = "0.5"
) -> Settlement:
    return factories.settle(
        ledger,
        sla_uid="uid-1",
        period=period,
        result=month_evaluation(coverage=coverage, credit_amount=credit),
        coverage_floor_percent=95.0,
    )


def test_settlement_moves_usage_charge_credit_and_penalty(ledger: Ledger) -> None:
    fund(ledger)
    settlement = settle(ledger)
    assert settlement.state is SettlementState.SETTLED
    balances = ledger.balances()
    assert balances[(wallet_account("acme"), TOKENS)].net == 100_000_000 - 10_000_000 + 1_000_000
    assert balances[(REVENUE, TOKENS)].net == 10_000_000
    assert balances[(SLA_PENALTY, TOKENS)].net == -1_000_000
    assert balances[(REVENUE, "EUR-micro")].net == 5_000_000 - 500_000
    assert balances[(SLA_PENALTY, "EUR-micro")].net == 500_000
    assert ledger.wallet_balance("acme") == 91_000_000
    assert ledger.check_invariant() == {"tokens": 111_000_000, "EUR-micro": 5_500_000}


def usage(
    tokens: int, *, uid: str = "uid-1", period: Period = JAN, minute: int = 0
) -> UsageReading:
    return UsageReading(
        sla_uid=uid,
        tenant="acme",
        period=period,
        tokens=tokens,
        measured_at=period.start.replace(hour=1, minute=minute),
    )


def fund(ledger: Ledger, period: Period = JAN, tokens: int = 100_000_000) -> None:
    fund_allowance(
        ledger,
        sla_uid="uid-1",
        namespace="acme",
        name="chat",
        tenant="acme",
        period=period,
        tokens=tokens,
    )


def test_usage_in_an_open_period_counts_against_the_wallet(ledger: Ledger) -> None:
    fund(ledger)
    ledger.record_usage([usage(3_000_000, minute=1)])
    ledger.record_usage([usage(7_000_000, minute=2)])  # the same period, measured later
    assert ledger.wallet_balance("acme") == 100_000_000  # nothing posted yet
    assert ledger.pending_usage("acme") == 7_000_000
    assert ledger.available_tokens("acme") == 93_000_000
    ledger.record_usage([usage(5_000_000, minute=1)])  # an older reading never wins
    assert ledger.pending_usage("acme") == 7_000_000


def test_settling_a_period_turns_its_pending_usage_into_the_posted_one(ledger: Ledger) -> None:
    fund(ledger)
    ledger.record_usage([usage(9_000_000)])
    settle(ledger)  # posts 10M tokens of usage and a 1M token credit
    assert ledger.pending_usage("acme") == 0
    assert ledger.available_tokens("acme") == ledger.wallet_balance("acme") == 91_000_000


def test_usage_is_recorded_through_the_newest_reading_or_settled_period_end(
    ledger: Ledger,
) -> None:
    """What a gateway forgets of its own count (`aiconn.gateway.allowance`): the newest instant
    up to which the tenant's usage is in `available_tokens`, an open period's reading or a
    settled period's end."""
    fund(ledger)
    assert ledger.usage_recorded_through("acme") is None
    ledger.record_usage([usage(3_000_000, minute=1), usage(1_000, uid="uid-2", minute=2)])
    assert ledger.usage_recorded_through("acme") == JAN.start.replace(hour=1, minute=2)
    settle(ledger)  # JAN's usage of uid-1 posted, through the period's end
    assert ledger.usage_recorded_through("acme") == JAN.end
    ledger.record_usage([usage(5, period=FEB, minute=3)])
    assert ledger.usage_recorded_through("acme") == FEB.start.replace(hour=1, minute=3)
    assert ledger.usage_recorded_through("other") is None


def test_a_held_period_keeps_its_usage_pending(ledger: Ledger) -> None:
    fund(ledger)
    ledger.record_usage([usage(9_000_000)])
    settle(ledger, coverage=50.0)
    assert ledger.pending_usage("acme") == 9_000_000
    assert ledger.available_tokens("acme") == 91_000_000


def test_usage_is_per_tenant_sla_and_period(ledger: Ledger) -> None:
    other = UsageReading(
        sla_uid="uid-9", tenant="other", period=JAN, tokens=50, measured_at=JAN.start
    )
    ledger.record_usage(
        [usage(1_000, uid="uid-1"), usage(2_000, uid="uid-2"), usage(4_000, period=FEB), other]
    )
    assert ledger.pending_usage("acme") == 7_000
    assert ledger.pending_usage("other") == 50
    assert ledger.available_tokens("nobody") == 0


def test_negative_usage_is_refused() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        usage(-1)


def test_a_released_held_period_pays_what_it_was_held_with_once(ledger: Ledger) -> None:
    fund(ledger)
    ledger.record_usage([usage(9_000_000)])
    held = settle(ledger, coverage=80.0)
    assert (held.state, held.credit_micros, held.transfer_ids) == (
        SettlementState.HELD_FOR_REVIEW,
        0,
        (),
    )
    released = release_held(
        ledger,
        sla_uid="uid-1",
        period_start=JAN.start,
        reviewer="noc-alice",
        note="Prometheus outage; gateway logs confirm the figures",
    )
    assert released is not None
    assert released.state is SettlementState.SETTLED
    assert (released.credit_micros, released.credit_tokens) == (500_000, 1_000_000)
    assert released.reviewed_by == "noc-alice" and released.reviewed_at is not None
    kinds = sorted(t.kind for t in ledger.transfers(sla_uid="uid-1") if t.kind != "allowance")
    assert kinds == ["charge", "credit", "penalty", "usage"]
    assert sorted(released.transfer_ids) == sorted(
        t.id for t in ledger.transfers(sla_uid="uid-1") if t.kind != "allowance"
    )
    # The same balances as a period settled when it closed, and its usage is no longer pending.
    assert ledger.wallet_balance("acme") == 91_000_000
    assert ledger.pending_usage("acme") == 0
    again = release_held(
        ledger, sla_uid="uid-1", period_start=JAN.start, reviewer="noc-bob", note="again"
    )
    assert again == released
    assert len(ledger.transfers(sla_uid="uid-1")) == 5
    assert ledger.settlement("uid-1", JAN) == released
    ledger.check_invariant()


def test_only_held_periods_are_released(ledger: Ledger) -> None:
    settle(ledger)
    with pytest.raises(NotHeld, match="settled when it closed"):
        release_held(ledger, sla_uid="uid-1", period_start=JAN.start, reviewer="r", note="n")
    assert (
        release_held(ledger, sla_uid="uid-1", period_start=FEB.start, reviewer="r", note="n")
        is None
    )
    with pytest.raises(ValueError, match="reviewer and a note"):
        release_held(ledger, sla_uid="uid-1", period_start=JAN.start, reviewer="r", note=" ")


def test_settlement_is_idempotent_across_1000_replays(ledger: Ledger) -> None:
    first = settle(ledger)
    for _ in range(1000):
        assert settle(ledger) == first
    kinds = [t.kind for t in ledger.transfers(sla_uid="uid-1")]
    assert sorted(kinds) == ["charge", "credit", "penalty", "usage"]
    assert len(ledger.settlements()) == 1


def test_each_period_settles_separately(ledger: Ledger) -> None:
    settle(ledger, JAN)
    settle(ledger, FEB)
    assert len(ledger.transfers(kind="usage")) == 2
    keys = {t.idempotency_key for t in ledger.transfers()}
    assert "uid-1/2025-02-01T00:00:00Z/usage" in keys


def test_low_coverage_is_held_for_review_and_moves_no_money(ledger: Ledger) -> None:
    held = settle(ledger, coverage=80.0)
    assert held.state is SettlementState.HELD_FOR_REVIEW
    assert held.transfer_ids == ()
    assert ledger.transfers() == []
    assert ledger.check_invariant() == {}


def test_zero_amounts_post_no_transfer(ledger: Ledger) -> None:
    settle(ledger, credit="0")
    assert sorted(t.kind for t in ledger.transfers()) == ["charge", "usage"]


def test_a_settler_killed_before_commit_leaves_nothing_and_a_retry_settles_once(
    ledger: Ledger,
) -> None:
    def crash(session: Session) -> None:
        raise RuntimeError("settler killed")

    event.listen(Session, "before_commit", crash)
    try:
        with pytest.raises(RuntimeError, match="killed"):
            settle(ledger)
    finally:
        event.remove(Session, "before_commit", crash)
    assert ledger.transfers() == []
    assert ledger.settlements() == []
    settle(ledger)
    settle(ledger)
    assert len(ledger.transfers()) == 4
    ledger.check_invariant()


def test_replayed_transfer_returns_the_stored_one(ledger: Ledger) -> None:
    first = ledger.post_transfer(usage_transfer())
    assert ledger.post_transfer(usage_transfer()) == first


def test_replay_with_different_contents_is_refused(ledger: Ledger) -> None:
    ledger.post_transfer(usage_transfer(10))
    with pytest.raises(TransferConflict, match="amount: stored 10, posted 11"):
        ledger.post_transfer(usage_transfer(11))


@pytest.mark.parametrize(
    ("amount", "debit", "message"),
    [(0, "wallet:acme", "positive"), (-5, "wallet:acme", "positive"), (5, REVENUE, "same account")],
)
def test_malformed_transfers_are_refused(amount: int, debit: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        usage_transfer(amount, debit_account=debit)


def test_statement_pages_in_order(ledger: Ledger) -> None:
    for i in range(7):
        ledger.post_transfer(usage_transfer(i + 1, kind=f"usage-{i}"))
    seen: list[int] = []
    after = None
    while True:
        page = ledger.statement("wallet:acme", after=after, limit=3)
        seen += [e.signed_amount for e in page.entries]
        if page.next_after is None:
            break
        after = page.next_after
    assert seen == [-1, -2, -3, -4, -5, -6, -7]
    assert [e.signed_amount for e in ledger.statement(REVENUE).entries] == list(range(1, 8))


def test_migrations_are_recorded_and_idempotent(ledger: Ledger) -> None:
    assert migrate(ledger.engine) == MIGRATIONS[-1].version
    assert migrate(ledger.engine) == MIGRATIONS[-1].version
    reopened = Ledger(ledger.engine)
    assert reopened.transfers() == []


def test_a_settlement_keeps_the_budget_it_decided_to_the_last_digit(ledger: Ledger) -> None:
    measured = -1.4884979702300405  # 45 bad of 44,340 known minutes against a 99.9 % target
    result = dataclasses.replace(month_evaluation(), budget_remaining_percent=measured)
    settled = factories.settle(ledger, sla_uid="uid-1", period=JAN, result=result)
    stored = ledger.settlement("uid-1", JAN)
    assert stored is not None
    assert stored == settled
    assert stored.budget_remaining_percent == Decimal("-1.4884979702300405")
    assert float(stored.budget_remaining_percent) == measured
    unmeasured = dataclasses.replace(month_evaluation(), budget_remaining_percent=None)
    factories.settle(ledger, sla_uid="uid-1", period=FEB, result=unmeasured)
    february = ledger.settlement("uid-1", FEB)
    assert february is not None
    assert february.budget_remaining_percent is None


def test_settlements_stored_before_migration_10_read_without_a_budget(ledger: Ledger) -> None:
    settle(ledger)
    with ledger.engine.begin() as conn:  # the ledger as migration 9 left it
        conn.execute(text("ALTER TABLE settlements DROP COLUMN budget_remaining_percent"))
        conn.execute(text("DELETE FROM schema_version WHERE version = 10"))
    assert migrate(ledger.engine) == 10
    older = ledger.settlement("uid-1", JAN)
    assert older is not None
    assert older.budget_remaining_percent is None
    assert settle(ledger, FEB).budget_remaining_percent == Decimal("-213.0")


accounts = st.sampled_from(["wallet:a", "wallet:b", REVENUE, SLA_PENALTY, "allowance"])


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    moves=st.lists(
        st.tuples(
            accounts,
            accounts,
            st.integers(1, 10**12),
            st.sampled_from([TOKENS, "EUR-micro"]),
            st.integers(0, 5),
        ),
        max_size=25,
    )
)
def test_invariant_holds_for_any_sequence_of_transfers(
    ledger: Ledger, moves: list[tuple[str, str, int, str, int]]
) -> None:
    for debit, credit, amount, unit, key in moves:
        if debit == credit:
            continue
        transfer = TransferSpec(
            debit_account=debit,
            credit_account=credit,
            amount=amount,
            unit=unit,
            kind=f"k{key}",
            sla_uid=f"{debit}>{credit}",
            sla_namespace="ns",
            sla_name="n",
            period=JAN,
        )
        with contextlib.suppress(TransferConflict):
            ledger.post_transfer(transfer)
    totals = ledger.check_invariant()
    balances = ledger.balances()
    for unit in totals:
        assert sum(b.net for (_, u), b in balances.items() if u == unit) == 0
