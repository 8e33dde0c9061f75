"""The offer decides the provider-owned terms of an SLA (`aiconn.sla.offer.effective_spec`):
a tenant's values are kept only where the offer lets the tenant choose, and anything outside the
offer is refused naming the SLA field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aiconn.devstack.kube import load_documents
from aiconn.resources.v1alpha1.offer import AIInferenceOfferSpec, NamespaceSelector
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec
from aiconn.sla.offer import OfferViolation, effective_spec
from tests.factories import small_sla_doc

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "manifests" / "samples"

OFFER = AIInferenceOfferSpec.model_validate(
    {
        "currency": "EUR",
        "modelClasses": [
            {
                "name": "small",
                "models": [{"name": "m", "parametersBillions": 8}, {"name": "mini"}],
                "pricePerMillionTokens": 0.5,
            },
            {
                "name": "large",
                "models": [{"name": "big", "parametersBillions": 70}, {"name": "mystery"}],
                "pricePerMillionTokens": 1.6,
            },
        ],
        "plan": {"includedTokensPerPeriod": 1_000_000},
        "credits": {
            "availability": [{"belowPercent": 99, "creditPercent": 20}],
            "latency": [{"belowPercent": 95, "creditPercent": 5}],
            "capPercent": 40,
        },
        "rateLimitCeiling": {"requestsPerSecond": 10, "tokensPerMinute": 60_000},
        "sliceProfiles": [
            {"name": "embb", "sst": 1, "fiveQI": 9},
            {"name": "urllc", "sst": 2, "sd": "0000A1", "fiveQI": 82},
        ],
        "sliceManager": {"url": "https://nsmf.provider.example/ProvMnS"},
        "allowedTiers": ["edge", "regional"],
    }
)


def sla(**spec: Any) -> AIInferenceSLASpec:
    base = small_sla_doc(offer="probe")
    for key, value in spec.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return AIInferenceSLASpec.model_validate(base)


def test_an_sla_that_states_no_terms_gets_the_offers() -> None:
    got = effective_spec(sla(), OFFER)
    assert got.tokens.price_per_million_tokens == 0.5
    assert got.tokens.monthly_commitment == 1_000_000
    assert got.tokens.currency == "EUR"
    assert got.tokens.rate_limit.requests_per_second == 10
    assert got.tokens.rate_limit.tokens_per_minute == 60_000
    assert got.credits == OFFER.credits
    assert (got.network.sst, got.network.sd, got.network.five_qi) == (1, None, 9)
    assert got.network.nsmf_url is None


def test_the_price_is_the_model_classes() -> None:
    got = effective_spec(sla(model={"name": "big", "parametersBillions": 70}), OFFER)
    assert got.tokens.price_per_million_tokens == 1.6


def test_the_class_follows_the_models_name_never_the_size_the_tenant_states() -> None:
    # A large model declared as 1B: the provider's catalogue, not the tenant, picks the class.
    got = effective_spec(sla(model={"name": "mystery", "parametersBillions": 1}), OFFER)
    assert got.tokens.price_per_million_tokens == 1.6
    got = effective_spec(sla(model={"name": "mini", "parametersBillions": 400}), OFFER)
    assert got.tokens.price_per_million_tokens == 0.5


def test_a_namespace_selector_selects_by_the_namespaces_labels() -> None:
    selector = NamespaceSelector.model_validate(
        {
            "matchLabels": {"aiconn.io/customer": "acme"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["gold", "silver"]},
                {"key": "env", "operator": "NotIn", "values": ["test"]},
                {"key": "billing", "operator": "Exists"},
                {"key": "suspended", "operator": "DoesNotExist"},
            ],
        }
    )
    good = {"aiconn.io/customer": "acme", "tier": "gold", "billing": "x", "env": "prod"}
    assert selector.matches(good)
    assert selector.matches({k: v for k, v in good.items() if k != "env"})
    for broken in (
        {"aiconn.io/customer": "other"},
        {"tier": "bronze"},
        {"env": "test"},
        {"billing": None},
        {"suspended": "yes"},
    ):
        labels = {**good, **broken}
        assert not selector.matches({k: v for k, v in labels.items() if v is not None}), broken
    assert OFFER.admits_namespace({})  # no selector: sold everywhere
    sold = OFFER.model_copy(update={"namespace_selector": selector})
    assert sold.admits_namespace(good) and not sold.admits_namespace({})


def test_a_lower_rate_is_the_tenants_choice() -> None:
    got = effective_spec(sla(tokens={"rateLimit": {"requestsPerSecond": 4}}), OFFER)
    assert got.tokens.rate_limit.requests_per_second == 4
    assert got.tokens.rate_limit.tokens_per_minute == 60_000


def test_a_slice_profile_is_chosen_by_sst_and_the_nsmf_endpoint_is_the_offers() -> None:
    got = effective_spec(sla(network={"sst": 2, "backend": "nsmf"}), OFFER)
    assert (got.network.sst, got.network.sd, got.network.five_qi) == (2, "0000A1", 82)
    assert got.network.nsmf_url == "https://nsmf.provider.example/ProvMnS"


def test_values_equal_to_the_offers_are_accepted() -> None:
    effective_spec(
        sla(tokens={"pricePerMillionTokens": 0.5, "monthlyCommitment": 1_000_000}), OFFER
    )


OUTSIDE: list[tuple[dict[str, Any], str]] = [
    ({"model": {"name": "llama-3.1-405b"}}, "spec.model.name"),
    ({"model": {"parametersBillions": 1}}, "spec.model.parametersBillions"),
    ({"tokens": {"pricePerMillionTokens": 0.000001}}, "spec.tokens.pricePerMillionTokens"),
    ({"tokens": {"monthlyCommitment": 999 * 10**12}}, "spec.tokens.monthlyCommitment"),
    ({"tokens": {"currency": "USD"}}, "spec.tokens.currency"),
    (
        {"tokens": {"rateLimit": {"requestsPerSecond": 11}}},
        "spec.tokens.rateLimit.requestsPerSecond",
    ),
    (
        {"tokens": {"rateLimit": {"tokensPerMinute": 60_001}}},
        "spec.tokens.rateLimit.tokensPerMinute",
    ),
    (
        {"credits": {"availability": [{"belowPercent": 100, "creditPercent": 100}]}},
        "spec.credits.availability",
    ),
    ({"credits": {"capPercent": 100}}, "spec.credits.capPercent"),
    ({"network": {"sst": 3}}, "spec.network.sst"),
    ({"network": {"sst": 1, "fiveQI": 82}}, "spec.network.fiveQI"),
    ({"network": {"nsmfUrl": "http://attacker.example/"}}, "spec.network.nsmfUrl"),
    ({"placement": {"tier": "cloud"}}, "spec.placement.tier"),
]


@pytest.mark.parametrize(("change", "field"), OUTSIDE, ids=[f for _, f in OUTSIDE])
def test_a_value_outside_the_offer_is_refused_naming_the_field(
    change: dict[str, Any], field: str
) -> None:
    with pytest.raises(OfferViolation) as refused:
        effective_spec(sla(**change), OFFER)
    assert refused.value.field == field


def test_nsmf_is_not_offered_without_a_slice_manager() -> None:
    offer = OFFER.model_copy(update={"slice_manager": None})
    with pytest.raises(OfferViolation) as refused:
        effective_spec(sla(network={"backend": "nsmf"}), offer)
    assert refused.value.field == "spec.network.backend"


def test_every_sample_sla_is_within_the_offer_it_names() -> None:
    docs = load_documents(sorted(SAMPLES.glob("*.yaml")))
    offers = {
        d["metadata"]["name"]: AIInferenceOfferSpec.model_validate(d["spec"])
        for d in docs
        if d["kind"] == "AIInferenceOffer"
    }
    slas = [
        AIInferenceSLASpec.model_validate(d["spec"]) for d in docs if d["kind"] == "AIInferenceSLA"
    ]
    assert len(offers) == 4 and len(slas) == 4  # with the published business-hours SLA
    for spec in slas:
        assert spec.offer in offers, spec.offer
        effective_spec(spec, offers[spec.offer])
