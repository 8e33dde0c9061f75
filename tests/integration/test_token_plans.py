"""Token plans over several periods on the real API server and a real PostgreSQL (and SQLite).

The offer and the tenant's two SLAs are real objects on the API server; the operator's own code
reads them back (`FleetEvaluator.list_slas`: the offer's terms, the model's class), pins each
period's terms with the plan's exchange rate (`pinned`) and funds the plan
(`fund_plan`). Usage per SLA and period is given (how it is measured from Prometheus is proved
elsewhere: test_catalogue_settlement.py); time moves by explicit period boundaries (January to
April 2026), nothing waits. Every statement line and balance is compared, to the micro-unit,
with the table below, computed by hand.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from aiconn.devstack.kube import apply_manifests, load_documents
from aiconn.devstack.processes import free_port
from aiconn.operator.evaluation import FleetEvaluator, pinned
from aiconn.operator.kubeapi import KubeApi
from aiconn.operator.settings import OperatorSettings
from aiconn.sla.ledger import Ledger, currency_unit, settle_period, wallet_account
from aiconn.sla.offer import AIInferenceOfferSpec
from aiconn.sla.periods import Period
from aiconn.sla.plans import close_plan_period, fund_plan, plan_close, plan_period, plan_subject
from aiconn.sla.prometheus import PrometheusSource
from aiconn.sla.spec import wallet_owner
from aiconn.sla.topups import top_up
from tests.factories import fully_available

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PLANS = ROOT / "manifests" / "samples" / "plans" / "token-plans.yaml"
GROUP, VERSION = "aiconn.io", "v1alpha1"


def month(m: int) -> Period:
    return Period(start=datetime(2026, m, 1, tzinfo=UTC), end=datetime(2026, m + 1, 1, tzinfo=UTC))


JAN, FEB, MAR, APR = (month(m) for m in (1, 2, 3, 4))
EUR = currency_unit("EUR")
DAY = timedelta(days=1)
UNITS = "tokens"  # the wallet's ledger unit: plan units (one per token at the default rate)


def offer_body(name: str) -> dict[str, Any]:
    """A bundle with units across two model classes: 1,000,000 units a month for a fee of
    10 EUR, the large model at 3.5 units per token, 300,000 unused units rolled over for one
    period, top-ups good for a month, overage at 2.50 EUR per million units."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AIInferenceOffer",
        "metadata": {"name": name},
        "spec": {
            "currency": "EUR",
            "modelClasses": [
                {
                    "name": "small",
                    "models": [{"name": "llama-3-8b", "parametersBillions": 8}],
                    # The plan charges by fee and overage; per-token prices are for
                    # pay-as-you-go offers.
                    "pricePerMillionTokens": 0,
                },
                {
                    "name": "large",
                    "models": [{"name": "llama-3-70b", "parametersBillions": 70}],
                    "pricePerMillionTokens": 0,
                },
            ],
            "plan": {
                "includedTokensPerPeriod": 1_000_000,
                "period": "1M",
                "feePerPeriod": 10,
                "exchangeRates": [
                    {"modelClass": "small", "unitsPerMillionTokens": 1_000_000},
                    {"modelClass": "large", "unitsPerMillionTokens": 3_500_000},
                ],
                "rollover": {"maxTokens": 300_000, "lifetimePeriods": 1},
                "topUps": {"expireAfter": "1M"},
                "overage": {"mode": "PayPerUse", "pricePerMillionUnits": 2.5},
                "bundle": {"name": "5G Enterprise AI", "includedWith": "5G enterprise plan"},
            },
            "sliceProfiles": [{"name": "embb", "sst": 1, "fiveQI": 9}],
            "allowedTiers": ["regional"],
        },
    }


def sla_body(name: str, offer: str, model: str, size: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AIInferenceSLA",
        "metadata": {"name": name},
        "spec": {
            "offer": offer,
            "model": {"name": model, "source": "hf://meta/" + model, "parametersBillions": size},
            "objectives": {"window": {"duration": "1M"}},
            "network": {"rttBudgetMs": 50},
        },
    }


# Tokens each SLA used per month (chat: llama-3-8b, small, 1 unit/token; analyst: llama-3-70b,
# large, 3.5 units/token, rounded up to a whole unit per SLA period).
USAGE = {
    JAN: {"chat": 300_000, "analyst": 100_001},  # analyst: 350,003.5 -> 350,004 units
    FEB: {"chat": 700_000, "analyst": 200_000},  # analyst: 700,000 units
    MAR: {"chat": 100_000, "analyst": 40_000},  # analyst: 140,000 units
    APR: {"chat": 900_000, "analyst": 200_001},  # analyst: 700,003.5 -> 700,004 units
}
TOP_UP = (datetime(2026, 2, 10, tzinfo=UTC), 500_000)  # expires 2026-03-10 (expireAfter 1M)
BOUGHT = Period(start=TOP_UP[0], end=TOP_UP[0] + timedelta(minutes=1))

# The tenant's wallet statement, by hand. Units are the wallet's; EUR in micro-units.
#   period, kind,            amount,      unit   why
STATEMENT: list[tuple[Period, str, int, str]] = [
    (JAN, "allowance", +1_000_000, UNITS),  # January's included units
    (JAN, "usage", -350_004, UNITS),  # analyst: 100,001 tokens x 3.5, rounded up
    (JAN, "usage", -300_000, UNITS),  # chat: 300,000 tokens x 1
    # Close of January: 1,000,000 - 650,004 = 349,996 unused; 300,000 roll over (the cap),
    # 49,996 expire.
    (JAN, "rollover-out", -300_000, UNITS),
    (FEB, "rollover", +300_000, UNITS),  # usable in February only (lifetime 1 period)
    (JAN, "expiry", -49_996, UNITS),
    (JAN, "fee", -10_000_000, EUR),  # 10 EUR
    (FEB, "allowance", +1_000_000, UNITS),
    (BOUGHT, "topup", +500_000, UNITS),  # bought 2026-02-10 (a top-up's period: its minute)
    (FEB, "usage", -700_000, UNITS),  # analyst: 200,000 x 3.5
    (FEB, "usage", -700_000, UNITS),  # chat
    # Close of February: 1,400,000 used, soonest to expire first: the rollover (300,000),
    # February's units (1,000,000), then 100,000 of the top-up (expires 03-10); nothing is left
    # to roll or expire; 400,000 of the top-up carry on.
    (FEB, "fee", -10_000_000, EUR),
    (MAR, "allowance", +1_000_000, UNITS),
    (MAR, "usage", -140_000, UNITS),  # analyst: 40,000 x 3.5
    (MAR, "usage", -100_000, UNITS),  # chat
    # Close of March: the 240,000 used come from the top-up (expiring first): its other
    # 160,000 expire (2026-03-10 is past); March's 1,000,000 are unused: 300,000 roll over,
    # 700,000 expire.
    (MAR, "expiry", -160_000, UNITS),  # the top-up's rest
    (MAR, "rollover-out", -300_000, UNITS),
    (APR, "rollover", +300_000, UNITS),
    (MAR, "expiry", -700_000, UNITS),
    (MAR, "fee", -10_000_000, EUR),
    (APR, "allowance", +1_000_000, UNITS),
    (APR, "usage", -700_004, UNITS),  # analyst: 200,001 x 3.5, rounded up
    (APR, "usage", -900_000, UNITS),  # chat
    # Close of April: 1,600,004 used, 1,300,000 held: 300,004 units of overage, charged at
    # 2.50 EUR per million units = 0.75001 EUR.
    (APR, "overage", +300_004, UNITS),
    (APR, "overage-charge", -750_010, EUR),
    (APR, "fee", -10_000_000, EUR),
]
# Wallet units after each close (sum of the lines up to it), and the close summaries.
BALANCE_AFTER_CLOSE = {JAN: 300_000, FEB: 400_000, MAR: 300_000, APR: 0}
SUMMARIES = {
    JAN: {"usedUnits": 650_004, "rolledOverUnits": 300_000, "expiredUnits": 49_996},
    FEB: {"usedUnits": 1_400_000, "rolledOverUnits": 0, "expiredUnits": 0},
    MAR: {"usedUnits": 240_000, "rolledOverUnits": 300_000, "expiredUnits": 860_000},
    APR: {"usedUnits": 1_600_004, "rolledOverUnits": 0, "expiredUnits": 0},
}
OVERAGE = {JAN: 0, FEB: 0, MAR: 0, APR: 300_004}
# Every account at the end (units, then EUR micro-units); each unit sums to zero.
FINAL_BALANCES = {
    ("allowance", UNITS): -4_000_000,
    ("top-ups", UNITS): -500_000,
    ("revenue", UNITS): 650_004 + 1_400_000 + 240_000 + 1_600_004,
    ("expired", UNITS): 49_996 + 160_000 + 700_000,
    ("overage", UNITS): -300_004,
    ("rollover", UNITS): 0,
    ("revenue", EUR): 40_750_010,
}


usage_result = fully_available


@pytest.fixture(params=["postgresql", "sqlite"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    if request.param == "sqlite":
        opened = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    else:
        opened = Ledger.open(request.getfixturevalue("postgres_url"))
    yield opened
    opened.close()


@pytest.fixture
def offer(k8s: Any) -> Iterator[str]:
    name = f"plan-{uuid.uuid4().hex[:8]}"
    custom = client.CustomObjectsApi(k8s)
    custom.create_cluster_custom_object(GROUP, VERSION, "aiinferenceoffers", offer_body(name))
    yield name
    custom.delete_cluster_custom_object(GROUP, VERSION, "aiinferenceoffers", name)


def operator(k8s: Any, namespace: str, ledger: Ledger) -> FleetEvaluator:
    """The operator's evaluator on the namespace (no Prometheus: nothing here measures)."""
    settings = OperatorSettings(
        namespaces=[namespace], prometheus_url=f"http://127.0.0.1:{free_port()}"
    )
    return FleetEvaluator(
        kube=KubeApi(k8s),
        source=PrometheusSource.from_url(settings.prometheus_url or "", timeout_s=2),
        ledger=ledger,
        settings=settings,
    )


def test_a_plan_over_four_months_matches_the_hand_computed_statement(
    k8s: Any, namespace: str, offer: str, ledger: Ledger
) -> None:
    custom = client.CustomObjectsApi(k8s)
    for name, model, size in (("analyst", "llama-3-70b", 70), ("chat", "llama-3-8b", 8)):
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "aiinferenceslas", sla_body(name, offer, model, size)
        )
    fleet = operator(k8s, namespace, ledger)
    # The SLAs as the operator sees them (read from the API server, rebuilt from the offer), in
    # force since January.
    slas = sorted(
        (dataclasses.replace(s, created=JAN.start) for s in asyncio.run(fleet.list_slas())),
        key=lambda s: s.name,
    )
    assert [s.name for s in slas] == ["analyst", "chat"]
    plan_offer = slas[0].offer
    assert isinstance(plan_offer, AIInferenceOfferSpec)
    plan = plan_offer.plan
    tenant = wallet_owner(namespace, None)
    assert {s.tenant for s in slas} == {tenant}
    wallet = wallet_account(tenant)

    def close(period: Period) -> None:
        # The operator's pass a day after the period ended closes the plan period (the SLA
        # periods are settled); closing again, as a restart or a racing operator would, posts
        # nothing more.
        fleet._close_plans(slas, period.end + DAY)
        closed = plan_close(ledger, plan_subject(tenant, offer), period)
        assert closed is not None
        again = close_plan_period(
            ledger,
            tenant=tenant,
            namespace=namespace,
            offer=offer,
            plan=plan,
            currency="EUR",
            period=period,
        )
        assert again == closed
        assert {k: closed.summary[k] for k in SUMMARIES[period]} == SUMMARIES[period]
        assert closed.summary["overageUnits"] == OVERAGE[period]
        assert ledger.wallet_balance(tenant) == BALANCE_AFTER_CLOSE[period]

    for period in (JAN, FEB, MAR, APR):
        assert plan_period(plan, period.start) == period
        # Every SLA's pass funds the plan; the tenant gets it once per period.
        for _sla in slas + slas:
            fund_plan(
                ledger, tenant=tenant, namespace=namespace, offer=offer, plan=plan, at=period.start
            )
        if period == FEB:
            at, units = TOP_UP
            for _ in range(2):  # a retried request pays once
                top_up(
                    ledger,
                    tenant=tenant,
                    namespace=namespace,
                    tokens=units,
                    idempotency_key="feb-boost",
                    by="billing@acme.example",
                    why="launch campaign",
                    at=at,
                )
        # Before its SLAs' periods are settled, the operator leaves the plan period open.
        fleet._close_plans(slas, period.end + DAY)
        assert plan_close(ledger, plan_subject(tenant, offer), period) is None
        for sla in pinned(ledger, slas, period):
            for _ in range(2):
                settle_period(
                    ledger,
                    sla_uid=sla.uid,
                    namespace=namespace,
                    name=sla.name,
                    tenant=tenant,
                    period=period,
                    result=usage_result(USAGE[period][sla.name]),
                    coverage_floor_percent=90.0,
                    currency="EUR",
                    units_per_million_tokens=sla.units_per_million_tokens,
                )
        close(period)

    lines = [
        (e.transfer.period, e.transfer.kind, e.signed_amount, e.transfer.unit)
        for e in ledger.statement(wallet, limit=1000).entries
    ]
    assert lines == STATEMENT
    # The rates were pinned per period with the terms, and each usage line says what it converted.
    analyst = next(s for s in slas if s.name == "analyst")
    pinned_terms = ledger.pinned_terms(analyst.uid, APR.start)
    assert pinned_terms is not None and pinned_terms.units_per_million_tokens == 3_500_000
    usage = [t for t in ledger.transfers(sla_uid=analyst.uid) if t.kind == "usage"]
    assert [(t.metadata["tokens"], t.amount) for t in usage] == [
        (100_001, 350_004),
        (200_000, 700_000),
        (40_000, 140_000),
        (200_001, 700_004),
    ]
    # Each expiry names what expired and why.
    expiries = [
        (t.metadata["lotSource"], t.metadata["reason"], t.amount)
        for t in ledger.transfers()
        if t.kind == "expiry" and t.credit_account == "expired" and t.sla_uid.endswith(offer)
    ]
    assert expiries == [
        (
            "included",
            "included units of the period from 2026-01-01T00:00:00Z not used,"
            " beyond the rollover cap of 300000",
            49_996,
        ),
        ("topup", "top-up expired 1M after its purchase", 160_000),
        (
            "included",
            "included units of the period from 2026-03-01T00:00:00Z not used,"
            " beyond the rollover cap of 300000",
            700_000,
        ),
    ]
    balances = {key: b.net for key, b in ledger.balances().items() if key[0] == wallet}
    # Other tests share the PostgreSQL ledger: the shared accounts are compared through what
    # this tenant's transfers moved in and out of them.
    assert balances[(wallet, UNITS)] == 0
    assert balances[(wallet, EUR)] == -40_750_010
    mine = [t for t in ledger.transfers() if wallet in (t.debit_account, t.credit_account)]
    moved: dict[tuple[str, str], int] = {}
    for t in mine:
        for account, sign in ((t.debit_account, -1), (t.credit_account, +1)):
            if account != wallet:
                moved[(account, t.unit)] = moved.get((account, t.unit), 0) + sign * t.amount
    assert moved == FINAL_BALANCES
    ledger.check_invariant()


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("plan.overage", {"mode": "PayPerUse"}, "spec.plan.overage.pricePerMillionUnits"),
        (
            "plan.overage",
            {"mode": "HardStop", "pricePerMillionUnits": 1},
            "spec.plan.overage.pricePerMillionUnits",
        ),
        (
            "plan.exchangeRates",
            [{"modelClass": "huge", "unitsPerMillionTokens": 9_000_000}],
            "spec.plan.exchangeRates",
        ),
        (
            "plan.exchangeRates",
            [
                {"modelClass": "small", "unitsPerMillionTokens": 1},
                {"modelClass": "small", "unitsPerMillionTokens": 2},
            ],
            "spec.plan.exchangeRates",
        ),
        ("plan.rollover", {"maxTokens": -1}, "spec.plan.rollover.maxTokens"),
        ("plan.topUps", {"expireAfter": "30 days"}, "spec.plan.topUps.expireAfter"),
    ],
)
def test_the_api_server_refuses_a_plan_that_makes_no_sense(
    k8s: Any, path: str, value: Any, field: str
) -> None:
    body = copy.deepcopy(offer_body(f"bad-{uuid.uuid4().hex[:8]}"))
    node = body["spec"]
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    with pytest.raises(ApiException) as refused:
        client.CustomObjectsApi(k8s).create_cluster_custom_object(
            GROUP, VERSION, "aiinferenceoffers", body
        )
    assert refused.value.status == 422
    assert field in refused.value.body


def test_the_three_sample_plans_apply_and_keep_every_field(k8s: Any) -> None:
    """The bundle, the subscription with top-ups and the multi-model units, as the API server
    stores them: nothing pruned, and each parses to its plan."""
    docs = [d for d in load_documents([PLANS]) if d["kind"] == "AIInferenceOffer"]
    apply_manifests(k8s, [PLANS])
    custom = client.CustomObjectsApi(k8s)
    plans = {}
    for doc in docs:
        name = doc["metadata"]["name"]
        stored = custom.get_cluster_custom_object(GROUP, VERSION, "aiinferenceoffers", name)
        kept = stored["spec"]["plan"]
        assert {k: kept.get(k) for k in doc["spec"]["plan"]} == doc["spec"]["plan"]
        plans[name] = AIInferenceOfferSpec.model_validate(stored["spec"]).plan
    bundle = plans["bundle-5g-enterprise-1m"]
    assert bundle.bundle is not None and bundle.included_tokens_per_period == 1_000_000
    subscription = plans["subscription-with-top-ups"]
    assert subscription.fee_per_period > 0 and subscription.top_ups.expire_after is not None
    units = plans["units-across-models"]
    rates = {r.model_class: r.units_per_million_tokens for r in units.exchange_rates}
    assert rates["frontier"] > rates["large"] > rates["small"]
