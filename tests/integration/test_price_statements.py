"""Prices that never surprise, end to end on the real API server and PostgreSQL: a price change
announced with notice takes effect at the period that begins on its date, each statement line
names the version it was charged at (version 1, then 2), a quote prices a month to the micro-unit,
and a tenant's wallet shows the balance, the burn and the date its tokens run out, hand-computed.

The offer and the SLA are real objects; the operator's own code lists them and pins each period's
terms (`FleetEvaluator.list_slas`, `pinned`), and the settlements go into the ledger the way the
evaluation posts them. The reporting API reads everything back over its routes.
"""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kubernetes import client

from aiconn.operator.evaluation import FleetEvaluator, SLARef, pinned
from aiconn.operator.kubeapi import KubeApi
from aiconn.operator.settings import OperatorSettings
from aiconn.resources.v1alpha1.meta import GROUP, VERSION
from aiconn.resources.v1alpha1.sla import Window
from aiconn.sla.accounting import Kind, UsageReading
from aiconn.sla.periods import Period, period_containing
from aiconn.sla.settlement import fund_allowance
from aiconn.sla.wallets import wallet_owner
from aiconn.store.ledger import Ledger
from aiconn.store.prometheus import PrometheusSource
from tests.factories import fully_available, offer_manifest, settle_ref, sla_manifest
from tests.helpers import created_offer, static_token_api

pytestmark = pytest.mark.integration

TOKEN, NOC_TOKEN = "prices-token", "prices-noc-token"
MONTH = Window(duration="1M", calendar_aligned=True)
INCLUDED = 1_234_567
USED = 3_000_000


def months_ahead(n: int) -> Period:
    """The calendar month `n` months after the current one."""
    period = period_containing(MONTH, datetime.now(UTC))
    for _ in range(n):
        period = period_containing(MONTH, period.end)
    return period


@pytest.fixture
def ledger(postgres_url: str) -> Iterator[Ledger]:
    opened = Ledger.open(postgres_url)
    yield opened
    opened.close()


def offer_applied(
    k8s: Any, prefix: str, *, version_2: dict[str, Any], **spec: Any
) -> Iterator[str]:
    """An offer named `prefix-<random>` on the API server: one model class `small` (tiny-chat at
    2.345 EUR per million tokens), 20 days of price notice, the edge tier, a version 2 of
    `version_2`'s terms from the start of the month after next, plus `spec`; deleted afterwards."""
    body = {
        "modelClasses": [
            {"name": "small", "models": [{"name": "tiny-chat"}], "pricePerMillionTokens": 2.345}
        ],
        "priceNoticeDays": 20,
        "sliceProfiles": [{"name": "embb", "sst": 1, "fiveQI": 9}],
        "allowedTiers": ["edge"],
        "priceChanges": [
            {"version": 2, "effectiveFrom": months_ahead(2).start_iso, **version_2},
        ],
    }
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    with created_offer(k8s, offer_manifest(name, body | spec)) as created:
        yield created


@pytest.fixture
def offer(k8s: Any) -> Iterator[str]:
    """An offer at 2.345 EUR per million tokens whose version 2 (3.5 EUR) takes effect at the
    start of the month after next: at least 28 days ahead, more than its 20 days of notice."""
    yield from offer_applied(
        k8s,
        "prices",
        version_2={"prices": [{"modelClass": "small", "pricePerMillionTokens": 3.5}]},
        plan={"includedTokensPerPeriod": INCLUDED, "period": "1M"},
        credits={
            "availability": [
                {"belowPercent": 99.9, "creditPercent": 10},
                {"belowPercent": 99.0, "creditPercent": 25},
            ],
            "latency": [{"belowPercent": 95, "creditPercent": 10}],
            "capPercent": 30,
        },
    )


@pytest.fixture
def plan_offer(k8s: Any) -> Iterator[str]:
    """An offer whose token plan is pay per use: 1,234,567 units included a month for 9.990001
    EUR, overage at 1.234567 EUR per million units, 2.5 units per token of the class `small`;
    from the start of the month after next the fee is 12.5 EUR and the overage price 2.5 EUR
    (version 2), announced with more than the offer's 20 days of notice."""
    yield from offer_applied(
        k8s,
        "plan-prices",
        version_2={"plan": {"feePerPeriod": 12.5, "overagePricePerMillionUnits": 2.5}},
        plan={
            "includedTokensPerPeriod": INCLUDED,
            "period": "1M",
            "feePerPeriod": 9.990001,
            "exchangeRates": [{"modelClass": "small", "unitsPerMillionTokens": 2_500_000}],
            "overage": {"mode": "PayPerUse", "pricePerMillionUnits": 1.234567},
        },
    )


def create_sla(k8s: Any, namespace: str, offer: str) -> None:
    client.CustomObjectsApi(k8s).create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "aiinferenceslas",
        sla_manifest(
            "chat",
            {
                "offer": offer,
                "model": {
                    "name": "tiny-chat",
                    "source": "hf://aiconn/tiny",
                    "parametersBillions": 1,
                },
                "objectives": {"availability": {"targetPercent": 99.0}},
                "network": {"rttBudgetMs": 50},
            },
        ),
    )


def listed(k8s: Any, namespace: str, ledger: Ledger) -> list[SLARef]:
    """The SLAs as the operator's evaluation lists them, offer terms applied (Prometheus is not
    asked: nothing here is measured)."""
    settings = OperatorSettings(namespaces=[namespace], prometheus_url="http://127.0.0.1:9")
    fleet = FleetEvaluator(
        kube=KubeApi(k8s),
        source=PrometheusSource.from_url(settings.prometheus_url),
        ledger=ledger,
        settings=settings,
    )
    return asyncio.run(fleet.list_slas())


@pytest.fixture
def api(k8s: Any, namespace: str, ledger: Ledger, tmp_path: Path) -> Iterator[TestClient]:
    lines = [f"{TOKEN},tenant,{namespace}", f"{NOC_TOKEN},noc,*"]
    with static_token_api(
        tmp_path / "tokens.csv", lines, ledger=ledger, kube=k8s, token=TOKEN
    ) as test_client:
        yield test_client


def settle_on_pinned_terms(ledger: Ledger, sla: SLARef, period: Period) -> None:
    """Settle `period` of `sla` as the evaluation does: on the terms pinned for it, every minute
    good, `USED` tokens used."""
    (acting,) = pinned(ledger, [sla], period)
    assert acting.terms is not None
    price = Decimal(repr(acting.spec.tokens.price_per_million_tokens))
    result = fully_available(
        USED,
        minutes=period.minutes,
        price=price,
        ttft_attainment_percent=100.0,
        tpot_attainment_percent=100.0,
    )
    settle_ref(
        ledger,
        sla,
        period=period,
        result=result,
        currency=acting.spec.tokens.currency,
        price_version=acting.terms.price_version,
    )


def test_a_price_change_with_notice_takes_effect_at_its_period_and_statements_name_versions(
    k8s: Any, namespace: str, offer: str, ledger: Ledger, api: TestClient
) -> None:
    create_sla(k8s, namespace, offer)
    (sla,) = listed(k8s, namespace, ledger)
    before, after = months_ahead(1), months_ahead(2)
    settle_on_pinned_terms(ledger, sla, before)
    settle_on_pinned_terms(ledger, sla, after)
    # Pinned once: a later pass keeps the period's version whatever the offer says by then.
    assert ledger.pinned_terms(sla.uid, before.start).price_version == 1  # type: ignore[union-attr]
    assert ledger.pinned_terms(sla.uid, after.start).price_version == 2  # type: ignore[union-attr]

    base = f"/v1/namespaces/{namespace}/slas/chat"
    entries = api.get(f"{base}/statement").json()["entries"]
    charges = [
        (e["periodStart"][:10], e["priceVersion"], e["amount"])
        for e in entries
        if e["kind"] == Kind.CHARGE
    ]
    # 3,000,000 tokens at 2.345 EUR/1M = 7.035 EUR; at 3.5 EUR/1M = 10.5 EUR (micro-units).
    assert charges == [
        (before.start_iso[:10], 1, 7_035_000),
        (after.start_iso[:10], 2, 10_500_000),
    ]
    usage = [(e["priceVersion"], e["amount"]) for e in entries if e["kind"] == Kind.USAGE]
    assert usage == [(1, USED), (2, USED)]
    rows = list(
        csv.DictReader(io.StringIO(api.get(f"{base}/statement", params={"format": "csv"}).text))
    )
    assert [(r["kind"], r["priceVersion"]) for r in rows] == [
        ("usage", "1"),
        ("charge", "1"),
        ("usage", "2"),
        ("charge", "2"),
    ]
    assert [s.price_version for s in ledger.settlements(sla_uid=sla.uid)] == [1, 2]

    # The open period is pinned at version 1 too; its report says so.
    pinned(ledger, [sla], period_containing(MONTH, datetime.now(UTC)))
    current = api.get(f"{base}/report").json()
    assert (current["priceVersion"], current["pricePerMillionTokens"]) == (1, "2.345")

    history = api.get(f"{base}/prices").json()
    assert history["offer"] == offer
    assert history["priceNoticeDays"] == 20
    assert [
        (v["version"], v["modelClass"], v["pricePerMillionTokens"], v["effectiveFrom"])
        for v in history["versions"]
    ] == [
        (1, "small", "2.345", None),
        (2, "small", "3.5", after.start.isoformat().replace("+00:00", "Z")),
    ]
    assert history["inForce"] == {"small": 1}
    assert history["refused"] == []
    noc = api.get(f"/v1/offers/{offer}/prices", headers={"Authorization": f"Bearer {NOC_TOKEN}"})
    assert noc.json()["versions"] == history["versions"]
    # A tenant cannot read the fleet's offers directly.
    assert api.get(f"/v1/offers/{offer}/prices").status_code == 403


def test_a_quote_prices_a_month_and_its_credit_exposure_to_the_micro_unit(
    k8s: Any, namespace: str, offer: str, api: TestClient
) -> None:
    create_sla(k8s, namespace, offer)
    base = f"/v1/namespaces/{namespace}/slas/chat/quote"
    # 1,234,567 tokens x 2.345 EUR/1M = 2.895059615 -> 2.895060 EUR (half-even, micro-units);
    # exposure: 25 % + 10 % = 35 %, capped at 30 %: 2.895060 x 0.30 = 0.868518 EUR.
    first = api.get(base, params={"at": months_ahead(1).start_iso}).json()
    assert (first["priceVersion"], first["pricePerMillionTokens"]) == (1, "2.345")
    assert (first["monthlyTokens"], first["monthlyCharge"]) == (INCLUDED, "2.895060")
    assert Decimal(first["maxCreditPercent"]) == 30
    assert first["maxMonthlyCredit"] == "0.868518"
    # At 3.5 EUR/1M: 4.3209845 -> 4.320984 (half-even); x 0.30 = 1.2962952 -> 1.296295 EUR.
    second = api.get(base, params={"at": months_ahead(2).start_iso}).json()
    assert (second["priceVersion"], second["pricePerMillionTokens"]) == (2, "3.5")
    assert (second["monthlyCharge"], second["maxMonthlyCredit"]) == ("4.320984", "1.296295")
    # The offer's plan is the default one: HardStop, no fee, a unit per token; the commitment
    # is the included units, so nothing is beyond them.
    assert (second["planPeriod"], second["planFeePerPeriod"], second["planFeeVersion"]) == (
        "1M",
        "0.000000",
        1,
    )
    assert (second["includedUnitsPerPeriod"], second["unitsPerMillionTokens"]) == (
        INCLUDED,
        1_000_000,
    )
    assert (second["monthlyUnits"], second["overageMode"]) == (INCLUDED, "HardStop")
    assert (second["overagePricePerMillionUnits"], second["overagePriceVersion"]) == (None, None)
    assert (second["overageUnits"], second["overageCharge"], second["planCharge"]) == (
        0,
        "0.000000",
        "0.000000",
    )
    naive = api.get(base, params={"at": "2027-01-01T00:00:00"})
    assert naive.status_code == 422
    assert "'at'" in naive.json()["detail"]


def test_the_wallet_shows_balance_burn_and_a_hand_computed_exhaustion_date(
    k8s: Any, namespace: str, offer: str, ledger: Ledger, api: TestClient
) -> None:
    create_sla(k8s, namespace, offer)
    (sla,) = listed(k8s, namespace, ledger)
    tenant = wallet_owner(namespace, None)
    current = period_containing(MONTH, datetime.now(UTC))
    fund_allowance(
        ledger,
        sla_uid=sla.uid,
        namespace=namespace,
        name="chat",
        tenant=tenant,
        period=current,
        tokens=10_000_000,
    )
    measured = current.start + timedelta(days=2, hours=3)
    ledger.record_usage(
        [UsageReading(sla.uid, tenant, current, tokens=1_234_567, measured_at=measured)]
    )
    (found,) = api.get(f"/v1/namespaces/{namespace}/wallet").json()["wallets"]
    # 10,000,000 - 1,234,567 = 8,765,433 tokens left, burning 1,234,567 tokens in 183,600 s:
    # 8,765,433 x 183,600 / 1,234,567 = 1,303,561.08 s -> 15 d 2 h 6 min 1 s after the reading;
    # 1,234,567 x 86,400 / 183,600 = 580,972.7058... tokens a day.
    assert found["availableTokens"] == 8_765_433
    assert found["burnTokensPerDay"] == "580972.706"
    expected = measured + timedelta(days=15, hours=2, minutes=6, seconds=1)
    assert datetime.fromisoformat(found["projectedExhaustion"]) == expected
    assert datetime.fromisoformat(found["burnMeasuredTo"]) == measured
    fleet = api.get("/v1/fleet/wallets", headers={"Authorization": f"Bearer {NOC_TOKEN}"}).json()
    mine = [w for w in fleet["wallets"] if w["tenant"] == tenant]
    assert mine == [found]


def test_a_quote_under_a_pay_per_use_plan_prices_the_fee_and_overage_at_their_versions(
    k8s: Any, namespace: str, plan_offer: str, api: TestClient
) -> None:
    create_sla(k8s, namespace, plan_offer)
    base = f"/v1/namespaces/{namespace}/slas/chat/quote"
    before, after = months_ahead(1), months_ahead(2)
    # The commitment (the included 1,234,567 tokens) at 2.5 units a token: 3,086,417.5 ->
    # 3,086,418 units (rounded up), 1,851,851 beyond the 1,234,567 included.
    # Version 1: 1,851,851 x 1.234567 / 1e6 = 2.286234133517 -> 2.286234 EUR;
    # with the fee: 9.990001 + 2.286234 = 12.276235 EUR.
    first = api.get(base, params={"at": before.start_iso}).json()
    assert (first["planPeriodStart"], first["planPeriodEnd"]) == (
        before.start_iso,
        before.end_iso,
    )
    assert (first["planFeePerPeriod"], first["planFeeVersion"]) == ("9.990001", 1)
    assert (first["includedUnitsPerPeriod"], first["unitsPerMillionTokens"]) == (
        INCLUDED,
        2_500_000,
    )
    assert (first["monthlyTokens"], first["monthlyUnits"]) == (INCLUDED, 3_086_418)
    assert first["overageMode"] == "PayPerUse"
    assert (first["overagePricePerMillionUnits"], first["overagePriceVersion"]) == ("1.234567", 1)
    assert (first["overageUnits"], first["overageCharge"]) == (1_851_851, "2.286234")
    assert first["planCharge"] == "12.276235"
    # The usage price is unchanged by the plan: 1,234,567 x 2.345 / 1e6 -> 2.895060 EUR.
    assert (first["priceVersion"], first["monthlyCharge"]) == (1, "2.895060")
    # The last minute before the change is still version 1's period.
    last = api.get(base, params={"at": (after.start - timedelta(minutes=1)).isoformat()}).json()
    assert (last["planFeeVersion"], last["overagePriceVersion"], last["planCharge"]) == (
        1,
        1,
        "12.276235",
    )
    # From effectiveFrom: fee 12.5 EUR (version 2); 1,851,851 x 2.5 / 1e6 = 4.6296275 -> 4.629628
    # EUR (half-even: the tie goes to the even 8); 12.5 + 4.629628 = 17.129628 EUR.
    second = api.get(base, params={"at": after.start_iso}).json()
    assert (second["planFeePerPeriod"], second["planFeeVersion"]) == ("12.500000", 2)
    assert (second["overagePricePerMillionUnits"], second["overagePriceVersion"]) == ("2.5", 2)
    assert (second["overageUnits"], second["overageCharge"]) == (1_851_851, "4.629628")
    assert second["planCharge"] == "17.129628"
    assert second["priceVersion"] == 1
