"""Placement picks the cheapest tier that meets the SLA and explains every other tier."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from aiconn.inference.capacity import SiteCapacity
from aiconn.inference.placement import default_tiers, parse_tiers, plan
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec
from aiconn.resources.v1alpha1.tier import InferenceTierSpec

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "manifests" / "samples"
TIERS = default_tiers()


def sla(
    params: float = 8,
    *,
    dtype: str = "bfloat16",
    ttft_ms: int = 300,
    tpot_ms: int = 100,
    rtt_ms: int = 20,
    **placement: Any,
) -> AIInferenceSLASpec:
    return AIInferenceSLASpec.model_validate(
        {
            "model": {
                "name": "m",
                "source": "hf://org/m",
                "parametersBillions": params,
                "dtype": dtype,
            },
            "objectives": {
                "ttft": {"thresholdMs": ttft_ms, "targetPercent": 99},
                "tpot": {"thresholdMs": tpot_ms, "targetPercent": 99},
            },
            "network": {"rttBudgetMs": rtt_ms},
            "placement": placement,
        }
    )


def tier(price: float, rtt_max: float, **overrides: Any) -> InferenceTierSpec:
    doc = {
        "gpu": {"type": "H100", "memoryGiB": 80, "countPerNode": 8},
        "maxModelBillions": 70,
        "networkRtt": {"minMs": 0, "maxMs": rtt_max},
        "performance": {"ttftMs": 100, "tpotMs": 10},
        "pricePerMillionTokens": price,
        **overrides,
    }
    return InferenceTierSpec.model_validate(doc)


@pytest.mark.parametrize(
    ("sample", "expected_tier", "tensor_parallel_size"),
    [
        ("sla-edge-urllc.yaml", "edge", 1),
        ("sla-regional-eu-70b.yaml", "regional", 4),
        ("sla-cloud-405b.yaml", "cloud", 8),
    ],
)
def test_shipped_samples_land_on_their_tiers(
    sample: str, expected_tier: str, tensor_parallel_size: int
) -> None:
    spec = AIInferenceSLASpec.model_validate(yaml.safe_load((SAMPLES / sample).read_text())["spec"])
    decision = plan(spec, TIERS)
    assert decision.placed, decision.message
    assert (decision.tier, decision.tensor_parallel_size) == (expected_tier, tensor_parallel_size)
    assert {t for t, _ in decision.rejected} == set(TIERS) - {expected_tier}


@pytest.mark.parametrize(
    ("case", "spec", "expected", "reasons"),
    [
        (
            "8B under a tight RTT budget goes to the edge",
            sla(8, ttft_ms=300, rtt_ms=20),
            "edge",
            {
                "regional": "regional: network RTT up to 50 ms exceeds rttBudgetMs 20",
                "cloud": "cloud: network RTT up to 300 ms exceeds rttBudgetMs 20",
            },
        ),
        (
            "70B in the EU goes regional",
            sla(70, ttft_ms=500, tpot_ms=50, rtt_ms=60, dataResidency="EU"),
            "regional",
            {
                "edge": "edge: 70B bfloat16 needs",
                "cloud": "cloud: network RTT up to 300 ms exceeds rttBudgetMs 60",
            },
        ),
        (
            "400B goes to the cloud",
            sla(400, dtype="fp8", ttft_ms=2000, tpot_ms=200, rtt_ms=400),
            "cloud",
            {
                "edge": "edge: 400B fp8 needs",
                "regional": "regional: 400B exceeds the tier's largest model 70B",
            },
        ),
        (
            "cheapest wins when latency allows",
            sla(8, ttft_ms=1000, rtt_ms=400),
            "cloud",
            {
                "edge": "edge: feasible but costs 0.50 EUR/1M vs 0.30",
                "regional": "regional: feasible but costs 0.80 EUR/1M vs 0.30",
            },
        ),
        (
            "cloud's RTT eats the TTFT objective",
            sla(8, ttft_ms=400, rtt_ms=400),
            "edge",
            {
                "cloud": "cloud: estimated TTFT 450 ms (300 ms network + 150 ms inference) "
                "exceeds the 400 ms objective",
                "regional": "regional: feasible but costs 0.80 EUR/1M vs 0.50",
            },
        ),
        (
            "a tight TPOT objective rules out slower GPUs",
            sla(8, ttft_ms=1000, tpot_ms=15, rtt_ms=400),
            "regional",
            {
                "edge": "edge: estimated TPOT 30 ms exceeds the 15 ms objective",
                "cloud": "cloud: estimated TPOT 20 ms exceeds the 15 ms objective",
            },
        ),
        (
            "data residency excludes tiers outside the jurisdiction",
            sla(8, ttft_ms=1000, rtt_ms=400, dataResidency="FR"),
            "regional",
            {
                "edge": "edge: data must stay in FR, tier serves EU, DE",
                "cloud": "cloud: data must stay in FR, tier serves US, EU",
            },
        ),
        (
            "an explicit tier is the only candidate",
            sla(8, ttft_ms=1000, rtt_ms=400, tier="regional"),
            "regional",
            {
                "edge": "edge: the SLA asks for tier regional (spec.placement.tier)",
                "cloud": "cloud: the SLA asks for tier regional (spec.placement.tier)",
            },
        ),
        (
            "requested sites narrow the tiers",
            sla(8, ttft_ms=1000, rtt_ms=400, sites=["fr-par-dc-01"]),
            "regional",
            {
                "edge": "edge: none of the sites fr-par-dc-01 is in this tier",
                "cloud": "cloud: none of the sites fr-par-dc-01 is in this tier",
            },
        ),
        (
            "a model over the tier's limit is refused even when it fits",
            sla(20, ttft_ms=5000, tpot_ms=500, rtt_ms=20),
            None,
            {"edge": "edge: 20B exceeds the tier's largest model 13B"},
        ),
    ],
)
def test_plan_chooses_and_explains(
    case: str,
    spec: AIInferenceSLASpec,
    expected: str | None,
    reasons: dict[str, str],
) -> None:
    decision = plan(spec, TIERS)
    assert decision.tier == expected, f"{case}: {decision.message}"
    assert decision.placed is (expected is not None)
    rejected = dict(decision.rejected)
    assert expected not in rejected
    for name, reason in reasons.items():
        assert rejected[name].startswith(reason), f"{case}: {rejected[name]}"


def test_every_tier_not_chosen_gets_exactly_one_reason() -> None:
    decision = plan(sla(8, ttft_ms=1000, rtt_ms=400), TIERS)
    names = [t for t, _ in decision.rejected]
    assert sorted(names) == names == ["edge", "regional"]


def test_estimates_follow_the_documented_formula() -> None:
    decision = plan(sla(70, ttft_ms=500, tpot_ms=50, rtt_ms=60, dataResidency="EU"), TIERS)
    scale = (70 / 8) / 4
    assert decision.network_rtt_ms == 50
    assert decision.inference_ttft_ms == pytest.approx(round(100 * scale, 1))
    assert decision.estimated_ttft_ms == pytest.approx(round(50 + 100 * scale, 1))
    assert decision.estimated_tpot_ms == pytest.approx(round(12 * scale, 1))
    assert (decision.gpu_type, decision.gpus_per_replica) == ("H100", 4)
    assert decision.site == "de-fra-dc-01"
    assert decision.node_selector["aiconn.io/tier"] == "regional"
    assert decision.tolerations[0]["key"] == "nvidia.com/gpu"
    assert (decision.price_per_million_tokens, decision.currency) == (0.80, "EUR")


def test_small_models_are_not_assumed_faster_than_the_reference() -> None:
    one_b = plan(sla(1), TIERS)
    eight_b = plan(sla(8), TIERS)
    assert one_b.estimated_ttft_ms == eight_b.estimated_ttft_ms == 15 + 220


def test_the_first_requested_site_the_tier_has_is_chosen() -> None:
    spec = sla(8, sites=["nowhere", "de-muc-edge-01", "de-fra-edge-01"])
    assert plan(spec, TIERS).site == "de-muc-edge-01"


def test_unplaceable_sla_says_why_for_every_tier() -> None:
    decision = plan(sla(8, ttft_ms=100, rtt_ms=20), TIERS)
    assert not decision.placed and decision.tier is None
    assert decision.message.startswith("no tier can serve this SLA: ")
    for name in TIERS:
        assert f"{name}: " in decision.message
    assert decision.to_status().tier is None


def test_a_requested_tier_that_does_not_exist_is_explained() -> None:
    decision = plan(sla(8, tier="edge"), {"regional": TIERS["regional"]})
    assert not decision.placed
    assert dict(decision.rejected)["edge"] == (
        "edge: no InferenceTier of that name exists (known: regional)"
    )


def test_ties_break_on_rtt_then_name() -> None:
    tiers = {"b": tier(0.5, 10), "a": tier(0.5, 10), "c": tier(0.5, 5)}
    decision = plan(sla(8, ttft_ms=1000, rtt_ms=100), tiers)
    assert decision.tier == "c"
    rejected = dict(decision.rejected)
    assert rejected["a"] == "a: feasible at the same price but network RTT up to 10 ms vs 5"
    tiers = {"b": tier(0.5, 10), "a": tier(0.5, 10)}
    decision = plan(sla(8, ttft_ms=1000, rtt_ms=100), tiers)
    assert decision.tier == "a"
    assert dict(decision.rejected)["b"] == "b: feasible and equal to a; a wins by name"


def test_a_tier_without_sites_places_without_a_site() -> None:
    decision = plan(sla(8, ttft_ms=1000, rtt_ms=100), {"lab": tier(0.1, 5)})
    assert decision.placed and decision.site is None


def test_plan_is_deterministic() -> None:
    spec = sla(8, ttft_ms=1000, rtt_ms=400)
    assert plan(spec, TIERS) == plan(spec, dict(reversed(list(TIERS.items()))))


def test_decision_becomes_the_status_placement() -> None:
    decision = plan(sla(70, ttft_ms=500, tpot_ms=50, rtt_ms=60, dataResidency="EU"), TIERS)
    status = decision.to_status().to_k8s()
    assert status["tier"] == "regional"
    assert status["gpu"] == "H100"
    assert status["tensorParallelSize"] == status["gpusPerReplica"] == 4
    assert status["estimatedTtftMs"] == decision.estimated_ttft_ms
    assert [r["tier"] for r in status["rejected"]] == ["cloud", "edge"]


def test_default_tiers_match_the_article_table() -> None:
    assert sorted(TIERS) == ["cloud", "edge", "regional"]
    edge, regional, cloud = TIERS["edge"], TIERS["regional"], TIERS["cloud"]
    assert (edge.gpu.type, edge.gpu.memory_gi_b, edge.max_model_billions) == ("L40S", 48, 13)
    assert (regional.gpu.type, regional.max_model_billions) == ("H100", 70)
    assert cloud.gpu.type == "A100" and cloud.max_model_billions > 70
    assert (edge.network_rtt.min_ms, edge.network_rtt.max_ms) == (5, 15)
    assert (regional.network_rtt.min_ms, regional.network_rtt.max_ms) == (20, 50)
    assert (cloud.network_rtt.min_ms, cloud.network_rtt.max_ms) == (150, 300)
    assert cloud.price_per_million_tokens < regional.price_per_million_tokens
    assert cloud.performance.ttft_ms > regional.performance.ttft_ms


def test_manifest_sample_is_the_packaged_default() -> None:
    packaged = ROOT / "aiconn" / "inference" / "default_tiers.yaml"
    assert (SAMPLES / "tiers.yaml").read_text() == packaged.read_text()
    for doc in yaml.safe_load_all((SAMPLES / "tiers.yaml").read_text()):
        assert doc["apiVersion"] == "aiconn.io/v1alpha1"
        assert "namespace" not in doc["metadata"]


def test_parse_tiers_refuses_other_kinds() -> None:
    with pytest.raises(ValueError, match="expected kind InferenceTier, got 'ConfigMap'"):
        parse_tiers("kind: ConfigMap\nmetadata: {name: x}\n")


def room(*free_per_node: int, allocatable: int | None = None) -> SiteCapacity:
    total = sum(free_per_node) if allocatable is None else allocatable
    return SiteCapacity(allocatable=total, free_per_node=tuple(free_per_node))


FULL_EDGE = {
    "de-fra-edge-01": room(0, 0, 0, 0, 0, 0, 0, 0, allocatable=16),
    "de-muc-edge-01": room(0, 0, allocatable=4),
    "de-ber-edge-01": room(),
}
EU_8B = {"ttft_ms": 1000, "rtt_ms": 60, "dataResidency": "EU"}


def test_a_full_tier_is_rejected_with_each_sites_free_gpus_and_the_next_tier_wins() -> None:
    assert plan(sla(8, **EU_8B), TIERS).tier == "edge"
    decision = plan(sla(8, **EU_8B), TIERS, capacity={"edge": FULL_EDGE})
    assert (decision.tier, decision.site) == ("regional", "de-fra-dc-01")
    assert dict(decision.rejected)["edge"] == (
        "edge de-fra-edge-01: 0 of 16 L40S free, 1 needed (1 replica(s) x 1); "
        "de-muc-edge-01: 0 of 4 L40S free, 1 needed (1 replica(s) x 1); "
        "de-ber-edge-01: 0 of 0 L40S free, 1 needed (1 replica(s) x 1)"
    )
    assert decision.site_capacity is None, "regional is not observed: not limited"


def test_the_first_site_with_room_is_chosen_and_its_free_gpus_reported() -> None:
    capacity = {"edge": {**FULL_EDGE, "de-ber-edge-01": room(2, 1)}}
    decision = plan(sla(8, **EU_8B), TIERS, capacity=capacity)
    assert (decision.tier, decision.site) == ("edge", "de-ber-edge-01")
    assert decision.site_capacity == room(2, 1)
    assert "3 of 3 L40S free at the site" in decision.message


def test_the_slas_own_site_order_is_kept_when_both_have_room() -> None:
    capacity = {"edge": {"de-fra-edge-01": room(2), "de-muc-edge-01": room(2)}}
    spec = sla(8, **EU_8B, sites=["de-muc-edge-01", "de-fra-edge-01"])
    assert plan(spec, TIERS, capacity=capacity).site == "de-muc-edge-01"
    capacity["edge"]["de-muc-edge-01"] = room(0, allocatable=2)
    assert plan(spec, TIERS, capacity=capacity).site == "de-fra-edge-01"


def test_every_replica_needs_room_on_one_node() -> None:
    spec = AIInferenceSLASpec.model_validate(
        {**sla(8, **EU_8B).to_k8s(), "capacity": {"replicas": 2, "maxReplicas": 2}}
    )
    one_node_each = {"de-fra-edge-01": room(1, 1)}
    assert plan(spec, TIERS, capacity={"edge": one_node_each}).site == "de-fra-edge-01"
    scattered = {"edge": {"de-fra-edge-01": room(1, allocatable=2)}}
    reason = dict(plan(spec, TIERS, capacity=scattered).rejected)["edge"]
    assert reason.startswith("edge de-fra-edge-01: 1 of 2 L40S free, 2 needed (2 replica(s) x 1)")


def test_free_gpus_spread_too_thin_for_a_tensor_parallel_replica_are_named() -> None:
    tiers = {"big": tier(0.5, 10, sites=["s1"])}
    spec = sla(70, ttft_ms=5000, tpot_ms=500, rtt_ms=100)
    assert plan(spec, tiers).tensor_parallel_size == 4
    decision = plan(spec, tiers, capacity={"big": {"s1": room(2, 2, 2, allocatable=24)}})
    assert not decision.placed
    assert dict(decision.rejected)["big"] == (
        "big s1: 6 of 24 H100 free, room on its nodes for 0 of 1 replica(s) of 4 GPU(s)"
    )


def test_capacity_is_checked_after_the_tiers_static_reasons() -> None:
    decision = plan(sla(8, ttft_ms=300, rtt_ms=20), TIERS, capacity={"regional": {}})
    assert dict(decision.rejected)["regional"] == (
        "regional: network RTT up to 50 ms exceeds rttBudgetMs 20"
    )


def test_the_placed_message_says_when_the_contracted_rate_needs_more_replicas() -> None:
    doc = yaml.safe_load((SAMPLES / "sla-regional-eu-70b.yaml").read_text())["spec"]

    def message(replicas: int, max_replicas: int) -> str:
        capacity = {"replicas": replicas, "maxReplicas": max_replicas}
        return plan(AIInferenceSLASpec.model_validate({**doc, "capacity": capacity}), TIERS).message

    assert message(1, 2).endswith(
        "; the contracted rate needs 3 replicas, maxReplicas 2 serve about 92 % of it"
    )
    assert message(1, 3).endswith(
        "; the contracted rate needs 3 replicas, replicas 1 serve about 46 % of it (maxReplicas 3)"
    )
    assert "contracted rate" not in message(3, 3)
