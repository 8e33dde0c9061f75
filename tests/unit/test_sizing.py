"""GPU sizing reproduces the reference facts about real models and real GPUs."""

from __future__ import annotations

from typing import Any

import pytest

from aiconn.inference.sizing import (
    KIB,
    kv_bytes_per_token,
    size,
    usable_tensor_parallel_sizes,
    weight_bytes,
)
from aiconn.resources.v1alpha1.sla import ModelSpec
from aiconn.resources.v1alpha1.tier import Gpu

L40S_X2 = Gpu(type="L40S", memory_gi_b=48, count_per_node=2)
L40S_X1 = Gpu(type="L40S", memory_gi_b=48, count_per_node=1)
H100_X8 = Gpu(type="H100", memory_gi_b=80, count_per_node=8)

LLAMA3_8B = {"numLayers": 32, "numKvHeads": 8, "headDim": 128}
LLAMA3_70B = {"numLayers": 80, "numKvHeads": 8, "headDim": 128}
LLAMA2_13B = {"numLayers": 40, "numKvHeads": 40, "headDim": 128}


def model(params: float, dtype: str = "bfloat16", **extra: Any) -> ModelSpec:
    return ModelSpec.model_validate(
        {"name": "m", "source": "hf://org/m", "parametersBillions": params, "dtype": dtype, **extra}
    )


@pytest.mark.parametrize(
    ("arch", "params", "kib"),
    [
        (LLAMA3_8B, 8, 128),
        (LLAMA3_70B, 70, 320),
        (LLAMA2_13B, 13, 800),
        (None, 8, 128),
        (None, 70, 320),
    ],
)
def test_kv_bytes_per_token_match_published_figures(
    arch: dict[str, int] | None, params: float, kib: float
) -> None:
    spec = model(params, architecture=arch) if arch else model(params)
    assert kv_bytes_per_token(spec) == pytest.approx(kib * KIB)


def test_kv_estimate_grows_with_model_size() -> None:
    sizes = [kv_bytes_per_token(model(p)) for p in (1, 8, 13, 70, 405)]
    assert sizes == sorted(sizes)


@pytest.mark.parametrize(
    ("dtype", "bytes_per_param"),
    [("bfloat16", 2), ("float16", 2), ("fp8", 1), ("int8", 1), ("int4", 0.5)],
)
def test_weights_are_params_times_dtype_bytes(dtype: str, bytes_per_param: float) -> None:
    assert weight_bytes(model(7, dtype)) == 7e9 * bytes_per_param


@pytest.mark.parametrize(
    ("case", "spec", "gpu", "tensor_parallel_size"),
    [
        ("Llama-3-8B bf16 fits one L40S", model(8, architecture=LLAMA3_8B), L40S_X2, 1),
        ("Llama-3-70B bf16 needs 4 x 80 GB", model(70, architecture=LLAMA3_70B), H100_X8, 4),
        ("Llama-3-70B fp8 needs 2 x 80 GB", model(70, "fp8", architecture=LLAMA3_70B), H100_X8, 2),
        (
            "Llama-2-13B bf16 fits L40S with a short context",
            model(13, architecture=LLAMA2_13B, maxModelLen=4096),
            L40S_X1,
            1,
        ),
        ("70B bf16 does not fit two L40S", model(70), L40S_X2, None),
        ("405B bf16 does not fit 8 x 80 GB", model(405), H100_X8, None),
        ("405B fp8 fits 8 x 80 GB", model(405, "fp8"), H100_X8, 8),
    ],
)
def test_smallest_tensor_parallel_size_that_fits(
    case: str, spec: ModelSpec, gpu: Gpu, tensor_parallel_size: int | None
) -> None:
    assert size(spec, gpu).tensor_parallel_size == tensor_parallel_size, case


def test_infeasible_reason_names_model_need_and_what_the_tier_has() -> None:
    sizing = size(model(70), L40S_X2)
    assert not sizing.fits
    assert sizing.reason.startswith("70B bfloat16 needs ")
    assert "tier has 96 GiB per replica (2 x 48 GiB L40S)" in sizing.reason
    assert f"{sizing.need_gib:.1f} GiB" in sizing.reason
    assert sizing.need_gib > 96


def test_feasible_sizing_has_no_reason_and_need_within_the_gpus() -> None:
    sizing = size(model(8, architecture=LLAMA3_8B), L40S_X2)
    assert sizing.fits and sizing.reason == ""
    assert sizing.need_gib <= 48
    assert sizing.weights_gib == pytest.approx(16e9 / 1024**3)
    assert sizing.kv_cache_gib == pytest.approx(8192 * 128 * KIB / 1024**3)


def test_a_longer_context_can_need_more_gpus() -> None:
    short = size(model(13, architecture=LLAMA2_13B, maxModelLen=4096), L40S_X2)
    long = size(model(13, architecture=LLAMA2_13B, maxModelLen=32768), L40S_X2)
    assert (short.tensor_parallel_size, long.tensor_parallel_size) == (1, 2)


def test_lower_memory_utilization_needs_more_memory() -> None:
    spec = model(8)
    assert size(spec, H100_X8, gpu_memory_utilization=0.5).need_gib > size(spec, H100_X8).need_gib


@pytest.mark.parametrize(
    ("count", "sizes"),
    [(1, (1,)), (2, (1, 2)), (3, (1, 2)), (8, (1, 2, 4, 8)), (16, (1, 2, 4, 8, 16))],
)
def test_tensor_parallel_sizes_are_powers_of_two_up_to_the_node(
    count: int, sizes: tuple[int, ...]
) -> None:
    assert (
        usable_tensor_parallel_sizes(Gpu(type="X", memory_gi_b=80, count_per_node=count)) == sizes
    )
