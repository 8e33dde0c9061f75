"""The ledger on a real PostgreSQL: racing settlers never double-pay."""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text

from aiconn.sla.credits import CreditBreakdown
from aiconn.sla.evaluate import SLAEvaluation
from aiconn.sla.ledger import Ledger, TransferConflict, TransferSpec, settle_period
from aiconn.sla.periods import Period

pytestmark = pytest.mark.integration

RACES = 200
KINDS = ("usage", "charge", "credit", "penalty")


@pytest.fixture
def ledger(postgres_url: str) -> Iterator[Ledger]:
    opened = Ledger.open(postgres_url)
    with opened.engine.begin() as conn:
        conn.execute(text("TRUNCATE transfers, settlements"))
    yield opened
    opened.close()


def _evaluation() -> SLAEvaluation:
    return SLAEvaluation(
        minutes=1440,
        good_minutes=1430,
        bad_minutes=10,
        availability_percent=99.3,
        coverage_percent=100.0,
        ttft_attainment_percent=99.5,
        ttft_exact=True,
        tpot_attainment_percent=99.5,
        tpot_exact=True,
        inference_ttft_attainment_percent=None,
        budget_remaining_percent=-600.0,
        burn_rates={},
        alerts=(),
        tokens_used=4_000_000,
        price_per_million_tokens=Decimal("0.5"),
        charges=Decimal("2"),
        credit=CreditBreakdown(Decimal(10), Decimal(0), Decimal(10), Decimal("0.2")),
    )


def _period(i: int) -> Period:
    start = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(days=i)
    return Period(start=start, end=start + timedelta(days=1))


def _settler(url: str, run: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    ledger = Ledger.open(url)
    result = _evaluation()
    for i in range(RACES):
        barrier.wait()
        settle_period(
            ledger,
            sla_uid=run,
            namespace="acme",
            name="chat",
            tenant="acme",
            period=_period(i),
            result=result,
            coverage_floor_percent=95.0,
        )
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
        return TransferSpec(
            debit_account="wallet:acme",
            credit_account="revenue",
            amount=amount,
            unit="tokens",
            kind="usage",
            sla_uid="uid-pg",
            sla_namespace="acme",
            sla_name="chat",
            period=_period(0),
        )

    first = ledger.post_transfer(spec(5))
    assert ledger.post_transfer(spec(5)) == first
    with pytest.raises(TransferConflict):
        ledger.post_transfer(spec(6))
