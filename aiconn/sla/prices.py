"""Price versions of an offer: every price has a number and a date it takes effect, and a change
is only ever announced ahead by the notice the offer states.

Version 1 is the offer's `modelClasses[].pricePerMillionTokens` and its plan's `feePerPeriod` and
`overage.pricePerMillionUnits` as created. Each entry of `spec.priceChanges` is the next version:
the classes it names (`prices`) and the plan prices it sets (`plan`) get the new price from its
`effectiveFrom` (a whole UTC minute) on, the others keep theirs. A plan period is charged the fee
and overage price in force at its start (`plan_in_force`; the funding records them,
`aiconn.sla.plans.fund_plan`), so a change dated inside a period applies from the next one. History is append-only, and a
new version's `effectiveFrom` must lie at least `priceNoticeDays` after the moment it was written:
the API server refuses it otherwise (`manifests/policy/offer-price-notice.yaml`, which compares
with the request's own time as the API server records it in `managedFields`). The operator does
not depend on the policy being installed: a version whose date is sooner than the offer's
creation plus the notice is never in force (`PriceChange` judged by `notice_problems`), and a
period is charged at the version in force at its start, pinned with the period's terms
(`aiconn.sla.terms`), so a change never re-prices a period already begun.

Prices stay as the offer wrote them (decimal strings of the CRD's numbers, `exact_decimal`);
nothing is rounded before the charge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from pydantic import Field, model_validator

from aiconn.crd import CamelModel, cel, once_each, validations
from aiconn.sla.credits import exact_decimal
from aiconn.sla.maintenance import UTC_MINUTE_PATTERN

CLASS_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
BASE_VERSION = 1


class ClassPrice(CamelModel):
    """A model class's new price in a price change."""

    model_class: str = Field(max_length=63, pattern=CLASS_NAME_PATTERN)
    """The class, by modelClasses[].name."""
    price_per_million_tokens: float = Field(ge=0, le=1_000_000)
    """Price of one million tokens of the class from the change on, in the offer's currency."""


class PlanPrices(CamelModel):
    """The token plan's new prices in a price change (each unset one keeps its price)."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "has(self.feePerPeriod) || has(self.overagePricePerMillionUnits)",
                "plan: name feePerPeriod, overagePricePerMillionUnits or both",
            )
        )
    }
    fee_per_period: float | None = Field(default=None, ge=0, le=10**9)
    """The plan's new fee per period (plan.feePerPeriod), in the offer's currency."""
    overage_price_per_million_units: float | None = Field(default=None, ge=0, le=1_000_000)
    """The new price of a million overage units (plan.overage.pricePerMillionUnits; PayPerUse plans only), in the offer's currency."""


class PriceChange(CamelModel):
    """A new version of some prices (model classes', the plan's), in force from `effectiveFrom` on; a plan period is charged at the version in force at its start."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "(has(self.prices) && size(self.prices) > 0) || has(self.plan)",
                "a price change names prices, plan or both",
                ".prices",
            )
        )
    }

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


@dataclass(frozen=True)
class PriceVersion:
    """One model class's price from `effective` on (None: since the offer existed)."""

    version: int
    model_class: str
    price_per_million_tokens: Decimal
    effective: datetime | None


@dataclass(frozen=True)
class NoticeProblem:
    """A price change announced with less than the offer's notice; never in force."""

    field: str
    version: int
    message: str


def history(
    base: Mapping[str, float], changes: Sequence[PriceChange], *, valid: frozenset[int]
) -> list[PriceVersion]:
    """Every class's price at every version that is in force or will be, oldest first.

    `base` is each class's version-1 price; only changes whose number is in `valid` count (those
    judged by `notice_problems` are left out)."""
    versions = [
        PriceVersion(BASE_VERSION, name, exact_decimal(price), None) for name, price in base.items()
    ]
    for change in sorted(changes, key=lambda c: c.version):
        if change.version not in valid:
            continue
        versions += [
            PriceVersion(
                change.version,
                p.model_class,
                exact_decimal(p.price_per_million_tokens),
                change.effective,
            )
            for p in change.prices
            if p.model_class in base
        ]
    return versions


def in_force(
    base: Mapping[str, float],
    changes: Sequence[PriceChange],
    model_class: str,
    at: datetime,
    *,
    valid: frozenset[int],
) -> PriceVersion:
    """The class's price version in force at `at`: the newest valid version naming the class
    whose `effectiveFrom` is not after `at` (version 1 when none)."""
    found = PriceVersion(BASE_VERSION, model_class, exact_decimal(base[model_class]), None)
    for version in history(base, changes, valid=valid):
        if version.model_class != model_class or version.effective is None:
            continue
        if version.effective <= at and version.version > found.version:
            found = version
    return found


@dataclass(frozen=True)
class PlanPriceVersions:
    """The plan's fee and overage price in force at a period's start, with the version each was
    set by (1: as the plan states them)."""

    fee_per_period: Decimal
    fee_version: int
    overage_price_per_million_units: Decimal | None
    overage_version: int


def plan_in_force(
    fee: float,
    overage: float | None,
    changes: Sequence[PriceChange],
    at: datetime,
    *,
    valid: frozenset[int],
) -> PlanPriceVersions:
    """The plan's prices in force at `at` (a plan period's start): for the fee and for the
    overage price each, the newest valid version setting it whose `effectiveFrom` is not after
    `at` (version 1, the plan's own, when none). A change dated inside a period applies from the
    next period on."""
    found = PlanPriceVersions(
        exact_decimal(fee), BASE_VERSION, None if overage is None else exact_decimal(overage), 1
    )
    for change in sorted(changes, key=lambda c: c.version):
        if change.version not in valid or change.plan is None or change.effective > at:
            continue
        if change.plan.fee_per_period is not None:
            found = replace(
                found,
                fee_per_period=exact_decimal(change.plan.fee_per_period),
                fee_version=change.version,
            )
        if change.plan.overage_price_per_million_units is not None and overage is not None:
            found = replace(
                found,
                overage_price_per_million_units=exact_decimal(
                    change.plan.overage_price_per_million_units
                ),
                overage_version=change.version,
            )
    return found


def notice_problems(
    changes: Sequence[PriceChange], *, notice: timedelta, announced: datetime | None
) -> list[NoticeProblem]:
    """Changes taking effect sooner than `announced` + `notice`: `announced` is the earliest the
    operator can prove a change was known (the offer's creationTimestamp); None judges nothing."""
    if announced is None:
        return []
    problems = []
    for i, change in enumerate(changes):
        earliest = announced + notice
        if change.effective < earliest:
            problems.append(
                NoticeProblem(
                    field=f"spec.priceChanges[{i}].effectiveFrom",
                    version=change.version,
                    message=f"version {change.version} takes effect {change.effective_from},"
                    f" sooner than the notice allows ({earliest.isoformat()}); it is not applied",
                )
            )
    return problems


def price_notice(days: int) -> timedelta:
    """The offer's notice period."""
    return timedelta(days=days)
