"""The InferenceTier resource: a class of GPU sites (edge, regional, cloud) SLAs are placed on.

Shipped defaults follow the article's table: edge L40S 48 GB for models up to 13B at 5-15 ms,
regional H100 80 GB up to 70B at 20-50 ms, cloud A100 80 GB for 70B and more at 150-300 ms.

A tier states its GPU's published peak figures (memory bandwidth, dense tensor FLOPs) so that
`aiconn.inference.throughput` can size replicas for a contracted rate from physics; derating to
what serving achieves is that module's business, not the tier's. Nodes belong to a tier when
they carry all of its `nodeSelector` labels, and to a site by the `SITE_LABEL` label.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from aiconn.resources.v1alpha1.meta import CamelModel, cel, with_rules

SITE_LABEL = "topology.aiconn.io/site"
"""Node label naming the site a node stands at; the inference pods are pinned to it."""


class Gpu(CamelModel):
    """The accelerators one node of this tier offers."""

    type: str = Field(min_length=1, max_length=63)
    """GPU model, for example L40S, H100 or A100."""
    memory_gi_b: float = Field(alias="memoryGiB", gt=0, le=1024)
    """Memory of one GPU in GiB."""
    count_per_node: int = Field(ge=1, le=16)
    """GPUs per node: the largest tensor-parallel size a replica can use."""
    memory_bandwidth_g_bps: float | None = Field(
        default=None, alias="memoryBandwidthGBps", gt=0, le=100_000
    )
    """Peak memory bandwidth of one GPU in GB/s (10^9 bytes) as published; bounds decode.
    Without it (or bf16Tflops) replicas are not sized for the contracted rate."""
    bf16_tflops: float | None = Field(default=None, alias="bf16Tflops", gt=0, le=100_000)
    """Peak dense (no sparsity) BF16 tensor TFLOPS of one GPU as published; bounds prefill."""
    fp8_tflops: float | None = Field(default=None, alias="fp8Tflops", gt=0, le=100_000)
    """Peak dense FP8 tensor TFLOPS; absent on GPUs without FP8 tensor cores (A100), where fp8
    weights are computed at the BF16 rate."""


class RttRange(CamelModel):
    """Round-trip time between the customer and this tier, in milliseconds."""

    model_config = with_rules(cel("self.maxMs >= self.minMs", "maxMs must be >= minMs"))
    min_ms: float = Field(ge=0, le=10000)
    """Typical lowest RTT in milliseconds."""
    max_ms: float = Field(ge=0, le=10000)
    """Typical highest RTT in milliseconds; placement budgets with this one."""


class InferencePerformance(CamelModel):
    """Latency of a reference 8B model on one GPU of this tier, used to estimate other models."""

    ttft_ms: float = Field(default=200, gt=0, le=60000)
    """Time to first token of an 8B model on one GPU, in milliseconds."""
    tpot_ms: float = Field(default=30, gt=0, le=10000)
    """Time per output token of an 8B model on one GPU, in milliseconds."""


class InferenceTierSpec(CamelModel):
    """A tier of GPU sites that AIInferenceSLAs can be placed on."""

    gpu: Gpu
    """Accelerators per node."""
    max_model_billions: float = Field(gt=0, le=10000)
    """Largest model, in billions of parameters, the operator offers on this tier."""
    network_rtt: RttRange
    """Typical network round trip from customers to this tier."""
    performance: InferencePerformance = InferencePerformance()
    """Reference latencies used to estimate time to first token and per output token."""
    price_per_million_tokens: float = Field(ge=0, le=1_000_000)
    """Provider's cost of one million tokens on this tier; placement prefers the cheapest."""
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    """ISO 4217 currency of the price."""
    regions: list[str] = Field(default_factory=list, max_length=64)
    """Jurisdictions (ISO 3166 alpha-2 codes or EU) whose data may be processed here."""
    sites: list[str] = Field(default_factory=list, max_length=1024)
    """Sites (edge locations, data centres) that belong to this tier."""
    node_selector: dict[str, str] = Field(default_factory=dict)
    """Node labels that pin this tier's inference pods to its nodes."""
    tolerations: list[dict[str, Any]] = Field(default_factory=list, max_length=32)
    """Pod tolerations for this tier's tainted GPU nodes (core/v1 Toleration objects)."""
