"""Token plans: wallets funded per tenant and plan period exactly once, and each period's close.

Funding per SLA (the legacy `fund_allowance`, keyed by the SLA's uid) pays again whenever a
tenant deletes and re-creates an SLA, or runs two. A plan's allowance belongs to the tenant's
subscription to an offer instead: its idempotency key is `plan:<tenant>:<offer>/<period start>/
allowance`, so the ledger's unique key makes a second funding of the same tenant, offer and
period a no-op, across SLAs, restarts and racing operators alike.

Units. The wallet (`wallet:<tenant>`, ledger unit `tokens`) counts plan units: a settled SLA
period pays `units(tokens, rate)` where the rate is the plan's `exchangeRates` entry for the SLA's
model class (units per million tokens, rounded up to a whole unit per SLA period; one unit per
token for a class without a rate), so one balance is shared by every model of the offer and a
large model costs more units per token.

Lots. What the wallet holds is a set of lots, each with the time it becomes usable and the time
it expires, read back from the wallet's own transfers (nothing but the ledger is state):

- the plan's included units of a period (`allowance`), usable in that period, expiring at its end
  unless rolled over;
- rolled-over units (`rollover`), usable from the next period for `rollover.lifetimePeriods`
  periods;
- top-ups (`topup`), usable from their purchase, expiring `topUps.expireAfter` later (never
  without it);
- anything else credited (SLA credits, legacy per-SLA allowances): never expires.

A plan period's usage (the usage transfers of the SLA periods that start in it) is taken from the
lots usable in that period, the soonest to expire first (then oldest first). Closing the period
(`close_plan_period`, after its SLA periods are settled) then posts, in one transaction claimed
by a `plan_closes` row unique per tenant, offer and period, so it happens exactly once:

- `rollover-out` / `rollover`: unused included units up to `rollover.maxTokens`, out of the wallet
  into the `rollover` account and back into the wallet as a lot of the next period (statement
  lines on both sides of the boundary);
- `expiry`: each lot's remainder that expires at this close (included units beyond the rollover
  cap, rolled-over units at the end of their lifetime, top-ups past their expiry), wallet ->
  `expired`, with the reason and the lot in its metadata;
- `overage`: units used beyond every lot, `overage` -> wallet, so the next period starts at zero;
  with `PayPerUse` also `overage-charge`, wallet -> revenue in currency micro-units at the plan's
  price per million units (rounded half-even to the micro-unit); with `HardStop` the gateway
  refused once the wallet was spent (402) and the few units served in flight are written off;
- `fee`: the subscription's fee for the period, wallet -> revenue in currency micro-units.

The fee and the overage price are those in force at the period's start (the offer's price
versions, `aiconn.sla.prices.plan_in_force`), recorded with the period's funding; the `fee` and
`overage-charge` lines name the version they were charged at (`priceVersion`).

The granularity is the plan period: a top-up bought or expiring inside a period counts as usable
for that whole period's usage, and expires at the first close at or after its expiry time. A
tenant holds one plan at a time (its wallet is one; top-up expiry follows the plan that closes).
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from aiconn.resources.v1alpha1.offer import TokenPlan
from aiconn.sla.accounting import (
    ALLOWANCE,
    REVENUE,
    TOKENS,
    Kind,
    StatementPage,
    Transfer,
    TransferBook,
    TransferSpec,
    currency_unit,
    idempotency_key,
    transfer_id,
    wallet_account,
)
from aiconn.sla.credits import exact_decimal, to_micros
from aiconn.sla.periods import Period, parse_duration, period_containing
from aiconn.sla.prices import PlanPriceVersions

EXPIRED = "expired"
"""Account that expired units go to."""
ROLLOVER = "rollover"
"""Account rolled-over units pass through between two periods."""
OVERAGE = "overage"
"""Account that covers units used beyond the wallet."""
TOPUP_KIND = "topup"  # aiconn.sla.topups.KIND (that module imports the ledger too)
_NEVER = datetime.max.replace(tzinfo=UTC)
_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class PlanKind:
    """Kinds of the transfers a plan period's close posts."""

    ROLLOVER_OUT = "rollover-out"
    ROLLOVER_IN = "rollover"
    EXPIRY = "expiry"
    OVERAGE = "overage"
    OVERAGE_CHARGE = "overage-charge"
    FEE = "fee"


def plan_subject(tenant: str, offer: str) -> str:
    """What a plan's transfers are keyed by (the ledger's `sla_uid` column): tenant and offer."""
    return f"plan:{tenant}:{offer}"


def plan_period(plan: TokenPlan, at: datetime) -> Period:
    """The plan period containing `at` (calendar-aligned in UTC)."""
    return period_containing(plan.window, at)


def fund_plan(
    ledger: PlanBook,
    *,
    tenant: str,
    namespace: str,
    offer: str,
    plan: TokenPlan,
    at: datetime,
    price_versions: PlanPriceVersions | None = None,
) -> Transfer | None:
    """Fund the tenant's wallet with the plan's included tokens for the period containing `at`,
    once per tenant, offer and period. None when the plan includes no tokens.

    `plan` is the plan priced as in force at the period's start (`AIInferenceOfferSpec.plan_at`)
    and `price_versions` the versions its fee and overage price were set by: the funding records
    both, and the period's close charges them (`close_plan_period`), so a price change announced
    for a date inside the period applies from the next period on. Versions are recorded only
    when one is not the plan's own (1), so a plan never changed funds as it always did.

    Raises TransferConflict when the period was funded with another amount or plan (the plan
    changed mid-period): the funded amount stands, transfers are immutable, and the period
    closes on the plan it was funded with (`funded_plan`).
    """
    if plan.included_tokens_per_period == 0:
        return None
    return ledger.post_transfer(
        TransferSpec(
            debit_account=ALLOWANCE,
            credit_account=wallet_account(tenant),
            amount=plan.included_tokens_per_period,
            unit=TOKENS,
            kind=Kind.ALLOWANCE,
            sla_uid=plan_subject(tenant, offer),
            sla_namespace=namespace,
            sla_name=offer,
            period=plan_period(plan, at),
            # The plan as funded: the period closes on it, whatever the offer says by then.
            metadata={
                "offer": offer,
                "source": "plan",
                "overage": plan.overage.mode,
                "plan": plan.to_k8s(),
            }
            | _versions_meta(price_versions),
        )
    )


def _versions_meta(versions: PlanPriceVersions | None) -> dict[str, Any]:
    if versions is None or (versions.fee_version, versions.overage_version) == (1, 1):
        return {}
    return {"priceVersions": {"fee": versions.fee_version, "overage": versions.overage_version}}


def funded_price_versions(
    ledger: PlanBook, *, tenant: str, offer: str, period: Period
) -> tuple[int, int]:
    """The price versions (fee, overage) the plan period was funded at: (1, 1) when the funding
    records none (no change in force, or funded before plan prices were versioned)."""
    funded = ledger.transfer_by_key(
        idempotency_key(plan_subject(tenant, offer), period, Kind.ALLOWANCE.value)
    )
    recorded = {} if funded is None else funded.metadata.get("priceVersions") or {}
    return int(recorded.get("fee", 1)), int(recorded.get("overage", 1))


def funded_plan(ledger: PlanBook, *, tenant: str, offer: str, period: Period) -> TokenPlan | None:
    """The plan the period was funded with (None: not funded by a plan, or funded before plans
    were recorded with their funding)."""
    funded = ledger.transfer_by_key(
        idempotency_key(plan_subject(tenant, offer), period, Kind.ALLOWANCE.value)
    )
    if funded is None or "plan" not in funded.metadata:
        return None
    return TokenPlan.model_validate(funded.metadata["plan"])


def overage_mode(ledger: PlanBook, tenant: str) -> str:
    """How the gateway treats a spent wallet: the overage mode of the plan that funded it last
    (`PayPerUse`: keep serving, charged at the close; `HardStop`, also without a plan: 402)."""
    funded = ledger.latest_transfer(
        credit_account=wallet_account(tenant), kind=Kind.ALLOWANCE.value, subject_prefix="plan:"
    )
    mode = None if funded is None else funded.metadata.get("overage")
    return "PayPerUse" if mode == "PayPerUse" else "HardStop"


def add_duration(t: datetime, text: str) -> datetime:
    """`t` plus an OpenSLO duration; months are calendar months (the day clamped to the month)."""
    duration = parse_duration(text)
    if text[-1] != "M":
        return t + timedelta(seconds=duration.count * _SECONDS[text[-1]])
    index = t.year * 12 + t.month - 1 + duration.count
    year, month = divmod(index, 12)
    day = min(t.day, calendar.monthrange(year, month + 1)[1])
    return t.replace(year=year, month=month + 1, day=day)


@dataclass
class Lot:
    """Units credited to the wallet that can be used, expire or roll over together."""

    id: str
    """The id of the transfer that credited them."""
    source: str
    """included, rollover, topup or other."""
    amount: int
    usable_from: datetime
    expires_at: datetime | None
    period: Period
    """The credited transfer's period (for included units: the plan period)."""
    metadata: dict[str, Any]
    seq: int
    remaining: int = field(init=False)

    def __post_init__(self) -> None:
        self.remaining = self.amount

    def usable_in(self, period: Period) -> bool:
        return self.usable_from < period.end and (
            self.expires_at is None or self.expires_at > period.start
        )


@dataclass(frozen=True)
class PlanClose:
    """A closed plan period: what it took from the wallet and what it posted."""

    tenant: str
    offer: str
    period: Period
    summary: dict[str, Any]
    transfer_ids: tuple[str, ...]
    closed_at: datetime


class PlanBook(TransferBook, Protocol):
    """The part of the ledger plans read and write (`aiconn.store.ledger.Ledger`)."""

    def statement(
        self, account: str, *, unit: str | None = None, after: int | None = None, limit: int = 100
    ) -> StatementPage: ...

    def latest_transfer(
        self, *, credit_account: str, kind: str, subject_prefix: str
    ) -> Transfer | None: ...

    def plan_close(self, subject: str, period: Period) -> PlanClose | None: ...

    def record_plan_close(
        self, subject: str, close: PlanClose, transfers: Sequence[TransferSpec]
    ) -> PlanClose: ...


@dataclass(frozen=True)
class _PlanSpec(TransferSpec):
    """A plan close's transfer: keyed by plan subject, period, kind and the lot it concerns."""

    lot: str = ""

    @property
    def key(self) -> str:
        base = f"{self.sla_uid}/{self.period.start_iso}/{self.kind}"
        return f"{base}:{self.lot}" if self.lot else base


def wallet_transfers(ledger: PlanBook, tenant: str) -> list[Transfer]:
    """Every transfer of the tenant's wallet in plan units, in posting order."""
    out: list[Transfer] = []
    after = None
    while True:
        page = ledger.statement(wallet_account(tenant), unit=TOKENS, after=after, limit=1000)
        out.extend(e.transfer for e in page.entries)
        if page.next_after is None:
            return out
        after = page.next_after


def lots(transfers: Iterable[Transfer], *, tenant: str, plan: TokenPlan, subject: str) -> list[Lot]:
    """The lots the wallet was credited with (see the module's docstring)."""
    wallet = wallet_account(tenant)
    found = []
    for t in transfers:
        if t.credit_account != wallet or t.kind == PlanKind.OVERAGE:
            continue
        expires: datetime | None
        if t.kind == Kind.ALLOWANCE and t.sla_uid == subject:
            source, usable, expires = "included", t.period.start, t.period.end
        elif t.kind == PlanKind.ROLLOVER_IN:
            source, usable = "rollover", t.period.start
            expires = datetime.fromisoformat(t.metadata["expiresAt"])
        elif t.kind == TOPUP_KIND:
            source = "topup"
            usable = datetime.fromisoformat(t.metadata.get("at") or t.created_at.isoformat())
            after = plan.top_ups.expire_after
            expires = None if after is None else add_duration(usable, after)
        elif t.kind == Kind.ALLOWANCE:
            source, usable, expires = "other", t.period.start, None
        else:
            source, usable, expires = "other", t.period.end, None
        found.append(Lot(t.id, source, t.amount, usable, expires, t.period, t.metadata, t.seq))
    return found


def _periods(plan: TokenPlan, first: datetime, last: Period) -> list[Period]:
    out = [plan_period(plan, min(first, last.start))]
    while out[-1].start < last.start:
        out.append(plan_period(plan, out[-1].end))
    return out


def _take(live: list[Lot], need: int) -> int:
    """Take `need` units from the lots, soonest to expire first; the units left uncovered."""
    for lot in sorted(live, key=lambda x: (x.expires_at or _NEVER, x.usable_from, x.seq)):
        taken = min(lot.remaining, need)
        lot.remaining -= taken
        need -= taken
        if need == 0:
            break
    return need


@dataclass
class _Replay:
    lots: list[Lot]
    used: int
    uncovered: int


def _replay(
    transfers: list[Transfer], *, tenant: str, plan: TokenPlan, subject: str, period: Period
) -> _Replay:
    """The wallet's lots as they stand after `period`'s usage, before its close: every earlier
    period's usage taken and its close's expiries and rollovers applied."""
    wallet = wallet_account(tenant)
    all_lots = lots(transfers, tenant=tenant, plan=plan, subject=subject)
    by_id = {lot.id: lot for lot in all_lots}
    usage = [t for t in transfers if t.debit_account == wallet and t.kind == Kind.USAGE]
    closes = [
        t
        for t in transfers
        if t.debit_account == wallet and t.kind in (PlanKind.EXPIRY, PlanKind.ROLLOVER_OUT)
    ]
    starts = [t.period.start for t in transfers] or [period.start]
    used = uncovered = 0
    for q in _periods(plan, min(starts), period):
        used = sum(t.amount for t in usage if q.start <= t.period.start < q.end)
        live = [lot for lot in all_lots if lot.usable_in(q)]
        uncovered = _take(live, used)
        if q.start == period.start:
            break
        for t in closes:
            if t.period.start == q.start and t.metadata.get("lot") in by_id:
                by_id[t.metadata["lot"]].remaining -= t.amount
    return _Replay(all_lots, used, uncovered)


def close_plan_period(
    ledger: PlanBook,
    *,
    tenant: str,
    namespace: str,
    offer: str,
    plan: TokenPlan,
    currency: str,
    period: Period,
) -> PlanClose:
    """Close the tenant's plan period once: roll over, expire, cover overage and charge the fee
    (see the module's docstring). Call it after the period's SLA periods are settled; a replay,
    or a racing closer, gets the stored close."""
    subject = plan_subject(tenant, offer)
    stored = ledger.plan_close(subject, period)
    if stored is not None:
        return stored
    state = _replay(
        wallet_transfers(ledger, tenant), tenant=tenant, plan=plan, subject=subject, period=period
    )
    wallet = wallet_account(tenant)
    unit = currency_unit(currency)
    specs: list[_PlanSpec] = []

    def post(
        debit: str, credit: str, amount: int, kind: str, meta: dict[str, Any], **kw: Any
    ) -> None:
        if amount > 0:
            specs.append(
                _PlanSpec(
                    debit_account=debit,
                    credit_account=credit,
                    amount=amount,
                    unit=kw.get("unit", TOKENS),
                    kind=kind,
                    sla_uid=subject,
                    sla_namespace=namespace,
                    sla_name=offer,
                    period=kw.get("period", period),
                    metadata={"offer": offer, **meta},
                    price_version=kw.get("price_version"),
                    lot=kw.get("lot", ""),
                )
            )

    rolled = expired = 0
    following = plan_period(plan, period.end)
    for lot in state.lots:
        if lot.remaining <= 0:
            continue
        if lot.source == "included" and lot.period.start == period.start:
            cap = 0 if plan.rollover is None else plan.rollover.max_tokens
            roll = min(lot.remaining, cap)
            if roll and plan.rollover is not None:
                last = following
                for _ in range(plan.rollover.lifetime_periods - 1):
                    last = plan_period(plan, last.end)
                carried: dict[str, Any] = {
                    "lot": lot.id,
                    "from": period.start_iso,
                    "expiresAt": last.end_iso,
                }
                post(wallet, ROLLOVER, roll, PlanKind.ROLLOVER_OUT, carried)
                post(ROLLOVER, wallet, roll, PlanKind.ROLLOVER_IN, carried, period=following)
            rest = lot.remaining - roll
            reason = f"included units of the period from {period.start_iso} not used" + (
                "" if plan.rollover is None else f", beyond the rollover cap of {cap}"
            )
            post(wallet, EXPIRED, rest, PlanKind.EXPIRY, _expiry(lot, reason), lot=lot.id)
            rolled, expired = rolled + roll, expired + rest
        elif lot.expires_at is not None and lot.expires_at <= period.end:
            reason = {
                "rollover": "rolled-over units reached the end of their lifetime",
                "topup": f"top-up expired {plan.top_ups.expire_after} after its purchase",
                "included": "included units of an earlier period not used",
            }.get(lot.source, "expired")
            post(wallet, EXPIRED, lot.remaining, PlanKind.EXPIRY, _expiry(lot, reason), lot=lot.id)
            expired += lot.remaining
    overage = state.uncovered
    overage_micros = 0
    # The prices are the plan's as funded at the period's start; the versions they were set by.
    fee_version, overage_version = funded_price_versions(
        ledger, tenant=tenant, offer=offer, period=period
    )
    mode = plan.overage.mode
    if overage:
        price = plan.overage.price_per_million_units
        charged = (
            Decimal(0) if price is None else Decimal(overage) * exact_decimal(price) / 1_000_000
        )
        overage_micros = to_micros(charged)
        meta = {
            "mode": mode,
            "pricePerMillionUnits": None if price is None else str(exact_decimal(price)),
            "priceVersion": overage_version,
            "reason": "units used beyond the wallet"
            + (
                ", charged per use"
                if mode == "PayPerUse"
                else ", served in flight past the hard stop; not charged"
            ),
        }
        post(OVERAGE, wallet, overage, PlanKind.OVERAGE, meta)
        post(
            wallet,
            REVENUE,
            overage_micros,
            PlanKind.OVERAGE_CHARGE,
            meta,
            unit=unit,
            price_version=overage_version,
        )
    fee = exact_decimal(plan.fee_per_period)
    fee_micros = to_micros(fee)
    post(
        wallet,
        REVENUE,
        fee_micros,
        PlanKind.FEE,
        {
            "reason": "plan fee for the period",
            "feePerPeriod": str(fee),
            "priceVersion": fee_version,
        },
        unit=unit,
        price_version=fee_version,
    )
    summary = {
        "usedUnits": state.used,
        "rolledOverUnits": rolled,
        "expiredUnits": sum(s.amount for s in specs if s.kind == PlanKind.EXPIRY),
        "overageUnits": overage,
        "overageMode": mode,
        "overageMicros": overage_micros,
        "feeMicros": fee_micros,
        "feePriceVersion": fee_version,
        "overagePriceVersion": overage_version,
        "currency": currency,
    }
    close = PlanClose(
        tenant=tenant,
        offer=offer,
        period=period,
        summary=summary,
        transfer_ids=tuple(transfer_id(spec.key) for spec in specs),
        closed_at=datetime.now(UTC),
    )
    return ledger.record_plan_close(subject, close, specs)


def _expiry(lot: Lot, reason: str) -> dict[str, Any]:
    return {
        "lot": lot.id,
        "lotSource": lot.source,
        "reason": reason,
        "expiresAt": None if lot.expires_at is None else lot.expires_at.isoformat(),
    }
