"""One fleet-wide SLA evaluation: measure every SLA, write its status, settle closed periods.

A timer per SLA would cost one round of Prometheus queries per SLA per interval; instead one pass
lists all AIInferenceSLAs, groups them by window (SLAs with the same window share their period)
and asks Prometheus once per group and SLI (`PrometheusSource.fetch_fleet`). Fetching, the numpy
math and every ledger call run in worker threads, so Kopf's event loop keeps serving handlers.

Prometheus being unreachable is not the service being down: the pass then leaves each SLA's
measured period as it was, sets `Compliant` to Unknown (MeasurementUnavailable) and settles
nothing; the minutes it could not see stay unknown and show up later as lower coverage.

Each pass also records every calendar SLA's tokens so far in the ledger (`record_usage`), so the
gateway's allowance (wallet balance minus usage not yet settled) drops within the period; the
gateway subtracts what it metered since its last read, so the gap is at most the traffic since
the last pass plus the scrape delay.

The commercial terms of each calendar period (price, currency, credit schedules, plan) are pinned
in the ledger by the first pass that sees the period and read back by every later pass and by the
settlement (`aiconn.sla.terms`): an offer edited mid-period changes nothing before its next
period.

Settlement: once the immediately previous calendar period has been closed for
`settlement_grace_seconds` (late scrapes), it is fetched, evaluated and settled exactly once in
the ledger (held for review when coverage is below the floor, or when a latency attainment
interpolated inside a bucket could change the credit; the `AttainmentExact` condition says so
while the period is open). The ledger's unique key per SLA
and period is what makes that exactly once; `status.lastSettlement` and the in-memory funded set
only avoid asking again. Rolling windows are reported, never settled.

Service hours and planned maintenance come from the provider only: the offer's `serviceHours`
and `maintenance.noticeMinutes`, and the cluster-scoped MaintenanceWindows listed once per pass
(`aiconn.sla.maintenance`); each window is judged by its API-server creationTimestamp, so it
never excuses a minute before it was declared plus the offer's notice.

`status.conditions` is merge-patched as a whole list (Kubernetes has no patch by condition type
for custom resources), so each write carries the resourceVersion its list was merged into and a
conflict with the reconcile (which owns Placed, SliceReady, InferenceReady and Ready) re-reads
and merges again: neither writer drops the other's conditions.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from aiconn.kube import KINDS, KubeError, NotFound
from aiconn.operator.conditions import condition, now_iso
from aiconn.operator.health import burn_rates_sentence
from aiconn.operator.kubeapi import KubeApi
from aiconn.operator.offers import OfferProblem, fetch_offers, resolve
from aiconn.operator.settings import OperatorSettings
from aiconn.operator.slaevents import post_sla_event
from aiconn.resources.v1alpha1.kinds import MAINTENANCE_WINDOW, SLA
from aiconn.resources.v1alpha1.offer import AIInferenceOfferSpec
from aiconn.resources.v1alpha1.sla import (
    AIInferenceSLASpec,
    PeriodStatus,
    SettlementStatus,
    Window,
    decimal_amount,
)
from aiconn.sla.accounting import (
    HoldReason,
    Kind,
    Settlement,
    SettlementState,
    TermsPin,
    TransferConflict,
    UsageReading,
    idempotency_key,
    units,
)
from aiconn.sla.burnwindows import alert_rules, longest_minutes
from aiconn.sla.credits import from_micros
from aiconn.sla.evaluate import FleetEvaluation, FleetTerms, SLAEvaluation, evaluate_fleet
from aiconn.sla.evidence import LatencyCounts, Measured, minute_verdicts
from aiconn.sla.judged import MinuteRule, MinuteRules
from aiconn.sla.maintenance import MaintenanceWindow, excused_spans
from aiconn.sla.periods import (
    Period,
    ceil_minute,
    current_period,
    elapsed_minutes,
    floor_minute,
    period_containing,
    previous_period,
)
from aiconn.sla.plans import close_plan_period, fund_plan, funded_plan, plan_period, plan_subject
from aiconn.sla.prices import PriceVersion, plan_at, price_at
from aiconn.sla.settlement import fund_allowance, settle_period
from aiconn.sla.sli import Occurrences, classify_minutes
from aiconn.sla.terms import PeriodTerms
from aiconn.sla.timestamps import iso_seconds, parse_iso
from aiconn.sla.wallets import wallet_owner
from aiconn.store.ledger import Ledger
from aiconn.store.prometheus import PrometheusSource, SLATarget, SourceUnavailable
from aiconn.store.querylog import QueryRecorder

# Rolling windows never close a period; their allowance is funded per calendar month.
MONTH = Window(duration="1M", calendar_aligned=True)

log = logging.getLogger(__name__)

COMPLIANT = "Compliant"
ATTAINMENT_EXACT = "AttainmentExact"


@dataclass(frozen=True)
class SLARef:
    """One AIInferenceSLA as the evaluation sees it."""

    uid: str
    namespace: str
    name: str
    created: datetime
    spec: AIInferenceSLASpec
    status: Mapping[str, Any]
    resource_version: str | None = None
    """The version `status` was read at; status writes merge conditions into it."""
    offer: AIInferenceOfferSpec | None = None
    """The offer `spec` was rebuilt from (None: a legacy SLA funded by its own commitment)."""
    generation: int | None = None
    """`metadata.generation` of the spec read; the evidence of a settlement names it."""
    units_per_million_tokens: int | None = None
    """The plan's exchange rate for the SLA's model class, as pinned for the period being
    evaluated or settled (None: one wallet unit per token); set by `pinned`."""
    terms: PeriodTerms | None = None
    """The terms pinned for the period acted on (set by `pinned`); settlement lines name their
    price version."""

    @property
    def in_force(self) -> datetime:
        """The SLA's first whole minute: nothing before it was promised, measured or owed."""
        return ceil_minute(self.created)

    def minute_rule(self, windows: Sequence[MaintenanceWindow]) -> MinuteRule:
        """The offer's service hours and the maintenance it excuses; none without an offer."""
        offer = self.offer
        if offer is None or self.spec.offer is None:
            return MinuteRule()
        spans = (
            excused_spans(
                windows,
                offer=self.spec.offer,
                notice=timedelta(minutes=offer.maintenance.notice_minutes),
            )
            if offer.maintenance is not None
            else ()
        )
        return MinuteRule(service_hours=offer.service_hours, excused=spans)

    @property
    def tenant(self) -> str:
        """The wallet this SLA's tokens move through; the same name the gateway and the API use."""
        return wallet_owner(self.namespace, self.spec.tenant)

    @property
    def target(self) -> SLATarget:
        objectives = self.spec.objectives
        return SLATarget(
            namespace=self.namespace,
            name=self.name,
            ttft_threshold_s=objectives.ttft.threshold_ms / 1000,
            tpot_threshold_s=objectives.tpot.threshold_ms / 1000,
        )

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> SLARef:
        meta = body["metadata"]
        return cls(
            uid=meta["uid"],
            namespace=meta["namespace"],
            name=meta["name"],
            created=parse_iso(meta["creationTimestamp"]),
            spec=AIInferenceSLASpec.model_validate(body.get("spec") or {}),
            status=body.get("status") or {},
            resource_version=meta.get("resourceVersion"),
            generation=meta.get("generation"),
        )


@dataclass
class PassReport:
    """What one pass did, for logs and tests."""

    slas: int = 0
    evaluated: int = 0
    unavailable: int = 0
    maintenance_windows: int = 0
    settled: list[Settlement] = field(default_factory=list)


def measure(
    source: PrometheusSource,
    slas: Sequence[SLARef],
    period: Period,
    *,
    lookback_minutes: int | None = None,
    window: Window | None = None,
    windows: Sequence[MaintenanceWindow] = (),
) -> FleetEvaluation:
    """Fetch `period` of `slas` in one batched call and evaluate them (blocking: run in a thread).

    The SLAs share `window` (by default the first SLA's), whose burn-rate alerts they are judged
    by; the look-back defaults to the longest of those alerts' windows. Each SLA's availability
    counts only its offer's service hours and leaves out the minutes that `windows` excuse under
    its offer. Raises SourceUnavailable when Prometheus cannot answer.
    """
    rules = alert_rules(window or (slas[0].spec.objectives.window if slas else MONTH))
    lookback = longest_minutes(rules) if lookback_minutes is None else lookback_minutes
    series = source.fetch_fleet([s.target for s in slas], period, lookback_minutes=lookback)
    return evaluate_fleet(
        rules=rules,
        terms=FleetTerms.from_specs([s.spec for s in slas]),
        series=series,
        in_force_from=_in_force_from(slas, period),
        minute_rules=_minute_rules(slas, windows, period, lookback),
    )


def _minute_rules(
    slas: Sequence[SLARef], windows: Sequence[MaintenanceWindow], period: Period, lookback: int
) -> MinuteRules:
    """Each SLA's service hours and excused maintenance over the fetched columns."""
    return MinuteRules.build(
        [s.minute_rule(windows) for s in slas],
        start=period.start - timedelta(minutes=lookback),
        columns=period.minutes + lookback,
    )


def _in_force_from(slas: Sequence[SLARef], period: Period) -> list[int]:
    """Per SLA, the first minute of `period` it was in force (0-based)."""
    return [elapsed_minutes(period, s.in_force) for s in slas]


def settle_closed(
    source: PrometheusSource,
    ledger: Ledger,
    slas: Sequence[SLARef],
    closed: Period,
    *,
    coverage_floor_percent: float,
    window: Window,
    windows: Sequence[MaintenanceWindow] = (),
    hold: HoldReason | None = None,
) -> list[Settlement]:
    """Measure the closed period of `slas` in one batched call and settle each SLA with its
    evidence (blocking: run in a thread). Raises SourceUnavailable when Prometheus cannot answer.

    The queries go through a recorder, so each SLA's evidence names what was asked and hashes
    what Prometheus answered about it. Minutes excused by `windows` are `excused` in the evidence
    and minutes outside service hours `off-hours`, as both are left out of its figures. With `hold`,
    every settlement is held for review for that reason.
    """
    recorder = QueryRecorder(source.client)
    recording = copy.copy(source)
    recording.client = recorder
    series = recording.fetch_fleet([s.target for s in slas], closed, lookback_minutes=0)
    offsets = _in_force_from(slas, closed)
    minute_rules = _minute_rules(slas, windows, closed, 0)
    fleet = evaluate_fleet(
        rules=alert_rules(window),
        terms=FleetTerms.from_specs([s.spec for s in slas]),
        series=series,
        in_force_from=offsets,
        minute_rules=minute_rules,
    )
    settled: list[Settlement] = []
    for i, sla in enumerate(slas):
        result = fleet.sla(i)
        slices = classify_minutes(series.in_contract[i], series.failed[i], series.up[i])
        masks = minute_rules.masks(i)
        measured = Measured(
            namespace=sla.namespace,
            name=sla.name,
            generation=sla.generation,
            verdicts=minute_verdicts(
                bad=slices.bad,
                known=slices.known,
                in_force_from=offsets[i],
                excused=None if masks is None else masks[0],
                off_hours=None if masks is None else masks[1],
            ),
            ttft=_latency_counts(series.ttft, i),
            tpot=_latency_counts(series.tpot, i),
            queries=recorder.records_for(sla.namespace, sla.name),
            terms=_terms(sla.spec, result.price_per_million_tokens, sla.minute_rule(windows)),
        )
        settled.append(
            settle_period(
                ledger,
                sla_uid=sla.uid,
                namespace=sla.namespace,
                name=sla.name,
                tenant=sla.tenant,
                period=closed,
                outcome=result.outcome(),
                coverage_floor_percent=coverage_floor_percent,
                currency=sla.spec.tokens.currency,
                evidence=measured,
                hold=hold,
                units_per_million_tokens=sla.units_per_million_tokens,
                price_version=None if sla.terms is None else sla.terms.price_version,
            )
        )
    return settled


def _latency_counts(occurrences: Occurrences, i: int) -> LatencyCounts:
    low, high = occurrences.bounds
    return LatencyCounts(
        good=float(occurrences.good[i]),
        total=float(occurrences.total[i]),
        exact=bool(occurrences.exact[i]),
        good_low=float(low[i]),
        good_high=float(high[i]),
    )


def _terms(spec: AIInferenceSLASpec, price: Decimal, rule: MinuteRule) -> dict[str, Any]:
    """The terms a credit was computed with, as the evidence records them: with the service
    hours and the excused spans (announcement plus notice to end) that decided which minutes
    were judged, so a reader sees why a minute is `off-hours` or `excused`."""
    objectives = spec.objectives
    return {
        "serviceHours": (
            None
            if rule.service_hours is None
            else rule.service_hours.model_dump(mode="json", by_alias=True)
        ),
        "excusedSpans": [[iso_seconds(a), iso_seconds(b)] for a, b in rule.excused],
        "offer": spec.offer,
        "objectives": {
            "availabilityTargetPercent": objectives.availability.target_percent,
            "ttftThresholdMs": objectives.ttft.threshold_ms,
            "ttftTargetPercent": objectives.ttft.target_percent,
            "tpotThresholdMs": objectives.tpot.threshold_ms,
            "tpotTargetPercent": objectives.tpot.target_percent,
            "window": objectives.window.to_k8s(),
        },
        "pricePerMillionTokens": str(price),
        "currency": spec.tokens.currency,
        "credits": spec.credits.to_k8s(),
    }


_PERIOD_OWN = frozenset({"start", "end", "alerts", "charges", "credits_accrued", "evaluated_at"})
"""Fields of `PeriodStatus` not copied as they are from the `SLAEvaluation` of that name."""


def period_status(period: Period, result: SLAEvaluation, *, at: str) -> dict[str, Any]:
    """`status.period` of one SLA from its evaluation."""
    status = PeriodStatus(
        **{f: getattr(result, f) for f in PeriodStatus.model_fields if f not in _PERIOD_OWN},
        start=period.start_iso,
        end=period.end_iso,
        alerts=list(result.alerts),
        charges=decimal_amount(result.charges),
        credits_accrued=decimal_amount(result.credit.amount),
        evaluated_at=at,
    )
    return status.to_k8s()


def with_stale_windows_removed(
    previous: Mapping[str, Any], new_period: dict[str, Any]
) -> dict[str, Any]:
    """`new_period` as a merge patch over `previous`: a merge patch merges maps, so burn-rate
    windows no longer measured (the SLA window was edited, or keys written before windows
    scaled, such as `w5M`) are removed with an explicit null."""
    rates = new_period.get("burnRates") or {}
    gone = {key: None for key in previous.get("burnRates") or {} if key not in rates}
    return {**new_period, "burnRates": {**gone, **rates}} if gone else new_period


def compliance(spec: AIInferenceSLASpec, result: SLAEvaluation) -> tuple[bool | None, str, str]:
    """Compliant so far? True when every measured objective is met; the reason names a miss."""
    objectives = spec.objectives
    checks = (
        ("Availability", result.availability_percent, objectives.availability.target_percent),
        ("TTFT", result.ttft_attainment_percent, objectives.ttft.target_percent),
        ("TPOT", result.tpot_attainment_percent, objectives.tpot.target_percent),
    )
    measured = [(name, value, target) for name, value, target in checks if value is not None]
    if not measured:
        return None, "NoData", "no availability or latency data in this period yet"
    missed = [(name, value, target) for name, value, target in measured if value < target]
    if missed:
        name = missed[0][0]
        detail = "; ".join(f"{n} {v:.3f} % < target {t} %" for n, v, t in missed)
        return False, f"{name}Missed", detail
    detail = ", ".join(f"{n} {v:.3f} % >= {t} %" for n, v, t in measured)
    return True, "ObjectivesMet", detail


def exactness(result: SLAEvaluation) -> tuple[bool, str, str]:
    """The AttainmentExact condition: were TTFT and TPOT counted at a bucket bound?"""
    inexact = [
        name
        for name, exact, value in (
            ("TTFT", result.ttft_exact, result.ttft_attainment_percent),
            ("TPOT", result.tpot_exact, result.tpot_attainment_percent),
        )
        if value is not None and not exact
    ]
    if not inexact:
        return True, "BucketBounds", "latency attainments counted at bucket bounds"
    consequence = (
        "it could change the credit: the period will be held for review"
        if result.credit_uncertain
        else "the credit is the same anywhere in the bucket"
    )
    return (
        False,
        "Interpolated",
        f"{' and '.join(inexact)} attainment interpolated inside a bucket; {consequence}",
    )


def settlement_status(settlement: Settlement) -> dict[str, Any]:
    """`status.lastSettlement` from a ledger settlement."""
    return SettlementStatus(
        period_start=settlement.period.start_iso,
        period_end=settlement.period.end_iso,
        state=str(settlement.state),
        currency=settlement.currency,
        charges=_amount(settlement.charges_micros),
        credits=_amount(settlement.credit_micros),
        charges_micros=settlement.charges_micros,
        credits_micros=settlement.credit_micros,
        credit_percent=str(settlement.credit_percent),
        availability_percent=_percent(settlement.availability_percent),
        ttft_attainment_percent=_percent(settlement.ttft_attainment_percent),
        tpot_attainment_percent=_percent(settlement.tpot_attainment_percent),
        coverage_percent=_percent(settlement.coverage_percent),
        judged_minutes=settlement.judged_minutes,
        excused_minutes=settlement.excused_minutes,
        hold_reason=str(settlement.hold_reason) if settlement.hold_reason else None,
        transfer_ids=list(settlement.transfer_ids),
    ).to_k8s()


def _amount(micros: int) -> str:
    """Micro-units as an exact decimal amount: 18267 -> `0.018267`; no float on the way."""
    return decimal_amount(from_micros(micros))


def _percent(value: float | None) -> str | None:
    """A settled percentage as people read it (two decimals), or None when it was not measured."""
    return None if value is None else f"{value:.2f}"


@dataclass(kw_only=True, eq=False)
class FleetEvaluator:
    """Runs evaluation passes over the whole fleet; `run_once` is one pass."""

    kube: KubeApi
    source: PrometheusSource
    ledger: Ledger
    settings: OperatorSettings
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    _funded: set[tuple[str, datetime]] = field(default_factory=set, init=False)
    _plans_closed: set[tuple[str, datetime]] = field(default_factory=set, init=False)
    _windows: tuple[MaintenanceWindow, ...] = field(default=(), init=False)
    _windows_listed: bool = field(default=True, init=False)
    """False when this pass could not read the MaintenanceWindows: its settlements wait."""

    @property
    def maintenance_listed(self) -> bool:
        """Whether the last `list_maintenance` read the windows (or found no CRD)."""
        return self._windows_listed

    async def run_once(self) -> PassReport:
        """List, measure, write status and Events, fund allowances, settle closed periods."""
        slas = await self.list_slas()
        self._windows = await self.list_maintenance()
        report = PassReport(slas=len(slas), maintenance_windows=len(self._windows))
        now = self.clock()
        groups: dict[Window, list[SLARef]] = {}
        for sla in slas:
            groups.setdefault(sla.spec.objectives.window, []).append(sla)
        for window, members in groups.items():
            await self._evaluate_group(window, members, now, report)
            if window.calendar_aligned:
                await self._settle_group(window, members, now, report)
        await asyncio.to_thread(self._close_plans, slas, now)
        return report

    async def list_slas(self) -> list[SLARef]:
        """Every AIInferenceSLA served (one list, one per namespace when restricted), read in
        pages and each SLA parsed at its offer's terms as it is read, in the list's thread
        (`KubeApi.list_all`): the fleet is never held as the API server wrote it. A malformed
        SLA, or one its offer no longer covers, is skipped with a warning."""
        kind = KINDS[SLA.kind]
        paths = (
            [kind.path(ns) for ns in self.settings.namespaces]
            if self.settings.namespaces
            else [kind.path(None)]
        )
        offers = await fetch_offers(self.kube)

        def served(body: dict[str, Any]) -> SLARef | None:
            if body["metadata"].get("deletionTimestamp"):
                return None
            try:
                sla = SLARef.from_body(body)
                spec, offer = resolve(
                    sla.spec,
                    offers.get(sla.spec.offer or ""),
                    require_offer=self.settings.require_offer,
                )
            except (ValidationError, KeyError, ValueError, OfferProblem) as err:
                meta = body.get("metadata", {})
                log.warning("SLA %s/%s skipped: %s", meta.get("namespace"), meta.get("name"), err)
                return None
            return dataclasses.replace(sla, spec=spec, offer=offer)

        slas: list[SLARef] = []
        for path in paths:
            slas += await self.kube.list_all(path, keep=served)
        return slas

    async def list_maintenance(self) -> tuple[MaintenanceWindow, ...]:
        """Every declared MaintenanceWindow (one list call; a malformed one is skipped)."""
        windows: list[MaintenanceWindow] = []
        self._windows_listed = True
        try:
            bodies = await self.kube.list(MAINTENANCE_WINDOW.kind)
        except KubeError as err:
            if not isinstance(err, NotFound):
                # Any other failure must not settle a period as if nothing had been announced:
                # a settlement is final. Live status goes on without excusals; settling waits.
                self._windows_listed = False
                log.warning("MaintenanceWindows not listed, settlement waits: %s", err.reason)
                return ()
            # Without the CRD (an older install) nothing is excused; the pass goes on.
            log.warning("MaintenanceWindows not listed, none excused: %s", err.reason)
            return ()
        for body in bodies:
            if body["metadata"].get("deletionTimestamp"):
                continue
            try:
                windows.append(MaintenanceWindow.from_body(body))
            except (ValidationError, KeyError, ValueError) as err:
                log.warning("MaintenanceWindow %s skipped: %s", body["metadata"].get("name"), err)
        return tuple(windows)

    async def _evaluate_group(
        self, window: Window, slas: list[SLARef], now: datetime, report: PassReport
    ) -> None:
        period = current_period(window, now)
        # The allowance does not wait for measurements: a Prometheus outage at a period's start
        # must not leave tenants without tokens (402 at the gateway).
        await asyncio.to_thread(self._fund, slas, now)
        if window.calendar_aligned:
            slas = await asyncio.to_thread(pinned, self.ledger, slas, period)
        # Only complete minutes are judged; in the period's first minute there is nothing yet.
        measured_until = min(floor_minute(now), period.end)
        if measured_until <= period.start:
            return
        so_far = Period(start=period.start, end=measured_until)
        try:
            fleet = await asyncio.to_thread(
                measure, self.source, slas, so_far, window=window, windows=self._windows
            )
        except SourceUnavailable as err:
            log.warning("SLA measurement unavailable for %d SLA(s): %s", len(slas), err)
            report.unavailable += len(slas)
            await self._gather(self._mark_unavailable(sla, str(err)) for sla in slas)
            return
        at = now_iso()
        report.evaluated += len(slas)
        if window.calendar_aligned:
            # Usage so far counts against the wallet before the period settles (the gateway's
            # 402); rolling windows never settle, so their usage is never pending.
            readings = [
                UsageReading(
                    sla_uid=sla.uid,
                    tenant=sla.tenant,
                    period=period,
                    tokens=units(fleet.sla(i).tokens_used, sla.units_per_million_tokens),
                    measured_at=measured_until,
                )
                for i, sla in enumerate(slas)
            ]
            await asyncio.to_thread(self.ledger.record_usage, readings)
        await self._gather(
            self._write_period(sla, period, fleet.sla(i), at) for i, sla in enumerate(slas)
        )

    async def _write_period(
        self, sla: SLARef, period: Period, result: SLAEvaluation, at: str
    ) -> None:
        ok, reason, message = compliance(sla.spec, result)
        previous = sla.status.get("period") or {}
        new_period = with_stale_windows_removed(previous, period_status(period, result, at=at))
        exact = condition(
            ATTAINMENT_EXACT,
            *exactness(result),
            generation=sla.status.get("observedGeneration"),
        )
        await self._write_status(sla, {"period": new_period}, ok, reason, message, extra=[exact])
        for type_, event_reason, text in _period_events(previous, new_period):
            await self.post_event(sla, type_=type_, reason=event_reason, message=text)

    async def _mark_unavailable(self, sla: SLARef, error: str) -> None:
        message = f"Prometheus did not answer; previous measurements kept: {error}"[:1024]
        await self._write_status(sla, {}, None, "MeasurementUnavailable", message)

    async def _write_status(
        self,
        sla: SLARef,
        fields: dict[str, Any],
        ok: bool | None,
        reason: str,
        message: str,
        *,
        extra: Sequence[dict[str, Any]] = (),
    ) -> None:
        """Status `fields`, the Compliant condition and `extra` conditions; the reconcile's
        conditions are kept."""
        generation = sla.status.get("observedGeneration")
        await self.kube.update_status(
            SLA.kind,
            sla.name,
            sla.namespace,
            fields=fields,
            conditions=[
                condition(COMPLIANT, ok, reason, message, generation=generation),
                *extra,
            ],
            current={
                "metadata": {"resourceVersion": sla.resource_version},
                "status": {"conditions": list(sla.status.get("conditions") or [])},
            },
        )

    def _fund(self, slas: Sequence[SLARef], now: datetime) -> None:
        """Fund each SLA's allowance once per funding period: its own calendar period, or the
        calendar month for rolling windows (whose periods never close to be settled)."""
        for sla in slas:
            if sla.offer is not None:
                self._fund_plan(sla, sla.offer, now)
                continue
            window = sla.spec.objectives.window
            period = period_containing(window if window.calendar_aligned else MONTH, now)
            key = (sla.uid, period.start)
            if key in self._funded:
                continue
            try:
                fund_allowance(
                    self.ledger,
                    sla_uid=sla.uid,
                    namespace=sla.namespace,
                    name=sla.name,
                    tenant=sla.tenant,
                    period=period,
                    tokens=sla.spec.tokens.monthly_commitment,
                )
            except TransferConflict as err:
                # The commitment changed after this period was funded: the funded amount stands
                # (transfers are immutable); one SLA's conflict must not stop the fleet's pass.
                log.warning("allowance of %s/%s not re-funded: %s", sla.namespace, sla.name, err)
            self._mark_funded(key)

    def _fund_plan(self, sla: SLARef, offer: AIInferenceOfferSpec, now: datetime) -> None:
        """Fund the tenant's plan once per tenant, offer and plan period (see `sla.plans`)."""
        name = sla.spec.offer or ""
        key = (plan_subject(sla.tenant, name), plan_period(offer.plan, now).start)
        if key in self._funded:
            return
        # The fee and overage price in force at the period's start (price versions).
        plan, versions = plan_at(offer, key[1])
        try:
            fund_plan(
                self.ledger,
                tenant=sla.tenant,
                namespace=sla.namespace,
                offer=name,
                plan=plan,
                at=now,
                price_versions=versions,
            )
        except TransferConflict as err:
            log.warning("plan %s of %s not re-funded: %s", name, sla.tenant, err)
        self._mark_funded(key)

    def _mark_funded(self, key: tuple[str, datetime]) -> None:
        """Remember that `key`'s subject (an SLA or a tenant's plan) is funded for the period
        starting at `key[1]`; its earlier periods are forgotten, as funding only moves forward."""
        subject, start = key
        self._funded = {k for k in self._funded if k[0] != subject or k[1] >= start}
        self._funded.add(key)

    def _close_plans(self, slas: Sequence[SLARef], now: datetime) -> None:
        """Close each tenant's previous plan period (rollover, expiry, overage, fee: see
        `aiconn.sla.plans`) once every SLA under the plan has settled its part of it. A period
        the plan never funded is not closed; each close happens once (the ledger's claim), this
        set only spares the queries (blocking: run in a thread)."""
        groups: dict[tuple[str, str], list[SLARef]] = {}
        for sla in slas:
            if sla.offer is not None and sla.spec.offer:
                groups.setdefault((sla.tenant, sla.spec.offer), []).append(sla)
        for (tenant, name), members in groups.items():
            offer = members[0].offer
            assert offer is not None
            closed = previous_period(offer.plan.window, now)
            subject = plan_subject(tenant, name)
            if (subject, closed.start) in self._plans_closed or now - closed.end < timedelta(
                seconds=self.settings.settlement_grace_seconds
            ):
                continue
            funded = self.ledger.transfer_by_key(
                idempotency_key(subject, closed, Kind.ALLOWANCE.value)
            )
            if funded is not None and not all(self._settled_through(s, closed) for s in members):
                continue
            if funded is not None:
                pinned_plan = funded_plan(self.ledger, tenant=tenant, offer=name, period=closed)
                close_plan_period(
                    self.ledger,
                    tenant=tenant,
                    namespace=members[0].namespace,
                    offer=name,
                    plan=pinned_plan or offer.plan,
                    currency=offer.currency,
                    period=closed,
                )
            self._plans_closed = {k for k in self._plans_closed if k[1] >= closed.start}
            self._plans_closed.add((subject, closed.start))

    def _settled_through(self, sla: SLARef, closed: Period) -> bool:
        """Whether the SLA's usage in the plan period `closed` is all settled: its last period
        in it is (or the SLA came later, or its rolling window never settles)."""
        window = sla.spec.objectives.window
        if sla.in_force >= closed.end or not window.calendar_aligned:
            return True
        last = period_containing(window, closed.end - timedelta(microseconds=1))
        return self.ledger.settlement(sla.uid, last) is not None

    async def _settle_group(
        self, window: Window, slas: list[SLARef], now: datetime, report: PassReport
    ) -> None:
        closed = previous_period(window, now)
        if now - closed.end < timedelta(seconds=self.settings.settlement_grace_seconds):
            return
        if not self._windows_listed:
            log.warning("settlement of %s postponed: no MaintenanceWindow list", closed.start_iso)
            return
        due = [
            sla
            for sla in slas
            # A period that ended before the SLA's first whole minute was never promised.
            if closed.end > sla.in_force and _unsettled_in_status(sla, closed)
        ]
        if not due:
            return
        stored = await asyncio.to_thread(
            lambda: {sla.uid: self.ledger.settlement(sla.uid, closed) for sla in due}
        )
        unsettled = [sla for sla in due if stored[sla.uid] is None]
        if unsettled:
            unsettled = await asyncio.to_thread(pinned, self.ledger, unsettled, closed)
            try:
                settlements = await asyncio.to_thread(
                    settle_closed,
                    self.source,
                    self.ledger,
                    unsettled,
                    closed,
                    coverage_floor_percent=self.settings.coverage_floor_percent,
                    window=window,
                    windows=self._windows,
                )
            except SourceUnavailable as err:
                log.warning("settlement of %s postponed: %s", closed.start_iso, err)
            else:
                for sla, settlement in zip(unsettled, settlements, strict=True):
                    stored[sla.uid] = settlement
                    report.settled.append(settlement)
                    held = settlement.state != SettlementState.SETTLED
                    await self.post_event(
                        sla,
                        type_="Warning" if held else "Normal",
                        reason=str(settlement.state),
                        message=_settlement_message(settlement),
                    )
        for sla in due:
            done = stored[sla.uid]
            if done is not None and settlement_status(done) != sla.status.get("lastSettlement"):
                await self.kube.patch_status(
                    SLA.kind, sla.name, sla.namespace, {"lastSettlement": settlement_status(done)}
                )

    async def post_event(self, sla: SLARef, *, type_: str, reason: str, message: str) -> None:
        """A core/v1 Event on the SLA; failing to post one never fails the pass."""
        await post_sla_event(
            self.kube,
            kind=SLA.kind,
            name=sla.name,
            namespace=sla.namespace,
            uid=sla.uid,
            type_=type_,
            reason=reason,
            message=message,
        )

    @staticmethod
    async def _gather(calls: Iterable[Any]) -> None:
        results = await asyncio.gather(*calls, return_exceptions=True)
        for result in results:
            # A deleted SLA or a refused patch must not hold back the rest of the fleet.
            if isinstance(result, KubeError):
                log.warning("SLA status not written: %s", result)
            elif isinstance(result, BaseException):
                raise result


def pinned(ledger: Ledger, slas: Sequence[SLARef], period: Period) -> list[SLARef]:
    """Each SLA acting on the terms pinned for `period` (see `aiconn.sla.terms`): the first
    evaluation of a period pins the terms in force then, so an offer edited mid-period re-prices
    nothing before its next period (blocking: run in a thread)."""
    terms = ledger.pin_terms(
        [
            TermsPin(
                sla_uid=s.uid,
                period=period,
                terms=dataclasses.replace(
                    PeriodTerms.of(s.spec, price=_price_at_start(s, period)),
                    units_per_million_tokens=exchange_rate(s),
                ),
            )
            for s in slas
        ]
    )
    return [
        dataclasses.replace(
            sla,
            spec=t.apply(sla.spec),
            units_per_million_tokens=t.units_per_million_tokens,
            terms=t,
        )
        for sla, t in zip(slas, terms, strict=True)
    ]


def exchange_rate(sla: SLARef) -> int | None:
    """The offer's plan rate for the SLA's model class; None without an offer or without
    exchange rates in its plan (one unit per token)."""
    offer = sla.offer
    if offer is None or not offer.plan.exchange_rates:
        return None
    found = offer.model_class(sla.spec.model.name)
    return None if found is None else offer.plan.units_per_million_tokens(found[0].name)


def _price_at_start(sla: SLARef, period: Period) -> PriceVersion | None:
    """The offer's price version in force when `period` began (None: a legacy SLA's price)."""
    offer = sla.offer
    if offer is None:
        return None
    found = offer.model_class(sla.spec.model.name)
    return None if found is None else price_at(offer, found[0].name, period.start)


def _unsettled_in_status(sla: SLARef, closed: Period) -> bool:
    """Whether `status.lastSettlement` does not yet show `closed` settled: not there at all, or
    held for review (a reviewer may have released it through the API since)."""
    last = sla.status.get("lastSettlement") or {}
    return (
        last.get("periodStart") != closed.start_iso
        or last.get("state") == SettlementState.HELD_FOR_REVIEW.value
    )


def _period_events(
    previous: Mapping[str, Any], current: Mapping[str, Any]
) -> list[tuple[str, str, str]]:
    """Events for alerts that started or stopped and for a budget newly exhausted."""
    events: list[tuple[str, str, str]] = []
    before, now = set(previous.get("alerts") or []), set(current.get("alerts") or [])
    rates = current.get("burnRates") or {}
    for alert in sorted(now - before):
        events.append(
            (
                "Warning",
                "BurnRateAlertStarted",
                f"burn-rate alert {alert} started: {burn_rates_sentence(rates)}",
            )
        )
    for alert in sorted(before - now):
        events.append(("Normal", "BurnRateAlertStopped", f"burn-rate alert {alert} stopped"))
    remaining = current.get("budgetRemainingPercent")
    same_period = previous.get("start") == current.get("start")
    was = previous.get("budgetRemainingPercent") if same_period else None
    if remaining is not None and remaining <= 0 and (was is None or was > 0):
        events.append(
            (
                "Warning",
                "ErrorBudgetExhausted",
                f"availability error budget of the period from {current.get('start')} is spent"
                f" ({remaining:.1f} % remaining)",
            )
        )
    return events


def _settlement_message(settlement: Settlement) -> str:
    coverage = settlement.coverage_percent
    shown = "none" if coverage is None else f"{coverage:.1f} %"
    held = "" if settlement.hold_reason is None else f" ({settlement.hold_reason})"
    inexact = [
        name
        for name, exact in (("TTFT", settlement.ttft_exact), ("TPOT", settlement.tpot_exact))
        if exact is False
    ]
    interpolated = f", {' and '.join(inexact)} interpolated" if inexact else ""
    excused = (
        f", {settlement.excused_minutes} minute(s) excused for announced maintenance"
        if settlement.excused_minutes
        else ""
    )
    return (
        f"period {settlement.period.start_iso} to {settlement.period.end_iso}:"
        f" {settlement.state}{held}, data coverage {shown}{interpolated}{excused},"
        f" charges {settlement.charges_micros / 1_000_000:.6f} {settlement.currency},"
        f" credit {settlement.credit_micros / 1_000_000:.6f} {settlement.currency}"
        f" ({settlement.credit_tokens} tokens)"
    )
