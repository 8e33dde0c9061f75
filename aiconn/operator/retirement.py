"""Deleting an SLA settles what it owes: no period is left open with usage never charged.

The evaluation loop settles a period after it closes, but it no longer sees an SLA once it is
being deleted. So the operator holds each SLA with a finalizer (Kopf's, added by its delete
handler) and, on deletion, settles the period the SLA was deleted in, cut at the end of the
deletion's minute, plus the previous period when its settlement was still pending. It waits
until that minute has passed by `settlement_grace_seconds` (late scrapes; the pods keep serving
until the finalizer goes, and what they serve is charged). The ledger's unique key per SLA and
period start makes this exactly once: a retried handler, or a loop that got there first, reads
the stored settlement instead of paying again, and the usage recorded for the open period stops
counting as pending once that period is settled.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from aiconn.operator.evaluation import FleetEvaluator, SLARef, measure
from aiconn.operator.offers import OfferProblem, terms_for
from aiconn.sla.ledger import Settlement, settle_period
from aiconn.sla.periods import Period, ceil_minute, period_containing, previous_period
from aiconn.sla.prometheus import SourceUnavailable
from aiconn.sla.spec import Window


class NotYet(Exception):
    """Settling must wait (`delay` seconds): the deletion's minute is not yet fully scraped, or
    Prometheus or the offer is unavailable. The finalizer stays until it succeeds."""

    def __init__(self, message: str, *, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


def periods_owed(window: Window, *, in_force: datetime, deleted_at: datetime) -> list[Period]:
    """The periods a deletion settles: the previous one (if the SLA was in force in it) and the
    current one cut at the end of the deletion's minute. Rolling windows never settle."""
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


async def settle_deleted(
    evaluator: FleetEvaluator, body: Mapping[str, Any], *, now: datetime
) -> list[Settlement]:
    """Settle what the deleted SLA `body` owes; raises NotYet when it must wait."""
    sla = SLARef.from_body(body)
    try:
        spec, offer = await terms_for(
            evaluator.kube, sla.spec, require_offer=evaluator.settings.require_offer
        )
    except OfferProblem as err:
        raise NotYet(f"terms unknown, settlement waits: {err}", delay=60) from err
    sla = dataclasses.replace(sla, spec=spec, offer=offer)
    stamp = body["metadata"].get("deletionTimestamp")
    deleted_at = datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else now
    grace = timedelta(seconds=evaluator.settings.settlement_grace_seconds)
    ready_at = ceil_minute(deleted_at) + grace
    if now < ready_at:
        wait = (ready_at - now).total_seconds()
        raise NotYet(f"the deletion's minute is scraped in {wait:.0f} s", delay=wait)
    settled = []
    window = spec.objectives.window
    for period in periods_owed(window, in_force=sla.in_force, deleted_at=deleted_at):
        stored = await asyncio.to_thread(evaluator.ledger.settlement, sla.uid, period)
        if stored is None:
            try:
                fleet = await asyncio.to_thread(
                    measure, evaluator.source, [sla], period, lookback_minutes=0
                )
            except SourceUnavailable as err:
                raise NotYet(f"Prometheus unavailable, settlement waits: {err}", delay=30) from err
            stored = await asyncio.to_thread(
                settle_period,
                evaluator.ledger,
                sla_uid=sla.uid,
                namespace=sla.namespace,
                name=sla.name,
                tenant=sla.tenant,
                period=period,
                result=fleet.sla(0),
                coverage_floor_percent=evaluator.settings.coverage_floor_percent,
                currency=spec.tokens.currency,
            )
            await evaluator.post_event(
                sla,
                type_="Normal",
                reason="SettledOnDeletion",
                message=f"{stored.state}: period {period.start_iso} to {period.end_iso},"
                f" {stored.tokens_used} tokens, charges {stored.charges_micros / 1_000_000:.6f}"
                f" {stored.currency}, credit {stored.credit_micros / 1_000_000:.6f}",
            )
        settled.append(stored)
    return settled
