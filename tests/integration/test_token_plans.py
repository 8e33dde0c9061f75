"""Token plans over several periods on the real API server and a real PostgreSQL (and SQLite).

The offer and the tenant's two SLAs are real objects on the API server; the operator's own code
reads them back (`FleetEvaluator.list_slas`: the offer's terms, the model's class), pins each
period's terms with the plan's exchange rate and price version (`pinned`) and funds the plan at
the prices in force at the period's start (`FleetEvaluator._fund_plan`). The provider announces a
price change (version 2: fee, overage price and the large model's price) through the offer's
`priceChanges`, judged by the shipped price-notice admission policy: with too short a notice the
API server refuses it naming the field; with notice it is dated inside February and takes effect
from March, the first period that starts after it. Usage per SLA and period is given (how it is
measured from Prometheus is proved elsewhere: test_catalogue_settlement.py); time moves by
explicit period boundaries (January to April of the year after next: a change must be announced
ahead of the API server's own clock), nothing waits. Every statement line, the price version it
names and every balance are compared, to the micro-unit, with the table below, computed by hand;
the reporting API serves the same lines, with their versions, as JSON and CSV.
"""

from __future__ import annotations

import asyncio
import copy
import csv
import dataclasses
import io
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from aiconn.devstack.kube import apply_manifests, load_documents
from aiconn.devstack.processes import free_port
from aiconn.operator.evaluation import FleetEvaluator, pinned
from aiconn.operator.kubeapi import KubeApi
from aiconn.operator.settings import OperatorSettings
from aiconn.resources.v1alpha1.meta import GROUP, VERSION
from aiconn.resources.v1alpha1.offer import AIInferenceOfferSpec
from aiconn.sla.accounting import currency_unit, wallet_account
from aiconn.sla.periods import Period
from aiconn.sla.plans import close_plan_period, fund_plan, plan_period, plan_subject
from aiconn.sla.prices import plan_at
from aiconn.sla.settlement import settle_period
from aiconn.sla.topups import top_up
from aiconn.sla.wallets import wallet_owner
from aiconn.store.ledger import Ledger
from aiconn.store.prometheus import PrometheusSource
from tests.factories import fully_available, llama_model_classes, offer_manifest, sla_manifest
from tests.helpers import backend_ledger, created_offer, price_notice_policy, static_token_api

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PLANS = ROOT / "manifests" / "samples" / "plans" / "token-plans.yaml"


YEAR = datetime.now(UTC).year + 2
"""The scenario's year: every date in it lies more than the 30 days' notice ahead of today."""
TOKEN = "plans-token"


def month(m: int) -> Period:
    return Period(start=datetime(YEAR, m, 1, tzinfo=UTC), end=datetime(YEAR, m + 1, 1, tzinfo=UTC))


JAN, FEB, MAR, APR = (month(m) for m in (1, 2, 3, 4))
EUR = currency_unit("EUR")
DAY = timedelta(days=1)
UNITS = "tokens"  # the wallet's ledger unit: plan units (one per token at the default rate)


def offer_body(name: str) -> dict[str, Any]:
    """A bundle with units across two model classes: 1,000,000 units a month for a fee of
    10 EUR, the large model at 3.5 units per token, 300,000 unused units rolled over for one
    period, top-ups good for a month, overage at 2.50 EUR per million units; 30 days' notice of
    a price change. Version 1 charges no per-token price (the plan charges by fee and overage)."""
    return offer_manifest(
        name,
        {
            "currency": "EUR",
            # The plan charges by fee and overage; per-token prices are for pay-as-you-go
            # offers (version 2 adds one for the large model).
            "modelClasses": llama_model_classes(small=0, large=0),
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
            "priceNoticeDays": NOTICE_DAYS,
            "sliceProfiles": [{"name": "embb", "sst": 1, "fiveQI": 9}],
            "allowedTiers": ["regional"],
        },
    )


NOTICE_DAYS = 30
# Version 2, announced with more than 30 days' notice, dated inside February: the fee goes to
# 12.50 EUR, overage to 3.10 EUR per million units, and the large model costs 0.40 EUR per million
# tokens on top of its units. February began before it: March is the first period it prices.
PRICE_CHANGE: dict[str, Any] = {
    "version": 2,
    "effectiveFrom": f"{YEAR}-02-15T00:00:00Z",
    "prices": [{"modelClass": "large", "pricePerMillionTokens": 0.4}],
    "plan": {"feePerPeriod": 12.5, "overagePricePerMillionUnits": 3.1},
}


def sla_body(name: str, offer: str, model: str, size: int) -> dict[str, Any]:
    return sla_manifest(
        name,
        {
            "offer": offer,
            "model": {"name": model, "source": "hf://meta/" + model, "parametersBillions": size},
            "objectives": {"window": {"duration": "1M"}},
            "network": {"rttBudgetMs": 50},
        },
    )


# Tokens each SLA used per month (chat: llama-3-8b, small, 1 unit/token; analyst: llama-3-70b,
# large, 3.5 units/token, rounded up to a whole unit per SLA period).
USAGE = {
    JAN: {"chat": 300_000, "analyst": 100_001},  # analyst: 350,003.5 -> 350,004 units
    FEB: {"chat": 700_000, "analyst": 200_000},  # analyst: 700,000 units
    MAR: {"chat": 100_000, "analyst": 40_000},  # analyst: 140,000 units
    APR: {"chat": 900_000, "analyst": 200_001},  # analyst: 700,003.5 -> 700,004 units
}
TOP_UP = (datetime(YEAR, 2, 10, tzinfo=UTC), 500_000)  # expires 03-10 (expireAfter 1M)
BOUGHT = Period(start=TOP_UP[0], end=TOP_UP[0] + timedelta(minutes=1))

# The tenant's wallet statement, by hand. Units are the wallet's; EUR in micro-units; the last
# column is the price version the line names (None: not a priced line). January and February are
# charged at version 1, March and April at version 2 (in force from 15 February, after February
# began); the small model's price never changed, so chat's lines stay at version 1.
#   period, kind,            amount,      unit   version  why
STATEMENT: list[tuple[Period, str, int, str, int | None]] = [
    (JAN, "allowance", +1_000_000, UNITS, None),  # January's included units
    (JAN, "usage", -350_004, UNITS, 1),  # analyst: 100,001 tokens x 3.5, rounded up
    (JAN, "usage", -300_000, UNITS, 1),  # chat: 300,000 tokens x 1
    # Close of January: 1,000,000 - 650,004 = 349,996 unused; 300,000 roll over (the cap),
    # 49,996 expire.
    (JAN, "rollover-out", -300_000, UNITS, None),
    (FEB, "rollover", +300_000, UNITS, None),  # usable in February only (lifetime 1 period)
    (JAN, "expiry", -49_996, UNITS, None),
    (JAN, "fee", -10_000_000, EUR, 1),  # 10 EUR (version 1)
    (FEB, "allowance", +1_000_000, UNITS, None),
    (BOUGHT, "topup", +500_000, UNITS, None),  # bought 02-10 (a top-up's period: its minute)
    (FEB, "usage", -700_000, UNITS, 1),  # analyst: 200,000 x 3.5
    (FEB, "usage", -700_000, UNITS, 1),  # chat
    # Close of February: 1,400,000 used, soonest to expire first: the rollover (300,000),
    # February's units (1,000,000), then 100,000 of the top-up (expires 03-10); nothing is left
    # to roll or expire; 400,000 of the top-up carry on. Version 2 took effect on 02-15, inside
    # February: February's fee is still version 1's.
    (FEB, "fee", -10_000_000, EUR, 1),  # 10 EUR (version 1)
    (MAR, "allowance", +1_000_000, UNITS, None),
    (MAR, "usage", -140_000, UNITS, 2),  # analyst: 40,000 x 3.5
    # analyst at version 2's 0.40 EUR per million tokens: 40,000 x 0.40 / 1,000,000 = 0.016 EUR
    (MAR, "charge", -16_000, EUR, 2),
    (MAR, "usage", -100_000, UNITS, 1),  # chat (small: price 0, no charge line)
    # Close of March: the 240,000 used come from the top-up (expiring first): its other
    # 160,000 expire (03-10 is past); March's 1,000,000 are unused: 300,000 roll over,
    # 700,000 expire.
    (MAR, "expiry", -160_000, UNITS, None),  # the top-up's rest
    (MAR, "rollover-out", -300_000, UNITS, None),
    (APR, "rollover", +300_000, UNITS, None),
    (MAR, "expiry", -700_000, UNITS, None),
    (MAR, "fee", -12_500_000, EUR, 2),  # 12.50 EUR (version 2)
    (APR, "allowance", +1_000_000, UNITS, None),
    (APR, "usage", -700_004, UNITS, 2),  # analyst: 200,001 x 3.5, rounded up
    # 200,001 x 0.40 / 1,000,000 = 0.0800004 EUR -> 0.080000 (half-even to the micro-unit)
    (APR, "charge", -80_000, EUR, 2),
    (APR, "usage", -900_000, UNITS, 1),  # chat
    # Close of April: 1,600,004 used, 1,300,000 held: 300,004 units of overage, charged at
    # version 2's 3.10 EUR per million units: 300,004 x 3.10 / 1,000,000 = 0.9300124 EUR
    # -> 0.930012 (half-even). (At version 1's 2.50 it would have been 0.75001 EUR.)
    (APR, "overage", +300_004, UNITS, None),
    (APR, "overage-charge", -930_012, EUR, 2),
    (APR, "fee", -12_500_000, EUR, 2),  # 12.50 EUR (version 2)
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
    # fees 10 + 10 + 12.50 + 12.50 EUR, the large model's charges 0.016 + 0.08 EUR, overage
    # 0.930012 EUR: 45,000,000 + 96,000 + 930,012 micro-units.
    ("revenue", EUR): 46_026_012,
}
# Each close's fee and overage price and the versions they were set by.
CLOSE_PRICES = {
    JAN: {"feeMicros": 10_000_000, "feePriceVersion": 1, "overagePriceVersion": 1},
    FEB: {"feeMicros": 10_000_000, "feePriceVersion": 1, "overagePriceVersion": 1},
    MAR: {"feeMicros": 12_500_000, "feePriceVersion": 2, "overagePriceVersion": 2},
    APR: {"feeMicros": 12_500_000, "feePriceVersion": 2, "overagePriceVersion": 2},
}


@pytest.fixture(params=["postgresql", "sqlite"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    yield from backend_ledger(request, tmp_path)


@pytest.fixture
def policy(k8s: Any) -> Iterator[None]:
    """The shipped price-notice admission policy, removed after the test."""
    with price_notice_policy(k8s):
        yield


@pytest.fixture
def api(k8s: Any, namespace: str, ledger: Ledger, tmp_path: Path) -> Iterator[TestClient]:
    """The reporting API on the same ledger, as the namespace's tenant."""
    lines = [f"{TOKEN},tenant,{namespace}"]
    with static_token_api(
        tmp_path / "tokens.csv", lines, ledger=ledger, kube=k8s, token=TOKEN
    ) as test_client:
        yield test_client


def announce(k8s: Any, offer: str, change: dict[str, Any]) -> None:
    """The provider adds a price change to the offer (an update: judged at the edit's time)."""
    custom = client.CustomObjectsApi(k8s)
    body = custom.get_cluster_custom_object(GROUP, VERSION, "aiinferenceoffers", offer)
    body["spec"]["priceChanges"] = [*body["spec"].get("priceChanges", []), change]
    custom.replace_cluster_custom_object(GROUP, VERSION, "aiinferenceoffers", offer, body)


@pytest.fixture
def offer(k8s: Any) -> Iterator[str]:
    with created_offer(k8s, offer_body(f"plan-{uuid.uuid4().hex[:8]}")) as name:
        yield name


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
    k8s: Any, namespace: str, policy: None, offer: str, ledger: Ledger, api: TestClient
) -> None:
    # The provider announces version 2. With a day less than the offer's 30 days' notice, the
    # API server refuses it, naming the field; with notice (15 February of the scenario's year,
    # more than a year ahead) it is accepted.
    soon = (datetime.now(UTC) + timedelta(days=NOTICE_DAYS - 1)).strftime("%Y-%m-%dT%H:%M:00Z")
    with pytest.raises(ApiException) as hurried:
        announce(k8s, offer, PRICE_CHANGE | {"effectiveFrom": soon})
    assert hurried.value.status == 422, hurried.value.body
    message = json.loads(hurried.value.body)["message"]
    assert f"spec.priceChanges[].effectiveFrom: version 2 takes effect {soon}" in message
    assert f"sooner than priceNoticeDays ({NOTICE_DAYS})" in message
    announce(k8s, offer, PRICE_CHANGE)
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
    assert [c.version for c in plan_offer.price_changes] == [2]  # admitted, and applied
    plan = plan_offer.plan
    tenant = wallet_owner(namespace, None)
    assert {s.tenant for s in slas} == {tenant}
    wallet = wallet_account(tenant)

    def close(period: Period) -> None:
        # The operator's pass a day after the period ended closes the plan period (the SLA
        # periods are settled); closing again, as a restart or a racing operator would, posts
        # nothing more.
        fleet._close_plans(slas, period.end + DAY)
        closed = ledger.plan_close(plan_subject(tenant, offer), period)
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
        assert {k: closed.summary[k] for k in CLOSE_PRICES[period]} == CLOSE_PRICES[period]
        assert closed.summary["overageUnits"] == OVERAGE[period]
        assert ledger.wallet_balance(tenant) == BALANCE_AFTER_CLOSE[period]

    for period in (JAN, FEB, MAR, APR):
        assert plan_period(plan, period.start) == period
        # Every SLA's pass funds the plan at the prices in force at the period's start, also
        # after a restart (a fresh operator) and when posted again directly; the tenant gets it
        # once per period.
        for evaluator in (fleet, operator(k8s, namespace, ledger)):
            for sla in slas + slas:
                evaluator._fund_plan(sla, plan_offer, period.start)
        priced, versions = plan_at(plan_offer, period.start)
        fund_plan(
            ledger,
            tenant=tenant,
            namespace=namespace,
            offer=offer,
            plan=priced,
            at=period.start,
            price_versions=versions,
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
        assert ledger.plan_close(plan_subject(tenant, offer), period) is None
        for sla in pinned(ledger, slas, period):
            assert sla.terms is not None
            for _ in range(2):
                settle_period(
                    ledger,
                    sla_uid=sla.uid,
                    namespace=namespace,
                    name=sla.name,
                    tenant=tenant,
                    period=period,
                    outcome=fully_available(
                        USAGE[period][sla.name], price=sla.terms.price_per_million_tokens
                    ).outcome(),
                    coverage_floor_percent=90.0,
                    currency="EUR",
                    units_per_million_tokens=sla.units_per_million_tokens,
                    price_version=sla.terms.price_version,
                )
        close(period)

    lines = [
        (
            e.transfer.period,
            e.transfer.kind,
            e.signed_amount,
            e.transfer.unit,
            e.transfer.price_version,
        )
        for e in ledger.statement(wallet, limit=1000).entries
    ]
    assert lines == STATEMENT
    # The reporting API serves the same lines with their versions, as JSON and as CSV.
    path = f"/v1/namespaces/{namespace}/slas/analyst/statement"
    served = api.get(path, params={"limit": 100}).json()["entries"]
    assert [(e["kind"], e["signedAmount"], e["unit"], e["priceVersion"]) for e in served] == [
        line[1:] for line in STATEMENT
    ]
    rows = list(
        csv.DictReader(io.StringIO(api.get(path, params={"limit": 100, "format": "csv"}).text))
    )
    assert [
        (r["periodStart"][:10], r["kind"], r["signedAmount"], r["priceVersion"])
        for r in rows
        if r["kind"] in ("fee", "overage-charge")
    ] == [
        (f"{YEAR}-01-01", "fee", "-10000000", "1"),
        (f"{YEAR}-02-01", "fee", "-10000000", "1"),
        (f"{YEAR}-03-01", "fee", "-12500000", "2"),
        (f"{YEAR}-04-01", "overage-charge", "-930012", "2"),
        (f"{YEAR}-04-01", "fee", "-12500000", "2"),
    ]
    # The API serves the plan's price history: version 1 since the offer exists, version 2
    # from 15 February; today (long before it) version 1 is in force.
    history = api.get(f"/v1/namespaces/{namespace}/slas/analyst/prices").json()
    assert [
        (v["version"], v["feePerPeriod"], v["overagePricePerMillionUnits"], v["effectiveFrom"])
        for v in history["planVersions"]
    ] == [(1, "10.0", "2.5", None), (2, "12.5", "3.1", PRICE_CHANGE["effectiveFrom"])]
    assert history["planInForce"] == {"fee": 1, "overage": 1}
    # Each fee and overage charge says what it was charged at, and by which version.
    charged = [
        (
            t.kind,
            t.period,
            t.metadata.get("feePerPeriod") or t.metadata["pricePerMillionUnits"],
            t.metadata["priceVersion"],
        )
        for t in ledger.transfers(sla_uid=plan_subject(tenant, offer))
        if t.kind in ("fee", "overage-charge")
    ]
    assert charged == [
        ("fee", JAN, "10.0", 1),
        ("fee", FEB, "10.0", 1),
        ("fee", MAR, "12.5", 2),
        ("overage-charge", APR, "3.1", 2),
        ("fee", APR, "12.5", 2),
    ]
    # The rates were pinned per period with the terms, and each usage line says what it converted.
    analyst = next(s for s in slas if s.name == "analyst")
    pinned_terms = ledger.pinned_terms(analyst.uid, APR.start)
    assert pinned_terms is not None and pinned_terms.units_per_million_tokens == 3_500_000
    # ... and the large model's price version: 1 until February, 2 (0.40 EUR) from March.
    assert [
        (t.price_version, t.price_per_million_tokens)
        for t in (ledger.pinned_terms(analyst.uid, p.start) for p in (JAN, FEB, MAR, APR))
        if t is not None
    ] == [(1, Decimal(0)), (1, Decimal(0)), (2, Decimal("0.4")), (2, Decimal("0.4"))]
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
            f"included units of the period from {YEAR}-01-01T00:00:00Z not used,"
            " beyond the rollover cap of 300000",
            49_996,
        ),
        ("topup", "top-up expired 1M after its purchase", 160_000),
        (
            "included",
            f"included units of the period from {YEAR}-03-01T00:00:00Z not used,"
            " beyond the rollover cap of 300000",
            700_000,
        ),
    ]
    balances = {key: b.net for key, b in ledger.balances().items() if key[0] == wallet}
    # Other tests share the PostgreSQL ledger: the shared accounts are compared through what
    # this tenant's transfers moved in and out of them.
    assert balances[(wallet, UNITS)] == 0
    assert balances[(wallet, EUR)] == -46_026_012
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
        (
            "priceChanges",
            [{"version": 2, "effectiveFrom": "2099-01-01T00:00:00Z"}],
            "spec.priceChanges[0].prices",
        ),
        (
            "priceChanges",
            [{"version": 2, "effectiveFrom": "2099-01-01T00:00:00Z", "plan": {}}],
            "spec.priceChanges[0].plan",
        ),
        # A period of a plan without units is never funded, so never closed: its fee or its
        # pay-per-use overage would never be charged.
        (
            "plan",
            {"includedTokensPerPeriod": 0, "feePerPeriod": 5},
            "spec.plan.includedTokensPerPeriod",
        ),
        (
            "plan",
            {
                "includedTokensPerPeriod": 0,
                "overage": {"mode": "PayPerUse", "pricePerMillionUnits": 1},
            },
            "spec.plan.includedTokensPerPeriod",
        ),
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


def test_the_api_server_refuses_an_overage_price_change_without_pay_per_use(k8s: Any) -> None:
    body = copy.deepcopy(offer_body(f"bad-{uuid.uuid4().hex[:8]}"))
    body["spec"]["plan"]["overage"] = {"mode": "HardStop"}
    body["spec"]["priceChanges"] = [
        PRICE_CHANGE | {"effectiveFrom": "2099-01-01T00:00:00Z", "prices": []}
    ]
    with pytest.raises(ApiException) as refused:
        client.CustomObjectsApi(k8s).create_cluster_custom_object(
            GROUP, VERSION, "aiinferenceoffers", body
        )
    assert refused.value.status == 422
    assert "spec.priceChanges" in refused.value.body
    assert "overagePricePerMillionUnits: the plan's overage is not PayPerUse" in refused.value.body


def test_the_api_server_refuses_a_fee_change_on_a_plan_without_units(k8s: Any) -> None:
    body = copy.deepcopy(offer_body(f"bad-{uuid.uuid4().hex[:8]}"))
    body["spec"]["plan"] = {"includedTokensPerPeriod": 0}
    body["spec"]["priceChanges"] = [
        {"version": 2, "effectiveFrom": "2099-01-01T00:00:00Z", "plan": {"feePerPeriod": 5}}
    ]
    with pytest.raises(ApiException) as refused:
        client.CustomObjectsApi(k8s).create_cluster_custom_object(
            GROUP, VERSION, "aiinferenceoffers", body
        )
    assert refused.value.status == 422
    assert "spec.priceChanges" in refused.value.body
    assert "feePerPeriod: a plan with a fee or pay-per-use overage must include" in (
        refused.value.body
    )
    # Without the fee the same plan is a valid offer: the API server accepts it.
    body["spec"].pop("priceChanges")
    client.CustomObjectsApi(k8s).create_cluster_custom_object(
        GROUP, VERSION, "aiinferenceoffers", body
    )
    client.CustomObjectsApi(k8s).delete_cluster_custom_object(
        GROUP, VERSION, "aiinferenceoffers", body["metadata"]["name"]
    )


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
