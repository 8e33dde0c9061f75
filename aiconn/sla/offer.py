"""The terms an SLA gets from its AIInferenceOffer (`aiconn.resources.v1alpha1.offer`).

An AIInferenceSLA mixes what a tenant asks for (a model, objectives, a network budget) with what
the provider grants (prices, credits, rate ceilings, slice priority, the slice manager, token
funding). Offers are cluster-scoped, like StorageClass: only the provider writes them, tenants
name one in `spec.offer` and choose within it. Two guards keep the boundary:

- at admission, a ValidatingAdmissionPolicy (`manifests/policy/`) refuses an SLA whose
  provider-owned fields lie outside its offer, naming the field;
- in the operator, `effective_spec` rebuilds those fields from the offer, so nothing commercial,
  no priority and no endpoint is ever taken from a tenant-writable field, even where the policy
  is not installed (a value outside the offer is refused there too, as an `OfferViolation`).

The provider-owned SLA fields are listed in the resource's `PROVIDER_OWNED`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiconn.resources.v1alpha1.offer import AIInferenceOfferSpec, SliceProfile
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec, CreditTier, RateLimit, TokensSpec
from aiconn.sla.prices import NoticeProblem, notice_problems, price_at, price_notice
from aiconn.sla.timestamps import parse_iso


def admitted_offer(body: Mapping[str, Any]) -> AIInferenceOfferSpec:
    """An offer object's spec without the price changes announced with too short a notice
    (`notice_problems` against its creationTimestamp): those are never applied, whatever
    admission let through. Raises pydantic's ValidationError when the spec is malformed."""
    offer = AIInferenceOfferSpec.model_validate(body.get("spec") or {})
    refused = {p.version for p in offer_notice_problems(body, offer)}
    if not refused:
        return offer
    kept = [c for c in offer.price_changes if c.version not in refused]
    return offer.model_copy(update={"price_changes": kept})


def offer_notice_problems(
    body: Mapping[str, Any], offer: AIInferenceOfferSpec
) -> list[NoticeProblem]:
    """The offer's price changes taking effect sooner than its creation plus its notice: the
    check that needs no admission policy (which also judges changes added later, against the
    time of the edit)."""
    created = (body.get("metadata") or {}).get("creationTimestamp")
    return notice_problems(
        offer.price_changes,
        notice=price_notice(offer.price_notice_days),
        announced=None if not created else parse_iso(str(created)).astimezone(UTC),
    )


class OfferViolation(ValueError):
    """An SLA asks for something outside its offer; `field` names the SLA field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def effective_spec(
    spec: AIInferenceSLASpec, offer: AIInferenceOfferSpec, *, at: datetime | None = None
) -> AIInferenceSLASpec:
    """The SLA as the operator acts on it: the tenant's choices, the offer's terms, at the price
    version in force at `at` (now when None; a period is charged at its start's, see `pinned`).

    Price, currency, funded tokens, credits, slice identity (hence priority) and the slice
    manager come from the offer; the rate limit is the tenant's choice capped by the ceiling.
    Raises OfferViolation, naming the SLA field, when a tenant value lies outside the offer.
    """
    found = offer.model_class(spec.model.name)
    if found is None:
        offered = ", ".join(m.name for c in offer.model_classes for m in c.models)
        raise OfferViolation(
            "spec.model.name", f"{spec.model.name!r} is not in the offer's catalogue ({offered})"
        )
    model_class, listed = found
    if (
        listed.parameters_billions is not None
        and spec.model.parameters_billions != listed.parameters_billions
    ):
        raise OfferViolation(
            "spec.model.parametersBillions",
            f"{spec.model.parameters_billions:g}B is not the provider's figure for"
            f" {listed.name} ({listed.parameters_billions:g}B)",
        )
    tokens = spec.tokens
    chosen = tokens.model_fields_set
    price = price_at(offer, model_class.name, at or datetime.now(UTC))
    # A tenant-stated price is judged like the admission policy judges it, against version 1:
    # a later version must not turn an admitted SLA into one outside its offer.
    _same(
        "spec.tokens.pricePerMillionTokens",
        chosen,
        tokens.price_per_million_tokens,
        model_class.price_per_million_tokens,
    )
    _same("spec.tokens.currency", chosen, tokens.currency, offer.currency)
    _same(
        "spec.tokens.monthlyCommitment",
        chosen,
        tokens.monthly_commitment,
        offer.plan.included_tokens_per_period,
    )
    rate = _rate_limit(tokens, offer.rate_limit_ceiling)
    credits = spec.credits
    for name in ("availability", "latency", "cap_percent"):
        _same(
            f"spec.credits.{_camel(name)}",
            credits.model_fields_set,
            _tiers(getattr(credits, name)),
            _tiers(getattr(offer.credits, name)),
        )
    network = spec.network
    profile = _profile(network.model_fields_set, network.sst, network.sd, network.five_qi, offer)
    nsmf_url = None
    if network.backend == "nsmf":
        if offer.slice_manager is None:
            raise OfferViolation("spec.network.backend", "the offer has no slice manager (nsmf)")
        nsmf_url = offer.slice_manager.url
    if "nsmf_url" in network.model_fields_set and network.nsmf_url != nsmf_url:
        raise OfferViolation(
            "spec.network.nsmfUrl", "must be left unset: the slice manager is the offer's"
        )
    tier = spec.placement.tier
    if tier != "auto" and tier not in offer.allowed_tiers:
        raise OfferViolation(
            "spec.placement.tier", f"{tier!r} is not one of the offer's tiers {offer.allowed_tiers}"
        )
    return spec.model_copy(
        update={
            "tokens": TokensSpec(
                monthly_commitment=offer.plan.included_tokens_per_period,
                price_per_million_tokens=float(price.price_per_million_tokens),
                currency=offer.currency,
                rate_limit=rate,
            ),
            "credits": offer.credits,
            "network": network.model_copy(
                update={
                    "sst": profile.sst,
                    "sd": profile.sd,
                    "five_qi": profile.five_qi,
                    "nsmf_url": nsmf_url,
                }
            ),
        }
    )


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _tiers(value: object) -> object:
    if isinstance(value, list):
        return [(t.below_percent, t.credit_percent) for t in value if isinstance(t, CreditTier)]
    return value


def _same(field: str, chosen: set[str], value: object, offered: object) -> None:
    """A provider-owned field may be left out, or must say what the offer says."""
    key = field.rsplit(".", 1)[-1]
    attr = "".join(f"_{c.lower()}" if c.isupper() else c for c in key)
    if attr in chosen and value != offered:
        raise OfferViolation(field, f"{value!r} is not the offer's {offered!r}; leave it unset")


def _rate_limit(tokens: TokensSpec, ceiling: RateLimit) -> RateLimit:
    if "rate_limit" not in tokens.model_fields_set:
        return ceiling
    asked = tokens.rate_limit
    chosen = asked.model_fields_set
    if "requests_per_second" in chosen and asked.requests_per_second > ceiling.requests_per_second:
        raise OfferViolation(
            "spec.tokens.rateLimit.requestsPerSecond",
            f"{asked.requests_per_second:g} exceeds the offer's ceiling"
            f" {ceiling.requests_per_second:g}",
        )
    if "tokens_per_minute" in chosen and asked.tokens_per_minute > ceiling.tokens_per_minute:
        raise OfferViolation(
            "spec.tokens.rateLimit.tokensPerMinute",
            f"{asked.tokens_per_minute} exceeds the offer's ceiling {ceiling.tokens_per_minute}",
        )
    return RateLimit(
        requests_per_second=asked.requests_per_second
        if "requests_per_second" in chosen
        else ceiling.requests_per_second,
        tokens_per_minute=asked.tokens_per_minute
        if "tokens_per_minute" in chosen
        else ceiling.tokens_per_minute,
    )


def _profile(
    chosen: set[str], sst: int, sd: str | None, five_qi: int, offer: AIInferenceOfferSpec
) -> SliceProfile:
    """The offer's profile matching the SST / SD / 5QI the SLA states; the first when none."""
    matches = [
        p
        for p in offer.slice_profiles
        if ("sst" not in chosen or p.sst == sst)
        and ("sd" not in chosen or p.sd == sd)
        and ("five_qi" not in chosen or p.five_qi == five_qi)
    ]
    if matches:
        return matches[0]
    offered = ", ".join(f"sst {p.sst}/5QI {p.five_qi}" for p in offer.slice_profiles)
    field = (
        "spec.network.sst"
        if "sst" in chosen and all(p.sst != sst for p in offer.slice_profiles)
        else "spec.network.fiveQI"
    )
    raise OfferViolation(field, f"no slice profile of the offer matches; offered: {offered}")
