"""Reports show the terms the operator charges: the offer's, never an SLA's own."""

from __future__ import annotations

from typing import Any

from aiconn.api.slas import SLA, with_offer_terms
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec, AIInferenceSLAStatus
from tests.factories import bundle_offer

OFFER = bundle_offer()


def sla(**spec: Any) -> SLA:
    return SLA(
        namespace="acme",
        name="chat",
        uid="u-1",
        spec=AIInferenceSLASpec.model_validate(
            {
                "model": {"name": "m", "source": "hf://o/m", "parametersBillions": 8},
                "network": {"rttBudgetMs": 20},
                **spec,
            }
        ),
        status=AIInferenceSLAStatus(),
    )


def test_an_sla_under_an_offer_is_reported_at_the_offers_price() -> None:
    shown = with_offer_terms(sla(offer="bundle"), {"bundle": OFFER})
    assert shown.spec.tokens.price_per_million_tokens == 2
    assert shown.spec.tokens.monthly_commitment == 1000


def test_an_sla_outside_its_offer_or_without_one_is_left_as_it_is() -> None:
    cheeky = sla(offer="bundle", tokens={"pricePerMillionTokens": 0.001})
    assert with_offer_terms(cheeky, {"bundle": OFFER}) == cheeky
    legacy = sla()
    assert with_offer_terms(legacy, {"bundle": OFFER}) == legacy
    missing = sla(offer="gone")
    assert with_offer_terms(missing, {"bundle": OFFER}) == missing
