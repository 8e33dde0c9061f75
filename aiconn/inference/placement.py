"""Placement: which tier (edge, regional, cloud) serves an SLA, and why the others do not.

A pure function of the SLA spec and the tiers, so the operator, the API and the tests all get the
same answer for the same input, and every refusal carries a one-line reason a tenant can act on.

A tier is feasible when, checked in this order:

1. the SLA asks for it (`placement.tier` is auto or names it);
2. the tier lists the SLA's `dataResidency` among its regions (exact match: a tier declares every
   jurisdiction it satisfies, e.g. both EU and DE);
3. it has one of the SLA's `sites`, when the SLA names any;
4. the model fits its GPUs (`aiconn.inference.sizing`) and is within its `maxModelBillions`;
5. its worst network RTT is within `network.rttBudgetMs`;
6. the estimated time to first token and time per output token meet the objectives' thresholds.

Latency estimates scale the tier's 8B reference figures linearly with model size and divide by the
tensor-parallel size:

    inference TTFT = tier.performance.ttftMs x max(1, params / 8) / tp
    TTFT at the customer = tier.networkRtt.maxMs + inference TTFT
    TPOT = tier.performance.tpotMs x max(1, params / 8) / tp

Models under 8B are not assumed faster: fixed per-step costs dominate them. TPOT carries no RTT:
streamed tokens arrive back to back, so the round trip is paid once, on the first token. Linear
scaling is deliberately pessimistic about tensor parallelism (communication is not free), which
keeps estimates on the safe side of a contract.

Among feasible tiers the cheapest `pricePerMillionTokens` wins, then the lowest worst-case RTT,
then the name, so the choice is deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from aiconn.inference.sizing import size
from aiconn.inference.tier import InferenceTierSpec
from aiconn.sla.spec import AIInferenceSLASpec, PlacementStatus, RejectedTier

REFERENCE_MODEL_BILLIONS = 8.0
DEFAULT_TIERS_RESOURCE = "default_tiers.yaml"


@dataclass(frozen=True)
class PlacementDecision:
    """Where an SLA runs, what it needs there, and why the other tiers were not chosen."""

    placed: bool
    """Whether a tier was chosen."""
    message: str
    """One line for the Placed condition and its Event."""
    tier: str | None = None
    """Chosen tier name."""
    site: str | None = None
    """Chosen site: the first of the SLA's sites the tier has, else the tier's first site."""
    gpu_type: str | None = None
    """GPU model on the chosen tier."""
    tensor_parallel_size: int | None = None
    """vLLM --tensor-parallel-size."""
    gpus_per_replica: int | None = None
    """GPUs one replica requests (the tensor-parallel size)."""
    estimated_ttft_ms: float | None = None
    """Estimated time to first token at the customer: network plus inference."""
    estimated_tpot_ms: float | None = None
    """Estimated time per output token."""
    network_rtt_ms: float | None = None
    """The network part of the TTFT estimate: the tier's worst-case RTT."""
    inference_ttft_ms: float | None = None
    """The inference part of the TTFT estimate."""
    price_per_million_tokens: float | None = None
    """The chosen tier's price."""
    currency: str | None = None
    """Currency of that price."""
    node_selector: Mapping[str, str] = field(default_factory=dict)
    """The chosen tier's node selector, for the inference pods."""
    tolerations: tuple[Mapping[str, Any], ...] = ()
    """The chosen tier's tolerations, for the inference pods."""
    rejected: tuple[tuple[str, str], ...] = ()
    """(tier, one-line reason) for every tier not chosen, in tier-name order."""

    def to_status(self) -> PlacementStatus:
        """The decision as the SLA's `status.placement`."""
        return PlacementStatus(
            tier=self.tier,
            site=self.site,
            gpu=self.gpu_type,
            gpus_per_replica=self.gpus_per_replica,
            tensor_parallel_size=self.tensor_parallel_size,
            estimated_ttft_ms=self.estimated_ttft_ms,
            rejected=[RejectedTier(tier=t, reason=r) for t, r in self.rejected],
        )


@dataclass(frozen=True)
class _Candidate:
    name: str
    tier: InferenceTierSpec
    site: str | None
    tensor_parallel_size: int
    inference_ttft_ms: float
    tpot_ms: float

    @property
    def ttft_ms(self) -> float:
        return self.tier.network_rtt.max_ms + self.inference_ttft_ms

    def sort_key(self) -> tuple[float, float, str]:
        return (self.tier.price_per_million_tokens, self.tier.network_rtt.max_ms, self.name)


def plan(spec: AIInferenceSLASpec, tiers: Mapping[str, InferenceTierSpec]) -> PlacementDecision:
    """Choose the cheapest tier that meets the SLA; explain every tier not chosen."""
    candidates: list[_Candidate] = []
    reasons: dict[str, str] = {}
    for name in sorted(tiers):
        outcome = _evaluate(spec, name, tiers[name])
        if isinstance(outcome, str):
            reasons[name] = outcome
        else:
            candidates.append(outcome)

    wanted = spec.placement.tier
    if wanted != "auto" and wanted not in tiers:
        known = ", ".join(sorted(tiers)) or "none"
        reasons[wanted] = f"{wanted}: no InferenceTier of that name exists (known: {known})"

    if not candidates:
        rejected = tuple(sorted(reasons.items()))
        return PlacementDecision(
            placed=False,
            message="no tier can serve this SLA: " + "; ".join(r for _, r in rejected),
            rejected=rejected,
        )

    candidates.sort(key=_Candidate.sort_key)
    best, *others = candidates
    for other in others:
        reasons[other.name] = _why_not_chosen(other, best)
    return PlacementDecision(
        placed=True,
        message=(
            f"placed on {best.name}"
            + (f" at {best.site}" if best.site else "")
            + f": {best.tensor_parallel_size} x {best.tier.gpu.type}, estimated TTFT "
            f"{best.ttft_ms:.0f} ms ({best.tier.network_rtt.max_ms:g} ms network + "
            f"{best.inference_ttft_ms:.0f} ms inference), TPOT {best.tpot_ms:.0f} ms"
        ),
        tier=best.name,
        site=best.site,
        gpu_type=best.tier.gpu.type,
        tensor_parallel_size=best.tensor_parallel_size,
        gpus_per_replica=best.tensor_parallel_size,
        estimated_ttft_ms=round(best.ttft_ms, 1),
        estimated_tpot_ms=round(best.tpot_ms, 1),
        network_rtt_ms=best.tier.network_rtt.max_ms,
        inference_ttft_ms=round(best.inference_ttft_ms, 1),
        price_per_million_tokens=best.tier.price_per_million_tokens,
        currency=best.tier.currency,
        node_selector=dict(best.tier.node_selector),
        tolerations=tuple(dict(t) for t in best.tier.tolerations),
        rejected=tuple(sorted(reasons.items())),
    )


def _evaluate(spec: AIInferenceSLASpec, name: str, tier: InferenceTierSpec) -> _Candidate | str:
    """A feasible candidate, or the one-line reason the tier cannot serve the SLA."""
    model = spec.model
    wanted = spec.placement.tier
    if wanted not in ("auto", name):
        return f"{name}: the SLA asks for tier {wanted} (spec.placement.tier)"

    residency = spec.placement.data_residency
    if residency is not None and residency not in tier.regions:
        regions = ", ".join(tier.regions) or "none"
        return f"{name}: data must stay in {residency}, tier serves {regions}"

    site: str | None = tier.sites[0] if tier.sites else None
    if spec.placement.sites:
        site = next((s for s in spec.placement.sites if s in tier.sites), None)
        if site is None:
            return f"{name}: none of the sites {', '.join(spec.placement.sites)} is in this tier"

    sizing = size(model, tier.gpu)
    if sizing.tensor_parallel_size is None:
        return f"{name}: {sizing.reason}"
    if model.parameters_billions > tier.max_model_billions:
        return (
            f"{name}: {model.parameters_billions:g}B exceeds the tier's largest model "
            f"{tier.max_model_billions:g}B"
        )

    rtt = tier.network_rtt.max_ms
    if rtt > spec.network.rtt_budget_ms:
        return (
            f"{name}: network RTT up to {rtt:g} ms exceeds rttBudgetMs {spec.network.rtt_budget_ms}"
        )

    tp = sizing.tensor_parallel_size
    scale = max(1.0, model.parameters_billions / REFERENCE_MODEL_BILLIONS) / tp
    candidate = _Candidate(
        name=name,
        tier=tier,
        site=site,
        tensor_parallel_size=tp,
        inference_ttft_ms=tier.performance.ttft_ms * scale,
        tpot_ms=tier.performance.tpot_ms * scale,
    )
    ttft_threshold = spec.objectives.ttft.threshold_ms
    if candidate.ttft_ms > ttft_threshold:
        return (
            f"{name}: estimated TTFT {candidate.ttft_ms:.0f} ms ({rtt:g} ms network + "
            f"{candidate.inference_ttft_ms:.0f} ms inference) exceeds the {ttft_threshold} ms "
            "objective"
        )
    tpot_threshold = spec.objectives.tpot.threshold_ms
    if candidate.tpot_ms > tpot_threshold:
        return (
            f"{name}: estimated TPOT {candidate.tpot_ms:.0f} ms exceeds the "
            f"{tpot_threshold} ms objective"
        )
    return candidate


def _why_not_chosen(other: _Candidate, best: _Candidate) -> str:
    price, best_price = other.tier.price_per_million_tokens, best.tier.price_per_million_tokens
    if price != best_price:
        return (
            f"{other.name}: feasible but costs {price:.2f} {other.tier.currency}/1M "
            f"vs {best_price:.2f}"
        )
    if other.tier.network_rtt.max_ms != best.tier.network_rtt.max_ms:
        return (
            f"{other.name}: feasible at the same price but network RTT up to "
            f"{other.tier.network_rtt.max_ms:g} ms vs {best.tier.network_rtt.max_ms:g}"
        )
    return f"{other.name}: feasible and equal to {best.name}; {best.name} wins by name"


def default_tiers() -> dict[str, InferenceTierSpec]:
    """The shipped edge, regional and cloud tiers, read from the package's YAML."""
    text = resources.files("aiconn.inference").joinpath(DEFAULT_TIERS_RESOURCE).read_text("utf-8")
    return parse_tiers(text)


def parse_tiers(text: str) -> dict[str, InferenceTierSpec]:
    """InferenceTier objects from a (multi-document) YAML stream, by name."""
    tiers: dict[str, InferenceTierSpec] = {}
    for doc in yaml.safe_load_all(text):
        if doc is None:
            continue
        if doc.get("kind") != "InferenceTier":
            raise ValueError(f"expected kind InferenceTier, got {doc.get('kind')!r}")
        tiers[doc["metadata"]["name"]] = InferenceTierSpec.model_validate(doc["spec"])
    return tiers
