"""What the API answers: the public shape of every response, documented in the OpenAPI schema.

Names are camelCase like the custom resource they describe. Money is a decimal string in the
SLA's currency next to the ledger's integer micro-units, so a report can be checked against the
ledger to the micro-unit without a float in between.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

Compliance = Literal["True", "False", "Unknown"]


class ApiModel(BaseModel):
    """camelCase on the wire."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, use_attribute_docstrings=True
    )


class Problem(ApiModel):
    """An error a client can act on."""

    detail: str
    """What was wrong and what would be accepted."""


class SLASummary(ApiModel):
    """An SLA and how its current period is doing."""

    namespace: str
    name: str
    tenant: str
    model: str
    """Served model name."""
    tier: str | None
    site: str | None
    phase: str | None
    compliant: Compliance
    """The SLA's Compliant condition."""
    availability_percent: float | None
    ttft_attainment_percent: float | None
    tpot_attainment_percent: float | None
    budget_remaining_percent: float | None
    coverage_percent: float | None
    alerts: list[str]
    """Burn-rate alerts firing now."""
    credits_accrued: Decimal | None
    """Credits the current period would pay if it closed now, in `currency`."""
    currency: str
    evaluated_at: str | None


class SLAList(ApiModel):
    """The SLAs of one namespace."""

    namespace: str
    items: list[SLASummary]


class SLADetail(SLASummary):
    """One SLA with its full spec and status as the API server stores them."""

    uid: str
    spec: dict[str, Any]
    status: dict[str, Any]


class Objectives(ApiModel):
    """What the SLA promises."""

    availability_target_percent: float
    ttft_threshold_ms: int
    ttft_target_percent: float
    tpot_threshold_ms: int
    tpot_target_percent: float


class CreditTierOut(ApiModel):
    """Attainment strictly below `belowPercent` earns `creditPercent` of the charges."""

    below_percent: float
    credit_percent: float


class CreditBasis(ApiModel):
    """A period's credit and penalty, with the numbers it was computed from."""

    availability_percent: float | None
    """Availability attainment the availability schedule was applied to."""
    worse_latency_attainment_percent: float | None
    """The worse of TTFT and TPOT attainment, which the latency schedule was applied to."""
    availability_schedule: list[CreditTierOut]
    latency_schedule: list[CreditTierOut]
    cap_percent: float
    charges: Decimal | None
    """The period's token charges the credit percent applies to."""
    credit_percent: Decimal | None
    """Total credit percent after the cap."""
    credit_amount: Decimal | None
    """credit_percent of charges, in the SLA's currency."""
    credit_micros: int | None
    """The credit in integer micro-units of the currency (the ledger's `penalty` amount)."""
    credit_tokens: int | None
    """The credit paid back in tokens (the ledger's `credit` amount)."""
    penalty_micros: int | None
    """Money moved from revenue to the SLA-penalty account (ledger `penalty` transfers)."""


class TransferOut(ApiModel):
    """One ledger transfer."""

    seq: int
    id: str
    kind: str
    debit_account: str
    credit_account: str
    amount: int
    unit: str
    created_at: datetime
    price_version: int | None = None
    """The offer's price version the line was charged at (null: funding, top-ups, or settled
    before prices were versioned)."""


class PeriodReport(ApiModel):
    """One period of one SLA: measured (current period) or settled (closed period)."""

    namespace: str
    name: str
    uid: str
    tenant: str
    period_start: datetime
    period_end: datetime
    state: Literal["Open", "Settled", "HeldForReview"]
    """Open: the current period, from the SLA's status; otherwise the ledger's settlement."""
    source: Literal["status", "ledger"]
    objectives: Objectives
    availability_percent: float | None
    ttft_attainment_percent: float | None
    tpot_attainment_percent: float | None
    coverage_percent: float | None
    budget_remaining_percent: float | None
    burn_rates: dict[str, float | None]
    """Current burn rates by window (empty for closed periods)."""
    alerts: list[str]
    tokens_used: int | None
    price_per_million_tokens: Decimal
    """The price the period is charged at: for a closed period the one pinned when it began."""
    price_version: int | None = None
    """The offer's price version of that price (null: the open period, or a settlement made
    before prices were versioned)."""
    currency: str
    charges_micros: int | None
    credit: CreditBasis
    transfers: list[TransferOut]
    """The settlement's ledger transfers (empty for the open period)."""
    evaluated_at: str | None
    attainment_exact: bool | None = None
    """False when a latency attainment was interpolated inside a bucket (closed periods)."""
    hold_reason: str | None = None
    """Why a closed period was held for review: LowCoverage or InexactAttainment."""
    judged_minutes: int | None = None
    """Minutes the availability objective covered: in force, in the offer's service hours and
    not excused (None: not recorded, settled before minutes were kept)."""
    excused_minutes: int | None = None
    """Minutes excused by planned maintenance announced in advance (neither good, bad nor
    unknown)."""


class StatementEntryOut(ApiModel):
    """A wallet transfer: `signedAmount` is positive when the wallet received."""

    seq: int
    id: str
    created_at: datetime
    kind: str
    sla_namespace: str
    sla_name: str
    period_start: datetime
    debit_account: str
    credit_account: str
    amount: int
    signed_amount: int
    unit: str
    price_version: int | None = None
    """The offer's price version the line was charged at (settlement lines; null for funding,
    top-ups and lines settled before prices were versioned)."""


class Statement(ApiModel):
    """A page of the tenant wallet's transfers, oldest first."""

    tenant: str
    account: str
    unit: str | None
    entries: list[StatementEntryOut]
    next_after: int | None
    """Pass as `after` to get the next page; null on the last page."""


class Wallet(ApiModel):
    """A tenant's wallet: tokens left and money net per currency unit."""

    tenant: str
    account: str
    tokens: int
    """Tokens in the wallet by its posted transfers (negative when usage ran past the allowance)."""
    pending_usage_tokens: int
    """Tokens used in periods not yet settled, as of the SLA engine's last pass."""
    available_tokens: int
    """What the gateway lets the tenant spend: `tokens` minus `pendingUsageTokens`."""
    usage_recorded_through: datetime | None = None
    """Up to when the tenant's usage is in `availableTokens` (the newest of its open usage
    readings and of its settled periods' ends); a gateway counts the tokens it metered since
    against it. Null when no usage was ever recorded."""
    overage: str = "HardStop"
    """What the gateway does once `availableTokens` is spent, by the tenant's token plan:
    HardStop refuses with 402; PayPerUse keeps serving and the overage is charged at the plan
    period's close."""
    money_micros: dict[str, int]
    """Net micro-units per currency unit, e.g. EUR-micro (charges out, nothing in)."""
    burn_tokens_per_day: Decimal
    """Recent burn: tokens a day over the open periods' usage, summed over the tenant's SLAs
    (exact; method in aiconn.sla.exhaustion)."""
    burn_measured_to: datetime | None
    """The newest usage reading the burn and the balance are as of (None: no open usage)."""
    projected_exhaustion: datetime | None
    """When `availableTokens` runs out at that burn, to the second, never later than the exact
    instant; null when nothing burns. At or before `burnMeasuredTo`: already exhausted."""


class FleetWallets(ApiModel):
    """Every tenant's wallet, soonest exhaustion first (the NOC's view)."""

    generated_at: datetime
    wallets: list[Wallet]


class NamespaceWallets(ApiModel):
    """The wallets of the tenants whose SLAs live in a namespace."""

    namespace: str
    wallets: list[Wallet]


class FleetItem(SLASummary):
    """An SLA as the NOC sees it."""

    risk: float
    """Higher needs a human sooner: a breach, a failing or unplaceable SLA, a degraded slice,
    burn-rate alerts, error budget spent, last an SLA not measured yet (aiconn.api.fleetview)."""
    evaluation_age_seconds: float | None


class Fleet(ApiModel):
    """Every SLA, riskiest first."""

    generated_at: datetime
    items: list[FleetItem]


class GroupSummary(ApiModel):
    """SLAs sharing a tier or a site."""

    key: str
    slas: int
    compliant: int
    non_compliant: int
    unknown: int
    alerts_firing: int
    mean_availability_percent: float | None
    min_budget_remaining_percent: float | None
    credits_accrued: dict[str, Decimal]
    """Credits accrued this period, per currency."""


class FleetSummary(ApiModel):
    """The fleet per tier and per site."""

    generated_at: datetime
    by_tier: list[GroupSummary]
    by_site: list[GroupSummary]


class Health(ApiModel):
    """Liveness or readiness."""

    status: Literal["ok", "unavailable"]
    checks: dict[str, str]


class HistorySeries(ApiModel):
    """One SLA's gauge over time, as Prometheus recorded it."""

    namespace: str
    name: str
    points: list[tuple[float, float]]
    """`[unix seconds, value]` pairs, oldest first."""


class FleetHistory(ApiModel):
    """Budget and attainment of every SLA over a time range (Prometheus query_range)."""

    start: datetime
    end: datetime
    step_seconds: int
    budget: list[HistorySeries]
    """Availability error budget remaining, percent."""
    availability: list[HistorySeries]
    ttft: list[HistorySeries]
    """Requests within the TTFT threshold, percent."""
    tpot: list[HistorySeries]
    """Requests within the TPOT threshold, percent."""


class PeriodCredits(ApiModel):
    """Credits settled in the ledger for one period and currency, every SLA together."""

    period_start: datetime
    period_end: datetime
    currency: str
    credit_micros: int
    """Credits paid, in micro-units of the currency (held periods excluded)."""
    credits: Decimal
    slas: int
    """SLAs with a settlement for this period (held ones included)."""
    held_for_review: int


class CreditsByPeriod(ApiModel):
    """Settled credits, oldest period first."""

    items: list[PeriodCredits]


class ActivityEvent(ApiModel):
    """A Kubernetes Event on an AIInferenceSLA or its NetworkSlice."""

    time: datetime
    type: str
    """Normal or Warning."""
    reason: str
    kind: str
    """AIInferenceSLA or NetworkSlice."""
    namespace: str
    name: str
    message: str
    count: int
    source: str | None


class Activity(ApiModel):
    """Events on SLAs and their slices, newest first."""

    items: list[ActivityEvent]


class PriceVersionOut(ApiModel):
    """One model class's price from one version on."""

    version: int
    model_class: str
    price_per_million_tokens: Decimal
    """Exactly as the offer states it, in the offer's currency."""
    effective_from: datetime | None
    """Null for version 1, the offer's price since it was created."""


class PlanPriceVersionOut(ApiModel):
    """The token plan's fee and overage price from one version on (a version that set either)."""

    version: int
    fee_per_period: Decimal
    """The fee per plan period in force from this version, in the offer's currency."""
    overage_price_per_million_units: Decimal | None
    """The PayPerUse overage price in force from this version (null: HardStop)."""
    effective_from: datetime | None
    """Null for version 1, the plan's prices since the offer was created. A plan period is
    charged at the prices in force at its start."""


class RefusedPriceChange(ApiModel):
    """A price change never applied: announced with less notice than the offer states."""

    version: int
    field: str
    message: str


class PriceHistory(ApiModel):
    """An offer's prices, every version oldest first, and the version in force now."""

    offer: str
    currency: str
    price_notice_days: int
    versions: list[PriceVersionOut]
    refused: list[RefusedPriceChange]
    in_force: dict[str, int]
    """The version in force now per model class."""
    plan_versions: list[PlanPriceVersionOut] = []
    """The plan's fee and overage price, every version that set one, oldest first."""
    plan_in_force: dict[str, int] = {}
    """The versions of the plan's `fee` and `overage` price the current plan period is charged
    at: those in force at its start (a change dated inside a period applies from the next)."""
    generated_at: datetime


class Quote(ApiModel):
    """What a month of an SLA costs at the price in force at `at`, and its credit exposure
    (the same figures as `aiconn plan`, from aiconn.planning.price_month)."""

    namespace: str
    name: str
    offer: str | None
    at: datetime
    model_class: str | None
    price_version: int | None
    """The offer's price version in force at `at` (null: an SLA without an offer)."""
    currency: str
    price_per_million_tokens: Decimal
    monthly_tokens: int
    monthly_charge: Decimal
    max_credit_percent: Decimal
    max_monthly_credit: Decimal
    """The credit exposure: the most a month's credits can pay back."""
    plan_period: str | None = None
    """The offer's token plan (null: an SLA without an offer), from here on: its period
    (OpenSLO shorthand). The plan figures are for the plan period containing `at`."""
    plan_period_start: datetime | None = None
    plan_period_end: datetime | None = None
    plan_fee_per_period: Decimal | None = None
    """The plan fee for the period at the version in force at the period's start, as its close
    charges it."""
    plan_fee_version: int | None = None
    """The price version the fee was set by (1: as the plan states it)."""
    included_units_per_period: int | None = None
    """Units the plan funds into the tenant's wallet per period."""
    units_per_million_tokens: int | None = None
    """The plan's exchange rate for the SLA's model class (1,000,000: a unit per token)."""
    monthly_units: int | None = None
    """monthlyTokens in wallet units at that rate, rounded up to a whole unit."""
    overage_mode: str | None = None
    """HardStop (requests beyond the wallet get 402) or PayPerUse."""
    overage_price_per_million_units: Decimal | None = None
    """PayPerUse: the price of a million overage units in force at the period's start."""
    overage_price_version: int | None = None
    """PayPerUse: the price version the overage price was set by."""
    overage_units: int | None = None
    """monthlyUnits beyond the included units (HardStop: refused, not charged); null when the
    plan period is not one calendar month. This SLA's alone: a tenant's SLAs under one offer
    share one wallet."""
    overage_charge: Decimal | None = None
    """What the overage units cost at the overage price, half-even to the micro-unit (HardStop:
    0); null with overageUnits."""
    plan_charge: Decimal | None = None
    """planFeePerPeriod + overageCharge: what the tenant pays for the period under the plan;
    null with overageUnits."""
