"""Every vLLM argument the operator renders parses with vLLM's own CLI parser (the CPU build in
its own environment), and parses to the values the SLA asked for."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from aiconn.devstack.vllm import vllm_python
from aiconn.inference.placement import default_tiers, plan
from aiconn.inference.workload import histogram_buckets, vllm_args
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "samples"

PARSE = """
import json, sys
from vllm.entrypoints.launchers.cli_args import make_arg_parser
from vllm.utils.argparse_utils import FlexibleArgumentParser
parser = make_arg_parser(FlexibleArgumentParser())
out = []
for argv in json.load(sys.stdin):
    ns = parser.parse_args(argv)
    out.append({k: getattr(ns, k) for k in (
        "model", "served_model_name", "tensor_parallel_size", "max_model_len",
        "gpu_memory_utilization", "dtype", "quantization", "host", "port",
        "custom_histogram_buckets")})
print(json.dumps(out, default=str))
"""


def rendered() -> list[tuple[str, AIInferenceSLASpec, list[str]]]:
    cases = []
    tiers = default_tiers()
    for path in sorted(SAMPLES.glob("sla-*.yaml")):
        doc = yaml.safe_load(path.read_text())
        spec = AIInferenceSLASpec.model_validate(doc["spec"])
        for dtype in ("bfloat16", "float16", "fp8", "int8", "int4"):
            variant = spec.model_copy(
                update={"model": spec.model.model_copy(update={"dtype": dtype})}
            )
            decision = plan(variant, tiers)
            if decision.placed:
                cases.append((f"{path.stem}/{dtype}", variant, vllm_args(variant, decision)))
    return cases


def test_rendered_arguments_parse_with_vllms_own_parser() -> None:
    cases = rendered()
    assert len(cases) >= 10
    result = subprocess.run(
        [str(vllm_python()), "-c", PARSE],
        input=json.dumps([argv for _, _, argv in cases]),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    parsed = json.loads(result.stdout.strip().splitlines()[-1])
    for (label, spec, argv), ns in zip(cases, parsed, strict=True):
        assert ns["served_model_name"] == [spec.model.name], label
        assert ns["max_model_len"] == spec.model.max_model_len, label
        assert ns["tensor_parallel_size"] == int(argv[argv.index("--tensor-parallel-size") + 1])
        assert ns["port"] == 8001 and ns["host"] == "127.0.0.1", label
        buckets = ns["custom_histogram_buckets"]
        assert buckets == histogram_buckets(spec), label
        assert spec.objectives.ttft.threshold_ms / 1000 in buckets["time_to_first_token"]
        assert spec.objectives.tpot.threshold_ms / 1000 in buckets["inter_token_latency"]
        if spec.model.dtype == "fp8":
            assert ns["quantization"] == "fp8", label
