"""A quote under an offer's token plan (`aiconn.planning.price_plan`, shared by the API's quote
and `aiconn plan --offer`): the period's fee and overage price at the versions in force at its
start, the commitment in wallet units at the model class's exchange rate, and the overage to the
micro-unit, hand-computed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from aiconn.cli import main
from aiconn.planning import price_plan
from aiconn.resources.v1alpha1.offer import AIInferenceOfferSpec

MAR, APR = datetime(2027, 3, 1, tzinfo=UTC), datetime(2027, 4, 1, tzinfo=UTC)


def offer(mode: str = "PayPerUse", period: str = "1M") -> AIInferenceOfferSpec:
    overage: dict[str, Any] = {"mode": mode}
    if mode == "PayPerUse":
        overage["pricePerMillionUnits"] = 1.234567
    # Version 2 from April: the fee, and the overage price where there is one; version 3 from
    # mid-April: a fee that no period starting in April is charged at.
    prices: dict[str, Any] = {"feePerPeriod": 12.5}
    if mode == "PayPerUse":
        prices["overagePricePerMillionUnits"] = 2.5
    changes: list[dict[str, Any]] = [
        {"version": 2, "effectiveFrom": "2027-04-01T00:00:00Z", "plan": prices},
        {"version": 3, "effectiveFrom": "2027-04-15T00:00:00Z", "plan": {"feePerPeriod": 99}},
    ]
    return AIInferenceOfferSpec.model_validate(
        {
            "modelClasses": [
                {"name": "small", "models": [{"name": "tiny"}], "pricePerMillionTokens": 2},
                {"name": "large", "models": [{"name": "big"}], "pricePerMillionTokens": 8},
            ],
            "priceChanges": changes,
            "plan": {
                "includedTokensPerPeriod": 10_000_000,
                "period": period,
                "feePerPeriod": 9.990001,
                "exchangeRates": [{"modelClass": "large", "unitsPerMillionTokens": 4_000_000}],
                "overage": overage,
            },
            "sliceProfiles": [{"name": "embb", "sst": 1, "fiveQI": 9}],
            "allowedTiers": ["edge"],
        }
    )


def test_a_pay_per_use_quote_charges_the_units_beyond_the_included_ones_half_even() -> None:
    # 3,000,001 large tokens x 4,000,000 units/1M = 12,000,004 units; 2,000,004 beyond the
    # 10,000,000 included; x 1.234567 / 1e6 = 2.469138938268 -> 2.469139 EUR (half-even).
    mid_march = datetime(2027, 3, 17, 12, tzinfo=UTC)
    quoted = price_plan(offer(), "large", 3_000_001, mid_march)
    assert (quoted.period.start, quoted.period.end) == (MAR, APR)
    assert (quoted.fee_per_period, quoted.fee_version) == (Decimal("9.990001"), 1)
    assert (quoted.included_units, quoted.units_per_million_tokens) == (10_000_000, 4_000_000)
    assert quoted.committed_units == 12_000_004
    assert quoted.overage_mode == "PayPerUse"
    assert (quoted.overage_price_per_million_units, quoted.overage_version) == (
        Decimal("1.234567"),
        1,
    )
    assert quoted.overage_units == 2_000_004
    assert quoted.overage_charge == Decimal("2.469139")
    # 9.990001 + 2.469139 = 12.459140
    assert quoted.plan_charge == Decimal("12.459140")


def test_the_versions_in_force_at_the_period_start_price_the_period() -> None:
    # From April (version 2): fee 12.5; 2,000,004 x 2.5 / 1e6 = 5.00001 EUR.
    april = price_plan(offer(), "large", 3_000_001, APR)
    assert (april.fee_per_period, april.fee_version) == (Decimal("12.500000"), 2)
    assert (april.overage_price_per_million_units, april.overage_version) == (Decimal("2.5"), 2)
    assert april.overage_charge == Decimal("5.000010")
    assert april.plan_charge == Decimal("17.500010")
    # Version 3 takes effect mid-April: April's period started at version 2 and its close
    # charges version 2, so a quote inside April says so; May's period is version 3's.
    late_april = price_plan(offer(), "large", 3_000_001, datetime(2027, 4, 20, tzinfo=UTC))
    assert (late_april.fee_version, late_april.fee_per_period) == (2, Decimal("12.500000"))
    may = price_plan(offer(), "large", 3_000_001, datetime(2027, 5, 1, tzinfo=UTC))
    assert (may.fee_version, may.fee_per_period, may.overage_version) == (
        3,
        Decimal("99.000000"),
        2,
    )
    # The last minute of March is still March's period, at version 1.
    march = price_plan(offer(), "large", 3_000_001, datetime(2027, 3, 31, 23, 59, tzinfo=UTC))
    assert (march.fee_version, march.overage_version) == (1, 1)


def test_a_class_without_a_rate_costs_a_unit_a_token_and_within_the_plan_nothing_more() -> None:
    quoted = price_plan(offer(), "small", 10_000_000, MAR)
    # Exactly the included units: no overage.
    assert (quoted.units_per_million_tokens, quoted.committed_units) == (1_000_000, 10_000_000)
    assert (quoted.overage_units, quoted.overage_charge) == (0, Decimal(0))
    assert quoted.plan_charge == Decimal("9.990001")


def test_hard_stop_refuses_the_overage_and_charges_nothing_for_it() -> None:
    # 2,750,001 large tokens x 4 = 11,000,004 units; the 1,000,004 beyond 10,000,000 are
    # refused (402), not charged; April's fee (version 2) is all the tenant pays.
    quoted = price_plan(offer("HardStop"), "large", 2_750_001, APR)
    assert quoted.committed_units == 11_000_004
    assert quoted.overage_mode == "HardStop"
    assert (quoted.overage_price_per_million_units, quoted.overage_version) == (None, None)
    assert (quoted.overage_units, quoted.overage_charge) == (1_000_004, Decimal(0))
    assert (quoted.fee_version, quoted.plan_charge) == (2, Decimal("12.500000"))


def test_a_plan_period_that_is_not_a_month_gives_no_overage_for_a_monthly_commitment() -> None:
    quoted = price_plan(offer(period="1w"), "small", 3_000_000, MAR)
    assert quoted.period.end - quoted.period.start == timedelta(days=7)
    assert (quoted.overage_units, quoted.overage_charge, quoted.plan_charge) == (None, None, None)
    assert quoted.fee_per_period == Decimal("9.990001")


def test_units_round_up_to_a_whole_unit() -> None:
    # 1,000,001 large tokens at 1,500,000 units/1M = 1,500,001.5 units -> 1,500,002 (up).
    spec = offer()
    rates = [spec.plan.exchange_rates[0].model_copy(update={"units_per_million_tokens": 1_500_000})]
    spec = spec.model_copy(update={"plan": spec.plan.model_copy(update={"exchange_rates": rates})})
    assert price_plan(spec, "large", 1_000_001, MAR).committed_units == 1_500_002


EDGE_SLA = Path(__file__).resolve().parents[2] / "manifests" / "samples" / "sla-edge-urllc.yaml"
BUNDLE = """
apiVersion: aiconn.io/v1alpha1
kind: AIInferenceOffer
metadata: {name: other}
spec:
  modelClasses: [{name: standard, pricePerMillionTokens: 1, models: [{name: x}]}]
  plan: {includedTokensPerPeriod: 1}
  sliceProfiles: [{name: embb, sst: 1, fiveQI: 9}]
  allowedTiers: [edge]
---
apiVersion: aiconn.io/v1alpha1
kind: AIInferenceOffer
metadata: {name: 5g-enterprise-bundle, creationTimestamp: "2027-01-01T00:00:00Z"}
spec:
  currency: EUR
  modelClasses:
    - {name: standard, pricePerMillionTokens: 0.9, models: [{name: llama-3-8b-instruct}]}
  priceNoticeDays: 30
  priceChanges:
    - version: 2
      effectiveFrom: "2027-04-01T00:00:00Z"
      plan: {feePerPeriod: 59.99, overagePricePerMillionUnits: 0.5}
  plan:
    includedTokensPerPeriod: 200000000
    period: 1M
    feePerPeriod: 49.99
    exchangeRates: [{modelClass: standard, unitsPerMillionTokens: 1250000}]
    overage: {mode: PayPerUse, pricePerMillionUnits: 0.33333325}
  sliceProfiles: [{name: urllc-factory, sst: 2, sd: "0000A1", fiveQI: 82}]
  allowedTiers: [edge, regional]
"""


def plan_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main(["plan", "--output", "json", *args]) == 0
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    return result


def test_aiconn_plan_with_the_offer_prints_the_plan_at_the_versions_in_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    offers = tmp_path / "offers.yaml"
    offers.write_text(BUNDLE)
    args = [str(EDGE_SLA), "--offer", str(offers), "--at"]
    # The commitment is the offer's 200,000,000 tokens: at 1.25 units a token 250,000,000 units,
    # 50,000,000 beyond the included 200,000,000; x 0.33333325 / 1e6 = 16.6666625 -> 16.666662
    # EUR (half-even: the tie goes to the even 2); with the fee 49.99 + 16.666662 = 66.656662.
    march = plan_json(capsys, *args, "2027-03-01T00:00:00Z")
    assert (march["monthlyTokens"], march["monthlyCharge"]) == (200_000_000, "180.000000")
    assert march["plan"] == {
        "period": "1M",
        "periodStart": "2027-03-01T00:00:00Z",
        "periodEnd": "2027-04-01T00:00:00Z",
        "feePerPeriod": "49.990000",
        "feeVersion": 1,
        "includedUnitsPerPeriod": 200_000_000,
        "unitsPerMillionTokens": 1_250_000,
        "monthlyUnits": 250_000_000,
        "overageMode": "PayPerUse",
        "overagePricePerMillionUnits": "0.33333325",
        "overagePriceVersion": 1,
        "overageUnits": 50_000_000,
        "overageCharge": "16.666662",
        "planCharge": "66.656662",
    }
    # From April (version 2): 50,000,000 x 0.5 / 1e6 = 25; 59.99 + 25 = 84.99 EUR.
    april = plan_json(capsys, *args, "2027-04-01T00:00:00+02:00")  # 2027-03-31T22:00Z: March
    assert april["plan"]["feeVersion"] == 1
    april = plan_json(capsys, *args, "2027-04-01T00:00:00Z")["plan"]
    assert (april["feePerPeriod"], april["feeVersion"], april["overagePriceVersion"]) == (
        "59.990000",
        2,
        2,
    )
    assert (april["overageCharge"], april["planCharge"]) == ("25.000000", "84.990000")
    assert main(["plan", *args, "2027-04-01T00:00:00Z"]) == 0
    text = capsys.readouterr().out
    assert "fee 59.990000 EUR (price version 2)" in text
    assert "overage:         PayPerUse at 0.5 EUR/1M units (price version 2)" in text
    assert "50,000,000 units beyond: 25.000000 EUR; plan charge 84.990000 EUR" in text
    # Without --offer the plan is not known.
    assert plan_json(capsys, str(EDGE_SLA))["plan"] is None


def test_aiconn_plan_names_a_missing_offer_and_a_time_without_a_zone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    offers = tmp_path / "offers.yaml"
    offers.write_text(BUNDLE.split("---")[0])
    assert main(["plan", str(EDGE_SLA), "--offer", str(offers)]) == 2
    err = capsys.readouterr().err
    assert "expected one AIInferenceOffer named '5g-enterprise-bundle'" in err
    with pytest.raises(SystemExit) as exited:
        main(["plan", str(EDGE_SLA), "--offer", str(offers), "--at", "2027-03-01T00:00:00"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--at" in err and "give a time zone" in err
    assert main(["plan", str(EDGE_SLA), "--at", "2027-03-01T00:00:00Z"]) == 2
    assert "--at: prices a plan period, so it needs --offer" in capsys.readouterr().err
