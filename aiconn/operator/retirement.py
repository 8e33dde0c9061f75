"""Deleting an SLA settles what it owes: no period is left open with usage never charged.

The evaluation loop settles a period after it closes, but it no longer sees an SLA once it is
being deleted. So the operator holds each SLA with a finalizer (Kopf's, added by its delete
handler) and, on deletion:

1. stops serving first: the SLA's inference Deployment (vLLM behind the token gateway, in one pod)
   is scaled to 0 and the settlement waits until none of its pods is left, so no token is served
   after the cut. The moment the operator first sees no pod left is recorded on the SLA
   (annotation `aiconn.io/serving-stopped-at`) so every retry cuts at the same minute. Pods still
   there `STOP_TIMEOUT` after the deletion (a node gone dark) do not hold the finalizer forever:
   the cut is then taken with a Warning Event.
2. settles the period the serving stopped in, cut at the end of that minute (or of the deletion's
   minute, whichever is later), plus the previous period when its settlement was still pending,
   once that minute has passed by `settlement_grace_seconds` (late scrapes).

Each period is settled on the terms pinned for it (`aiconn.sla.terms`), not on the offer as it is
now: an offer edited since prices nothing retroactively, and an offer deleted since does not
block the deletion. A period with no pinned terms whose offer is gone is held for review
(`TermsUnknown`) with its usage recorded and a Warning Event: never waiting forever, never
losing the usage record.

The ledger's unique key per SLA and period start makes this exactly once: a retried handler, or a
loop that got there first, reads the stored settlement instead of paying again, and the usage
recorded for the open period stops counting as pending once that period is settled.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from aiconn.inference import workload
from aiconn.kube import KINDS
from aiconn.operator.evaluation import FleetEvaluator, SLARef, pinned, settle_closed
from aiconn.operator.offers import OfferProblem, terms_for
from aiconn.resources.v1alpha1.kinds import SLA
from aiconn.resources.v1alpha1.sla import CreditsSpec, Window
from aiconn.sla.accounting import HoldReason, Settlement, SettlementState
from aiconn.sla.periods import Period, ceil_minute, period_containing, previous_period
from aiconn.sla.terms import PeriodTerms
from aiconn.sla.timestamps import parse_iso
from aiconn.store.prometheus import SourceUnavailable

STOPPED_ANNOTATION = "aiconn.io/serving-stopped-at"
STOP_TIMEOUT = timedelta(minutes=10)
"""How long a deletion waits for the SLA's pods to go before it settles anyway."""
UNKNOWN_PRICE = Decimal(0)
"""What a period is priced at when no terms were pinned and the offer is gone (held for review)."""


class NotYet(Exception):
    """Settling must wait (`delay` seconds): the SLA's pods are still serving, the last serving
    minute is not yet fully scraped, or Prometheus is unavailable. The finalizer stays until it
    succeeds."""

    def __init__(self, message: str, *, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


def periods_owed(window: Window, *, in_force: datetime, deleted_at: datetime) -> list[Period]:
    """The periods a deletion settles: the previous one (if the SLA was in force in it) and the
    current one cut at the end of the minute of `deleted_at` (the cut: when serving stopped).
    Rolling windows never settle."""
    if not window.calendar_aligned:
        return []
    owed = []
    previous = previous_period(window, deleted_at)
    if previous.end > in_force:
        owed.append(previous)
    current = period_containing(window, deleted_at)
    end = min(ceil_minute(deleted_at), current.end)
    if end > max(current.start, in_force):
        owed.append(Period(start=current.start, end=end))
    return owed


async def stopped_serving(
    evaluator: FleetEvaluator,
    sla: SLARef,
    annotations: Mapping[str, str],
    *,
    deleted_at: datetime,
    now: datetime,
) -> datetime:
    """When the SLA's pods were first seen gone, scaling its Deployment to 0 first; raises
    NotYet while some are left (until `STOP_TIMEOUT` after the deletion)."""
    recorded = annotations.get(STOPPED_ANNOTATION)
    if recorded:
        return parse_iso(recorded)
    kube = evaluator.kube
    name = workload.child_names(sla.name).deployment
    deployment = await kube.get("Deployment", name, sla.namespace)
    if deployment is not None and (deployment.get("spec") or {}).get("replicas"):
        await kube.call(
            "PATCH",
            KINDS["Deployment"].path(sla.namespace, name),
            body={"spec": {"replicas": 0}},
            content_type="application/merge-patch+json",
        )
    selector = ",".join(f"{k}={v}" for k, v in workload.pod_selector(sla.name).items())
    pods = await kube.list("Pod", sla.namespace, labels=selector)
    if pods and now < deleted_at + STOP_TIMEOUT:
        raise NotYet(
            f"{len(pods)} inference pod(s) still serving; settlement waits until they are gone",
            delay=5,
        )
    if pods:
        await evaluator.post_event(
            sla,
            type_="Warning",
            reason="ServingNotStopped",
            message=f"{len(pods)} inference pod(s) still present {STOP_TIMEOUT} after the"
            " deletion; the period is cut now and what they serve later is not charged",
        )
    await kube.call(
        "PATCH",
        KINDS[SLA.kind].path(sla.namespace, sla.name),
        body={"metadata": {"annotations": {STOPPED_ANNOTATION: now.isoformat()}}},
        content_type="application/merge-patch+json",
    )
    return now


async def settle_deleted(
    evaluator: FleetEvaluator, body: Mapping[str, Any], *, now: datetime
) -> list[Settlement]:
    """Settle what the deleted SLA `body` owes; raises NotYet when it must wait."""
    sla = SLARef.from_body(body)
    meta = body["metadata"]
    stamp = meta.get("deletionTimestamp")
    deleted_at = parse_iso(stamp) if stamp else now
    stopped_at = await stopped_serving(
        evaluator, sla, meta.get("annotations") or {}, deleted_at=deleted_at, now=now
    )
    cut_at = max(deleted_at, stopped_at)
    grace = timedelta(seconds=evaluator.settings.settlement_grace_seconds)
    ready_at = ceil_minute(cut_at) + grace
    if now < ready_at:
        wait = (ready_at - now).total_seconds()
        raise NotYet(f"the last serving minute is scraped in {wait:.0f} s", delay=wait)
    try:
        spec, offer = await terms_for(
            evaluator.kube, sla.spec, require_offer=evaluator.settings.require_offer
        )
        problem: OfferProblem | None = None
    except OfferProblem as err:
        spec, offer, problem = sla.spec, None, err
    sla = dataclasses.replace(sla, spec=spec, offer=offer)
    settled = []
    window = spec.objectives.window
    for period in periods_owed(window, in_force=sla.in_force, deleted_at=cut_at):
        stored = await asyncio.to_thread(evaluator.ledger.settlement, sla.uid, period)
        if stored is None:
            stored = await _settle(evaluator, sla, period, problem)
        settled.append(stored)
    return settled


async def _settle(
    evaluator: FleetEvaluator, sla: SLARef, period: Period, problem: OfferProblem | None
) -> Settlement:
    hold = None
    terms = await asyncio.to_thread(evaluator.ledger.pinned_terms, sla.uid, period.start)
    if terms is not None:
        sla = dataclasses.replace(sla, spec=terms.apply(sla.spec), terms=terms)
    elif problem is None:
        (sla,) = await asyncio.to_thread(pinned, evaluator.ledger, [sla], period)
    else:
        # Nothing pinned and no offer to read: the usage is measured and recorded, priced at
        # nothing, and held for a reviewer; the tenant-written terms are never used.
        hold = HoldReason.TERMS_UNKNOWN
        unknown = PeriodTerms(
            offer=sla.spec.offer,
            currency=sla.spec.tokens.currency,
            price_per_million_tokens=UNKNOWN_PRICE,
            credits=CreditsSpec(availability=[], latency=[]),
            included_tokens_per_period=0,
        )
        sla = dataclasses.replace(sla, spec=unknown.apply(sla.spec))
    windows = await evaluator.list_maintenance()
    if not evaluator.maintenance_listed:
        raise NotYet("MaintenanceWindows not listed, settlement waits", delay=30)
    try:
        # The same path as a period closing: excusals and service hours, evidence stored.
        (stored,) = await asyncio.to_thread(
            settle_closed,
            evaluator.source,
            evaluator.ledger,
            [sla],
            period,
            coverage_floor_percent=evaluator.settings.coverage_floor_percent,
            window=sla.spec.objectives.window,
            windows=windows,
            hold=hold,
        )
    except SourceUnavailable as err:
        raise NotYet(f"Prometheus unavailable, settlement waits: {err}", delay=30) from err
    held = stored.state != SettlementState.SETTLED
    why = f" ({stored.hold_reason})" if stored.hold_reason else ""
    unknown_terms = f"; {problem}" if hold is not None else ""
    await evaluator.post_event(
        sla,
        type_="Warning" if held else "Normal",
        reason="SettledOnDeletion",
        message=f"{stored.state}{why}: period {period.start_iso} to {period.end_iso},"
        f" {stored.tokens_used} tokens, charges {stored.charges_micros / 1_000_000:.6f}"
        f" {stored.currency}, credit {stored.credit_micros / 1_000_000:.6f}{unknown_terms}",
    )
    return stored
