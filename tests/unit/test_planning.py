"""`aiconn plan`: the decision for each sample, the money, and bad manifests named by field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from aiconn.cli import main
from tests.helpers import aiconn_cli

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "manifests" / "samples"

# sample -> (tier, GPUs per replica, monthly charge, max monthly credit, rejected tiers)
EXPECTED = {
    "sla-edge-urllc.yaml": ("edge", 1, "180.000000", "180.000000", ["cloud", "regional"]),
    "sla-regional-eu-70b.yaml": ("regional", 4, "800.000000", "800.000000", ["cloud", "edge"]),
    "sla-cloud-405b.yaml": ("cloud", 8, "3000.000000", "1500.000000", ["edge", "regional"]),
}


def plan_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main(["plan", "--output", "json", *args]) == 0
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    return result


@pytest.mark.parametrize("sample", sorted(EXPECTED))
def test_each_sample_prints_its_decision(sample: str, capsys: pytest.CaptureFixture[str]) -> None:
    tier, gpus, _, _, rejected = EXPECTED[sample]
    assert main(["plan", str(SAMPLES / sample)]) == 0
    out = capsys.readouterr().out
    assert f"tier:            {tier}" in out
    assert f"{gpus} x " in out and f"tensor-parallel {gpus}" in out
    for line in ("TTFT estimate:", "network +", "inference", "TPOT estimate:"):
        assert line in out
    assert "monthly charge:" in out and "credit exposure:" in out
    for other in rejected:
        assert f"\n    {other}: " in out


@pytest.mark.parametrize("sample", sorted(EXPECTED))
def test_json_reports_the_split_the_charge_and_the_exposure(
    sample: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tier, gpus, charge, credit, rejected = EXPECTED[sample]
    report = plan_json(capsys, str(SAMPLES / sample))
    assert report["tier"] == tier
    assert report["tensorParallelSize"] == report["gpusPerReplica"] == gpus
    latency = report["latency"]
    assert latency["networkMs"] + latency["inferenceTtftMs"] == pytest.approx(latency["ttftMs"])
    assert latency["ttftMs"] <= latency["ttftObjectiveMs"]
    assert latency["tpotMs"] <= latency["tpotObjectiveMs"]
    assert report["monthlyCharge"] == charge
    assert report["maxMonthlyCredit"] == credit
    assert [r["tier"] for r in report["rejected"]] == rejected


def test_exposure_is_both_schedules_largest_credits_capped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = yaml.safe_load((SAMPLES / "sla-edge-urllc.yaml").read_text())
    doc["spec"]["credits"] = {
        "availability": [{"belowPercent": 99.9, "creditPercent": 10}],
        "latency": [{"belowPercent": 99, "creditPercent": 5}],
        "capPercent": 30,
    }
    path = tmp_path / "sla.yaml"
    path.write_text(yaml.safe_dump(doc))
    report = plan_json(capsys, str(path))
    assert report["maxCreditPercent"] == "15"
    assert report["maxMonthlyCredit"] == "27.000000"  # 15 % of 180 EUR, under the 30 % cap


def test_tiers_file_overrides_the_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiers = [d for d in yaml.safe_load_all((SAMPLES / "tiers.yaml").read_text()) if d]
    only_cloud = tmp_path / "tiers.yaml"
    only_cloud.write_text(
        yaml.safe_dump_all([t for t in tiers if t["metadata"]["name"] == "cloud"])
    )
    assert main(["plan", "--tiers", str(only_cloud), str(SAMPLES / "sla-edge-urllc.yaml")]) == 1
    out = capsys.readouterr().out
    assert "no tier can serve this SLA" in out
    assert "cloud: data must stay in DE" in out
    report = plan_json(capsys, "--tiers", str(only_cloud), str(SAMPLES / "sla-cloud-405b.yaml"))
    assert report["tier"] == "cloud"
    assert report["rejected"] == []


SLA_HEAD = "apiVersion: aiconn.io/v1alpha1\nkind: AIInferenceSLA\nmetadata: {name: x}\n"
GOOD_SPEC = (
    "spec:\n  model: {name: m, source: hf://o/m, parametersBillions: 8}\n"
    "  network: {rttBudgetMs: 20}\n"
)


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        ("spec:\n  model: [1, 2\n", "yaml", "line 3"),
        (GOOD_SPEC.replace("spec:", "kind: Pod\nspec:"), "kind", "expected AIInferenceSLA"),
        ("kind: AIInferenceSLA\n" + GOOD_SPEC, "apiVersion", "expected aiconn.io/v1alpha1"),
        (SLA_HEAD + "spec: 3\n", "spec", "required"),
        (SLA_HEAD + GOOD_SPEC + "---\n" + SLA_HEAD + GOOD_SPEC, "document", "found 2"),
        (
            SLA_HEAD + GOOD_SPEC.replace("parametersBillions: 8", "parametersBillions: -1"),
            "spec.model.parametersBillions",
            "greater than 0 (got -1)",
        ),
        (
            SLA_HEAD + GOOD_SPEC.replace("rttBudgetMs: 20", "rttBudgetMs: 20, bogus: 1"),
            "spec.network.bogus",
            "Extra inputs are not permitted",
        ),
        (
            SLA_HEAD + "spec:\n  model: {name: m, source: hf://o/m, parametersBillions: 8}\n",
            "spec.network",
            "Field required",
        ),
        (
            SLA_HEAD
            + GOOD_SPEC
            + "  credits: {availability: [{belowPercent: 200, creditPercent: 5}]}\n",
            "spec.credits.availability[0].belowPercent",
            "less than or equal to 100 (got 200)",
        ),
    ],
)
def test_a_bad_manifest_names_the_field_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, field: str, reason: str
) -> None:
    path = tmp_path / "sla.yaml"
    path.write_text(text)
    assert main(["plan", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    problem = next(line for line in captured.err.splitlines() if f": {field}: " in line)
    assert reason in problem
    assert str(path) in problem


def test_a_bad_tiers_file_names_the_field_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiers = tmp_path / "tiers.yaml"
    tiers.write_text(
        "apiVersion: aiconn.io/v1alpha1\nkind: InferenceTier\nmetadata: {name: t}\n"
        "spec: {gpu: {type: X, memoryGiB: 0, countPerNode: 1}}\n"
    )
    assert main(["plan", "--tiers", str(tiers), str(SAMPLES / "sla-edge-urllc.yaml")]) == 2
    err = capsys.readouterr().err
    assert "spec.gpu.memoryGiB: Input should be greater than 0" in err
    assert "spec.maxModelBillions: Field required" in err


def test_the_installed_command_prints_the_plan_and_fails_on_a_bad_manifest(
    tmp_path: Path,
) -> None:
    good = aiconn_cli("plan", str(SAMPLES / "sla-regional-eu-70b.yaml"), timeout=60)
    assert good.returncode == 0, good.stderr
    assert "tier:            regional" in good.stdout
    bad = tmp_path / "sla.yaml"
    bad.write_text("kind: Pod\n")
    refused = aiconn_cli("plan", str(bad), timeout=60)
    assert refused.returncode == 2
    assert "kind: expected AIInferenceSLA, got 'Pod'" in refused.stderr


# sample -> (replicas the contracted rate needs, line that says whether maxReplicas fall short)
RATE_SIZING = {
    "sla-edge-urllc.yaml": (3, None),
    "sla-regional-eu-70b.yaml": (3, "shortfall:     maxReplicas 2 serve about 92 %"),
    "sla-cloud-405b.yaml": (20, "shortfall:     maxReplicas 1 serve about 5 %"),
}


@pytest.mark.parametrize("sample", sorted(RATE_SIZING))
def test_each_sample_shows_how_its_replicas_follow_from_the_rate(
    sample: str, capsys: pytest.CaptureFixture[str]
) -> None:
    replicas, shortfall = RATE_SIZING[sample]
    assert main(["plan", str(SAMPLES / sample)]) == 0
    out = capsys.readouterr().out
    for step in ("rate sizing:", "one replica:", "KV cache:", "batch:", "decode step:", "prefill:"):
        assert f"  {step}" in out
    assert f"    replicas:      {replicas} for " in out
    assert (shortfall in out) if shortfall else ("shortfall:" not in out)
    report = plan_json(capsys, str(SAMPLES / sample))
    assert report["rateSizing"]["sized"] is True
    assert report["rateSizing"]["replicas"] == replicas


def test_tiers_without_gpu_figures_say_the_rate_was_not_sized(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = list(yaml.safe_load_all((SAMPLES / "tiers.yaml").read_text()))
    for doc in docs:
        for figure in ("memoryBandwidthGBps", "bf16Tflops", "fp8Tflops"):
            doc["spec"]["gpu"].pop(figure, None)
    tiers = tmp_path / "tiers.yaml"
    tiers.write_text(yaml.safe_dump_all(docs))
    sample = str(SAMPLES / "sla-edge-urllc.yaml")
    assert main(["plan", "--tiers", str(tiers), sample]) == 0
    assert "rate sizing:     not sized for the contracted rate: the tier's L40S" in (
        capsys.readouterr().out
    )
    report = plan_json(capsys, "--tiers", str(tiers), sample)
    assert report["rateSizing"]["sized"] is False
