"""The AIInferenceOffer resource: what the provider sells to AI inference SLAs.

Offers are cluster-scoped, like StorageClass: only the provider writes them, tenants name one in
their SLA's `spec.offer` and choose within it. How an SLA's terms are built from its offer, and
refused outside it, is `aiconn.sla.offer`'s business; which price version is in force when is
`aiconn.sla.prices`'s.

Provider-owned SLA fields keep their schema (old SLAs still parse) but lose their API-server
defaults (`PROVIDER_OWNED`): a default filled in by the server would look like a tenant's choice
to the admission policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import Field, model_validator

from aiconn.resources.v1alpha1.maintenance import MaintenanceTerms
from aiconn.resources.v1alpha1.meta import CamelModel, cel, once_each, validations, with_rules
from aiconn.resources.v1alpha1.names import DNS_LABEL_PATTERN
from aiconn.resources.v1alpha1.prices import PRICE_CHANGES_RULES, PriceChange
from aiconn.resources.v1alpha1.servicehours import ServiceHours
from aiconn.resources.v1alpha1.sla import (
    DURATION_PATTERN,
    MODEL_NAME_PATTERN,
    CreditsSpec,
    RateLimit,
    Window,
)
from aiconn.resources.v1alpha1.slice import SD_PATTERN, FiveQi, Sst

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


class CatalogueModel(CamelModel):
    """A model the provider prices, by the name SLAs state in `spec.model.name`."""

    name: str = Field(min_length=1, max_length=128, pattern=MODEL_NAME_PATTERN)
    """The model's name as SLAs state it (vLLM's served model name)."""
    parameters_billions: float | None = Field(default=None, gt=0, le=10000)
    """The provider's figure for its size; an SLA stating another is refused. Sizing only: the
    price follows the name."""


class ModelClassPrice(CamelModel):
    """A class of models, named by the provider, and the price of a million tokens of it."""

    name: str = Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)
    """Class name shown on statements, e.g. small or large."""
    models: list[CatalogueModel] = Field(
        min_length=1,
        max_length=64,
        json_schema_extra=validations(once_each("models must be listed once each", "name")),
    )
    """The models of the class, by name: an SLA's `spec.model.name` picks the class (the first
    class listing it); a model no class lists is not offered."""
    price_per_million_tokens: float = Field(ge=0, le=1_000_000)
    """Price of one million tokens of this class, in the offer's currency."""


class SelectorRequirement(CamelModel):
    """One requirement of a label selector, as in Kubernetes' LabelSelectorRequirement."""

    key: str = Field(min_length=1, max_length=317)
    """The label key."""
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    """How the label's value relates to `values`."""
    values: list[Annotated[str, Field(max_length=63)]] = Field(default_factory=list, max_length=64)
    """Values for In and NotIn (required there); empty for Exists and DoesNotExist."""

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether `labels` meet the requirement."""
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        found = self.key in labels and labels[self.key] in self.values
        return found if self.operator == "In" else not found


class NamespaceSelector(CamelModel):
    """Which namespaces may buy under an offer: a Kubernetes label selector on the namespace."""

    match_labels: dict[str, str] = Field(default_factory=dict, max_length=32)
    """Labels the namespace must carry, with these values."""
    match_expressions: list[SelectorRequirement] = Field(
        default_factory=list,
        max_length=16,
        json_schema_extra=validations(
            cel(
                "self.all(e, (e.operator in ['In', 'NotIn']) == (size(e.values) > 0))",
                "matchExpressions: In and NotIn need values, Exists and DoesNotExist take none",
            )
        ),
    )
    """Requirements the namespace's labels must all meet."""

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a namespace with `labels` is selected (an empty selector selects every one)."""
        return all(labels.get(k) == v for k, v in self.match_labels.items()) and all(
            e.matches(labels) for e in self.match_expressions
        )


UNITS_PER_MILLION_TOKENS = 1_000_000
"""The default exchange rate: one plan unit per token."""


class ExchangeRate(CamelModel):
    """How many plan units a million tokens of one model class cost."""

    model_class: str = Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)
    """A class of the offer's modelClasses."""
    units_per_million_tokens: int = Field(ge=1, le=10**12)
    """Plan units one million tokens of the class cost (1000000: one unit per token; a large
    model costing four times as much per token states 4000000). A period's usage of one SLA is
    converted once, rounded up to a whole unit."""


class Rollover(CamelModel):
    """Included tokens not used in their period carried into the next, up to a cap."""

    max_tokens: int = Field(ge=0, le=10**15)
    """The most unused included units carried over at one period's close; the rest expires."""
    lifetime_periods: int = Field(default=1, ge=1, le=24)
    """Plan periods rolled-over units stay usable after the one they were included in; what is
    left of them at the close of the last one expires."""


class TopUpTerms(CamelModel):
    """How long bought tokens (top-ups) last under the plan."""

    expire_after: str | None = Field(default=None, pattern=DURATION_PATTERN, max_length=5)
    """Top-ups expire this long after they were bought (OpenSLO shorthand: m, h, d, w, M);
    what is left of them expires at the first plan-period close at or after that time. Unset:
    top-ups never expire."""


UNFUNDED_PLAN_CHARGES = (
    "a plan with a fee or pay-per-use overage must include units: a plan period with none is"
    " never funded, so it would never be closed and charged"
)


class Overage(CamelModel):
    """What happens when the wallet is spent."""

    model_config = with_rules(
        cel(
            "self.mode == 'PayPerUse' ? has(self.pricePerMillionUnits)"
            " : !has(self.pricePerMillionUnits)",
            "pricePerMillionUnits is required with PayPerUse and not allowed with HardStop",
            ".pricePerMillionUnits",
        ),
    )
    mode: Literal["HardStop", "PayPerUse"] = "HardStop"
    """HardStop: the gateway refuses requests with 402 once the wallet is spent. PayPerUse: it
    keeps serving and the units used beyond the wallet are charged at the period's close."""
    price_per_million_units: float | None = Field(default=None, ge=0, le=1_000_000)
    """PayPerUse only: the price of a million units used beyond the wallet, in the offer's
    currency."""

    @model_validator(mode="after")
    def _price_with_pay_per_use(self) -> Overage:
        if (self.mode == "PayPerUse") != (self.price_per_million_units is not None):
            raise ValueError(
                "overage.pricePerMillionUnits is required with PayPerUse and not allowed with"
                " HardStop"
            )
        return self


class Bundle(CamelModel):
    """What the plan is sold with, for statements and catalogues (no effect on the ledger)."""

    name: str = Field(min_length=1, max_length=128)
    """The commercial name, e.g. 5G Enterprise 1M."""
    included_with: str | None = Field(default=None, max_length=256)
    """The product the tokens come with, e.g. a 5G enterprise connectivity plan."""


class TokenPlan(CamelModel):
    """The units a tenant's wallet receives from the plan, per tenant and plan period, and what
    happens to units left over or missing at the period's close (`aiconn.sla.plans`).

    Units: a token of a model class costs unitsPerMillionTokens / 1e6 units (one unit without an
    exchange rate), so one balance serves every model of the offer."""

    model_config = with_rules(
        cel(
            "!has(self.exchangeRates) ||"
            " self.exchangeRates.all(a, self.exchangeRates.exists_one(b,"
            " b.modelClass == a.modelClass))",
            "exchangeRates must name each model class once",
            ".exchangeRates",
        ),
        cel(
            "self.includedTokensPerPeriod > 0 || ((!has(self.feePerPeriod)"
            " || self.feePerPeriod == 0.0) && (!has(self.overage) || !has(self.overage.mode)"
            " || self.overage.mode != 'PayPerUse'))",
            UNFUNDED_PLAN_CHARGES,
            ".includedTokensPerPeriod",
        ),
    )
    included_tokens_per_period: int = Field(ge=0, le=10**15)
    """Units (tokens at the default rate) funded into the tenant's wallet once per period,
    however many SLAs name the offer."""
    period: str = Field(default="1M", pattern=DURATION_PATTERN)
    """Plan period, calendar-aligned in UTC, in OpenSLO shorthand (m, h, d, w, M)."""
    fee_per_period: float = Field(default=0, ge=0, le=10**9)
    """The subscription's price per period, in the offer's currency, charged at the close."""
    exchange_rates: list[ExchangeRate] = Field(default_factory=list, max_length=16)
    """Units per million tokens of each model class; a class not listed costs one unit per
    token."""
    rollover: Rollover | None = None
    """Unused included units carried to the next period; unset: they expire at the close."""
    top_ups: TopUpTerms = TopUpTerms()
    """How long top-ups last."""
    overage: Overage = Overage()
    """Hard stop (402) or pay per use once the wallet is spent."""
    bundle: Bundle | None = None
    """What the plan is sold with."""

    @model_validator(mode="after")
    def _charges_need_included_units(self) -> TokenPlan:
        if self.included_tokens_per_period == 0 and (
            self.fee_per_period > 0 or self.overage.mode == "PayPerUse"
        ):
            raise ValueError(f"plan.includedTokensPerPeriod: {UNFUNDED_PLAN_CHARGES}")
        return self

    @property
    def window(self) -> Window:
        """The plan period as a calendar window."""
        return Window(duration=self.period, calendar_aligned=True)

    def units_per_million_tokens(self, model_class: str) -> int:
        """The exchange rate of a model class (the default for a class not listed)."""
        return next(
            (
                r.units_per_million_tokens
                for r in self.exchange_rates
                if r.model_class == model_class
            ),
            UNITS_PER_MILLION_TOKENS,
        )


class SliceProfile(CamelModel):
    """A network slice profile the provider offers; its SST and 5QI decide the pods' priority."""

    name: str = Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)
    """Profile name."""
    sst: Sst
    """S-NSSAI Slice/Service Type: 1 eMBB, 2 URLLC, 3 MIoT, 4 V2X, 5 HMTC; 128-255 operator-specific."""
    sd: str | None = Field(default=None, pattern=SD_PATTERN)
    """S-NSSAI Slice Differentiator, 6 hex digits."""
    five_qi: FiveQi = Field(alias="fiveQI")
    """5G QoS Identifier (TS 23.501 table 5.7.4-1)."""


class SliceManager(CamelModel):
    """The 5G core's slice manager that SLAs with backend nsmf are realized in."""

    url: str = Field(pattern=r"^https?://.+", max_length=2048)
    """Slice manager MnS root (TS 28.532)."""


class AIInferenceOfferSpec(CamelModel):
    """What an SLA naming this offer may get: prices, plan, credits, rates, slices, tiers."""

    model_config = with_rules(
        cel(
            "!has(self.plan.exchangeRates) || self.plan.exchangeRates.all(r,"
            " self.modelClasses.exists(c, c.name == r.modelClass))",
            "plan.exchangeRates may only name classes of modelClasses",
            ".plan.exchangeRates",
        ),
        cel(
            "!has(self.priceChanges) || self.priceChanges.all(c, !has(c.plan)"
            " || !has(c.plan.overagePricePerMillionUnits) || (has(self.plan.overage)"
            " && has(self.plan.overage.mode) && self.plan.overage.mode == 'PayPerUse'))",
            "priceChanges[].plan.overagePricePerMillionUnits: the plan's overage is not"
            " PayPerUse; there is no overage price to change",
            ".priceChanges",
        ),
        cel(
            "self.plan.includedTokensPerPeriod > 0 || !has(self.priceChanges)"
            " || self.priceChanges.all(c, !has(c.plan) || !has(c.plan.feePerPeriod)"
            " || c.plan.feePerPeriod == 0.0)",
            f"priceChanges[].plan.feePerPeriod: {UNFUNDED_PLAN_CHARGES}",
            ".priceChanges",
        ),
    )

    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    """ISO 4217 currency of every price in the offer."""
    namespace_selector: NamespaceSelector | None = None
    """Namespaces whose SLAs may buy under the offer (label selector, like a NetworkPolicy's);
    an SLA elsewhere is refused at admission and stopped by the operator. Unset: every
    namespace."""
    model_classes: list[ModelClassPrice] = Field(
        min_length=1,
        max_length=16,
        json_schema_extra=validations(once_each("modelClasses must be named once each", "name")),
    )
    """Price per model class (price version 1); each class lists the models it covers by name. A price is changed by a new priceChanges entry, never by editing it here."""
    price_notice_days: int = Field(default=30, ge=0, le=3650)
    """Notice of a price change: a priceChanges entry takes effect at least this many days after it is written (refused at admission otherwise, and never applied)."""
    price_changes: list[PriceChange] = Field(
        default_factory=list, max_length=64, json_schema_extra=PRICE_CHANGES_RULES
    )
    """Price versions 2, 3, ...: each changes some model classes' prices and/or the plan's fee and overage price from its effectiveFrom on (plan prices from the first plan period starting at or after it). An overage price change is only allowed while the plan is PayPerUse, so once one is written the plan stays PayPerUse. Append-only; every statement line names the version it was charged at."""
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
    allowed_tiers: list[Annotated[str, Field(max_length=63, pattern=DNS_LABEL_PATTERN)]] = Field(
        min_length=1, max_length=16
    )
    """InferenceTiers an SLA of this offer may be placed on (auto chooses among them)."""
    service_hours: ServiceHours | None = None
    """Hours the availability objective counts, local to a time zone (e.g. Mon-Fri 08:00-18:00 Europe/Berlin); minutes outside are not judged (neither good, bad nor unknown, and not in the coverage). Latency objectives count every request. Without it, every minute counts."""
    maintenance: MaintenanceTerms | None = None
    """Planned maintenance excluded from availability: MaintenanceWindows naming this offer excuse the minutes that begin at least noticeMinutes after the window was created (its creationTimestamp), never earlier. Without it, maintenance is judged like any other minute."""

    @model_validator(mode="after")
    def _rates_name_classes(self) -> AIInferenceOfferSpec:
        classes = {c.name for c in self.model_classes}
        unknown = [r.model_class for r in self.plan.exchange_rates if r.model_class not in classes]
        if unknown:
            raise ValueError(f"plan.exchangeRates name classes not in modelClasses: {unknown}")
        return self

    @model_validator(mode="after")
    def _fee_changes_need_included_units(self) -> AIInferenceOfferSpec:
        if self.plan.included_tokens_per_period == 0 and any(
            c.plan is not None and (c.plan.fee_per_period or 0) > 0 for c in self.price_changes
        ):
            raise ValueError(f"priceChanges[].plan.feePerPeriod: {UNFUNDED_PLAN_CHARGES}")
        return self

    @model_validator(mode="after")
    def _overage_price_changes_need_pay_per_use(self) -> AIInferenceOfferSpec:
        if self.plan.overage.mode != "PayPerUse" and any(
            c.plan is not None and c.plan.overage_price_per_million_units is not None
            for c in self.price_changes
        ):
            raise ValueError(
                "priceChanges[].plan.overagePricePerMillionUnits: the plan's overage is not"
                " PayPerUse; there is no overage price to change"
            )
        return self

    def admits_namespace(self, labels: Mapping[str, str]) -> bool:
        """Whether SLAs in a namespace with `labels` may buy under the offer."""
        return self.namespace_selector is None or self.namespace_selector.matches(labels)

    def model_class(self, model_name: str) -> tuple[ModelClassPrice, CatalogueModel] | None:
        """The first class listing the model, and its entry there; None when none lists it."""
        return next(
            ((c, m) for c in self.model_classes for m in c.models if m.name == model_name),
            None,
        )
