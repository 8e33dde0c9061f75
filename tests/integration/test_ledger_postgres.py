"""The ledger on a real PostgreSQL: racing settlers never double-pay; long wallet owners fit;
usage of open periods counts against the wallet."""

from __future__ import annotations

import dataclasses
import multiprocessing
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text

from aiconn.sla.accounting import SettlementState, TransferConflict, TransferSpec, UsageReading
from aiconn.sla.evaluate import SLAEvaluation
from aiconn.sla.periods import Period
from aiconn.sla.settlement import fund_allowance, settle_period
from aiconn.sla.wallets import wallet_owner
from aiconn.store.ledger import Ledger, release_held
from tests.factories import availability_credit, settle, sla_evaluation, usage_transfer

pytestmark = pytest.mark.integration

RACES = 200
KINDS = ("usage", "charge", "credit", "penalty")


@pytest.fixture
def ledger(postgres_url: str) -> Iterator[Ledger]:
    opened = Ledger.open(postgres_url)
    with opened.engine.begin() as conn:
        conn.execute(text("TRUNCATE transfers, settlements, period_usage"))
    yield opened
    opened.close()


def _evaluation() -> SLAEvaluation:
    return sla_evaluation(
        minutes=1440,
        good_minutes=1430,
        bad_minutes=10,
        availability_percent=99.3,
        ttft_attainment_percent=99.5,
        tpot_attainment_percent=99.5,
        budget_remaining_percent=-600.0,
        tokens_used=4_000_000,
        price_per_million_tokens=Decimal("0.5"),
        charges=Decimal("2"),
        credit=availability_credit("0.2"),
    )


def _period(i: int) -> Period:
    start = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(days=i)
    return Period(start=start, end=start + timedelta(days=1))


def _settler(url: str, run: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    ledger = Ledger.open(url)
    result = _evaluation()
    for i in range(RACES):
        barrier.wait()
        settle(ledger, sla_uid=run, period=_period(i), result=result, coverage_floor_percent=95.0)
    ledger.close()


def test_two_racing_settlers_never_double_pay(ledger: Ledger, postgres_url: str) -> None:
    run = str(uuid.uuid4())
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    settlers = [ctx.Process(target=_settler, args=(postgres_url, run, barrier)) for _ in range(2)]
    for p in settlers:
        p.start()
    for p in settlers:
        p.join(timeout=300)
    assert [p.exitcode for p in settlers] == [0, 0]
    transfers = ledger.transfers(sla_uid=run)
    assert len(transfers) == RACES * len(KINDS)
    assert len({t.idempotency_key for t in transfers}) == len(transfers)
    assert len(ledger.settlements(sla_uid=run)) == RACES
    assert ledger.wallet_balance("acme") == RACES * (-4_000_000 + 400_000)
    ledger.check_invariant()


def test_differing_replay_is_refused_on_postgres(ledger: Ledger) -> None:
    def spec(amount: int) -> TransferSpec:
        return usage_transfer(amount, sla_uid="uid-pg", period=_period(0))

    first = ledger.post_transfer(spec(5))
    assert ledger.post_transfer(spec(5)) == first
    with pytest.raises(TransferConflict):
        ledger.post_transfer(spec(6))


def test_the_longest_wallet_owner_settles_and_its_usage_counts(ledger: Ledger) -> None:
    # A 63-character namespace and a 63-character tenant: the widest owner an SLA can name.
    owner = wallet_owner("n" * 63, "t" * 63)
    assert len(owner) == 127
    period = _period(0)
    sla = {"sla_uid": "uid-long", "namespace": "n" * 63, "name": "chat", "tenant": owner}
    fund_allowance(ledger, **sla, period=period, tokens=10_000_000)
    reading = UsageReading(
        sla_uid="uid-long",
        tenant=owner,
        period=period,
        tokens=3_000_000,
        measured_at=period.start + timedelta(hours=1),
    )
    ledger.record_usage([reading])
    ledger.record_usage([reading])
    assert ledger.available_tokens(owner) == 7_000_000
    settlement = settle_period(
        ledger, **sla, period=period, outcome=_evaluation().outcome(), coverage_floor_percent=95.0
    )
    assert settlement.state == SettlementState.SETTLED
    # Settled: the 4M tokens of posted usage replace the 3M pending, and the credit comes back.
    assert ledger.pending_usage(owner) == 0
    assert ledger.available_tokens(owner) == 10_000_000 - 4_000_000 + 400_000
    ledger.check_invariant()


def test_two_reviewers_releasing_at_once_pay_once(ledger: Ledger, postgres_url: str) -> None:
    run = str(uuid.uuid4())
    periods = [_period(100 + i) for i in range(20)]
    for period in periods:
        held = settle(
            ledger,
            sla_uid=run,
            period=period,
            result=_evaluation(),
            coverage_floor_percent=101.0,  # nothing is covered enough: every period is held
        )
        assert held.state == SettlementState.HELD_FOR_REVIEW
    barrier = threading.Barrier(2)

    def reviewer(who: str) -> list[str]:
        own = Ledger.open(postgres_url)
        try:
            reviewed = []
            for period in periods:
                barrier.wait()
                done = release_held(
                    own, sla_uid=run, period_start=period.start, reviewer=who, note="ok"
                )
                assert done is not None
                reviewed.append(str(done.reviewed_by))
            return reviewed
        finally:
            own.close()

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(reviewer, ["alice", "bob"]))
    # Both saw the same winner for each period, and it paid once.
    assert answers[0] == answers[1]
    transfers = ledger.transfers(sla_uid=run)
    assert len(transfers) == len(periods) * len(KINDS)
    assert len({t.idempotency_key for t in transfers}) == len(transfers)
    ledger.check_invariant()


def test_plans_and_top_ups_of_the_longest_names_are_funded_on_postgres(ledger: Ledger) -> None:
    """Their transfers are keyed by `plan:<owner>:<offer>` and `topup:<owner>`, far wider than an
    SLA uid: migration 4 widens the column PostgreSQL enforces (SQLite ignores widths)."""
    from aiconn.resources.v1alpha1.offer import TokenPlan
    from aiconn.sla.plans import fund_plan
    from aiconn.sla.topups import top_up

    owner = wallet_owner("n" * 63, "t" * 63)
    offer = "o" * 253
    at = datetime(2026, 3, 15, tzinfo=UTC)
    plan = TokenPlan(includedTokensPerPeriod=1_000_000)
    funded = fund_plan(ledger, tenant=owner, namespace="n" * 63, offer=offer, plan=plan, at=at)
    assert funded is not None
    assert fund_plan(ledger, tenant=owner, namespace="n" * 63, offer=offer, plan=plan, at=at)
    top_up(
        ledger,
        tenant=owner,
        namespace="n" * 63,
        tokens=500,
        idempotency_key="k" * 200,
        by="billing@example",
        why="a long-named tenant's top-up",
        at=at,
    )
    assert ledger.available_tokens(owner) == 1_000_500
    ledger.check_invariant()


def test_the_settled_budget_is_stored_to_the_last_digit_on_postgres(ledger: Ledger) -> None:
    measured = -1.4884979702300405  # 45 bad of 44,340 known minutes against a 99.9 % target
    result = dataclasses.replace(_evaluation(), budget_remaining_percent=measured)
    settle(ledger, sla_uid=str(uuid.uuid4()), period=_period(0), result=result)
    (stored,) = ledger.settlements()
    assert stored.budget_remaining_percent == Decimal("-1.4884979702300405")
    assert float(stored.budget_remaining_percent) == measured
