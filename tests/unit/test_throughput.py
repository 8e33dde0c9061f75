"""Replicas for the contracted rate follow from the GPU's bandwidth, compute and memory."""

from __future__ import annotations

import math
from typing import Any

import pytest

from aiconn.inference.placement import default_tiers
from aiconn.inference.sizing import GIB
from aiconn.inference.throughput import (
    BANDWIDTH_EFFICIENCY,
    COMPUTE_EFFICIENCY,
    MAX_NUM_SEQS,
    TARGET_UTILIZATION,
    TENSOR_PARALLEL_EFFICIENCY,
    ReplicaThroughput,
    replica_throughput,
)
from aiconn.resources.v1alpha1.sla import ModelSpec, RateLimit
from aiconn.resources.v1alpha1.tier import Gpu

TIERS = default_tiers()
L40S = TIERS["edge"].gpu
H100 = TIERS["regional"].gpu
A100 = TIERS["cloud"].gpu
LLAMA3_8B = {"numLayers": 32, "numKvHeads": 8, "headDim": 128}
LLAMA3_70B = {"numLayers": 80, "numKvHeads": 8, "headDim": 128}


def model(params: float, dtype: str = "bfloat16", **extra: Any) -> ModelSpec:
    return ModelSpec.model_validate(
        {"name": "m", "source": "hf://org/m", "parametersBillions": params, "dtype": dtype, **extra}
    )


def rate(rps: float, tpm: int) -> RateLimit:
    return RateLimit(requests_per_second=rps, tokens_per_minute=tpm)


def sized(m: ModelSpec, gpu: Gpu, tp: int, r: RateLimit, tpot_ms: float = 50) -> ReplicaThroughput:
    result = replica_throughput(model=m, gpu=gpu, tensor_parallel_size=tp, rate=r, tpot_ms=tpot_ms)
    assert isinstance(result, ReplicaThroughput), result
    return result


def test_the_shipped_tiers_state_the_published_gpu_figures() -> None:
    assert (L40S.memory_bandwidth_g_bps, L40S.bf16_tflops, L40S.fp8_tflops) == (864, 362, 733)
    assert (H100.memory_bandwidth_g_bps, H100.bf16_tflops, H100.fp8_tflops) == (3350, 989, 1979)
    assert (A100.memory_bandwidth_g_bps, A100.bf16_tflops, A100.fp8_tflops) == (2039, 312, None)


def test_llama3_8b_on_one_l40s_worked_by_hand() -> None:
    """40 req/s and 600,000 tokens/min: 10,000 tokens/s of 250-token requests."""
    result = sized(model(8, architecture=LLAMA3_8B), L40S, 1, rate(40, 600_000))
    bandwidth = 864e9 * BANDWIDTH_EFFICIENCY
    flops = 362e12 * COMPUTE_EFFICIENCY
    weights, kv_sequence = 16e9, 2 * 32 * 8 * 128 * 2 * 250
    kv_room = 48 * GIB * 0.92 - weights - 0.2 * 8e9 - 2 * GIB
    assert result.tokens_per_request == 250
    assert result.batch_by_kv_cache == math.floor(kv_room / kv_sequence) == 844
    # TPOT 50 ms: (0.05 s x bandwidth - weights) / KV per sequence; compute allows more.
    assert result.batch_by_tpot == math.floor((0.05 * bandwidth - weights) / kv_sequence) == 302
    assert result.batch == MAX_NUM_SEQS
    assert result.limited_by == "vLLM max-num-seqs"
    step = (weights + MAX_NUM_SEQS * kv_sequence) / bandwidth
    assert result.step_ms == pytest.approx(step * 1000)
    assert result.step_ms > result.step_compute_ms, "decode at this batch is memory-bound"
    assert result.prefill_tokens_per_second == pytest.approx(flops / (2 * 8e9))
    per_replica = min(MAX_NUM_SEQS / step, flops / 16e9) * TARGET_UTILIZATION
    assert result.replica_tokens_per_second == pytest.approx(per_replica)
    assert result.replicas == math.ceil(10_000 / per_replica) == 3


def test_a_tight_tpot_objective_caps_the_batch_and_adds_replicas() -> None:
    m, r = model(8, architecture=LLAMA3_8B), rate(40, 600_000)
    loose, tight = sized(m, L40S, 1, r, tpot_ms=50), sized(m, L40S, 1, r, tpot_ms=35)
    assert tight.batch == tight.batch_by_tpot < loose.batch
    assert tight.limited_by == "the TPOT objective"
    assert tight.step_ms <= 35
    assert tight.replicas > loose.replicas


def test_long_requests_are_limited_by_the_kv_cache() -> None:
    m = model(8, architecture=LLAMA3_8B, maxModelLen=32768)
    result = sized(m, H100, 1, rate(1, 1_200_000), tpot_ms=200)
    assert result.tokens_per_request == 20_000
    assert result.batch == result.batch_by_kv_cache < MAX_NUM_SEQS
    assert result.limited_by == "KV-cache capacity"


def test_a_request_is_sized_at_most_at_max_model_len() -> None:
    result = sized(model(8, architecture=LLAMA3_8B), L40S, 1, rate(1, 6_000_000))
    assert result.tokens_per_request == 8192


def test_prefill_bounds_a_compute_heavy_model_and_tensor_parallel_is_derated() -> None:
    result = sized(model(70, architecture=LLAMA3_70B), H100, 4, rate(50, 1_000_000), 80)
    flops = 4 * 989e12 * COMPUTE_EFFICIENCY * TENSOR_PARALLEL_EFFICIENCY
    assert result.tflops == pytest.approx(flops / 1e12)
    assert result.prefill_tokens_per_second == pytest.approx(flops / (2 * 70e9))
    assert result.replica_tokens_per_second <= result.prefill_tokens_per_second
    assert result.replicas == 3


@pytest.mark.parametrize(
    ("gpu", "peak_tflops"),
    [(H100, 1979), (L40S, 733), (A100, 312)],
)
def test_fp8_weights_use_fp8_tensor_cores_only_where_the_gpu_has_them(
    gpu: Gpu, peak_tflops: float
) -> None:
    result = sized(model(8, "fp8", architecture=LLAMA3_8B), gpu, 1, rate(10, 60_000), 100)
    assert result.peak_tflops == peak_tflops


def test_weight_only_quantization_computes_at_the_bf16_rate() -> None:
    result = sized(model(8, "int4", architecture=LLAMA3_8B), H100, 1, rate(10, 60_000))
    assert result.peak_tflops == 989
    assert result.weights_gb == 4


def test_more_contracted_rate_never_needs_fewer_replicas() -> None:
    m = model(8, architecture=LLAMA3_8B)
    counts = [sized(m, L40S, 1, rate(40, tpm)).replicas for tpm in range(60_000, 3_000_001, 60_000)]
    assert counts == sorted(counts)
    assert counts[0] == 1
    assert counts[-1] > 10


def test_share_served_is_what_the_replicas_carry_at_most_all() -> None:
    result = sized(model(70, architecture=LLAMA3_70B), H100, 4, rate(50, 1_000_000), 80)
    assert result.share_served(2) == pytest.approx(
        2 * result.replica_tokens_per_second / (1_000_000 / 60)
    )
    assert result.share_served(result.replicas) == 1.0


def test_a_tier_without_gpu_figures_is_not_sized() -> None:
    bare = Gpu(type="X1", memory_gi_b=80, count_per_node=8)
    reason = replica_throughput(
        model=model(8), gpu=bare, tensor_parallel_size=1, rate=rate(1, 600), tpot_ms=50
    )
    assert reason == (
        "not sized for the contracted rate: the tier's X1 states no memoryBandwidthGBps "
        "and bf16Tflops"
    )


def test_a_tpot_objective_below_one_weight_read_cannot_be_met() -> None:
    reason = replica_throughput(
        model=model(8, architecture=LLAMA3_8B),
        gpu=L40S,
        tensor_parallel_size=1,
        rate=rate(1, 600),
        tpot_ms=20,
    )
    assert isinstance(reason, str)
    assert reason.startswith("not sized for the contracted rate on 1 x L40S: one sequence's")
    assert "over the 20 ms TPOT objective" in reason
