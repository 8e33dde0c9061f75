"""The commercial terms in force for one SLA period, fixed when the period is first evaluated.

An offer (or a legacy SLA's own tokens and credits) may be edited at any time, but a period is
charged and credited on the terms that were in force when it began: the first evaluation pass
that sees a period pins its terms in the ledger (`Ledger.pin_terms`, insert-if-absent, keyed by
SLA and period start), and every later pass, the settlement of the closed period and the
settlement on deletion read the pinned terms back instead of the offer as it is now. An edit
therefore applies from the next period at the earliest, and a period whose offer was deleted is
still settled on what was pinned.

The value is deliberately small and plain (JSON in the ledger) so settlement evidence can quote
it as "the terms the credit was computed with".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec, CreditsSpec
from aiconn.sla.credits import exact_decimal
from aiconn.sla.prices import PriceVersion


@dataclass(frozen=True)
class PeriodTerms:
    """Price, currency, credit schedules and plan of one SLA period."""

    offer: str | None
    """The offer the terms came from (None: a legacy SLA's own terms)."""
    currency: str
    price_per_million_tokens: Decimal
    """Exactly as the offer wrote it (no rounding before the charge)."""
    credits: CreditsSpec
    included_tokens_per_period: int
    """The plan's (or legacy commitment's) tokens per period, for the record: funding itself is
    keyed per tenant and plan period and immutable once posted."""
    units_per_million_tokens: int | None = None
    """The token plan's exchange rate for the SLA's model class: wallet units per million tokens
    (None: one unit per token). Pinned with the price, so a rate edited mid-period applies from
    the next period."""
    price_version: int = 1
    """The offer's price version (`aiconn.sla.prices`) in force at the period's start; statement
    lines name it. 1 for a legacy SLA's own price and for terms pinned before versions existed."""

    @classmethod
    def of(cls, spec: AIInferenceSLASpec, *, price: PriceVersion | None = None) -> PeriodTerms:
        """The terms of an effective spec (`aiconn.sla.offer.effective_spec`'s result), at
        `price` (the offer's version in force at the period's start) when given."""
        return cls(
            offer=spec.offer,
            currency=spec.tokens.currency,
            price_per_million_tokens=exact_decimal(spec.tokens.price_per_million_tokens)
            if price is None
            else price.price_per_million_tokens,
            credits=spec.credits,
            included_tokens_per_period=spec.tokens.monthly_commitment,
            price_version=1 if price is None else price.version,
        )

    def apply(self, spec: AIInferenceSLASpec) -> AIInferenceSLASpec:
        """`spec` with these terms' price, currency, commitment and credits (objectives, model
        and rate limits stay the spec's)."""
        tokens = spec.tokens.model_copy(
            update={
                "currency": self.currency,
                # The spec's field is a float; the float of a repr-exact decimal round-trips.
                "price_per_million_tokens": float(self.price_per_million_tokens),
                "monthly_commitment": self.included_tokens_per_period,
            }
        )
        return spec.model_copy(update={"tokens": tokens, "credits": self.credits})

    def to_json(self) -> dict[str, Any]:
        """The stored form: strings for money, the CRD's camelCase for credits."""
        return {
            "offer": self.offer,
            "currency": self.currency,
            "pricePerMillionTokens": str(self.price_per_million_tokens),
            "credits": self.credits.model_dump(mode="json", by_alias=True),
            "includedTokensPerPeriod": self.included_tokens_per_period,
            "priceVersion": self.price_version,
        } | (
            {}
            if self.units_per_million_tokens is None
            else {"unitsPerMillionTokens": self.units_per_million_tokens}
        )

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PeriodTerms:
        """The inverse of `to_json`."""
        return cls(
            offer=data.get("offer"),
            currency=str(data["currency"]),
            price_per_million_tokens=Decimal(str(data["pricePerMillionTokens"])),
            credits=CreditsSpec.model_validate(data["credits"]),
            included_tokens_per_period=int(data["includedTokensPerPeriod"]),
            units_per_million_tokens=(
                None
                if data.get("unitsPerMillionTokens") is None
                else int(data["unitsPerMillionTokens"])
            ),
            price_version=int(data.get("priceVersion", 1)),
        )
