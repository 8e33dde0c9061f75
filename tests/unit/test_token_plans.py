"""Token plans on a real SQLite ledger: rollover lifetime, hard-stop overage, exactly-once closes,
the plan's validation and the rounding of units (the multi-period scenario with every feature is
tests/integration/test_token_plans.py, on PostgreSQL and the API server)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from aiconn.resources.v1alpha1.offer import AIInferenceOfferSpec, TokenPlan
from aiconn.sla.accounting import TransferConflict, units
from aiconn.sla.periods import Period
from aiconn.sla.plans import (
    PlanClose,
    add_duration,
    close_plan_period,
    fund_plan,
    funded_plan,
    funded_price_versions,
    overage_mode,
    plan_subject,
)
from aiconn.sla.prices import PlanPriceVersions
from aiconn.store.ledger import Ledger
from tests.factories import fully_available, settle

TENANT = "acme"


def month(m: int) -> Period:
    return Period(start=datetime(2026, m, 1, tzinfo=UTC), end=datetime(2026, m + 1, 1, tzinfo=UTC))


used = fully_available


def run(
    ledger: Ledger,
    plan: TokenPlan,
    usage: dict[int, int],
    versions: PlanPriceVersions | None = None,
) -> dict[int, dict[str, Any]]:
    """Fund (at `versions`), settle one SLA's usage and close each month; the close summaries
    by month."""
    out = {}
    for m, tokens in usage.items():
        period = month(m)
        fund_plan(
            ledger,
            tenant=TENANT,
            namespace=TENANT,
            offer="o",
            plan=plan,
            at=period.start,
            price_versions=versions,
        )
        if tokens:
            settle(ledger, sla_uid="sla-1", namespace=TENANT, period=period, result=used(tokens))
        closed = close(ledger, plan, period)
        out[m] = closed.summary | {"wallet": ledger.wallet_balance(TENANT)}
    return out


def close(ledger: Ledger, plan: TokenPlan, period: Period) -> PlanClose:
    """Close the tenant's period of offer `o` in EUR."""
    return close_plan_period(
        ledger,
        tenant=TENANT,
        namespace=TENANT,
        offer="o",
        plan=plan,
        currency="EUR",
        period=period,
    )


def test_rolled_over_units_last_their_lifetime_then_expire(ledger: Ledger) -> None:
    plan = TokenPlan.model_validate(
        {"includedTokensPerPeriod": 1000, "rollover": {"maxTokens": 600, "lifetimePeriods": 2}}
    )
    # Jan: 100 used; 600 of the 900 left roll over (the cap), usable in Feb and Mar; 300 expire.
    # Feb: 700 used, from February's own units first (they expire sooner than the rollover);
    # their other 300 roll over (until the end of April). Mar: nothing used: 600 of March's
    # roll, 400 expire, and January's rollover ends its lifetime: 600 expire. Apr: nothing
    # used: February's rollover ends (300 expire), 600 of April's roll, 400 expire.
    summaries = run(ledger, plan, {1: 100, 2: 700, 3: 0, 4: 0})
    assert [(s["rolledOverUnits"], s["expiredUnits"], s["wallet"]) for s in summaries.values()] == [
        (600, 300, 600),
        (300, 0, 900),
        (600, 400 + 600, 900),
        (600, 300 + 400, 1200),
    ]
    reasons = [t.metadata["reason"] for t in ledger.transfers(kind="expiry")]
    assert reasons[-2] == "rolled-over units reached the end of their lifetime"
    ledger.check_invariant()


def test_a_hard_stop_writes_off_what_was_served_in_flight_and_charges_nothing(
    ledger: Ledger,
) -> None:
    plan = TokenPlan.model_validate({"includedTokensPerPeriod": 1000, "feePerPeriod": 4.99})
    summary = run(ledger, plan, {1: 1003})[1]
    assert summary["overageUnits"] == 3 and summary["overageMicros"] == 0
    assert summary["feeMicros"] == 4_990_000
    assert ledger.wallet_balance(TENANT) == 0
    (covered,) = ledger.transfers(kind="overage")
    assert covered.metadata["mode"] == "HardStop" and "not charged" in covered.metadata["reason"]
    assert ledger.transfers(kind="overage-charge") == []
    assert overage_mode(ledger, TENANT) == "HardStop"


def test_pay_per_use_overage_is_charged_to_the_micro_unit(ledger: Ledger) -> None:
    plan = TokenPlan.model_validate(
        {
            "includedTokensPerPeriod": 1000,
            "overage": {"mode": "PayPerUse", "pricePerMillionUnits": 0.7},
        }
    )
    assert overage_mode(ledger, TENANT) == "HardStop"  # no plan funded yet
    summary = run(ledger, plan, {1: 1000 + 1_234_567})[1]
    # 1,234,567 units x 0.7 EUR / 1e6 = 0.8641969 EUR -> 864,197 micro-EUR (half-even)
    assert summary["overageMicros"] == 864_197
    assert overage_mode(ledger, TENANT) == "PayPerUse"


def test_a_period_closes_once_and_a_changed_plan_cannot_reclose_it(ledger: Ledger) -> None:
    plan = TokenPlan.model_validate({"includedTokensPerPeriod": 1000})
    first = run(ledger, plan, {1: 10})[1]
    again = close(ledger, plan, month(1))
    assert again.summary | {"wallet": 0} == first
    assert len(ledger.transfers(sla_uid=plan_subject(TENANT, "o"), kind="expiry")) == 1
    # Funding the same period with another amount is refused: the funded amount stands.
    bigger = TokenPlan.model_validate({"includedTokensPerPeriod": 2000})
    with pytest.raises(TransferConflict):
        fund_plan(
            ledger, tenant=TENANT, namespace=TENANT, offer="o", plan=bigger, at=month(1).start
        )


def test_a_period_closes_on_the_plan_it_was_funded_with(ledger: Ledger) -> None:
    """The provider raises the fee mid-period: January was funded on the old plan and closes on
    it (the operator passes `funded_plan`); February is funded, and closes, on the new one."""
    old = TokenPlan.model_validate({"includedTokensPerPeriod": 1000, "feePerPeriod": 5})
    new = TokenPlan.model_validate({"includedTokensPerPeriod": 1000, "feePerPeriod": 7.5})
    fund_plan(ledger, tenant=TENANT, namespace=TENANT, offer="o", plan=old, at=month(1).start)
    assert funded_plan(ledger, tenant=TENANT, offer="o", period=month(1)) == old
    assert funded_plan(ledger, tenant=TENANT, offer="o", period=month(2)) is None
    summaries = run(ledger, new, {2: 0})
    assert summaries[2]["feeMicros"] == 7_500_000
    assert funded_plan(ledger, tenant=TENANT, offer="o", period=month(2)) == new


def test_a_close_charges_the_prices_funded_and_names_their_versions(ledger: Ledger) -> None:
    """January is funded on the plan's own prices (no versions recorded: version 1); February
    on version 2's fee and version 3's overage price, as `AIInferenceOfferSpec.plan_at` gives
    them."""
    plan = TokenPlan.model_validate(
        {
            "includedTokensPerPeriod": 1000,
            "feePerPeriod": 5,
            "overage": {"mode": "PayPerUse", "pricePerMillionUnits": 2},
        }
    )
    run(ledger, plan, {1: 1500})
    assert "priceVersions" not in ledger.transfers(kind="allowance")[0].metadata
    priced = plan.model_copy(
        update={
            "fee_per_period": 6.25,
            "overage": plan.overage.model_copy(update={"price_per_million_units": 3}),
        }
    )
    run(ledger, priced, {2: 1500}, PlanPriceVersions(Decimal("6.25"), 2, Decimal(3), 3))
    charged = [
        (t.kind, t.amount, t.price_version, t.metadata["priceVersion"])
        for t in ledger.transfers(sla_uid=plan_subject(TENANT, "o"))
        if t.kind in ("fee", "overage-charge")
    ]
    # 500 units x 2 EUR / 1e6 = 0.001 EUR; 500 x 3 EUR / 1e6 = 0.0015 EUR.
    assert charged == [
        ("overage-charge", 1_000, 1, 1),
        ("fee", 5_000_000, 1, 1),
        ("overage-charge", 1_500, 3, 3),
        ("fee", 6_250_000, 2, 2),
    ]
    assert funded_price_versions(ledger, tenant=TENANT, offer="o", period=month(2)) == (2, 3)


def test_units_round_up_to_a_whole_unit() -> None:
    assert units(100_001, 3_500_000) == 350_004
    assert units(2, 250_000) == 1
    assert units(0, 4_000_000) == 0
    assert units(12_345, None) == 12_345


def test_durations_add_calendar_months() -> None:
    assert add_duration(datetime(2026, 1, 31, tzinfo=UTC), "1M") == datetime(
        2026, 2, 28, tzinfo=UTC
    )
    assert add_duration(datetime(2026, 2, 10, tzinfo=UTC), "90d") == datetime(
        2026, 5, 11, tzinfo=UTC
    )
    assert add_duration(datetime(2026, 11, 5, tzinfo=UTC), "3M") == datetime(2027, 2, 5, tzinfo=UTC)


OFFER: dict[str, Any] = {
    "modelClasses": [{"name": "small", "models": [{"name": "m"}], "pricePerMillionTokens": 0}],
    "sliceProfiles": [{"name": "embb", "sst": 1, "fiveQI": 9}],
    "allowedTiers": ["edge"],
}


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ({"overage": {"mode": "PayPerUse"}}, "pricePerMillionUnits is required"),
        ({"overage": {"pricePerMillionUnits": 1}}, "not allowed with HardStop"),
        (
            {"exchangeRates": [{"modelClass": "huge", "unitsPerMillionTokens": 2}]},
            "not in modelClasses",
        ),
        ({"rollover": {"maxTokens": 1, "lifetimePeriods": 0}}, "plan.rollover.lifetimePeriods"),
    ],
)
def test_a_plan_that_makes_no_sense_is_refused(plan: dict[str, Any], message: str) -> None:
    spec = OFFER | {"plan": {"includedTokensPerPeriod": 1} | plan}
    with pytest.raises(ValidationError, match=message):
        AIInferenceOfferSpec.model_validate(spec)


def test_a_plan_that_charges_must_include_units() -> None:
    """A period of a plan with no units is never funded and so never closed: a fee or a
    pay-per-use overage on it would never be charged, so the operator refuses it as the API
    server does, naming the field."""
    from pydantic import ValidationError

    for charging in (
        {"feePerPeriod": 5},
        {"overage": {"mode": "PayPerUse", "pricePerMillionUnits": 1}},
    ):
        with pytest.raises(ValidationError, match=r"plan\.includedTokensPerPeriod"):
            TokenPlan.model_validate({"includedTokensPerPeriod": 0, **charging})
    assert TokenPlan.model_validate({"includedTokensPerPeriod": 0}).fee_per_period == 0
