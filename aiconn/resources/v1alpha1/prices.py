"""Price changes in an offer's spec: each a numbered version with the minute it takes effect.

Which version is in force when, and whether a change was announced with enough notice, is
`aiconn.sla.prices`'s business; this is the shape the provider writes. The history is
append-only (a CEL transition rule in `PRICE_CHANGES_RULES`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import Field, model_validator

from aiconn.resources.v1alpha1.maintenance import UTC_MINUTE_PATTERN
from aiconn.resources.v1alpha1.meta import CamelModel, cel, once_each, validations, with_rules
from aiconn.resources.v1alpha1.names import DNS_LABEL_PATTERN


class ClassPrice(CamelModel):
    """A model class's new price in a price change."""

    model_class: str = Field(max_length=63, pattern=DNS_LABEL_PATTERN)
    """The class, by modelClasses[].name."""
    price_per_million_tokens: float = Field(ge=0, le=1_000_000)
    """Price of one million tokens of the class from the change on, in the offer's currency."""


class PlanPrices(CamelModel):
    """The token plan's new prices in a price change (each unset one keeps its price)."""

    model_config = with_rules(
        cel(
            "has(self.feePerPeriod) || has(self.overagePricePerMillionUnits)",
            "plan: name feePerPeriod, overagePricePerMillionUnits or both",
        )
    )
    fee_per_period: float | None = Field(default=None, ge=0, le=10**9)
    """The plan's new fee per period (plan.feePerPeriod), in the offer's currency."""
    overage_price_per_million_units: float | None = Field(default=None, ge=0, le=1_000_000)
    """The new price of a million overage units (plan.overage.pricePerMillionUnits; PayPerUse plans only), in the offer's currency."""


class PriceChange(CamelModel):
    """A new version of some prices (model classes', the plan's), in force from `effectiveFrom` on; a plan period is charged at the version in force at its start."""

    model_config = with_rules(
        cel(
            "(has(self.prices) && size(self.prices) > 0) || has(self.plan)",
            "a price change names prices, plan or both",
            ".prices",
        )
    )

    version: int = Field(ge=2, le=1_000_000)
    """The version's number: 2 for the first change, then one more each time."""
    effective_from: str = Field(pattern=UTC_MINUTE_PATTERN, max_length=20)
    """First minute the new prices apply, RFC 3339 in UTC on a whole minute (e.g. 2027-01-01T00:00:00Z); at least the offer's priceNoticeDays after the change is written."""
    prices: list[ClassPrice] = Field(
        default_factory=list,
        max_length=16,
        json_schema_extra=validations(
            once_each("prices: name each model class once", "modelClass")
        ),
    )
    """The classes whose price changes, and their new prices; classes not named keep theirs."""
    plan: PlanPrices | None = None
    """The token plan's new fee and/or overage price; unset: the plan's prices stay."""

    @model_validator(mode="after")
    def _names_a_price(self) -> PriceChange:
        if not self.prices and self.plan is None:
            raise ValueError("a price change names prices, plan or both")
        return self

    @property
    def effective(self) -> datetime:
        """`effectiveFrom` as a datetime."""
        return datetime.fromisoformat(self.effective_from.replace("Z", "+00:00")).astimezone(UTC)


PRICE_CHANGES_RULES = validations(
    cel(
        "self.all(c, self.exists_one(d, d.version == c.version))",
        "priceChanges: each version must appear once",
    ),
    cel(
        "size(self) == 0 || self.all(c, c.version >= 2 && c.version <= size(self) + 1)",
        "priceChanges: versions are numbered 2, 3, ... without gaps",
    ),
    cel(
        "self.all(c, self.all(d, d.version <= c.version"
        " || timestamp(d.effectiveFrom) > timestamp(c.effectiveFrom)))",
        "priceChanges: a later version must take effect after the earlier ones",
    ),
    cel(
        "size(self) >= size(oldSelf) && oldSelf.all(o, self.exists(n, n == o))",
        "priceChanges: price history is append-only; a version once written cannot be changed"
        " or removed (announce a new version instead)",
    ),
)
"""CRD rules on `spec.priceChanges` (the time rules need the request's time: the policy's)."""
