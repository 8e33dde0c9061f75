"""Price versions of an offer: every price has a number and a date it takes effect, and a change
is only ever announced ahead by the notice the offer states.

Version 1 is the offer's `modelClasses[].pricePerMillionTokens` and its plan's `feePerPeriod` and
`overage.pricePerMillionUnits` as created. Each entry of `spec.priceChanges` is the next version:
the classes it names (`prices`) and the plan prices it sets (`plan`) get the new price from its
`effectiveFrom` (a whole UTC minute) on, the others keep theirs. A plan period is charged the fee
and overage price in force at its start (`plan_in_force`; the funding records them,
`aiconn.sla.plans.fund_plan`), so a change dated inside a period applies from the next one.
History is append-only, and a new version's `effectiveFrom` must lie at least `priceNoticeDays`
after the moment it was written: the API server refuses it otherwise
(`manifests/policy/offer-price-notice.yaml`, which compares with the request's own time as the
API server records it in `managedFields`). The operator does
not depend on the policy being installed: a version whose date is sooner than the offer's
creation plus the notice is never in force (`PriceChange` judged by `notice_problems`), and a
period is charged at the version in force at its start, pinned with the period's terms
(`aiconn.sla.terms`), so a change never re-prices a period already begun.

Prices stay as the offer wrote them (decimal strings of the CRD's numbers, `exact_decimal`);
nothing is rounded before the charge. The resource's price changes are
`aiconn.resources.v1alpha1.prices`; `price_at` and `plan_at` read an offer at an instant.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal

from aiconn.resources.v1alpha1.offer import AIInferenceOfferSpec, TokenPlan
from aiconn.resources.v1alpha1.prices import PriceChange
from aiconn.sla.credits import exact_decimal

BASE_VERSION = 1


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


def price_at(
    offer: AIInferenceOfferSpec,
    model_class: str,
    at: datetime,
    *,
    valid: frozenset[int] | None = None,
) -> PriceVersion:
    """The class's price version in force at `at` under `offer` (`valid`: the change versions
    that may apply; None: every one, as the API server admitted them)."""
    base = {c.name: c.price_per_million_tokens for c in offer.model_classes}
    allowed = frozenset(c.version for c in offer.price_changes) if valid is None else valid
    return in_force(base, offer.price_changes, model_class, at, valid=allowed)


def plan_at(
    offer: AIInferenceOfferSpec, at: datetime, *, valid: frozenset[int] | None = None
) -> tuple[TokenPlan, PlanPriceVersions]:
    """The offer's plan with the fee and overage price in force at `at` (a plan period's start;
    see `plan_in_force`), and the versions they were set by."""
    allowed = frozenset(c.version for c in offer.price_changes) if valid is None else valid
    plan = offer.plan
    prices = plan_in_force(
        plan.fee_per_period,
        plan.overage.price_per_million_units,
        offer.price_changes,
        at,
        valid=allowed,
    )
    overage = plan.overage
    if prices.overage_price_per_million_units is not None:
        overage = overage.model_copy(
            update={"price_per_million_units": float(prices.overage_price_per_million_units)}
        )
    # The fields are floats; the float of a repr-exact decimal round-trips.
    priced = plan.model_copy(
        update={"fee_per_period": float(prices.fee_per_period), "overage": overage}
    )
    return priced, prices
