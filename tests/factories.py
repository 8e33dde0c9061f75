"""Named constructors for the records tests build by hand: one place that knows every field.

A test names only the fields its claim is about; the rest take the values of a quiet period
(nothing unmeasured that matters, no burn, no alerts, no credit). Changing a record's shape is then
one edit here, not one per test file.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
from numpy.typing import NDArray

from aiconn.devstack.prometheus import ScrapeTarget
from aiconn.gateway.settings import GatewaySettings
from aiconn.inference.placement import PlacementDecision, default_tiers, plan
from aiconn.inference.workload import SliceAttachment, deployment
from aiconn.operator.evaluation import SLARef
from aiconn.resources.v1alpha1.meta import API_VERSION
from aiconn.resources.v1alpha1.offer import AIInferenceOfferSpec
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec
from aiconn.sla.accounting import REVENUE, TOKENS, Settlement, TransferSpec
from aiconn.sla.credits import CreditBreakdown, usage_charge
from aiconn.sla.evaluate import FleetSeries, SLAEvaluation
from aiconn.sla.periods import Period
from aiconn.sla.settlement import settle_period
from aiconn.sla.sli import Occurrences, occurrences_from_buckets
from aiconn.store.ledger import Ledger

LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)
"""A creation time before every period a test measures: the SLA is in force throughout."""
NO_CREDIT = CreditBreakdown(Decimal(0), Decimal(0), Decimal(0), Decimal(0))
JAN_2025 = Period(start=datetime(2025, 1, 1, tzinfo=UTC), end=datetime(2025, 2, 1, tzinfo=UTC))
TIER_SAMPLES = [
    ("sla-edge-urllc.yaml", "edge"),
    ("sla-regional-eu-70b.yaml", "regional"),
    ("sla-cloud-405b.yaml", "cloud"),
]
"""A shipped sample SLA (`manifests/samples`) of each tier, with the tier it is placed on."""


def small_sla_doc(**fields: Any) -> dict[str, Any]:
    """An SLA spec as a manifest writes it, for a small model `m` (8B) with a 20 ms round-trip
    budget; `fields` adds or replaces top-level spec fields (objectives, tokens, network...)."""
    return {
        "model": {"name": "m", "source": "hf://org/m", "parametersBillions": 8},
        "network": {"rttBudgetMs": 20},
        **fields,
    }


def small_sla_spec(**fields: Any) -> AIInferenceSLASpec:
    """`small_sla_doc(**fields)`, validated."""
    return AIInferenceSLASpec.model_validate(small_sla_doc(**fields))


def sla_manifest(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """An AIInferenceSLA named `name` with `spec`, as a test creates it."""
    return _manifest("AIInferenceSLA", name, spec)


def offer_manifest(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """An AIInferenceOffer named `name` with `spec`, as a test creates it."""
    return _manifest("AIInferenceOffer", name, spec)


def small_offer_spec(model: str, *, included_tokens: int, **fields: Any) -> dict[str, Any]:
    """An offer's spec with one class, small, holding `model` at 2 per million tokens, a plan
    including `included_tokens` a period, one eMBB slice profile, on edge only; `fields` adds
    spec fields (price changes...)."""
    small = {"name": "small", "models": [{"name": model}], "pricePerMillionTokens": 2}
    return {
        "modelClasses": [small],
        "plan": {"includedTokensPerPeriod": included_tokens},
        "sliceProfiles": [{"name": "embb", "sst": 1, "fiveQI": 9}],
        "allowedTiers": ["edge"],
        **fields,
    }


def bundle_offer() -> dict[str, Any]:
    """Offer `bundle` as the API server lists it: `small_offer_spec` for model `m`, 1000 tokens
    included a period."""
    return {"metadata": {"name": "bundle"}, "spec": small_offer_spec("m", included_tokens=1000)}


def price_raised_in_a_day(name: str) -> dict[str, Any]:
    """An offer (default notice: 30 days) whose version 2 raises the small class's price a day
    from now: a change announced with too short a notice."""
    soon = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:00Z")
    raised = {
        "version": 2,
        "effectiveFrom": soon,
        "prices": [{"modelClass": "small", "pricePerMillionTokens": 3}],
    }
    return offer_manifest(
        name, small_offer_spec("tiny-chat", included_tokens=1_000_000, priceChanges=[raised])
    )


def _manifest(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec}


def tiny_sla_manifest(
    name: str, objectives: dict[str, Any], *, model: str = "tiny-llama", **tokens: Any
) -> dict[str, Any]:
    """An SLA `name` of tenant acme for the tiny test model (served as `model`), with
    `objectives`, a 50 ms RTT budget and 1000 per million tokens; `tokens` adds token terms."""
    return sla_manifest(
        name,
        {
            "tenant": "acme",
            "model": {"name": model, "source": "hf://aiconn/tiny", "parametersBillions": 1},
            "objectives": objectives,
            "network": {"rttBudgetMs": 50},
            "tokens": {"pricePerMillionTokens": 1000, **tokens},
        },
    )


def llama_model_classes(small: float, large: float) -> list[dict[str, Any]]:
    """An offer's two model classes: `small` (Llama 3 8B) and `large` (Llama 3 70B), at these
    prices per million tokens."""
    return [
        {
            "name": "small",
            "models": [{"name": "llama-3-8b", "parametersBillions": 8}],
            "pricePerMillionTokens": small,
        },
        {
            "name": "large",
            "models": [{"name": "llama-3-70b", "parametersBillions": 70}],
            "pricePerMillionTokens": large,
        },
    ]


def sla_gateway_settings(
    name: str, namespace: str, *, ttft_threshold_ms: int = 5000, **where: Any
) -> GatewaySettings:
    """The gateway of SLA `name` in `namespace`: TPOT threshold 1 s, 100 requests/s; `where`
    names its model, upstream and keys_dir."""
    fixed = {"tpot_threshold_ms": 1000, "rate_rps": 100}
    return GatewaySettings(
        sla=name, namespace=namespace, ttft_threshold_ms=ttft_threshold_ms, **fixed, **where
    )


def sla_pod_targets(
    namespace: str, name: str, gateway_metrics_url: str, vllm_url: str | None = None
) -> list[ScrapeTarget]:
    """What Prometheus scrapes as the SLA's pod `name-0`: its gateway, and vLLM when given."""
    pod = {"namespace": namespace, "sla": name, "pod": f"{name}-0"}
    urls = {"aiconn-gateway": gateway_metrics_url, "vllm": vllm_url}
    return [
        ScrapeTarget(job, url.removeprefix("http://"), pod)
        for job, url in urls.items()
        if url is not None
    ]


def availability_credit(amount: str | int = 0, *, percent: int = 10) -> CreditBreakdown:
    """An availability credit of `percent` (latency 0) worth `amount` in the contract currency."""
    return CreditBreakdown(Decimal(percent), Decimal(0), Decimal(percent), Decimal(amount))


def sla_evaluation(
    *,
    minutes: int,
    good_minutes: int,
    bad_minutes: int,
    availability_percent: float | None,
    tokens_used: int,
    price_per_million_tokens: Decimal,
    charges: Decimal,
    coverage_percent: float | None = 100.0,
    ttft_attainment_percent: float | None = None,
    tpot_attainment_percent: float | None = None,
    budget_remaining_percent: float | None = None,
    burn_rates: dict[str, float | None] | None = None,
    alerts: tuple[str, ...] = (),
    credit: CreditBreakdown = NO_CREDIT,
    **rest: Any,
) -> SLAEvaluation:
    """An `SLAEvaluation` as `evaluate_fleet` would return it, exact latency, no inference TTFT."""
    return SLAEvaluation(
        minutes=minutes,
        good_minutes=good_minutes,
        bad_minutes=bad_minutes,
        availability_percent=availability_percent,
        coverage_percent=coverage_percent,
        ttft_attainment_percent=ttft_attainment_percent,
        ttft_exact=rest.pop("ttft_exact", True),
        tpot_attainment_percent=tpot_attainment_percent,
        tpot_exact=rest.pop("tpot_exact", True),
        inference_ttft_attainment_percent=rest.pop("inference_ttft_attainment_percent", None),
        budget_remaining_percent=budget_remaining_percent,
        burn_rates={} if burn_rates is None else burn_rates,
        alerts=alerts,
        tokens_used=tokens_used,
        price_per_million_tokens=price_per_million_tokens,
        charges=charges,
        credit=credit,
        **rest,
    )


def fully_available(
    tokens: int, *, minutes: int = 44640, price: Decimal = Decimal(0), **rest: Any
) -> SLAEvaluation:
    """A period of `minutes` (31 days unless given), every measured minute good, that used
    `tokens` charged at `price` the way the evaluation charges usage (`usage_charge`; free unless
    given, so a token plan's lines stand alone) and owes no credit; `rest` adds or replaces
    fields (a period measured in part: `good_minutes`, `coverage_percent`)."""
    good: dict[str, Any] = {
        "minutes": minutes,
        "good_minutes": minutes,
        "bad_minutes": 0,
        "availability_percent": 100.0,
        "budget_remaining_percent": 100.0,
    }
    return sla_evaluation(
        tokens_used=tokens,
        price_per_million_tokens=price,
        charges=usage_charge(tokens, price),
        **(good | rest),
    )


def month_evaluation(
    *,
    coverage: float = 100.0,
    credit_amount: str = "0.5",
    tokens: int = 10_000_000,
    charges: Decimal = Decimal("5"),
    **rest: Any,
) -> SLAEvaluation:
    """A 31-day month at 99.69 % availability (0.5 per million tokens) whose 10 % credit is
    `credit_amount`."""
    return sla_evaluation(
        minutes=44640,
        good_minutes=44500,
        bad_minutes=140,
        availability_percent=99.69,
        coverage_percent=coverage,
        ttft_attainment_percent=99.5,
        tpot_attainment_percent=99.5,
        budget_remaining_percent=-213.0,
        tokens_used=tokens,
        price_per_million_tokens=Decimal("0.5"),
        charges=charges,
        credit=availability_credit(credit_amount),
        **rest,
    )


def availability_series(
    up: NDArray[np.floating], *, tokens: int = 0, lookback_minutes: int = 0
) -> FleetSeries:
    """One SLA's series with only availability measured: `up` (1 x minutes), no request in
    contract, no latency observed, `tokens` metered."""
    minutes = up.shape[1]
    none = Occurrences(good=np.zeros(1), total=np.zeros(1), exact=np.ones(1, dtype=bool))
    return FleetSeries(
        in_contract=np.zeros((1, minutes)),
        failed=np.zeros((1, minutes)),
        up=up,
        ttft=none,
        tpot=none,
        tokens=np.array([tokens], dtype=np.int64),
        lookback_minutes=lookback_minutes,
    )


def latency_from_buckets(buckets: Mapping[float, float], threshold: float) -> Occurrences:
    """One SLA's occurrences from `{le: cumulative count}`, including `math.inf` for the total,
    through `occurrences_from_buckets` (the fleet's path)."""
    if math.inf not in buckets:
        raise ValueError("buckets must include the +Inf bucket (the request count)")
    finite = sorted((le, count) for le, count in buckets.items() if math.isfinite(le))
    bounds = [le for le, _ in finite] or [math.nan]
    counts = [count for _, count in finite] or [0.0]
    return occurrences_from_buckets(
        bounds=[bounds], counts=[counts], totals=[buckets[math.inf]], thresholds=[threshold]
    )


def usage_transfer(amount: int = 10, **fields: Any) -> TransferSpec:
    """A transfer of `amount` tokens of usage from acme's wallet to revenue, for SLA `chat`
    (uid `uid-1`) in January 2025; `fields` replace any other field (`kind`, `debit_account`...)."""
    usage: dict[str, Any] = {
        "debit_account": "wallet:acme",
        "credit_account": REVENUE,
        "unit": TOKENS,
        "kind": "usage",
        "sla_uid": "uid-1",
        "sla_namespace": "acme",
        "sla_name": "chat",
        "period": JAN_2025,
    }
    return TransferSpec(amount=amount, **(usage | fields))


def sla_ref(
    name: str,
    spec: AIInferenceSLASpec,
    *,
    namespace: str = "acme",
    created: datetime = LONG_AGO,
    offer: AIInferenceOfferSpec | None = None,
    status: dict[str, Any] | None = None,
    uid: str | None = None,
) -> SLARef:
    """One SLA as the evaluation sees it; a fresh uid unless one is given."""
    return SLARef(
        uid=str(uuid.uuid4()) if uid is None else uid,
        namespace=namespace,
        name=name,
        created=created,
        spec=spec,
        status={} if status is None else status,
        offer=offer,
    )


def settle(
    ledger: Ledger,
    *,
    period: Period,
    result: SLAEvaluation,
    sla_uid: str = "uid",
    namespace: str = "acme",
    name: str = "chat",
    tenant: str | None = None,
    coverage_floor_percent: float = 90.0,
    **options: Any,
) -> Settlement:
    """`settle_period` for one SLA named only as far as the claim needs: `chat` in `acme`, its
    wallet the namespace's own (`tenant` None), a 90 % coverage floor; `options` pass through."""
    return settle_period(
        ledger,
        sla_uid=sla_uid,
        namespace=namespace,
        name=name,
        tenant=namespace if tenant is None else tenant,
        period=period,
        outcome=result.outcome(),
        coverage_floor_percent=coverage_floor_percent,
        **options,
    )


def settle_ref(
    ledger: Ledger, sla: SLARef, *, period: Period, result: SLAEvaluation, **options: Any
) -> Settlement:
    """`settle` for an `SLARef`: its uid, namespace, name and tenant, as the evaluation settles."""
    named = {"sla_uid": sla.uid, "namespace": sla.namespace, "name": sla.name}
    return settle(ledger, period=period, result=result, tenant=sla.tenant, **named, **options)


def llama_8b_spec(
    *, source: str = "hf://meta-llama/Meta-Llama-3-8B-Instruct", dtype: str = "bfloat16", **kw: Any
) -> AIInferenceSLASpec:
    """An SLA for Llama 3 8B with TTFT and TPOT objectives; `kw` adds or replaces spec fields."""
    return AIInferenceSLASpec.model_validate(
        {
            "model": {
                "name": "llama-3-8b",
                "source": source,
                "parametersBillions": 8,
                "dtype": dtype,
                "maxModelLen": 4096,
            },
            "objectives": {
                "ttft": {"thresholdMs": 300, "targetPercent": 99},
                "tpot": {"thresholdMs": 45, "targetPercent": 99},
            },
            "network": {"rttBudgetMs": 20},
            **kw,
        }
    )


def factory_deployment(
    namespace: str,
    spec: AIInferenceSLASpec | None = None,
    *,
    owner: dict[str, Any],
    decision: PlacementDecision | None = None,
    attachment: SliceAttachment | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The vLLM Deployment the operator renders for SLA `factory` in `namespace` (its API keys in
    Secret `factory-keys`): `spec` (`llama_8b_spec()` unless given) as the default tiers place
    it unless `decision` says otherwise, no slice attachment unless given; `extra` passes on."""
    spec = llama_8b_spec() if spec is None else spec
    if decision is None:
        decision = plan(spec, default_tiers())
        assert decision.placed, decision.message
    return deployment(
        sla_name="factory",
        namespace=namespace,
        spec=spec,
        decision=decision,
        attachment=SliceAttachment() if attachment is None else attachment,
        owner=owner,
        api_key_secret="factory-keys",
        **extra,
    )
