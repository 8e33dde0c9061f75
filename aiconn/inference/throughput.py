"""Replicas for the contracted rate, from what one replica's GPUs can physically deliver.

An SLA's `tokens.rateLimit` lets the tenant send `requestsPerSecond` requests and
`tokensPerMinute` tokens (prompt plus completion); the gateway admits that much, so the
replicas behind it must serve that much within the TPOT objective. This module bounds what one
replica (a tensor-parallel group of `tp` GPUs) can serve, from the tier's published GPU figures,
the way LLM serving behaves on current GPUs:

- **Decode is bound by memory bandwidth.** Each step produces one token for every running
  sequence and reads all weights once plus each sequence's KV cache:
  step(B) = max((weights + B x ctx x kvBytesPerToken) / bandwidth, 2 x params x B / FLOPS).
  The second term is the compute floor large batches reach.
- **Prefill is bound by compute**: about 2 x params FLOPs per prompt token.
- **Concurrency is bound by KV-cache capacity**: the batch B is at most the sequences whose KV
  cache fits beside the weights (`aiconn.inference.sizing`'s memory model), at most the batch
  whose step still meets the TPOT objective (a larger batch would break the SLA it serves) and
  at most vLLM's default `--max-num-seqs` (256).

Where the model is uncertain, it leans to the safe side of a contract:

- the contract does not split prompt and completion tokens, so every token is charged the cost
  of the dearer kind (decode or prefill per token); time is linear in the split, so no split
  needs more replicas than this;
- every sequence holds the KV cache of a whole request (ctx = tokensPerMinute / 60 /
  requestsPerSecond, at most maxModelLen) for its whole life, where it grows from the prompt;
- peak figures are derated: `BANDWIDTH_EFFICIENCY` (decode kernels reach 70-85 % of peak HBM
  bandwidth: one public vLLM measurement, Llama-3.1-8B bf16 on one A100 40GB, one request at a
  time, decodes about 75 tokens/s, 77 % of the 1555 GB/s ceiling; johnmusgrave.com/p/
  vllm-throughput-latency-sweep-on), `COMPUTE_EFFICIENCY` (prefill reaches 40-60 % of dense
  peak), and
  `TENSOR_PARALLEL_EFFICIENCY` once more when a replica spans GPUs (all-reduce per layer);
- replicas run at `TARGET_UTILIZATION`, leaving room for the gateway's one-second burst;
- fp8 weights use FP8 tensor cores only where the GPU has them; int8/int4 weights are taken as
  weight-only quantization, computed at the BF16 rate;
- mixture-of-experts models are not modelled: `parametersBillions` counts every parameter as
  active, which overstates their cost.

Not modelled at all: speculative decoding, prefix caching, CPU offload, network between replicas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from aiconn.inference.sizing import (
    ACTIVATION_BYTES_PER_PARAM,
    DEFAULT_GPU_MEMORY_UTILIZATION,
    GIB,
    PER_GPU_OVERHEAD_GIB,
    kv_bytes_per_token,
    weight_bytes,
)
from aiconn.resources.v1alpha1.sla import ModelSpec, RateLimit
from aiconn.resources.v1alpha1.tier import Gpu

BANDWIDTH_EFFICIENCY = 0.6
COMPUTE_EFFICIENCY = 0.4
TENSOR_PARALLEL_EFFICIENCY = 0.85
TARGET_UTILIZATION = 0.8
MAX_NUM_SEQS = 256


@dataclass(frozen=True)
class ReplicaThroughput:
    """What one replica serves under the SLA's TPOT objective, and the replicas the rate needs."""

    tensor_parallel_size: int
    contracted_tokens_per_second: float
    """tokensPerMinute / 60."""
    tokens_per_request: float
    """Context each sequence is sized with: tokensPerMinute / 60 / requestsPerSecond, capped at
    maxModelLen."""
    peak_bandwidth_gb_per_s: float
    """Published memory bandwidth of the replica's GPUs together."""
    peak_tflops: float
    """Published dense tensor TFLOPS of the replica's GPUs together, at the dtype's rate."""
    bandwidth_gb_per_s: float
    """Memory bandwidth the replica is credited with, after the efficiency factors."""
    tflops: float
    """Tensor TFLOPS the replica is credited with, after the efficiency factors."""
    weights_gb: float
    """Weights read by every decode step, in GB (10^9 bytes)."""
    kv_per_sequence_mb: float
    """KV cache of one sequence of tokens_per_request, in MB (10^6 bytes)."""
    kv_cache_gib: float
    """KV-cache room beside weights, activations and per-GPU overhead."""
    batch_by_kv_cache: int
    """Sequences of tokens_per_request whose KV cache fits."""
    batch_by_tpot: int
    """Largest batch whose decode step meets the TPOT objective."""
    batch: int
    """The batch the replica runs: the smallest of the two and MAX_NUM_SEQS."""
    step_memory_ms: float
    """Reading the weights and the batch's KV cache at the credited bandwidth."""
    step_compute_ms: float
    """2 x params FLOPs for each sequence of the batch at the credited compute."""
    step_ms: float
    """Decode step at that batch, the larger of the two: the TPOT at full load."""
    decode_tokens_per_second: float
    """batch / step."""
    prefill_tokens_per_second: float
    """Prompt tokens per second at the credited compute."""
    replica_tokens_per_second: float
    """What one replica is counted on for: the dearer kind's rate x TARGET_UTILIZATION."""
    replicas: int
    """Replicas the contracted token rate needs."""

    def share_served(self, replicas: int) -> float:
        """Share of the contracted token rate `replicas` replicas serve, at most 1."""
        return min(
            replicas * self.replica_tokens_per_second / self.contracted_tokens_per_second, 1.0
        )

    @property
    def limited_by(self) -> str:
        """What caps the batch, in words."""
        if self.batch == self.batch_by_tpot:
            return "the TPOT objective"
        if self.batch == self.batch_by_kv_cache:
            return "KV-cache capacity"
        return "vLLM max-num-seqs"


def replica_throughput(
    *,
    model: ModelSpec,
    gpu: Gpu,
    tensor_parallel_size: int,
    rate: RateLimit,
    tpot_ms: float,
) -> ReplicaThroughput | str:
    """Size replicas for `rate` on `gpu`, or say (one line) why they cannot be sized."""
    if gpu.memory_bandwidth_g_bps is None or gpu.bf16_tflops is None:
        return (
            f"not sized for the contracted rate: the tier's {gpu.type} states no "
            "memoryBandwidthGBps and bf16Tflops"
        )
    tp = tensor_parallel_size
    derate = TENSOR_PARALLEL_EFFICIENCY if tp > 1 else 1.0
    peak_tflops = gpu.bf16_tflops
    if model.dtype == "fp8" and gpu.fp8_tflops is not None:
        peak_tflops = gpu.fp8_tflops
    bandwidth = tp * gpu.memory_bandwidth_g_bps * 1e9 * BANDWIDTH_EFFICIENCY * derate
    flops = tp * peak_tflops * 1e12 * COMPUTE_EFFICIENCY * derate

    params = model.parameters_billions * 1e9
    weights = weight_bytes(model)
    tokens_per_second = rate.tokens_per_minute / 60
    ctx = min(max(tokens_per_second / rate.requests_per_second, 1.0), float(model.max_model_len))
    kv_per_sequence = kv_bytes_per_token(model) * ctx
    kv_room = (
        tp * gpu.memory_gi_b * GIB * DEFAULT_GPU_MEMORY_UTILIZATION
        - weights
        - ACTIVATION_BYTES_PER_PARAM * params
        - tp * PER_GPU_OVERHEAD_GIB * GIB
    )

    def memory_seconds(batch: int) -> float:
        return (weights + batch * kv_per_sequence) / bandwidth

    def compute_seconds(batch: int) -> float:
        return 2 * params * batch / flops

    def step_seconds(batch: int) -> float:
        return max(memory_seconds(batch), compute_seconds(batch))

    tpot = tpot_ms / 1000
    by_kv = max(math.floor(kv_room / kv_per_sequence), 0)
    by_tpot = max(
        min(
            math.floor((tpot * bandwidth - weights) / kv_per_sequence),
            math.floor(tpot * flops / (2 * params)),
        ),
        0,
    )
    batch = min(by_kv, by_tpot, MAX_NUM_SEQS)
    if batch < 1:
        why = (
            f"one sequence's decode step takes {step_seconds(1) * 1000:.1f} ms, over the "
            f"{tpot_ms:g} ms TPOT objective"
            if by_tpot < 1
            else f"the KV cache holds no request of {ctx:.0f} tokens"
        )
        return f"not sized for the contracted rate on {tp} x {gpu.type}: {why}"
    step = step_seconds(batch)
    decode = batch / step
    prefill = flops / (2 * params)
    per_replica = min(decode, prefill) * TARGET_UTILIZATION
    return ReplicaThroughput(
        tensor_parallel_size=tp,
        contracted_tokens_per_second=tokens_per_second,
        tokens_per_request=ctx,
        peak_bandwidth_gb_per_s=tp * gpu.memory_bandwidth_g_bps,
        peak_tflops=tp * peak_tflops,
        bandwidth_gb_per_s=bandwidth / 1e9,
        tflops=flops / 1e12,
        weights_gb=weights / 1e9,
        kv_per_sequence_mb=kv_per_sequence / 1e6,
        kv_cache_gib=max(kv_room, 0.0) / GIB,
        batch_by_kv_cache=by_kv,
        batch_by_tpot=by_tpot,
        batch=batch,
        step_memory_ms=memory_seconds(batch) * 1000,
        step_compute_ms=compute_seconds(batch) * 1000,
        step_ms=step * 1000,
        decode_tokens_per_second=decode,
        prefill_tokens_per_second=prefill,
        replica_tokens_per_second=per_replica,
        replicas=max(math.ceil(tokens_per_second / per_replica), 1),
    )
