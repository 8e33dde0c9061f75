"""GPU sizing: how many GPUs of a tier one replica of a model needs, or why it cannot fit.

vLLM refuses to start when the weights, its activation workspace and the KV cache of one
full-length sequence do not fit in `gpu_memory_utilization` of the GPUs it shards over. Placement
asks the same question before a pod ever reaches a node, so an SLA that cannot run is refused at
apply time with a reason instead of crash-looping on a GPU node.

The model, all in bytes:

- weights = parameters x bytes per parameter of the dtype (`DTYPE_BYTES`);
- KV cache = bytes per token x `maxModelLen` (one full-length sequence: vLLM's own start-up
  check). Bytes per token = 2 (K and V) x layers x KV heads x head dim x 2 bytes, because vLLM
  keeps the cache in the 16-bit activation dtype even for fp8/int8/int4 weights unless
  `--kv-cache-dtype` says otherwise, which aiconn does not render;
- activations = `ACTIVATION_BYTES_PER_PARAM` x parameters (the prefill workspace grows with the
  hidden size, which grows with the parameter count; it does not shrink with weight quantization);
- `PER_GPU_OVERHEAD_GIB` per GPU for the CUDA context, CUDA graphs and NCCL buffers.

The constants reproduce the reference facts: Llama-3-8B bf16 fits one L40S 48 GB, Llama-3-70B
bf16 needs 4 x 80 GB and fp8 2 x 80 GB.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from aiconn.resources.v1alpha1.sla import DTYPE_BYTES, ModelSpec
from aiconn.resources.v1alpha1.tier import Gpu

GIB = 1024**3
KIB = 1024
DEFAULT_GPU_MEMORY_UTILIZATION = 0.92
TENSOR_PARALLEL_SIZES = (1, 2, 4, 8, 16)

KV_CACHE_DTYPE_BYTES = 2
ACTIVATION_BYTES_PER_PARAM = 0.2
PER_GPU_OVERHEAD_GIB = 2.0

# Without an architecture, KV bytes per token follow a power law through two calibration points
# (bf16): Llama-3-8B 128 KiB and Llama-3-70B 320 KiB. Both use grouped-query attention with 8 KV
# heads, as most current models do; a model without GQA (Llama-2-13B: 800 KiB) should state its
# architecture to be sized exactly.
_KV_SMALL = (8.0, 128 * KIB)
_KV_LARGE = (70.0, 320 * KIB)
_KV_EXPONENT = math.log(_KV_LARGE[1] / _KV_SMALL[1]) / math.log(_KV_LARGE[0] / _KV_SMALL[0])


@dataclass(frozen=True)
class Sizing:
    """The memory one replica needs and the tensor-parallel size that holds it."""

    weights_gib: float
    """Model weights."""
    kv_cache_gib: float
    """KV cache of one full-length sequence."""
    activations_gib: float
    """Activation workspace."""
    tensor_parallel_size: int | None
    """Smallest power-of-two GPU count that holds the model; None when none does."""
    need_gib: float
    """GPU memory the replica needs at that size (or at the largest size tried), before the
    utilization cap is applied: the number to compare with what the GPUs have."""
    reason: str
    """Empty when it fits; otherwise one line saying why not."""

    @property
    def fits(self) -> bool:
        """Whether some tensor-parallel size holds the model."""
        return self.tensor_parallel_size is not None


def kv_bytes_per_token(model: ModelSpec) -> float:
    """KV-cache bytes per token: exact from the architecture, else estimated from the size."""
    arch = model.architecture
    if arch is not None:
        return float(2 * arch.num_layers * arch.num_kv_heads * arch.head_dim * KV_CACHE_DTYPE_BYTES)
    params, bytes_at_params = _KV_SMALL
    return float(bytes_at_params * (model.parameters_billions / params) ** _KV_EXPONENT)


def weight_bytes(model: ModelSpec) -> float:
    """Bytes of the model's weights at its dtype."""
    return model.parameters_billions * 1e9 * DTYPE_BYTES[model.dtype]


def usable_tensor_parallel_sizes(gpu: Gpu) -> tuple[int, ...]:
    """Tensor-parallel sizes a node can host: powers of two up to its GPU count."""
    return tuple(tp for tp in TENSOR_PARALLEL_SIZES if tp <= gpu.count_per_node)


def size(
    model: ModelSpec,
    gpu: Gpu,
    *,
    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION,
) -> Sizing:
    """Size one replica of `model` on `gpu` nodes: the smallest tensor-parallel size that fits."""
    weights = weight_bytes(model)
    kv_cache = kv_bytes_per_token(model) * model.max_model_len
    activations = ACTIVATION_BYTES_PER_PARAM * model.parameters_billions * 1e9
    shared = weights + kv_cache + activations

    def need(tp: int) -> float:
        return (shared + tp * PER_GPU_OVERHEAD_GIB * GIB) / gpu_memory_utilization

    sizes = usable_tensor_parallel_sizes(gpu)
    chosen = next((tp for tp in sizes if need(tp) <= tp * gpu.memory_gi_b * GIB), None)
    tried = chosen if chosen is not None else sizes[-1]
    reason = ""
    if chosen is None:
        reason = (
            f"{_describe(model)} needs {need(tried) / GIB:.1f} GiB of GPU memory, "
            f"tier has {tried * gpu.memory_gi_b:g} GiB per replica "
            f"({tried} x {gpu.memory_gi_b:g} GiB {gpu.type})"
        )
    return Sizing(
        weights_gib=weights / GIB,
        kv_cache_gib=kv_cache / GIB,
        activations_gib=activations / GIB,
        tensor_parallel_size=chosen,
        need_gib=need(tried) / GIB,
        reason=reason,
    )


def _describe(model: ModelSpec) -> str:
    return f"{model.parameters_billions:g}B {model.dtype}"
