"""Prices that never surprise: an offer's price history and what a month of an SLA costs.

A tenant reads the history of the offer its SLA buys under (authorized like its reports: `get`
on AIInferenceSLAs in the namespace; tenants cannot read cluster-scoped offers themselves), the
NOC any offer's; the history covers the model classes' prices and the token plan's fee and
overage price (`planVersions`). A quote prices a month of the SLA at the version in force at a
given time with the same rules `aiconn plan` prints (`aiconn.planning.price_month`), and under the
offer's token plan (`aiconn.planning.price_plan`): the period's fee, the SLA's commitment in
wallet units and what it would cost beyond the included units, at the versions in force.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import ValidationError

from aiconn.api.deps import FleetCaller, Parts, ReadableSLA, not_found
from aiconn.api.models import (
    PlanPriceVersionOut,
    PriceHistory,
    PriceVersionOut,
    Quote,
    RefusedPriceChange,
)
from aiconn.api.routes.responses import NOC, TENANT
from aiconn.api.slas import SLAReader
from aiconn.planning import PlanPrice, price_month, price_plan
from aiconn.resources.v1alpha1.names import STRICT_DNS_SUBDOMAIN_PATTERN
from aiconn.resources.v1alpha1.offer import AIInferenceOfferSpec
from aiconn.sla.credits import exact_decimal
from aiconn.sla.offer import admitted_offer, offer_notice_problems
from aiconn.sla.periods import period_containing
from aiconn.sla.prices import history, plan_at, price_at

router = APIRouter(tags=["prices"])

OfferName = Annotated[str, Path(max_length=253, pattern=STRICT_DNS_SUBDOMAIN_PATTERN)]


def _offer(reader: SLAReader, name: str) -> tuple[dict[str, Any], AIInferenceOfferSpec]:
    body = reader.offer(name)
    if body is None:
        raise not_found()
    try:
        return body, admitted_offer(body)
    except ValidationError as err:
        raise HTTPException(
            status_code=status.HTTP_409_CONFLICT,
            detail=f"AIInferenceOffer {name} is malformed: {err.error_count()} errors",
        ) from err


def _history(name: str, body: dict[str, Any], offer: AIInferenceOfferSpec) -> PriceHistory:
    now = datetime.now(UTC)
    # What the current plan period is charged at: the versions in force at its start.
    plan_now = plan_at(offer, period_containing(offer.plan.window, now).start)[1]
    raw = AIInferenceOfferSpec.model_validate(body.get("spec") or {})
    base = {c.name: c.price_per_million_tokens for c in offer.model_classes}
    valid = frozenset(c.version for c in offer.price_changes)
    return PriceHistory(
        offer=name,
        currency=offer.currency,
        price_notice_days=offer.price_notice_days,
        versions=[
            PriceVersionOut(
                version=v.version,
                model_class=v.model_class,
                price_per_million_tokens=v.price_per_million_tokens,
                effective_from=v.effective,
            )
            for v in history(base, offer.price_changes, valid=valid)
        ],
        refused=[
            RefusedPriceChange(version=p.version, field=p.field, message=p.message)
            for p in offer_notice_problems(body, raw)
        ],
        in_force={c: price_at(offer, c, now).version for c in base},
        plan_versions=_plan_versions(offer),
        plan_in_force={"fee": plan_now.fee_version, "overage": plan_now.overage_version},
        generated_at=now,
    )


def _plan_versions(offer: AIInferenceOfferSpec) -> list[PlanPriceVersionOut]:
    """Version 1 of the plan's prices, then each applied change that set one, with the prices
    in force from it on."""
    changes = [c for c in sorted(offer.price_changes, key=lambda c: c.version) if c.plan]
    out = []
    for change in [None, *changes]:
        at = None if change is None else change.effective
        prices = plan_at(offer, at or datetime.min.replace(tzinfo=UTC))[1]
        out.append(
            PlanPriceVersionOut(
                version=1 if change is None else change.version,
                fee_per_period=prices.fee_per_period,
                overage_price_per_million_units=prices.overage_price_per_million_units,
                effective_from=at,
            )
        )
    return out


@router.get(
    "/v1/namespaces/{namespace}/slas/{name}/prices",
    response_model=PriceHistory,
    summary="The price history of the offer the SLA buys under",
    responses=TENANT,
)
def sla_prices(sla: ReadableSLA, parts: Parts) -> PriceHistory:
    if sla.spec.offer is None:
        raise HTTPException(
            status_code=status.HTTP_404_NOT_FOUND,
            detail="this SLA names no offer (spec.offer): its price is not versioned",
        )
    body, offer = _offer(parts.reader, sla.spec.offer)
    return _history(sla.spec.offer, body, offer)


@router.get(
    "/v1/offers/{offer}/prices",
    response_model=PriceHistory,
    summary="An offer's price history (the NOC's view)",
    responses={**NOC, 404: TENANT[404]},
)
def offer_prices(offer: OfferName, _: FleetCaller, parts: Parts) -> PriceHistory:
    body, spec = _offer(parts.reader, offer)
    return _history(offer, body, spec)


@router.get(
    "/v1/namespaces/{namespace}/slas/{name}/quote",
    response_model=Quote,
    summary="What a month of the SLA costs at the price in force then, and its credit exposure",
    responses=TENANT,
)
def quote(
    sla: ReadableSLA,
    parts: Parts,
    at: Annotated[
        datetime | None,
        Query(description="When the month would start (RFC 3339); now when unset."),
    ] = None,
) -> Quote:
    when = datetime.now(UTC) if at is None else at
    if when.tzinfo is None:
        raise HTTPException(
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail="query parameter 'at': give a time zone, e.g. 2027-01-01T00:00:00Z",
        )
    spec, version, model_class = sla.spec, None, None
    planned: PlanPrice | None = None
    if sla.spec.offer is not None:
        _, offer = _offer(parts.reader, sla.spec.offer)
        found = offer.model_class(sla.spec.model.name)
        if found is None:
            raise HTTPException(
                status_code=status.HTTP_409_CONFLICT,
                detail=f"spec.model.name: {sla.spec.model.name!r} is not in offer"
                f" {sla.spec.offer}'s catalogue",
            )
        model_class = found[0].name
        price = price_at(offer, model_class, when)
        version = price.version
        tokens = spec.tokens.model_copy(
            update={"price_per_million_tokens": float(price.price_per_million_tokens)}
        )
        spec = spec.model_copy(update={"tokens": tokens})
        planned = price_plan(offer, model_class, spec.tokens.monthly_commitment, when)
    month = price_month(spec)
    return Quote(
        namespace=sla.namespace,
        name=sla.name,
        offer=sla.spec.offer,
        at=when,
        model_class=model_class,
        price_version=version,
        currency=spec.tokens.currency,
        price_per_million_tokens=exact_decimal(spec.tokens.price_per_million_tokens),
        monthly_tokens=spec.tokens.monthly_commitment,
        monthly_charge=month.monthly_charge,
        max_credit_percent=month.max_credit_percent,
        max_monthly_credit=month.max_credit,
        **({} if planned is None else _plan_fields(planned)),
    )


def _plan_fields(planned: PlanPrice) -> dict[str, Any]:
    """The quote's token-plan fields (unset for an SLA without an offer)."""
    return {
        "plan_period": planned.duration,
        "plan_period_start": planned.period.start,
        "plan_period_end": planned.period.end,
        "plan_fee_per_period": planned.fee_per_period,
        "plan_fee_version": planned.fee_version,
        "included_units_per_period": planned.included_units,
        "units_per_million_tokens": planned.units_per_million_tokens,
        "monthly_units": planned.committed_units,
        "overage_mode": planned.overage_mode,
        "overage_price_per_million_units": planned.overage_price_per_million_units,
        "overage_price_version": planned.overage_version,
        "overage_units": planned.overage_units,
        "overage_charge": planned.overage_charge,
        "plan_charge": planned.plan_charge,
    }
