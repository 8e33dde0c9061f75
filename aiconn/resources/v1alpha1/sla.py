"""The AIInferenceSLA resource: what an enterprise buys and what aiconn promises.

These models are the CRD's single source of truth (see `meta.py`). Bounds that a schema
cannot express (ordered credit tiers, maxReplicas >= replicas, guaranteed <= max bandwidth) are
CEL rules attached here, so the API server itself refuses bad input and names the field.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator

from aiconn.resources.v1alpha1.assurance import AssuranceStatus
from aiconn.resources.v1alpha1.meta import CamelModel, Condition, cel, validations, with_rules
from aiconn.resources.v1alpha1.names import DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN
from aiconn.resources.v1alpha1.slice import SD_PATTERN, AllowedSource, FiveQi, Sst

DTYPE_BYTES: dict[str, float] = {
    "bfloat16": 2.0,
    "float16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int4": 0.5,
}
Dtype = Literal["bfloat16", "float16", "fp8", "int8", "int4"]

MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/-]*$"
DURATION_PATTERN = r"^[1-9][0-9]{0,3}(m|h|d|w|M)$"
_DURATION = re.compile(DURATION_PATTERN)

Site = Annotated[
    str,
    Field(
        min_length=1,
        max_length=63,
        pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
        description="A site name; it becomes a node-selector label value, hence its bounds.",
    ),
]


class Architecture(CamelModel):
    """Transformer shape, for exact KV-cache sizing; without it placement estimates from size."""

    num_layers: int = Field(ge=1, le=1024)
    """Number of transformer layers."""
    num_kv_heads: int = Field(ge=1, le=1024)
    """Key/value heads per layer (grouped-query attention)."""
    head_dim: int = Field(ge=1, le=4096)
    """Dimension of one attention head."""


class ModelSpec(CamelModel):
    """The model served under this SLA."""

    name: str = Field(min_length=1, max_length=128, pattern=MODEL_NAME_PATTERN)
    """Model name clients send in requests (vLLM's --served-model-name)."""
    source: str = Field(pattern=r"^(hf|pvc|s3)://.+", max_length=1024)
    """Where the weights come from: hf://org/model, pvc://claim/path or s3://bucket/path."""
    parameters_billions: float = Field(gt=0, le=10000)
    """Parameters in billions; sizes the weights and the estimated latency."""
    dtype: Dtype = "bfloat16"
    """Weight precision: bfloat16, float16, fp8, int8 or int4."""
    max_model_len: int = Field(default=8192, ge=128, le=1048576)
    """Longest context (prompt + completion) in tokens; sizes the KV cache."""
    architecture: Architecture | None = None
    """Optional transformer shape for exact KV-cache sizing."""


class AvailabilityObjective(CamelModel):
    """Uptime as 1-minute timeslices: a minute is bad when down or more than 5 % of requests failed."""

    target_percent: float = Field(default=99.9, gt=0, lt=100)
    """Share of known minutes that must be good, in percent (0 and 100 exclusive)."""


class LatencyObjective(CamelModel):
    """A latency objective counted as occurrences: requests at or under the threshold."""

    threshold_ms: int = Field(ge=1, le=600000)
    """Latency threshold in milliseconds; added to the histogram buckets so the count is exact."""
    target_percent: float = Field(gt=0, lt=100)
    """Share of requests that must be at or under the threshold, in percent (0 and 100 exclusive)."""


class Window(CamelModel):
    """The SLA period: calendar-aligned (a month in UTC by default) or rolling."""

    duration: str = Field(default="1M", pattern=DURATION_PATTERN, max_length=5)
    """Period length in OpenSLO shorthand: m minutes, h hours, d days, w weeks, M calendar months."""
    calendar_aligned: bool = True
    """True: periods start at calendar boundaries in UTC and are settled when they close. False: rolling, reported only."""


class Objectives(CamelModel):
    """What is promised: availability, time to first token, time per output token."""

    availability: AvailabilityObjective = AvailabilityObjective()
    """Availability in 1-minute timeslices of the service, not of its worst replica. A minute is bad when no replica could serve for the whole minute, when more than 5 % of the in-contract requests all replicas served failed, or when Prometheus was scraping but the SLA had no endpoint at all (pods deleted, evicted, never scheduled). Only a minute in which Prometheus itself scraped nothing is unknown: counted neither way, it lowers the data coverage. Requests the customer caused (4xx, over-contract 429, 402) are never in-contract, so never failures. Under an offer with serviceHours only minutes in those hours are judged; minutes of a MaintenanceWindow announced at least the offer's maintenance.noticeMinutes in advance are excused (neither good, bad nor unknown), never retroactively."""
    ttft: LatencyObjective = LatencyObjective(threshold_ms=500, target_percent=99.0)
    """Time to first token objective, measured at the token gateway."""
    tpot: LatencyObjective = LatencyObjective(threshold_ms=100, target_percent=99.0)
    """Time per output token objective, measured at the token gateway."""
    window: Window = Window()
    """The period the objectives are evaluated and settled over."""


class NetworkSpec(CamelModel):
    """The network half: the slice that carries the tenant's traffic to the model."""

    model_config = with_rules(
        cel(
            "self.maxMbps >= self.guaranteedMbps",
            "maxMbps must be >= guaranteedMbps",
            ".maxMbps",
        ),
    )
    rtt_budget_ms: int = Field(ge=1, le=10000)
    """Largest network round trip the tenant accepts, in milliseconds."""
    sst: Sst = 1
    """S-NSSAI Slice/Service Type: 1 eMBB, 2 URLLC, 3 MIoT, 4 V2X, 5 HMTC; 128-255 operator-specific."""
    sd: str | None = Field(default=None, pattern=SD_PATTERN, max_length=6)
    """S-NSSAI Slice Differentiator, 6 hex digits."""
    five_qi: FiveQi = Field(default=9, alias="fiveQI")
    """5G QoS Identifier (TS 23.501 table 5.7.4-1)."""
    guaranteed_mbps: int = Field(default=0, ge=0, le=100000)
    """Guaranteed bandwidth in Mbit/s."""
    max_mbps: int = Field(default=100, ge=1, le=100000)
    """Maximum bandwidth in Mbit/s."""
    isolation: Literal["shared", "dedicated"] = "shared"
    """dedicated admits only allowedSources (and monitoring) to the inference pods."""
    allowed_sources: list[AllowedSource] = Field(default_factory=list, max_length=64)
    """Namespaces or IP blocks that may reach the model."""
    backend: Literal["kubernetes", "nsmf"] = "kubernetes"
    """How the slice is realized: kubernetes objects, or a 5G core's slice manager (TS 28.532)."""
    nsmf_url: str | None = Field(default=None, pattern=r"^https?://.+", max_length=2048)
    """Slice manager MnS root, for backend nsmf."""


class PlacementSpec(CamelModel):
    """Where the model may run."""

    tier: Literal["auto", "edge", "regional", "cloud"] = "auto"
    """auto lets aiconn pick the cheapest tier that meets the objectives; otherwise that tier only."""
    sites: list[Site] = Field(default_factory=list, max_length=64)
    """Acceptable sites; empty means any site of the tier."""
    data_residency: str | None = Field(default=None, pattern=r"^([A-Z]{2}|EU)$", max_length=2)
    """Jurisdiction the data must stay in (ISO 3166 alpha-2, or EU); the tier must list it in regions."""


class CapacitySpec(CamelModel):
    """Replicas of the inference deployment."""

    model_config = with_rules(
        cel(
            "self.maxReplicas >= self.replicas",
            "maxReplicas must be >= replicas",
            ".maxReplicas",
        )
    )
    replicas: int = Field(default=1, ge=1, le=64)
    """Replicas to run."""
    max_replicas: int = Field(default=1, ge=1, le=256)
    """Most replicas an autoscaler may run."""


class RateLimit(CamelModel):
    """Contracted rate; the gateway answers 429 beyond it and counts those requests as outside the SLA."""

    requests_per_second: float = Field(default=50, gt=0, le=100000)
    """Sustained requests per second (token bucket, burst of one second)."""
    tokens_per_minute: int = Field(default=1_000_000, ge=1, le=1_000_000_000)
    """Prompt plus completion tokens per minute."""


class TokensSpec(CamelModel):
    """What the tenant buys."""

    monthly_commitment: int = Field(default=100_000_000, ge=0, le=10**15)
    """Tokens bought per period; the gateway answers 402 once they are spent."""
    price_per_million_tokens: float = Field(default=0.5, ge=0, le=1_000_000)
    """Price of one million tokens in the currency below."""
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$", max_length=3)
    """ISO 4217 currency code."""
    rate_limit: RateLimit = RateLimit()
    """Contracted request and token rates."""


class CreditTier(CamelModel):
    """Attainment strictly below belowPercent earns creditPercent of the period's charges."""

    below_percent: float = Field(gt=0, le=100)
    """Attainment threshold in percent (half-open: attainment < belowPercent)."""
    credit_percent: float = Field(gt=0, le=100)
    """Credit as a percentage of the period's token charges."""


def _ordered_tiers(field: str) -> dict[str, str]:
    # Kubernetes CEL iterates elements, not indexes: sortedness plus uniqueness is "strict".
    return cel(
        "self.map(t, -t.belowPercent).isSorted()"
        " && self.all(a, self.exists_one(b, b.belowPercent == a.belowPercent))"
        " && self.map(t, t.creditPercent).isSorted()"
        " && self.all(a, self.exists_one(b, b.creditPercent == a.creditPercent))",
        f"{field} must list tiers with strictly decreasing belowPercent"
        " and strictly increasing creditPercent",
    )


BEDROCK_SCHEDULE = (
    CreditTier(below_percent=99.9, credit_percent=10),
    CreditTier(below_percent=99.0, credit_percent=25),
    CreditTier(below_percent=95.0, credit_percent=100),
)
LATENCY_SCHEDULE = (
    CreditTier(below_percent=99.0, credit_percent=5),
    CreditTier(below_percent=95.0, credit_percent=10),
    CreditTier(below_percent=90.0, credit_percent=25),
)


class CreditsSpec(CamelModel):
    """What the tenant gets back when an objective is missed, as % of the period's token charges."""

    availability: list[CreditTier] = Field(
        default_factory=lambda: list(BEDROCK_SCHEDULE),
        max_length=10,
        json_schema_extra=validations(_ordered_tiers("availability")),
    )
    """Availability schedule: the lowest tier whose belowPercent exceeds the attainment applies."""
    latency: list[CreditTier] = Field(
        default_factory=lambda: list(LATENCY_SCHEDULE),
        max_length=10,
        json_schema_extra=validations(_ordered_tiers("latency")),
    )
    """Latency schedule, applied to the worse of TTFT and TPOT attainment."""
    cap_percent: float = Field(default=100, gt=0, le=100)
    """Total credits of a period never exceed this share of its charges."""


def derived_schedules(objectives: Objectives) -> dict[str, list[dict[str, float]]]:
    """Default credit schedules from the targets, so that meeting them never earns a credit.

    With b = 100 - target: availability tiers below the target (10 %), 100 - 10b (25 %) and
    100 - 50b (100 %); latency, from the stricter of the TTFT and TPOT targets, below the target
    (5 %), 100 - 5b (10 %) and 100 - 10b (25 %). Tiers at or under 0 are left out. The default
    targets give the published schedules (99.9/99/95 and 99/95/90).
    """
    latency_target = min(objectives.ttft.target_percent, objectives.tpot.target_percent)

    def tiers(target: float, steps: tuple[tuple[int, float], ...]) -> list[dict[str, float]]:
        budget = 100 - Decimal(repr(target))
        below = [(float(100 - budget * k), credit) for k, credit in steps]
        return [{"below_percent": b, "credit_percent": c} for b, c in below if b > 0]

    return {
        "availability": tiers(
            objectives.availability.target_percent, ((1, 10), (10, 25), (50, 100))
        ),
        "latency": tiers(latency_target, ((1, 5), (5, 10), (10, 25))),
    }


def _first_tier_within(schedule: str, targets: str) -> dict[str, str]:
    # A first tier above the target would pay a credit to an SLA reported Compliant.
    return cel(
        f"!has(self.credits) || !has(self.credits.{schedule})"
        f" || size(self.credits.{schedule}) == 0"
        f" || ({targets}).all(t, self.credits.{schedule}[0].belowPercent <= t)",
        f"credits.{schedule}[0].belowPercent must be at or below the target percent of"
        f" {schedule} objectives, or a compliant SLA would earn a credit",
        f".credits.{schedule}",
    )


class AIInferenceSLASpec(CamelModel):
    """An inference service with guaranteed latency and uptime, paid back in tokens when missed."""

    model_config = with_rules(
        # Under an offer the slice manager is the offer's (a tenant may not name one).
        cel(
            "has(self.offer) || !has(self.network) || !has(self.network.backend)"
            " || self.network.backend != 'nsmf' || has(self.network.nsmfUrl)",
            "backend nsmf needs nsmfUrl, the slice manager's MnS root, or an offer naming one",
            ".network.nsmfUrl",
        ),
        _first_tier_within("availability", "[self.objectives.availability.targetPercent]"),
        _first_tier_within(
            "latency",
            "[self.objectives.ttft.targetPercent, self.objectives.tpot.targetPercent]",
        ),
    )

    tenant: str | None = Field(default=None, max_length=63, pattern=DNS_LABEL_PATTERN)
    """Tenant that owns the SLA and its wallet; defaults to the namespace."""
    offer: str | None = Field(default=None, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)
    """AIInferenceOffer (cluster-scoped, the provider's) this SLA buys under: prices, plan, credits, rate ceilings, slice profiles and tiers come from it; see aiconn.sla.offer."""
    model: ModelSpec
    """The model to serve."""
    objectives: Objectives = Objectives()
    """Availability and latency objectives and their period."""
    network: NetworkSpec
    """Network slice requirements."""
    placement: PlacementSpec = PlacementSpec()
    """Tier, sites and data residency."""
    capacity: CapacitySpec = CapacitySpec()
    """Replicas."""
    tokens: TokensSpec = TokensSpec()
    """Token commitment, price and contracted rate."""
    credits: CreditsSpec = Field(default_factory=CreditsSpec)
    """Credit schedules and cap. Under an offer they are the offer's; otherwise a schedule left out is derived from the targets: tiers below the target and below 10x and 50x its error budget for availability (10/25/100 %), 5x and 10x for latency (5/10/25 %); a first tier above its target is refused."""

    @model_validator(mode="before")
    @classmethod
    def _schedules_from_targets(cls, data: Any) -> Any:
        """Fill the schedules not written from the objectives (`derived_schedules`). An SLA that
        names an offer gets the offer's schedules instead (`aiconn.sla.offer.effective_spec`), so
        nothing is filled in: a filled-in schedule would read as one the tenant wrote."""
        if not isinstance(data, dict) or data.get("offer"):
            return data
        raw = data.get("credits") or {}
        if isinstance(raw, CreditsSpec):
            raw = raw.model_dump(exclude_unset=True)
        if not isinstance(raw, dict) or {"availability", "latency"} <= raw.keys():
            return data
        try:
            objectives = Objectives.model_validate(data.get("objectives") or {})
        except ValidationError:
            return data  # reported by the validation proper
        return {**data, "credits": {**derived_schedules(objectives), **raw}}


class RejectedTier(CamelModel):
    """A tier placement did not choose, and why."""

    tier: str
    """Tier name."""
    reason: str
    """One line: why this tier cannot serve the SLA."""


class PlacementStatus(CamelModel):
    """The placement decision."""

    tier: str | None = None
    """Chosen InferenceTier."""
    site: str | None = None
    """Chosen site within the tier."""
    gpu: str | None = None
    """GPU type on the chosen tier."""
    gpus_per_replica: int | None = None
    """GPUs each replica requests (equals the tensor-parallel size)."""
    tensor_parallel_size: int | None = None
    """vLLM --tensor-parallel-size."""
    estimated_ttft_ms: float | None = None
    """Estimated time to first token at the customer: network RTT plus inference."""
    rejected: list[RejectedTier] = Field(default_factory=list)
    """Tiers not chosen, each with its reason."""


class ChildRefs(CamelModel):
    """Names of the objects this SLA owns."""

    network_slice: str | None = None
    """NetworkSlice name."""
    deployment: str | None = None
    """vLLM Deployment name."""
    service: str | None = None
    """Service name (the token gateway's port)."""
    pod_disruption_budget: str | None = None
    """PodDisruptionBudget name, when replicas >= 2."""
    api_key_secret: str | None = None
    """Secret holding the tenant's API keys."""
    service_account: str | None = None
    """ServiceAccount the inference pods run as; a Role and RoleBinding of the same name let it read the namespace's SLAs, which is what the reporting API's wallet check asks."""


def decimal_amount(amount: Decimal) -> str:
    """Money as every status writes it: an exact decimal string to the micro-unit of the
    currency, e.g. `0.018267` (the API's and the ledger's form); never a float on the way."""
    return f"{amount:.6f}"


def amounts_as_written(data: Any, keys: tuple[str, ...]) -> Any:
    """`data` with the amounts under `keys` that an earlier version wrote as numbers read as the
    exact decimal they were written as, so those SLAs stay readable until the operator writes
    the amounts again (as strings)."""
    if not isinstance(data, dict):
        return data
    fixed = dict(data)
    for key in keys:
        value = fixed.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            fixed[key] = decimal_amount(Decimal(repr(value)))
    return fixed


class PeriodStatus(CamelModel):
    """Measurements of the current period, from Prometheus."""

    start: str | None = None
    """Period start (RFC 3339, UTC)."""
    end: str | None = None
    """Period end (RFC 3339, UTC), exclusive."""
    availability_percent: float | None = None
    """Good minutes over known minutes, in percent."""
    ttft_attainment_percent: float | None = None
    """Requests with time to first token at or under the threshold, in percent (gateway)."""
    tpot_attainment_percent: float | None = None
    """Requests with time per output token at or under the threshold, in percent (gateway)."""
    inference_ttft_attainment_percent: float | None = None
    """The same TTFT attainment as vLLM measures it inside the engine (the inference part)."""
    budget_remaining_percent: float | None = None
    """Availability error budget left, in percent (negative when overspent)."""
    burn_rates: dict[str, float | None] | None = None
    """Availability error-budget burn rates (1 = on budget) by trailing window, named w + its length: w5m, w30m, w1h, w2h, w6h, w1d and w3d for a monthly SLA. Other SLA windows scale these windows by their length over 30 days (a 1-day SLA: w1m, w2m, w4m, w12m, w48m, w2h24m), rounded to whole minutes, at least one; null when a window has no known minute."""
    alerts: list[str] = Field(default_factory=list)
    """Multi-window burn-rate alerts firing now, named severity and long window: page-1h, page-6h, ticket-1d, ticket-3d for a monthly SLA (a 1-day SLA: page-2m, page-12m, ticket-48m, ticket-2h24m)."""
    coverage_percent: float | None = None
    """Minutes with data over minutes judged so far, in percent."""
    judged_minutes: int | None = None
    """Minutes elapsed that the availability objective covers: in force, in service hours, not excused."""
    excused_minutes: int | None = None
    """Minutes elapsed in service hours excused by maintenance announced in advance."""
    tokens_used: int | None = None
    """Prompt plus completion tokens metered this period."""
    charges: str | None = None
    """Token charges accrued this period, an exact decimal amount, e.g. 0.018267."""
    credits_accrued: str | None = None
    """Credits the period would pay if it closed now, an exact decimal amount."""
    evaluated_at: str | None = None
    """When this was computed (RFC 3339)."""

    @model_validator(mode="before")
    @classmethod
    def _amounts_written_as_numbers(cls, data: Any) -> Any:
        """Statuses written before amounts became strings hold numbers (see `amounts_as_written`)."""
        return amounts_as_written(data, ("charges", "creditsAccrued", "credits_accrued"))


class SettlementStatus(CamelModel):
    """The last settled period."""

    period_start: str | None = None
    """Start of the settled period."""
    period_end: str | None = None
    """End of the settled period."""
    state: str | None = None
    """Settled, or HeldForReview when data coverage was below the floor."""
    currency: str | None = None
    """Currency of the amounts, e.g. EUR."""
    charges: str | None = None
    """Token charges of the period, an exact decimal amount, e.g. 0.018267."""
    credits: str | None = None
    """Credits paid back to the tenant, an exact decimal amount."""
    charges_micros: int | None = None
    """Token charges in millionths of the currency, as the ledger holds them."""
    credits_micros: int | None = None
    """Credits in millionths of the currency, as the ledger holds them."""
    credit_percent: str | None = None
    """Share of the charges paid back, as settled."""
    availability_percent: str | None = None
    """Availability of the period as settled (rounded to 0.01), not the last live figure."""
    ttft_attainment_percent: str | None = None
    """TTFT attainment of the period as settled (rounded to 0.01)."""
    tpot_attainment_percent: str | None = None
    """TPOT attainment of the period as settled (rounded to 0.01)."""
    coverage_percent: str | None = None
    """Share of the period's judged minutes that had data (rounded to 0.01)."""
    judged_minutes: int | None = None
    """Minutes of the period the availability objective covered (in force, in service hours, not excused)."""
    excused_minutes: int | None = None
    """Minutes of the period excused by maintenance announced in advance."""
    hold_reason: str | None = None
    """Why the period is held for review; absent when it settled."""
    transfer_ids: list[str] = Field(default_factory=list)
    """Ledger transfers of this settlement."""

    @model_validator(mode="before")
    @classmethod
    def _amounts_written_as_numbers(cls, data: Any) -> Any:
        """Statuses written before amounts became strings hold numbers (see `amounts_as_written`)."""
        return amounts_as_written(data, ("charges", "credits"))


class SummaryStatus(CamelModel):
    """The current period's figures as people read them (what `kubectl get aisla` prints)."""

    availability: str | None = None
    """Availability this period, rounded, e.g. 99.95%."""
    budget: str | None = None
    """Error budget remaining, rounded, e.g. -12.5%."""
    credits: str | None = None
    """Credits accrued this period with the currency, e.g. 12.35 EUR."""
    compliant: str | None = None
    """Yes, No or Unknown: the Compliant condition in a word."""


class PendingStatus(CamelModel):
    """A spec edit that could not be carried out; the previous generation stays in force."""

    generation: int | None = None
    """The spec generation waiting to be placed."""
    reason: str | None = None
    """One CamelCase word: why it waits."""
    message: str | None = None
    """A sentence: why it waits."""


class AIInferenceSLAStatus(CamelModel):
    """What aiconn did with the SLA and how the SLA is doing."""

    observed_generation: int | None = None
    """The spec generation last reconciled."""
    phase: str | None = None
    """Provisioning, Ready, AtRisk, Breached, Degraded, Unplaceable, Failed or Invalid."""
    conditions: list[Condition] = Field(default_factory=list)
    """Ready, Placed, SliceReady, InferenceReady, Compliant."""
    placement: PlacementStatus | None = None
    """The placement decision."""
    children: ChildRefs | None = None
    """Owned objects."""
    endpoint: str | None = None
    """URL clients call (the token gateway in front of vLLM)."""
    period: PeriodStatus | None = None
    """The current period's measurements."""
    last_settlement: SettlementStatus | None = None
    """The last settled period."""
    summary: SummaryStatus | None = None
    """Rounded figures and compliance in words, for the printed table."""
    in_force_generation: int | None = None
    """The spec generation the running children carry out."""
    pending: PendingStatus | None = None
    """An edit not carried out yet (absent when the spec in force is the latest)."""
    assurance: AssuranceStatus | None = None
    """The closed assurance loop: goals, fulfilment, placement history and actions."""
