"""Settlement policy: what a closed period's settlement is, decided from what it measured.

A period is held for review when data coverage is below the floor or an inexact latency
attainment could change the credit; otherwise it is settled by posting usage, charge, credit and
penalty (`settlement_transfers`, the scheme in `aiconn.sla.accounting`). The decision is made
here, from plain values; the ledger records it in one database transaction
(`SettlementBook.record_settlement`, `aiconn.store.ledger`), so a crash between deciding and
committing leaves nothing, and a retry settles exactly once, with one evidence document.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from aiconn.sla.accounting import (
    ALLOWANCE,
    REVENUE,
    SLA_PENALTY,
    TOKENS,
    HoldReason,
    Kind,
    Settlement,
    SettlementState,
    Transfer,
    TransferBook,
    TransferSpec,
    currency_unit,
    transfer_id,
    units,
    wallet_account,
)
from aiconn.sla.credits import (
    CreditBreakdown,
    attainment_percent,
    exact_decimal,
    to_micros,
    tokens_for_amount,
)
from aiconn.sla.evidence import Decided, Measured, evidence_document
from aiconn.sla.periods import Period


@dataclass(frozen=True)
class PeriodOutcome:
    """What settling a period reads of its evaluation (`SLAEvaluation.outcome`): the figures it
    stores, the money it moves and what decides whether it is held."""

    tokens_used: int
    price_per_million_tokens: Decimal
    charges: Decimal
    credit: CreditBreakdown
    credit_uncertain: bool
    """An interpolated latency attainment could earn a different credit: hold for review."""
    coverage_percent: float | None
    availability_percent: float | None
    budget_remaining_percent: float | None
    ttft_attainment_percent: float | None
    ttft_exact: bool
    tpot_attainment_percent: float | None
    tpot_exact: bool
    good_minutes: int
    bad_minutes: int
    excused_minutes: int
    judged_minutes: int | None


_AS_MEASURED = sorted(
    ({f.name for f in fields(PeriodOutcome)} & {f.name for f in fields(Settlement)})
    - {"budget_remaining_percent"}
)
"""What a settlement stores as the period measured it: the minutes, attainments and tokens (the
budget left is stored as the exact decimal of the measured figure, like the credit percent)."""


@dataclass(frozen=True)
class SettlementDecision:
    """A period's settlement as decided, for the ledger to record in one transaction."""

    settlement: Settlement
    """The settlement as it is to be stored (`created_at`: when it was decided)."""
    held_credit_micros: int | None
    """What a held period would credit, for the reviewer who releases it (None: not held)."""
    held_credit_tokens: int | None
    transfers: tuple[TransferSpec, ...]
    evidence: dict[str, Any] | None
    """The evidence document, completed with what was decided (None: nothing measured given)."""


class SettlementBook(Protocol):
    """The part of the ledger settling reads and writes (`aiconn.store.ledger.Ledger`)."""

    def settlement(self, sla_uid: str, period: Period) -> Settlement | None: ...

    def record_settlement(self, decision: SettlementDecision) -> Settlement: ...


def fund_allowance(
    ledger: TransferBook,
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
    ledger: SettlementBook,
    *,
    sla_uid: str,
    namespace: str,
    name: str,
    tenant: str,
    period: Period,
    outcome: PeriodOutcome,
    coverage_floor_percent: float,
    currency: str = "EUR",
    evidence: Measured | None = None,
    hold: HoldReason | None = None,
    units_per_million_tokens: int | None = None,
    price_version: int | None = None,
) -> Settlement:
    """Settle a closed period once: hold it for review when data coverage is below the floor or
    an inexact latency attainment could change the credit (`outcome.credit_uncertain`), otherwise
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
    coverage = outcome.coverage_percent
    reason = hold
    if reason is None and (coverage is None or coverage < coverage_floor_percent):
        reason = HoldReason.LOW_COVERAGE
    elif reason is None and outcome.credit_uncertain:
        reason = HoldReason.INEXACT_ATTAINMENT
    held = reason is not None
    state = SettlementState.HELD_FOR_REVIEW if held else SettlementState.SETTLED
    charges = to_micros(outcome.charges)
    credit = to_micros(outcome.credit.amount)
    credit_tokens = tokens_for_amount(outcome.credit.amount, outcome.price_per_million_tokens)
    specs = (
        []
        if held
        else settlement_transfers(
            sla_uid=sla_uid,
            namespace=namespace,
            name=name,
            wallet=wallet_account(tenant),
            period=period,
            tokens_used=outcome.tokens_used,
            charges=charges,
            credit=credit,
            credit_tokens=credit_tokens,
            unit=currency_unit(currency),
            credit_percent=str(outcome.credit.total_percent),
            rate=units_per_million_tokens,
            price_version=price_version,
        )
    )
    document = (
        None
        if evidence is None
        else evidence_document(
            evidence,
            sla_uid=sla_uid,
            tenant=tenant,
            period_start=period.start_iso,
            period_end=period.end_iso,
            minutes=period.minutes,
            decided=_decided(
                outcome,
                state=state,
                reason=reason,
                floor=coverage_floor_percent,
                charges=charges,
                credit=credit,
                credit_tokens=credit_tokens,
            ),
        )
    )
    settlement = Settlement(
        **{figure: getattr(outcome, figure) for figure in _AS_MEASURED},
        sla_uid=sla_uid,
        sla_namespace=namespace,
        sla_name=name,
        tenant=tenant,
        period=period,
        state=state,
        currency=currency,
        charges_micros=charges,
        credit_micros=0 if held else credit,
        credit_tokens=0 if held else credit_tokens,
        credit_percent=outcome.credit.total_percent,
        budget_remaining_percent=(
            None
            if outcome.budget_remaining_percent is None
            else exact_decimal(outcome.budget_remaining_percent)
        ),
        transfer_ids=tuple(transfer_id(spec.key) for spec in specs),
        created_at=datetime.now(UTC),
        hold_reason=reason,
        units_per_million_tokens=units_per_million_tokens,
        price_version=price_version,
    )
    return ledger.record_settlement(
        SettlementDecision(
            settlement=settlement,
            held_credit_micros=credit if held else None,
            held_credit_tokens=credit_tokens if held else None,
            transfers=tuple(specs),
            evidence=document,
        )
    )


def _decided(
    outcome: PeriodOutcome,
    *,
    state: str,
    reason: HoldReason | None,
    floor: float,
    charges: int,
    credit: int,
    credit_tokens: int,
) -> Decided:
    # The availability the credit tiers compared, as `evaluate_fleet` computed it.
    availability = attainment_percent(
        outcome.good_minutes, outcome.good_minutes + outcome.bad_minutes
    )
    return Decided(
        state=state,
        hold_reason=None if reason is None else reason.value,
        good_minutes=outcome.good_minutes,
        bad_minutes=outcome.bad_minutes,
        coverage_floor_percent=floor,
        coverage_percent=outcome.coverage_percent,
        availability_percent=None if availability is None else str(availability),
        tokens=outcome.tokens_used,
        charges_micros=charges,
        availability_credit_percent=str(outcome.credit.availability_percent),
        latency_credit_percent=str(outcome.credit.latency_percent),
        credit_percent=str(outcome.credit.total_percent),
        credit_micros=credit,
        credit_tokens=credit_tokens,
    )


def settlement_transfers(
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
