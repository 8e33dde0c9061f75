"""The operator's side of the trust boundary: every SLA is acted on with its offer's terms.

The admission policy refuses SLAs outside their offer, but the operator must not depend on it
being installed, nor on an offer staying as it was when the SLA was admitted: each reconcile and
each evaluation pass rebuilds the provider-owned fields from the offer as it is now
(`aiconn.sla.offer.effective_spec`). What only the operator can know (the named offer does not
exist, or changed so the SLA is now outside it) becomes a condition and an Event.

SLAs that name no offer keep their own terms unless `require_offer` is set (the shipped
manifests set it): that is the migration path for SLAs created before offers existed, and it is
closed for new SLAs by the admission policy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from typing import Any

from pydantic import ValidationError

from aiconn.inference.capacity import Capacity
from aiconn.inference.placement import PlacementDecision, plan
from aiconn.operator.kubeapi import KubeApi
from aiconn.resources.v1alpha1.kinds import OFFER
from aiconn.resources.v1alpha1.offer import AIInferenceOfferSpec
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec
from aiconn.resources.v1alpha1.tier import InferenceTierSpec
from aiconn.sla.offer import OfferViolation, admitted_offer, effective_spec, offer_notice_problems
from aiconn.sla.prices import NoticeProblem


class OfferProblem(Exception):
    """The SLA cannot be served under an offer; `reason` is the condition's reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def parse_offer(body: Mapping[str, Any]) -> AIInferenceOfferSpec:
    """An offer object's spec, typed, without the price changes announced with too short a
    notice (`admitted_offer`): those are never applied. Raises OfferProblem when the stored
    offer is malformed."""
    name = body.get("metadata", {}).get("name")
    try:
        return admitted_offer(body)
    except ValidationError as err:
        raise OfferProblem("OfferInvalid", f"AIInferenceOffer {name} is malformed: {err}") from err


def price_notice_problems(body: Mapping[str, Any]) -> list[NoticeProblem]:
    """The offer's price changes never applied for too short a notice (none when the offer
    does not parse: that is reported as OfferInvalid)."""
    try:
        offer = AIInferenceOfferSpec.model_validate(body.get("spec") or {})
    except ValidationError:
        return []
    return offer_notice_problems(body, offer)


async def fetch_offers(kube: KubeApi) -> dict[str, Mapping[str, Any]]:
    """Every offer by name (one list call; offers are few and cluster-scoped)."""
    return {o["metadata"]["name"]: o for o in await kube.list(OFFER.kind)}


async def terms_for(
    kube: KubeApi, spec: AIInferenceSLASpec, *, require_offer: bool
) -> tuple[AIInferenceSLASpec, AIInferenceOfferSpec | None]:
    """Read the offer `spec` names and `resolve` against it (one GET, shared with concurrent
    reconciles; none without an offer)."""
    offer = None if spec.offer is None else await kube.get(OFFER.kind, spec.offer, shared=True)
    return resolve(spec, offer, require_offer=require_offer)


async def check_namespace(
    kube: KubeApi, namespace: str, spec: AIInferenceSLASpec, offer: AIInferenceOfferSpec | None
) -> None:
    """Raise OfferProblem (NamespaceNotSelected) when the offer's namespaceSelector does not
    select the SLA's namespace: the admission policy refuses such SLAs, but a selector or a
    namespace's labels edited since leave admitted SLAs outside it (one GET, shared with
    concurrent reconciles)."""
    if offer is None or offer.namespace_selector is None:
        return
    found = await kube.get("Namespace", namespace, shared=True)
    labels = ((found or {}).get("metadata") or {}).get("labels") or {}
    if not offer.admits_namespace(labels):
        raise OfferProblem(
            "NamespaceNotSelected",
            f"spec.offer: AIInferenceOffer {spec.offer!r} is not sold in namespace {namespace}"
            " (its namespaceSelector does not select it)",
        )


def resolve(
    spec: AIInferenceSLASpec, offer: Mapping[str, Any] | None, *, require_offer: bool
) -> tuple[AIInferenceSLASpec, AIInferenceOfferSpec | None]:
    """The spec to act on and the offer it was built from (None: a legacy SLA without one).

    `offer` is the object `spec.offer` names, as read (None when absent). Raises OfferProblem.
    """
    if spec.offer is None:
        if require_offer:
            raise OfferProblem(
                "OfferRequired", "spec.offer: name the AIInferenceOffer this SLA buys under"
            )
        return spec, None
    if offer is None:
        raise OfferProblem(
            "OfferNotFound", f"spec.offer: AIInferenceOffer {spec.offer!r} does not exist"
        )
    terms = parse_offer(offer)
    try:
        return effective_spec(spec, terms), terms
    except OfferViolation as err:
        raise OfferProblem("OutsideOffer", f"{err} (offer {spec.offer})") from err


def offered_tiers(
    tiers: Mapping[str, InferenceTierSpec], offer: AIInferenceOfferSpec | None
) -> dict[str, InferenceTierSpec]:
    """The tiers an SLA under `offer` may be placed on (all of them without an offer)."""
    return {n: t for n, t in tiers.items() if offer is None or n in offer.allowed_tiers}


def place(
    spec: AIInferenceSLASpec,
    tiers: Mapping[str, InferenceTierSpec],
    offer: AIInferenceOfferSpec | None,
    *,
    capacity: Capacity | None = None,
    avoid: Collection[tuple[str, str | None]] = (),
) -> PlacementDecision:
    """Placement among the offer's tiers (all tiers without an offer); a tier the offer does not
    include is listed as rejected with that reason, like every tier not chosen. `capacity` and
    `avoid` are `plan`'s: the cluster's free GPUs and the sites the assurance loop holds off."""
    if offer is None:
        return plan(spec, tiers, capacity=capacity, avoid=avoid)
    decision = plan(spec, offered_tiers(tiers, offer), capacity=capacity, avoid=avoid)
    excluded = tuple(
        (
            name,
            f"{name}: not among the tiers of offer {spec.offer} ({', '.join(offer.allowed_tiers)})",
        )
        for name in tiers
        if name not in offer.allowed_tiers
    )
    rejected = tuple(sorted((*decision.rejected, *excluded)))
    if decision.placed:
        return dataclasses.replace(decision, rejected=rejected)
    return dataclasses.replace(
        decision,
        rejected=rejected,
        message="no tier can serve this SLA: " + "; ".join(r for _, r in rejected),
    )
