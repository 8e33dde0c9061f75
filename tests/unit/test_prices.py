"""Price versions: the version in force at a time, the history, and changes given too little
notice, which never apply."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from aiconn.sla.offer import AIInferenceOfferSpec, admitted_offer, offer_notice_problems
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
    assert spec.price_at("small", at - timedelta(minutes=1)).version == 1
    small = spec.price_at("small", at)
    assert (small.version, small.price_per_million_tokens) == (2, Decimal("0.3"))
    # Version 3 changes only the large class: small stays at version 2.
    assert spec.price_at("small", datetime(2027, 5, 1, tzinfo=UTC)).version == 2
    large = spec.price_at("large", datetime(2027, 5, 1, tzinfo=UTC))
    assert (large.version, large.price_per_million_tokens) == (3, Decimal("5.0"))


def test_a_change_sooner_than_creation_plus_notice_never_applies() -> None:
    body = offer(
        change(2, "2027-01-20T00:00:00Z", "small", 9), change(3, "2027-02-01T00:00:00Z", "small", 1)
    )
    raw = AIInferenceOfferSpec.model_validate(body["spec"])
    problems = offer_notice_problems(body, raw)
    assert [(p.field, p.version) for p in problems] == [("spec.priceChanges[0].effectiveFrom", 2)]
    spec = admitted_offer(body)
    assert spec.price_at("small", datetime(2027, 1, 25, tzinfo=UTC)).version == 1
    assert spec.price_at("small", datetime(2027, 2, 1, tzinfo=UTC)).version == 3


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
