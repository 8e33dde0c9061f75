"""The CRDs against the real API server: they install, every sample applies, the table columns
come out of the server, bad specs are refused naming the field, and every field is described."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from aiconn.devstack.kube import apply_manifests, load_documents
from aiconn.resources.v1alpha1 import crds
from aiconn.resources.v1alpha1.meta import GROUP, VERSION
from tests.factories import sla_manifest
from tests.helpers import sla_table

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "manifests" / "samples"

VALID_SLA: dict[str, Any] = sla_manifest(
    "probe",
    {
        "model": {
            "name": "llama-3-8b",
            "source": "hf://meta-llama/Meta-Llama-3-8B-Instruct",
            "parametersBillions": 8,
        },
        "network": {"rttBudgetMs": 20},
    },
)


def _with(path: str, value: Any) -> dict[str, Any]:
    """VALID_SLA with `value` set at the dotted `path` (list indexes allowed)."""
    obj = copy.deepcopy(VALID_SLA)
    node: Any = obj["spec"]
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
    node[keys[-1]] = value
    return obj


def _create(k8s: Any, namespace: str, body: dict[str, Any]) -> Any:
    return client.CustomObjectsApi(k8s).create_namespaced_custom_object(
        GROUP, VERSION, namespace, "aiinferenceslas", body
    )


def test_committed_crds_are_what_the_models_render() -> None:
    for info in crds.RESOURCES:
        assert crds.crd_path(ROOT / "crds", info).read_text() == crds.render_yaml(info)


def test_crds_are_established(k8s: Any) -> None:
    ext = client.ApiextensionsV1Api(k8s)
    for info in crds.RESOURCES:
        crd = ext.read_custom_resource_definition(info.name)
        conditions = {c.type: c.status for c in crd.status.conditions}
        assert conditions["Established"] == "True"
        assert conditions["NamesAccepted"] == "True"
        assert crd.spec.names.categories == ["aiconn"]


def test_every_sample_applies(k8s: Any, namespace: str) -> None:
    files = sorted(SAMPLES.glob("*.yaml"))
    assert files, "no samples"
    names = apply_manifests(k8s, files, namespace=namespace)
    kinds = {d["kind"] for d in load_documents(files)}
    assert {"AIInferenceSLA", "InferenceTier", "AIInferenceOffer"} <= kinds
    assert len(names) >= 6
    # The token plans of the three operator styles (samples/plans/): offers the API server keeps.
    plans = sorted(SAMPLES.glob("plans/*.yaml"))
    assert len(apply_manifests(k8s, plans)) == 3


def test_table_output_has_the_declared_columns(k8s: Any, namespace: str) -> None:
    _create(k8s, namespace, VALID_SLA)
    table = sla_table(k8s, f"namespaces/{namespace}/aiinferenceslas")
    assert table["kind"] == "Table"
    columns = [c["name"] for c in table["columnDefinitions"]]
    assert columns == [
        "Name", "Tier", "Model", "Avail", "Budget", "Credits", "Compliant", "Phase", "Age",
    ]  # fmt: skip
    assert table["rows"][0]["cells"][0] == "probe"
    assert table["rows"][0]["cells"][2] == "llama-3-8b"


def test_defaults_are_applied_by_the_api_server(k8s: Any, namespace: str) -> None:
    created = _create(k8s, namespace, VALID_SLA)
    spec = created["spec"]
    assert spec["objectives"]["availability"]["targetPercent"] == 99.9
    assert spec["objectives"]["window"] == {"duration": "1M", "calendarAligned": True}
    assert spec["model"]["dtype"] == "bfloat16"
    assert spec["capacity"] == {"replicas": 1, "maxReplicas": 1}
    # Issue 11: credit schedules are no longer a static API-server default (a 95 % target would
    # get a 99 % first tier). Issue 16: commercial terms are provider-owned, so the server fills in
    # none; an admission policy sees only what the tenant wrote, and the operator takes them from
    # the offer.
    assert "credits" not in spec and "tokens" not in spec
    assert "sst" not in spec["network"] and "fiveQI" not in spec["network"]
    assert spec["placement"]["tier"] == "auto"


# (dotted path, bad value, text the API server's message must contain)
INVALID: list[tuple[str, Any, str]] = [
    ("model.name", "", "spec.model.name"),
    ("model.name", "-bad", "spec.model.name"),
    ("model.source", "ftp://x/y", "spec.model.source"),
    ("model.parametersBillions", 0, "spec.model.parametersBillions"),
    ("model.parametersBillions", -7, "spec.model.parametersBillions"),
    ("model.dtype", "float64", "spec.model.dtype"),
    ("model.maxModelLen", 64, "spec.model.maxModelLen"),
    (
        "model.architecture",
        {"numLayers": 0, "numKvHeads": 8, "headDim": 128},
        "spec.model.architecture.numLayers",
    ),
    ("objectives.availability.targetPercent", 100, "spec.objectives.availability.targetPercent"),
    ("objectives.availability.targetPercent", 0, "spec.objectives.availability.targetPercent"),
    (
        "objectives.ttft",
        {"thresholdMs": 0, "targetPercent": 99},
        "spec.objectives.ttft.thresholdMs",
    ),
    (
        "objectives.tpot",
        {"thresholdMs": 50, "targetPercent": 101},
        "spec.objectives.tpot.targetPercent",
    ),
    ("objectives.window", {"duration": "30x"}, "spec.objectives.window.duration"),
    ("network.rttBudgetMs", 0, "spec.network.rttBudgetMs"),
    ("network.sst", 256, "spec.network.sst"),
    ("network.sst", -1, "spec.network.sst"),
    ("network.sd", "12345G", "spec.network.sd"),
    ("network.sd", "1234567", "spec.network.sd"),
    ("network.fiveQI", 0, "spec.network.fiveQI"),
    ("network.guaranteedMbps", 500, "spec.network.maxMbps"),
    ("network.isolation", "private", "spec.network.isolation"),
    (
        "network.allowedSources",
        [{"namespace": "a", "cidr": "10.0.0.0/8"}],
        "spec.network.allowedSources[0]",
    ),
    ("network.allowedSources", [{}], "spec.network.allowedSources[0]"),
    ("placement.tier", "moon", "spec.placement.tier"),
    ("placement.dataResidency", "Europe", "spec.placement.dataResidency"),
    ("capacity", {"replicas": 3, "maxReplicas": 2}, "spec.capacity.maxReplicas"),
    ("capacity.replicas", 0, "spec.capacity.replicas"),
    ("tokens.currency", "euro", "spec.tokens.currency"),
    ("tokens.pricePerMillionTokens", -1, "spec.tokens.pricePerMillionTokens"),
    ("tokens.rateLimit", {"requestsPerSecond": 0}, "spec.tokens.rateLimit.requestsPerSecond"),
    (
        "credits.availability",
        [{"belowPercent": 99.0, "creditPercent": 10}, {"belowPercent": 99.9, "creditPercent": 25}],
        "spec.credits.availability",
    ),
    (
        "credits.latency",
        [{"belowPercent": 99.0, "creditPercent": 30}, {"belowPercent": 95.0, "creditPercent": 10}],
        "spec.credits.latency",
    ),
    (
        "credits.availability",
        [{"belowPercent": 99.0, "creditPercent": 10}, {"belowPercent": 99.0, "creditPercent": 25}],
        "spec.credits.availability",
    ),
    (
        "credits.availability",
        [{"belowPercent": 99.0, "creditPercent": 0}],
        "spec.credits.availability[0].creditPercent",
    ),
    ("credits.capPercent", 150, "spec.credits.capPercent"),
    ("tenant", "Tenant_A", "spec.tenant"),
    # What the operator used to fail on, or would: each is refused before it gets there.
    ("network.allowedSources", [{"cidr": "999.1.1.1/99"}], "spec.network.allowedSources[0].cidr"),
    ("network.allowedSources", [{"cidr": "10.45.0.1/16"}], "spec.network.allowedSources[0].cidr"),
    ("network.allowedSources", [{"cidr": "10.0.0.0/33"}], "spec.network.allowedSources[0].cidr"),
    ("network.allowedSources", [{"cidr": "fd00::1::/64"}], "spec.network.allowedSources[0].cidr"),
    ("network.allowedSources", [{"namespace": "Bad_NS"}], "spec.network.allowedSources[0]"),
    (
        "network.allowedSources",
        [{"namespace": f"ns-{i}"} for i in range(65)],
        "spec.network.allowedSources",
    ),
    ("network.backend", "nsmf", "spec.network.nsmfUrl"),
    ("network.nsmfUrl", "ftp://core.example/ProvMnS", "spec.network.nsmfUrl"),
    ("network.nsmfUrl", "https://" + "a" * 2100, "spec.network.nsmfUrl"),
    ("network.sd", "", "spec.network.sd"),
    ("network.maxMbps", 0, "spec.network.maxMbps"),
    ("placement.sites", ["s" * 200_000], "spec.placement.sites[0]"),
    ("placement.sites", ["bad site!"], "spec.placement.sites[0]"),
    ("placement.sites", [""], "spec.placement.sites[0]"),
    ("placement.sites", [f"site-{i}" for i in range(65)], "spec.placement.sites"),
    ("placement.dataResidency", "EUR", "spec.placement.dataResidency"),
    ("model.name", "m" * 129, "spec.model.name"),
    ("model.source", "hf://" + "o" * 1100, "spec.model.source"),
    (
        "model.architecture",
        {"numLayers": 32, "numKvHeads": 8, "headDim": 5000},
        "spec.model.architecture.headDim",
    ),
    ("tenant", "t" * 64, "spec.tenant"),
    ("tokens.currency", "EURO", "spec.tokens.currency"),
    ("tokens.monthlyCommitment", -1, "spec.tokens.monthlyCommitment"),
    ("tokens.rateLimit", {"tokensPerMinute": 0}, "spec.tokens.rateLimit.tokensPerMinute"),
    ("objectives.window", {"duration": "12345h"}, "spec.objectives.window.duration"),
    ("capacity.maxReplicas", 257, "spec.capacity.maxReplicas"),
    (
        "credits.availability",
        [{"belowPercent": 100 - i, "creditPercent": i + 1} for i in range(11)],
        "spec.credits.availability",
    ),
]


@pytest.mark.parametrize(
    ("path", "value", "field"), INVALID, ids=[f"{p}={v!r}"[:60] for p, v, _ in INVALID]
)
def test_invalid_spec_is_refused_naming_the_field(
    k8s: Any, namespace: str, path: str, value: Any, field: str
) -> None:
    with pytest.raises(ApiException) as refused:
        _create(k8s, namespace, _with(path, value))
    assert refused.value.status == 422
    message = json.loads(refused.value.body)["message"]
    assert field in message, message


def test_missing_required_fields_are_named(k8s: Any, namespace: str) -> None:
    body = copy.deepcopy(VALID_SLA)
    del body["spec"]["network"]
    with pytest.raises(ApiException) as refused:
        _create(k8s, namespace, body)
    assert "spec.network" in json.loads(refused.value.body)["message"]


EDGE_CASES: list[tuple[str, Any]] = [
    ("network.sst", 0),
    ("network.sst", 255),
    ("network.sd", "FFFFFF"),
    ("network.sd", "00aBc9"),
    ("objectives.availability.targetPercent", 99.999),
    ("objectives.availability.targetPercent", 0.001),
    ("model.maxModelLen", 128),
    ("model.maxModelLen", 1048576),
    ("capacity", {"replicas": 64, "maxReplicas": 64}),
    ("network.guaranteedMbps", 100),
    ("objectives.window", {"duration": "5m", "calendarAligned": True}),
    # Issue 11: a first tier above the 99.9 % target is refused now; at the target is the edge.
    ("credits.availability", [{"belowPercent": 99.9, "creditPercent": 100}]),
    ("credits.availability", []),
]


@pytest.mark.parametrize(
    ("path", "value"), EDGE_CASES, ids=[f"{p}={v!r}"[:60] for p, v in EDGE_CASES]
)
def test_valid_edge_cases_are_accepted(k8s: Any, namespace: str, path: str, value: Any) -> None:
    _create(k8s, namespace, _with(path, value))


def _undescribed(schema: dict[str, Any], path: str) -> list[str]:
    missing = [] if schema.get("description") else [path]
    for name, sub in schema.get("properties", {}).items():
        missing += _undescribed(sub, f"{path}.{name}")
    if "items" in schema:
        items = schema["items"]
        missing += [m for m in _undescribed(items, f"{path}[*]") if m != f"{path}[*]"]
    return missing


def test_published_openapi_describes_every_spec_and_status_field(k8s: Any) -> None:
    response = k8s.call_api(
        f"/openapi/v3/apis/{GROUP}/{VERSION}",
        "GET",
        _preload_content=False,
        auth_settings=["BearerToken"],
    )
    doc = json.loads(response[0].data)
    schemas = doc["components"]["schemas"]
    checked = 0
    for kind in ("AIInferenceSLA", "NetworkSlice", "InferenceTier", "AIInferenceOffer"):
        schema = schemas[f"io.aiconn.{VERSION}.{kind}"]
        for part in ("spec", "status"):
            if part in schema["properties"]:
                node = schema["properties"][part]
                assert not _undescribed(node, f"{kind}.{part}"), _undescribed(node, kind)
                checked += 1
    assert checked == 6


def test_samples_parse_with_the_typed_models() -> None:
    from aiconn.resources.v1alpha1.maintenance import MaintenanceWindowSpec
    from aiconn.resources.v1alpha1.offer import AIInferenceOfferSpec
    from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec
    from aiconn.resources.v1alpha1.tier import InferenceTierSpec

    models = {
        "AIInferenceSLA": AIInferenceSLASpec,
        "InferenceTier": InferenceTierSpec,
        "AIInferenceOffer": AIInferenceOfferSpec,
        "MaintenanceWindow": MaintenanceWindowSpec,
    }
    for doc in load_documents(sorted(SAMPLES.glob("*.yaml"))):
        models[doc["kind"]].model_validate(doc["spec"])
    yaml.safe_dump(VALID_SLA)
