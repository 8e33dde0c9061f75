"""Placement: which tier (edge, regional, cloud) serves an SLA, and why the others do not.

A pure function of the SLA spec and the tiers, so the operator, the API and the tests all get the
same answer for the same input, and every refusal carries a one-line reason a tenant can act on.

A tier is feasible when, checked in this order:

1. the SLA asks for it (`placement.tier` is auto or names it);
2. the tier lists the SLA's `dataResidency` among its regions (exact match: a tier declares every
   jurisdiction it satisfies, e.g. both EU and DE);
3. it has one of the SLA's `sites`, when the SLA names any, other than a site the SLA failed
   over from and has not yet come back to (`avoid`);
4. the model fits its GPUs (`aiconn.inference.sizing`) and is within its `maxModelBillions`;
5. its worst network RTT is within `network.rttBudgetMs`;
6. the estimated time to first token and time per output token meet the objectives' thresholds;
7. when the tier's capacity is observed (`aiconn.inference.capacity`), one of its candidate sites
   (the SLA's `sites` in their order, else the tier's) has room for `capacity.replicas` replicas
   of the tensor-parallel size; the first such site is chosen, and a tier where none has room is
   rejected with each site's free GPUs ("edge de-fra-edge-01: 0 of 16 L40S free, ...").

Latency estimates scale the tier's 8B reference figures linearly with model size and divide by the
tensor-parallel size:

    inference TTFT = tier.performance.ttftMs x max(1, params / 8) / tp
    TTFT at the customer = tier.networkRtt.maxMs + inference TTFT
    TPOT = tier.performance.tpotMs x max(1, params / 8) / tp

Models under 8B are not assumed faster: fixed per-step costs dominate them. TPOT carries no RTT:
streamed tokens arrive back to back, so the round trip is paid once, on the first token. Linear
scaling is deliberately pessimistic about tensor parallelism (communication is not free), which
keeps estimates on the safe side of a contract.

The chosen tier is also sized for the contracted rate (`aiconn.inference.throughput`): the
replicas `tokens.rateLimit` needs at the TPOT objective. That number informs (the plan and the
Placed message say when `capacity.replicas` or `maxReplicas` fall short of it); it does not
reject a tier, because the gateway holds the tenant to the rate the replicas were given.

Among feasible tiers the cheapest `pricePerMillionTokens` wins, then the lowest worst-case RTT,
then the name, so the choice is deterministic.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any

import yaml

from aiconn.inference.capacity import Capacity, SiteCapacity
from aiconn.inference.sizing import size
from aiconn.inference.throughput import ReplicaThroughput, replica_throughput
from aiconn.resources.v1alpha1.kinds import TIER
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec, PlacementStatus, RejectedTier
from aiconn.resources.v1alpha1.tier import InferenceTierSpec

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
    site_capacity: SiteCapacity | None = None
    """GPUs at the chosen site before this SLA's replicas; None when not observed."""
    throughput: ReplicaThroughput | str | None = None
    """Replicas the contracted rate needs on the chosen tier, or why they were not sized."""

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
    site_capacity: SiteCapacity | None = None

    @property
    def ttft_ms(self) -> float:
        return self.tier.network_rtt.max_ms + self.inference_ttft_ms

    def sort_key(self) -> tuple[float, float, str]:
        return (self.tier.price_per_million_tokens, self.tier.network_rtt.max_ms, self.name)


def plan(
    spec: AIInferenceSLASpec,
    tiers: Mapping[str, InferenceTierSpec],
    *,
    capacity: Capacity | None = None,
    avoid: Collection[tuple[str, str | None]] = (),
) -> PlacementDecision:
    """Choose the cheapest tier that meets the SLA and has room; explain every tier not chosen.

    `capacity` holds the observed tiers' free GPUs; None (planning offline) or a tier absent
    from it means that tier's capacity is not limited. `avoid` lists (tier, site) pairs an SLA
    failed over from and must not return to yet (`aiconn.inference.assurance`)."""
    candidates: list[_Candidate] = []
    reasons: dict[str, str] = {}
    for name in sorted(tiers):
        outcome = _evaluate(spec, name, tiers[name], (capacity or {}).get(name), avoid)
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
    throughput = replica_throughput(
        model=spec.model,
        gpu=best.tier.gpu,
        tensor_parallel_size=best.tensor_parallel_size,
        rate=spec.tokens.rate_limit,
        tpot_ms=spec.objectives.tpot.threshold_ms,
    )
    return PlacementDecision(
        placed=True,
        message=(
            f"placed on {best.name}"
            + (f" at {best.site}" if best.site else "")
            + f": {best.tensor_parallel_size} x {best.tier.gpu.type}, estimated TTFT "
            f"{best.ttft_ms:.0f} ms ({best.tier.network_rtt.max_ms:g} ms network + "
            f"{best.inference_ttft_ms:.0f} ms inference), TPOT {best.tpot_ms:.0f} ms"
            + _capacity_note(best)
            + _rate_note(throughput, spec)
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
        site_capacity=best.site_capacity,
        throughput=throughput,
    )


def _capacity_note(best: _Candidate) -> str:
    room = best.site_capacity
    if room is None:
        return ""
    return f"; {room.free} of {room.allocatable} {best.tier.gpu.type} free at the site"


def _rate_note(throughput: ReplicaThroughput | str, spec: AIInferenceSLASpec) -> str:
    if isinstance(throughput, str):
        return ""
    replicas, most = spec.capacity.replicas, spec.capacity.max_replicas
    if throughput.replicas <= replicas:
        return ""
    if throughput.replicas <= most:
        share = throughput.share_served(replicas) * 100
        return (
            f"; the contracted rate needs {throughput.replicas} replicas, replicas {replicas} "
            f"serve about {share:.0f} % of it (maxReplicas {most})"
        )
    return (
        f"; the contracted rate needs {throughput.replicas} replicas, maxReplicas {most} "
        f"serve about {throughput.share_served(most) * 100:.0f} % of it"
    )


def _evaluate(
    spec: AIInferenceSLASpec,
    name: str,
    tier: InferenceTierSpec,
    room: Mapping[str | None, SiteCapacity] | None,
    avoid: Collection[tuple[str, str | None]] = (),
) -> _Candidate | str:
    """A feasible candidate, or the one-line reason the tier cannot serve the SLA."""
    model = spec.model
    wanted = spec.placement.tier
    if wanted not in ("auto", name):
        return f"{name}: the SLA asks for tier {wanted} (spec.placement.tier)"

    residency = spec.placement.data_residency
    if residency is not None and residency not in tier.regions:
        regions = ", ".join(tier.regions) or "none"
        return f"{name}: data must stay in {residency}, tier serves {regions}"

    sites: list[str | None] = list(tier.sites) or [None]
    if spec.placement.sites:
        sites = [s for s in spec.placement.sites if s in tier.sites]
        if not sites:
            return f"{name}: none of the sites {', '.join(spec.placement.sites)} is in this tier"
    avoided = [s for s in sites if (name, s) in avoid]
    if avoided:
        sites = [s for s in sites if (name, s) not in avoid]
        if not sites:
            where = ", ".join(s or "(no site)" for s in avoided)
            return f"{name}: failed over from {where}, held off until it has been stable"

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
        site=sites[0],
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
    if room is None:
        return candidate
    return _with_room(candidate, sites, room, replicas=spec.capacity.replicas)


def _with_room(
    candidate: _Candidate,
    sites: list[str | None],
    room: Mapping[str | None, SiteCapacity],
    *,
    replicas: int,
) -> _Candidate | str:
    """The candidate at the first site with room for `replicas`, or each site's shortfall."""
    tp = candidate.tensor_parallel_size
    gpu = candidate.tier.gpu.type
    shortfalls = []
    for site in sites:
        here = room.get(site, SiteCapacity(allocatable=0, free_per_node=()))
        fit = here.replicas_that_fit(tp)
        if fit >= replicas:
            return replace(candidate, site=site, site_capacity=here)
        where = site if site is not None else "(no site)"
        shortfall = f"{where}: {here.free} of {here.allocatable} {gpu} free"
        if here.free >= replicas * tp:
            shortfall += f", room on its nodes for {fit} of {replicas} replica(s) of {tp} GPU(s)"
        else:
            shortfall += f", {replicas * tp} needed ({replicas} replica(s) x {tp})"
        shortfalls.append(shortfall)
    return f"{candidate.name} " + "; ".join(shortfalls)


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
        if doc.get("kind") != TIER.kind:
            raise ValueError(f"expected kind InferenceTier, got {doc.get('kind')!r}")
        tiers[doc["metadata"]["name"]] = InferenceTierSpec.model_validate(doc["spec"])
    return tiers
