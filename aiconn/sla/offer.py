"""The AIInferenceOffer resource: what the provider sells, and the terms an SLA gets from it.

An AIInferenceSLA mixes what a tenant asks for (a model, objectives, a network budget) with what
the provider grants (prices, credits, rate ceilings, slice priority, the slice manager, token
funding). Offers are cluster-scoped, like StorageClass: only the provider writes them, tenants
name one in `spec.offer` and choose within it. Two guards keep the boundary:

- at admission, a ValidatingAdmissionPolicy (`manifests/policy/`) refuses an SLA whose
  provider-owned fields lie outside its offer, naming the field;
- in the operator, `effective_spec` rebuilds those fields from the offer, so nothing commercial,
  no priority and no endpoint is ever taken from a tenant-writable field, even where the policy
  is not installed (a value outside the offer is refused there too, as an `OfferViolation`).

Provider-owned SLA fields keep their schema (old SLAs still parse) but lose their API-server
defaults (`PROVIDER_OWNED`): a default filled in by the server would look like a tenant's choice
to the policy.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from aiconn.crd import CamelModel, cel, validations
from aiconn.sla.maintenance import MaintenanceTerms
from aiconn.sla.servicehours import ServiceHours
from aiconn.sla.spec import (
    DURATION_PATTERN,
    AIInferenceSLASpec,
    CreditsSpec,
    CreditTier,
    RateLimit,
    TokensSpec,
    Window,
)

NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

PROVIDER_OWNED: dict[str, str] = {
    "spec.tokens": "built from the offer",
    "spec.tokens.monthlyCommitment": "the offer's plan.includedTokensPerPeriod (funded per tenant)",
    "spec.tokens.pricePerMillionTokens": "the offer's price for the model's class",
    "spec.tokens.currency": "the offer's currency",
    "spec.tokens.rateLimit": "the rates chosen here, at most the offer's rateLimitCeiling",
    "spec.tokens.rateLimit.requestsPerSecond": "at most the offer's ceiling",
    "spec.tokens.rateLimit.tokensPerMinute": "at most the offer's ceiling",
    "spec.credits": "the offer's credit schedules and cap",
    "spec.credits.availability": "the offer's schedule",
    "spec.credits.latency": "the offer's schedule",
    "spec.credits.capPercent": "the offer's cap",
    "spec.network.sst": "one of the offer's sliceProfiles (the first when unset)",
    "spec.network.fiveQI": "one of the offer's sliceProfiles (the first when unset)",
    "spec.network.nsmfUrl": "the offer's sliceManager.url (leave it unset)",
}
"""SLA fields the provider owns, and where their value comes from when the SLA names an offer.
The CRD renders them without server defaults and says so in their descriptions."""


def _strictly_increasing(field: str, key: str) -> dict[str, str]:
    # Kubernetes CEL iterates elements, not indexes: sortedness plus uniqueness is "strict".
    return cel(
        f"self.map(c, c.{key}).isSorted() && self.all(a, self.exists_one(b, b.{key} == a.{key}))",
        f"{field} must be listed with strictly increasing {key}",
    )


class ModelClassPrice(CamelModel):
    """A class of models by size and the price of a million tokens of it."""

    name: str = Field(min_length=1, max_length=63, pattern=NAME_PATTERN)
    """Class name shown on statements, e.g. small or large."""
    max_parameters_billions: float = Field(gt=0, le=10000)
    """Largest model of the class, in billions of parameters; an SLA's model falls into the first class (by size) that holds it."""
    price_per_million_tokens: float = Field(ge=0, le=1_000_000)
    """Price of one million tokens of this class, in the offer's currency."""


class TokenPlan(CamelModel):
    """The tokens a tenant's wallet receives from the plan, per tenant and plan period."""

    included_tokens_per_period: int = Field(ge=0, le=10**15)
    """Tokens funded into the tenant's wallet once per period, however many SLAs name the offer."""
    period: str = Field(default="1M", pattern=DURATION_PATTERN)
    """Plan period, calendar-aligned in UTC, in OpenSLO shorthand (m, h, d, w, M)."""

    @property
    def window(self) -> Window:
        """The plan period as a calendar window."""
        return Window(duration=self.period, calendar_aligned=True)


class SliceProfile(CamelModel):
    """A network slice profile the provider offers; its SST and 5QI decide the pods' priority."""

    name: str = Field(min_length=1, max_length=63, pattern=NAME_PATTERN)
    """Profile name."""
    sst: int = Field(ge=0, le=255)
    """S-NSSAI Slice/Service Type: 1 eMBB, 2 URLLC, 3 MIoT, 4 V2X, 5 HMTC; 128-255 operator-specific."""
    sd: str | None = Field(default=None, pattern=r"^[0-9A-Fa-f]{6}$")
    """S-NSSAI Slice Differentiator, 6 hex digits."""
    five_qi: int = Field(ge=1, le=255, alias="fiveQI")
    """5G QoS Identifier (TS 23.501 table 5.7.4-1)."""


class SliceManager(CamelModel):
    """The 5G core's slice manager that SLAs with backend nsmf are realized in."""

    url: str = Field(pattern=r"^https?://.+", max_length=2048)
    """Slice manager MnS root (TS 28.532)."""


class AIInferenceOfferSpec(CamelModel):
    """What an SLA naming this offer may get: prices, plan, credits, rates, slices, tiers."""

    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    """ISO 4217 currency of every price in the offer."""
    model_classes: list[ModelClassPrice] = Field(
        min_length=1,
        max_length=16,
        json_schema_extra=validations(
            _strictly_increasing("modelClasses", "maxParametersBillions")
        ),
    )
    """Price per model class, smallest class first."""
    plan: TokenPlan
    """Tokens included per tenant and period."""
    credits: CreditsSpec = CreditsSpec()
    """Credit schedules and cap every SLA of the offer gets."""
    rate_limit_ceiling: RateLimit = RateLimit()
    """Highest rates an SLA may choose; an SLA that states none gets these."""
    slice_profiles: list[SliceProfile] = Field(min_length=1, max_length=16)
    """Slice profiles an SLA may choose by SST and 5QI; the first is the default."""
    slice_manager: SliceManager | None = None
    """Slice manager for SLAs with backend nsmf; without it, backend nsmf is not offered."""
    allowed_tiers: list[Annotated[str, Field(max_length=63, pattern=NAME_PATTERN)]] = Field(
        min_length=1, max_length=16
    )
    """InferenceTiers an SLA of this offer may be placed on (auto chooses among them)."""
    service_hours: ServiceHours | None = None
    """Hours the availability objective counts, local to a time zone (e.g. Mon-Fri 08:00-18:00 Europe/Berlin); minutes outside are not judged (neither good, bad nor unknown, and not in the coverage). Latency objectives count every request. Without it, every minute counts."""
    maintenance: MaintenanceTerms | None = None
    """Planned maintenance excluded from availability: MaintenanceWindows naming this offer excuse the minutes that begin at least noticeMinutes after the window was created (its creationTimestamp), never earlier. Without it, maintenance is judged like any other minute."""

    def model_class(self, parameters_billions: float) -> ModelClassPrice | None:
        """The class a model of this size falls into; None when the offer has none that big."""
        return next(
            (c for c in self.model_classes if c.max_parameters_billions >= parameters_billions),
            None,
        )


class OfferViolation(ValueError):
    """An SLA asks for something outside its offer; `field` names the SLA field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def effective_spec(spec: AIInferenceSLASpec, offer: AIInferenceOfferSpec) -> AIInferenceSLASpec:
    """The SLA as the operator acts on it: the tenant's choices, the offer's terms.

    Price, currency, funded tokens, credits, slice identity (hence priority) and the slice
    manager come from the offer; the rate limit is the tenant's choice capped by the ceiling.
    Raises OfferViolation, naming the SLA field, when a tenant value lies outside the offer.
    """
    model_class = offer.model_class(spec.model.parameters_billions)
    if model_class is None:
        raise OfferViolation(
            "spec.model.parametersBillions",
            f"{spec.model.parameters_billions:g}B is larger than the offer's largest class"
            f" ({offer.model_classes[-1].max_parameters_billions:g}B)",
        )
    tokens = spec.tokens
    chosen = tokens.model_fields_set
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
                price_per_million_tokens=model_class.price_per_million_tokens,
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
