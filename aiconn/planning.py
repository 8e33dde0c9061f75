"""`aiconn plan`: what an SLA manifest would get, worked out before any cluster sees it.

A sales engineer sizing an offer needs the operator's own answer, not an approximation of it, so
this runs the same placement (`aiconn.inference.placement.plan`) on the same spec model and tiers,
and prices it with the same money rules as settlement (`aiconn.sla.credits`). It is pure: a file
in, a report out.

The manifest is checked against the spec models, i.e. the CRD's types and bounds. The CRD's CEL
rules (credit tiers in order, maxReplicas >= replicas) are evaluated by the API server only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from aiconn.inference import throughput as physics
from aiconn.inference.placement import PlacementDecision, parse_tiers, plan
from aiconn.inference.throughput import ReplicaThroughput
from aiconn.resources.v1alpha1.kinds import OFFER, SLA
from aiconn.resources.v1alpha1.meta import API_VERSION
from aiconn.resources.v1alpha1.offer import AIInferenceOfferSpec
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec
from aiconn.resources.v1alpha1.tier import InferenceTierSpec
from aiconn.sla.accounting import units
from aiconn.sla.credits import from_micros, money, to_micros, usage_charge
from aiconn.sla.offer import admitted_offer
from aiconn.sla.periods import Period, parse_duration, period_containing
from aiconn.sla.prices import plan_at


class ManifestError(Exception):
    """A manifest that cannot be planned: each problem is (field path, reason)."""

    def __init__(self, path: Path, problems: list[tuple[str, str]]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("; ".join(f"{field}: {reason}" for field, reason in problems))


@dataclass(frozen=True)
class Plan:
    """The placement of one SLA and what it is worth."""

    name: str
    spec: AIInferenceSLASpec
    decision: PlacementDecision
    monthly_charge: Decimal
    """monthlyCommitment tokens at the SLA's price, in its currency."""
    max_credit_percent: Decimal
    """The most a month's credits can be, in percent of its charges: both schedules' largest
    credits added, capped at capPercent."""
    monthly_cost: Decimal | None
    """monthlyCommitment tokens at the chosen tier's price; None when unplaced or in another
    currency."""
    plan_price: PlanPrice | None = None
    """The offer's token plan for the commitment (`price_plan`); None without an offer."""

    @property
    def max_credit(self) -> Decimal:
        """The most a month's credits can pay back, in the SLA's currency."""
        return money(self.monthly_charge * self.max_credit_percent / 100)


def load_sla(path: Path) -> tuple[str, AIInferenceSLASpec]:
    """The name and validated spec of the single AIInferenceSLA in `path`."""
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except OSError as err:
        raise ManifestError(path, [("file", err.strerror or str(err))]) from err
    except yaml.YAMLError as err:
        raise ManifestError(path, [("yaml", _yaml_reason(err))]) from err
    if len(docs) != 1 or not isinstance(docs[0], dict):
        reason = f"expected one {SLA.kind} object, found {len(docs)} YAML documents"
        raise ManifestError(path, [("document", reason)])
    doc: dict[str, Any] = docs[0]
    problems: list[tuple[str, str]] = []
    if doc.get("kind") != SLA.kind:
        problems.append(("kind", f"expected {SLA.kind}, got {doc.get('kind')!r}"))
    if doc.get("apiVersion") != API_VERSION:
        problems.append(("apiVersion", f"expected {API_VERSION}, got {doc.get('apiVersion')!r}"))
    metadata = doc.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str) or not name:
        problems.append(("metadata.name", "required"))
    if not isinstance(doc.get("spec"), dict):
        problems.append(("spec", "required, a mapping"))
    if problems:
        raise ManifestError(path, problems)
    try:
        spec = AIInferenceSLASpec.model_validate(doc["spec"])
    except ValidationError as err:
        raise ManifestError(path, _validation_problems("spec", err)) from err
    return str(name), spec


def load_offer(path: Path, name: str) -> AIInferenceOfferSpec:
    """The admitted spec of the AIInferenceOffer called `name` in `path` (price changes
    announced with too short a notice against its creationTimestamp left out, as the operator
    leaves them out)."""
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    except OSError as err:
        raise ManifestError(path, [("file", err.strerror or str(err))]) from err
    except yaml.YAMLError as err:
        raise ManifestError(path, [("yaml", _yaml_reason(err))]) from err
    found = [
        d
        for d in docs
        if d.get("kind") == OFFER.kind
        and isinstance(d.get("metadata"), dict)
        and d["metadata"].get("name") == name
    ]
    if len(found) != 1:
        reason = f"expected one AIInferenceOffer named {name!r} (the SLA's spec.offer)"
        raise ManifestError(path, [("document", f"{reason}, found {len(found)}")])
    try:
        return admitted_offer(found[0])
    except ValidationError as err:
        raise ManifestError(path, _validation_problems("spec", err)) from err


def load_tiers(path: Path) -> dict[str, InferenceTierSpec]:
    """InferenceTiers from a YAML file, as `aiconn.inference.placement.parse_tiers` reads them."""
    try:
        return parse_tiers(path.read_text())
    except OSError as err:
        raise ManifestError(path, [("file", err.strerror or str(err))]) from err
    except yaml.YAMLError as err:
        raise ManifestError(path, [("yaml", _yaml_reason(err))]) from err
    except ValidationError as err:
        raise ManifestError(path, _validation_problems("spec", err)) from err
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ManifestError(path, [("document", f"not an InferenceTier list: {err}")]) from err


@dataclass(frozen=True)
class MonthPrice:
    """What a month of an SLA costs at its price, and the most its credits can pay back."""

    monthly_charge: Decimal
    """monthlyCommitment tokens at the SLA's price, in its currency (`usage_charge`)."""
    max_credit_percent: Decimal
    """Both schedules' largest credits added, capped at capPercent."""

    @property
    def max_credit(self) -> Decimal:
        """The credit exposure: the most a month's credits can pay back, in the currency."""
        return money(self.monthly_charge * self.max_credit_percent / 100)


def price_month(spec: AIInferenceSLASpec) -> MonthPrice:
    """A month of the SLA, priced by the money rules settlement uses (`aiconn.sla.credits`)."""
    credits = spec.credits
    largest = sum(
        (
            max((Decimal(repr(t.credit_percent)) for t in schedule), default=Decimal(0))
            for schedule in (credits.availability, credits.latency)
        ),
        Decimal(0),
    )
    return MonthPrice(
        monthly_charge=usage_charge(
            spec.tokens.monthly_commitment, spec.tokens.price_per_million_tokens
        ),
        max_credit_percent=min(largest, Decimal(repr(credits.cap_percent))),
    )


@dataclass(frozen=True)
class PlanPrice:
    """What an SLA's committed tokens come to under its offer's token plan, for one plan period
    (`price_plan`)."""

    duration: str
    """The plan period's length (OpenSLO shorthand, e.g. 1M)."""
    period: Period
    """The plan period containing the quoted time; the fee and the overage price are those in
    force at its start, as its close charges them (`aiconn.sla.plans`)."""
    fee_per_period: Decimal
    """The plan fee for the period, rounded half-even to the micro-unit as the close posts it."""
    fee_version: int
    included_units: int
    """Units funded into the tenant's wallet for the period."""
    units_per_million_tokens: int
    """The plan's exchange rate for the SLA's model class."""
    committed_units: int
    """The SLA's monthly commitment in wallet units (`aiconn.sla.accounting.units`, rounded up)."""
    overage_mode: str
    overage_price_per_million_units: Decimal | None
    """PayPerUse only."""
    overage_version: int | None
    """PayPerUse only: the version the overage price was set by."""
    overage_units: int | None
    """Committed units beyond the included ones (HardStop: the gateway refuses them); None when
    the plan period is not one calendar month, so a month's commitment does not compare."""
    overage_charge: Decimal | None
    """What the overage units cost (HardStop: 0, they are not served), as the close charges
    them: units x price / 1e6, half-even to the micro-unit; None with overage_units."""

    @property
    def plan_charge(self) -> Decimal | None:
        """The fee plus the overage charge: what the tenant pays for the period (None when the
        overage does not compare)."""
        if self.overage_charge is None:
            return None
        return self.fee_per_period + self.overage_charge


def price_plan(
    offer: AIInferenceOfferSpec, model_class: str, monthly_tokens: int, at: datetime
) -> PlanPrice:
    """The offer's token plan for the period containing `at`, with the SLA's monthly commitment
    of `model_class` tokens in wallet units and what would be charged beyond the included units.

    The figures are this SLA's alone: a tenant's SLAs under one offer share one wallet."""
    plan = offer.plan
    period = period_containing(plan.window, at)
    priced, versions = plan_at(offer, period.start)
    rate = plan.units_per_million_tokens(model_class)
    committed = units(monthly_tokens, rate)
    pay_per_use = priced.overage.mode == "PayPerUse"
    price = versions.overage_price_per_million_units if pay_per_use else None
    monthly = parse_duration(plan.period)
    overage = charge = None
    if (monthly.count, monthly.unit) == (1, "M"):
        overage = max(0, committed - plan.included_tokens_per_period)
        charge = money(0)
        if price is not None:
            charge = from_micros(to_micros(Decimal(overage) * price / 1_000_000))
    return PlanPrice(
        duration=plan.period,
        period=period,
        fee_per_period=money(versions.fee_per_period),
        fee_version=versions.fee_version,
        included_units=plan.included_tokens_per_period,
        units_per_million_tokens=rate,
        committed_units=committed,
        overage_mode=priced.overage.mode,
        overage_price_per_million_units=price,
        overage_version=versions.overage_version if pay_per_use else None,
        overage_units=overage,
        overage_charge=charge,
    )


def plan_sla(
    name: str,
    spec: AIInferenceSLASpec,
    tiers: Mapping[str, InferenceTierSpec],
    *,
    plan_price: PlanPrice | None = None,
) -> Plan:
    """Place the SLA on `tiers` and price the month (`plan_price`: under its offer's plan)."""
    decision = plan(spec, tiers)
    tokens = spec.tokens
    month = price_month(spec)
    cost = None
    if decision.price_per_million_tokens is not None and decision.currency == tokens.currency:
        cost = usage_charge(tokens.monthly_commitment, decision.price_per_million_tokens)
    return Plan(
        name=name,
        spec=spec,
        decision=decision,
        monthly_charge=month.monthly_charge,
        max_credit_percent=month.max_credit_percent,
        monthly_cost=cost,
        plan_price=plan_price,
    )


def _percent(value: Decimal) -> str:
    # normalize() drops trailing zeros (50.0 -> 50); the f format keeps 1E+2 from showing.
    return f"{value.normalize():f}"


def _yaml_reason(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}"


def _validation_problems(root: str, err: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for error in err.errors():
        field = root
        for part in error["loc"]:
            field += f"[{part}]" if isinstance(part, int) else f".{part}"
        reason = error["msg"]
        if error["type"] not in ("missing", "extra_forbidden"):
            reason += f" (got {error['input']!r})"
        problems.append((field, reason))
    return problems


def render_text(report: Plan) -> str:
    """The plan as a sales engineer reads it."""
    spec, decision = report.spec, report.decision
    tokens = spec.tokens
    cur = tokens.currency
    lines = [
        f"SLA {report.name}: {spec.model.name} ({spec.model.parameters_billions:g}B "
        f"{spec.model.dtype}, max {spec.model.max_model_len} tokens)"
    ]
    if decision.placed:
        ttft, tpot = spec.objectives.ttft.threshold_ms, spec.objectives.tpot.threshold_ms
        tp = decision.tensor_parallel_size or 0
        capacity = spec.capacity
        site = f" at {decision.site}" if decision.site else ""
        lines += [
            f"  tier:            {decision.tier}{site}",
            f"  GPUs:            {tp} x {decision.gpu_type} per replica (tensor-parallel {tp});"
            f" {tp * capacity.replicas} at {capacity.replicas} replica(s),"
            f" {tp * capacity.max_replicas} at maxReplicas {capacity.max_replicas}",
            f"  TTFT estimate:   {decision.estimated_ttft_ms:g} ms ="
            f" {decision.network_rtt_ms:g} ms network + {decision.inference_ttft_ms:g} ms"
            f" inference (objective {ttft} ms, rttBudgetMs {spec.network.rtt_budget_ms})",
            f"  TPOT estimate:   {decision.estimated_tpot_ms:g} ms (objective {tpot} ms)",
        ]
        lines += _sizing_lines(report)
    else:
        lines.append("  tier:            none: no tier can serve this SLA")
    lines += [
        f"  monthly charge:  {report.monthly_charge:,.2f} {cur} "
        f"({tokens.monthly_commitment:,} tokens at {tokens.price_per_million_tokens:g} {cur}/1M)",
    ]
    if report.monthly_cost is not None:
        lines.append(
            f"  tier cost:       {report.monthly_cost:,.2f} {cur} "
            f"(at {decision.price_per_million_tokens:g} {cur}/1M), "
            f"margin {report.monthly_charge - report.monthly_cost:,.2f} {cur}"
        )
    lines.append(
        f"  credit exposure: at most {report.max_credit:,.2f} {cur} a month"
        f" ({_percent(report.max_credit_percent)} % of charges,"
        f" capPercent {spec.credits.cap_percent:g})"
    )
    if report.plan_price is not None:
        lines += _plan_lines(report.plan_price, cur)
    lines.append("  rejected:" if decision.rejected else "  rejected:        none")
    lines += [f"    {reason}" for _, reason in decision.rejected]
    return "\n".join(lines) + "\n"


def _plan_lines(priced: PlanPrice, cur: str) -> list[str]:
    lines = [
        f"  plan period:     {priced.period.start_iso} to {priced.period.end_iso}"
        f" ({priced.duration}): fee {priced.fee_per_period} {cur}"
        f" (price version {priced.fee_version})",
        f"  plan units:      {priced.committed_units:,} units for the commitment"
        f" ({priced.units_per_million_tokens:,} units/1M tokens),"
        f" {priced.included_units:,} included",
    ]
    over = f"  overage:         {priced.overage_mode}"
    if priced.overage_price_per_million_units is not None:
        over += (
            f" at {priced.overage_price_per_million_units} {cur}/1M units"
            f" (price version {priced.overage_version})"
        )
    if priced.overage_units is not None:
        over += f"; {priced.overage_units:,} units beyond: {priced.overage_charge} {cur}"
        over += f"; plan charge {priced.plan_charge} {cur}"
    return [*lines, over]


def _plan_json(priced: PlanPrice | None) -> dict[str, Any] | None:
    if priced is None:
        return None

    def text(value: Decimal | None) -> str | None:
        return None if value is None else str(value)

    return {
        "period": priced.duration,
        "periodStart": priced.period.start_iso,
        "periodEnd": priced.period.end_iso,
        "feePerPeriod": str(priced.fee_per_period),
        "feeVersion": priced.fee_version,
        "includedUnitsPerPeriod": priced.included_units,
        "unitsPerMillionTokens": priced.units_per_million_tokens,
        "monthlyUnits": priced.committed_units,
        "overageMode": priced.overage_mode,
        "overagePricePerMillionUnits": text(priced.overage_price_per_million_units),
        "overagePriceVersion": priced.overage_version,
        "overageUnits": priced.overage_units,
        "overageCharge": text(priced.overage_charge),
        "planCharge": text(priced.plan_charge),
    }


def _sizing_lines(report: Plan) -> list[str]:
    """The derivation of the replicas the contracted rate needs (`aiconn.inference.throughput`)."""
    sized = report.decision.throughput
    if not isinstance(sized, ReplicaThroughput):
        return [f"  rate sizing:     {sized}"] if sized else []
    spec = report.spec
    rate = spec.tokens.rate_limit
    capacity = spec.capacity
    gpus = f"{sized.tensor_parallel_size} x {report.decision.gpu_type}"
    derate = (
        f" x {physics.TENSOR_PARALLEL_EFFICIENCY:g} tensor-parallel"
        if sized.tensor_parallel_size > 1
        else ""
    )
    verdict = f"{sized.replicas} for {sized.contracted_tokens_per_second:,.0f} tokens/s"
    verdict += f" (spec: replicas {capacity.replicas}, maxReplicas {capacity.max_replicas})"
    lines = [
        f"  rate sizing:     contracted {rate.requests_per_second:g} req/s and"
        f" {rate.tokens_per_minute:,} tokens/min = {sized.contracted_tokens_per_second:,.0f}"
        f" tokens/s, {sized.tokens_per_request:,.0f} tokens a request",
        f"    one replica:   {gpus}: {sized.bandwidth_gb_per_s:,.0f} GB/s and"
        f" {sized.tflops:,.0f} TFLOPS counted on ({sized.peak_bandwidth_gb_per_s:,.0f} GB/s"
        f" x {physics.BANDWIDTH_EFFICIENCY:g}, {sized.peak_tflops:,.0f} TFLOPS"
        f" x {physics.COMPUTE_EFFICIENCY:g} peak{derate})",
        f"    KV cache:      {sized.kv_cache_gib:.1f} GiB beside weights and workspace ="
        f" {sized.batch_by_kv_cache:,} sequences of {sized.kv_per_sequence_mb:.1f} MB",
        f"    batch:         {sized.batch} sequences, limited by {sized.limited_by}"
        f" (KV cache holds {sized.batch_by_kv_cache:,}, TPOT {spec.objectives.tpot.threshold_ms}"
        f" ms allows {sized.batch_by_tpot:,}, max-num-seqs {physics.MAX_NUM_SEQS})",
        f"    decode step:   {sized.step_ms:.1f} ms = max({sized.step_memory_ms:.1f} ms reading"
        f" {sized.weights_gb:.1f} GB weights + {sized.batch} x {sized.kv_per_sequence_mb:.1f} MB"
        f" KV, {sized.step_compute_ms:.1f} ms computing) -> "
        f"{sized.decode_tokens_per_second:,.0f} tokens/s",
        f"    prefill:       {sized.prefill_tokens_per_second:,.0f} tokens/s"
        f" (2 x {spec.model.parameters_billions:g}B FLOPs a token)",
        f"    per replica:   {sized.replica_tokens_per_second:,.0f} tokens/s (the slower of"
        f" decode and prefill x {physics.TARGET_UTILIZATION:g} utilization)",
        f"    replicas:      {verdict}",
    ]
    if sized.replicas > capacity.max_replicas:
        lines.append(
            f"    shortfall:     maxReplicas {capacity.max_replicas} serve about"
            f" {sized.share_served(capacity.max_replicas) * 100:.0f} % of the contracted rate"
        )
    return lines


def _sizing_json(sized: ReplicaThroughput | str | None) -> dict[str, Any] | None:
    if sized is None:
        return None
    if isinstance(sized, str):
        return {"sized": False, "reason": sized}
    return {
        "sized": True,
        "contractedTokensPerSecond": round(sized.contracted_tokens_per_second, 1),
        "tokensPerRequest": round(sized.tokens_per_request, 1),
        "bandwidthGBps": round(sized.bandwidth_gb_per_s, 1),
        "tflops": round(sized.tflops, 1),
        "kvCacheGiB": round(sized.kv_cache_gib, 2),
        "batch": sized.batch,
        "batchByKvCache": sized.batch_by_kv_cache,
        "batchByTpot": sized.batch_by_tpot,
        "limitedBy": sized.limited_by,
        "decodeStepMs": round(sized.step_ms, 2),
        "decodeTokensPerSecond": round(sized.decode_tokens_per_second, 1),
        "prefillTokensPerSecond": round(sized.prefill_tokens_per_second, 1),
        "replicaTokensPerSecond": round(sized.replica_tokens_per_second, 1),
        "replicas": sized.replicas,
    }


def to_json(report: Plan) -> dict[str, Any]:
    """The plan as data; money as decimal strings, exact like the ledger."""
    decision = report.decision
    capacity = report.spec.capacity
    tp = decision.tensor_parallel_size
    return {
        "name": report.name,
        "model": report.spec.model.name,
        "placed": decision.placed,
        "message": decision.message,
        "tier": decision.tier,
        "site": decision.site,
        "gpu": decision.gpu_type,
        "tensorParallelSize": tp,
        "gpusPerReplica": decision.gpus_per_replica,
        "gpus": {"replicas": tp * capacity.replicas, "maxReplicas": tp * capacity.max_replicas}
        if tp is not None
        else None,
        "latency": {
            "ttftMs": decision.estimated_ttft_ms,
            "networkMs": decision.network_rtt_ms,
            "inferenceTtftMs": decision.inference_ttft_ms,
            "tpotMs": decision.estimated_tpot_ms,
            "ttftObjectiveMs": report.spec.objectives.ttft.threshold_ms,
            "tpotObjectiveMs": report.spec.objectives.tpot.threshold_ms,
            "rttBudgetMs": report.spec.network.rtt_budget_ms,
        },
        "rateSizing": _sizing_json(decision.throughput),
        "currency": report.spec.tokens.currency,
        "monthlyTokens": report.spec.tokens.monthly_commitment,
        "monthlyCharge": str(report.monthly_charge),
        "monthlyTierCost": None if report.monthly_cost is None else str(report.monthly_cost),
        "maxCreditPercent": _percent(report.max_credit_percent),
        "maxMonthlyCredit": str(report.max_credit),
        "plan": _plan_json(report.plan_price),
        "rejected": [{"tier": tier, "reason": reason} for tier, reason in decision.rejected],
    }
