"""Price versions: the version in force at a time, the history, and changes given too little
notice, which never apply."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from aiconn.resources.v1alpha1.offer import AIInferenceOfferSpec
from aiconn.sla.offer import admitted_offer, offer_notice_problems
from aiconn.sla.prices import plan_at, price_at
from aiconn.sla.terms import PeriodTerms

CREATED = datetime(2027, 1, 1, tzinfo=UTC)


def offer(*changes: dict[str, Any], notice_days: int = 30) -> dict[str, Any]:
    return {
        "metadata": {"name": "o", "creationTimestamp": "2027-01-01T00:00:00Z"},
        "spec": {
            "modelClasses": [
                {"name": "small", "models": [{"name": "s"}], "pricePerMillionTokens": 0.25},
                {"name": "large", "models": [{"name": "l"}], "pricePerMillionTokens": 4},
            ],
            "priceNoticeDays": notice_days,
            "priceChanges": list(changes),
            "plan": {"includedTokensPerPeriod": 1000},
            "sliceProfiles": [{"name": "embb", "sst": 1, "fiveQI": 9}],
            "allowedTiers": ["edge"],
        },
    }


def change(version: int, effective: str, cls: str, price: float) -> dict[str, Any]:
    return {
        "version": version,
        "effectiveFrom": effective,
        "prices": [{"modelClass": cls, "pricePerMillionTokens": price}],
    }


def test_the_version_in_force_is_the_newest_one_that_has_begun() -> None:
    spec = admitted_offer(
        offer(
            change(2, "2027-03-01T00:00:00Z", "small", 0.3),
            change(3, "2027-04-01T00:00:00Z", "large", 5),
        )
    )
    at = datetime(2027, 3, 1, tzinfo=UTC)
    assert price_at(spec, "small", at - timedelta(minutes=1)).version == 1
    small = price_at(spec, "small", at)
    assert (small.version, small.price_per_million_tokens) == (2, Decimal("0.3"))
    # Version 3 changes only the large class: small stays at version 2.
    assert price_at(spec, "small", datetime(2027, 5, 1, tzinfo=UTC)).version == 2
    large = price_at(spec, "large", datetime(2027, 5, 1, tzinfo=UTC))
    assert (large.version, large.price_per_million_tokens) == (3, Decimal("5.0"))


def test_a_change_sooner_than_creation_plus_notice_never_applies() -> None:
    body = offer(
        change(2, "2027-01-20T00:00:00Z", "small", 9), change(3, "2027-02-01T00:00:00Z", "small", 1)
    )
    raw = AIInferenceOfferSpec.model_validate(body["spec"])
    problems = offer_notice_problems(body, raw)
    assert [(p.field, p.version) for p in problems] == [("spec.priceChanges[0].effectiveFrom", 2)]
    spec = admitted_offer(body)
    assert price_at(spec, "small", datetime(2027, 1, 25, tzinfo=UTC)).version == 1
    assert price_at(spec, "small", datetime(2027, 2, 1, tzinfo=UTC)).version == 3


def test_pinned_terms_keep_their_price_version() -> None:
    terms = PeriodTerms.from_json(
        {
            "offer": "o",
            "currency": "EUR",
            "pricePerMillionTokens": "0.3",
            "credits": {"availability": [], "latency": [], "capPercent": 10},
            "includedTokensPerPeriod": 5,
            "priceVersion": 2,
        }
    )
    assert terms.price_version == 2
    assert PeriodTerms.from_json(terms.to_json()) == terms
    older = terms.to_json()
    del older["priceVersion"]
    assert PeriodTerms.from_json(older).price_version == 1


def plan_offer(*changes: dict[str, Any], mode: str = "PayPerUse") -> dict[str, Any]:
    body = offer(*changes)
    body["spec"]["plan"] = {
        "includedTokensPerPeriod": 1000,
        "feePerPeriod": 10,
        "overage": {"mode": mode} | ({"pricePerMillionUnits": 2.5} if mode == "PayPerUse" else {}),
    }
    return body


def test_the_plan_fee_and_overage_price_are_versioned_per_period_start() -> None:
    spec = admitted_offer(
        plan_offer(
            {
                "version": 2,
                "effectiveFrom": "2027-03-15T00:00:00Z",
                "plan": {"feePerPeriod": 12.5, "overagePricePerMillionUnits": 3.1},
            },
            {"version": 3, "effectiveFrom": "2027-05-01T00:00:00Z", "plan": {"feePerPeriod": 9}},
        )
    )
    march, april, may = (datetime(2027, m, 1, tzinfo=UTC) for m in (3, 4, 5))
    # Dated inside March: March's period began before it, April's is the first it prices.
    plan, versions = plan_at(spec, march)
    assert (plan.fee_per_period, plan.overage.price_per_million_units) == (10, 2.5)
    assert (versions.fee_version, versions.overage_version) == (1, 1)
    plan, versions = plan_at(spec, april)
    assert (versions.fee_per_period, versions.overage_price_per_million_units) == (
        Decimal("12.5"),
        Decimal("3.1"),
    )
    assert (plan.fee_per_period, plan.overage.price_per_million_units) == (12.5, 3.1)
    assert (versions.fee_version, versions.overage_version) == (2, 2)
    # Version 3 changes only the fee: the overage price stays at version 2.
    plan, versions = plan_at(spec, may)
    assert (plan.fee_per_period, plan.overage.price_per_million_units) == (9, 3.1)
    assert (versions.fee_version, versions.overage_version) == (3, 2)
    # Model-class prices are untouched by a plan-only change.
    assert price_at(spec, "small", may).version == 1


def test_a_plan_change_given_too_little_notice_never_applies() -> None:
    spec = admitted_offer(
        plan_offer(
            {"version": 2, "effectiveFrom": "2027-01-10T00:00:00Z", "plan": {"feePerPeriod": 99}}
        )
    )
    plan, versions = plan_at(spec, datetime(2027, 2, 1, tzinfo=UTC))
    assert (plan.fee_per_period, versions.fee_version) == (10, 1)


def test_a_price_change_names_a_price_and_an_overage_price_needs_pay_per_use() -> None:
    with pytest.raises(ValidationError, match="names prices, plan or both"):
        AIInferenceOfferSpec.model_validate(
            plan_offer({"version": 2, "effectiveFrom": "2027-03-01T00:00:00Z"})["spec"]
        )
    with pytest.raises(ValidationError, match="overagePricePerMillionUnits"):
        AIInferenceOfferSpec.model_validate(
            plan_offer(
                {
                    "version": 2,
                    "effectiveFrom": "2027-03-01T00:00:00Z",
                    "plan": {"overagePricePerMillionUnits": 3},
                },
                mode="HardStop",
            )["spec"]
        )
