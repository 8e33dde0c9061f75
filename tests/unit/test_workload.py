"""The vLLM workload builders: what the operator applies for a placed SLA."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import yaml

from aiconn.gateway.settings import GatewaySettings
from aiconn.inference.images import AICONN_IMAGE, VLLM_IMAGE
from aiconn.inference.placement import PlacementDecision, default_tiers, plan
from aiconn.inference.workload import (
    VLLM_ITL_BUCKETS,
    VLLM_TTFT_BUCKETS,
    SliceAttachment,
    api_key_secret,
    child_name,
    child_names,
    gateway_role,
    gateway_role_binding,
    gateway_service_account,
    histogram_buckets,
    label_value,
    owner_reference,
    pod_disruption_budget,
    pod_selector,
    service,
    vllm_args,
    wallet_ca_config_map,
)
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec
from tests.factories import factory_deployment
from tests.factories import llama_8b_spec as sla

OWNER = {"apiVersion": "aiconn.io/v1alpha1", "kind": "AIInferenceSLA", "name": "s", "uid": "u-1"}
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
ATTACHMENT = SliceAttachment(
    priority_class_name="aiconn-urllc-delay-critical",
    annotations={
        "kubernetes.io/ingress-bandwidth": "200M",
        "kubernetes.io/egress-bandwidth": "200M",
    },
)


def placed(spec: AIInferenceSLASpec) -> PlacementDecision:
    decision = plan(spec, default_tiers())
    assert decision.placed, decision.message
    return decision


def options(args: list[str]) -> dict[str, str]:
    """Flag -> value; fails if any flag lacks a value or a value lacks a flag."""
    assert len(args) % 2 == 0
    flags, values = args[0::2], args[1::2]
    assert all(f.startswith("--") for f in flags)
    assert len(set(flags)) == len(flags)
    return dict(zip(flags, values, strict=True))


def build(spec: AIInferenceSLASpec | None = None, **extra: Any) -> dict[str, Any]:
    return factory_deployment("acme", spec or sla(), attachment=ATTACHMENT, owner=OWNER, **extra)


def container(dep: dict[str, Any], name: str) -> dict[str, Any]:
    containers: list[dict[str, Any]] = dep["spec"]["template"]["spec"]["containers"]
    (found,) = [c for c in containers if c["name"] == name]
    return found


def test_vllm_listens_privately_with_the_placement_s_parallelism() -> None:
    spec = sla()
    opts = options(vllm_args(spec, placed(spec)))
    assert opts["--model"] == "meta-llama/Meta-Llama-3-8B-Instruct"
    assert opts["--served-model-name"] == "llama-3-8b"
    assert opts["--tensor-parallel-size"] == "1"
    assert opts["--max-model-len"] == "4096"
    assert opts["--gpu-memory-utilization"] == "0.92"
    assert (opts["--host"], opts["--port"]) == ("127.0.0.1", "8001")


@pytest.mark.parametrize(
    ("dtype", "expected_dtype", "quantization"),
    [
        ("bfloat16", "bfloat16", None),
        ("float16", "float16", None),
        ("fp8", "bfloat16", "fp8"),
        ("int8", "auto", None),
        ("int4", "auto", None),
    ],
)
def test_dtype_maps_to_vllm_choices(
    dtype: str, expected_dtype: str, quantization: str | None
) -> None:
    spec = sla(dtype=dtype)
    opts = options(vllm_args(spec, placed(spec)))
    assert opts["--dtype"] == expected_dtype
    assert opts["--dtype"] in {"auto", "half", "float16", "bfloat16", "float", "float32"}
    assert opts.get("--quantization") == quantization


@pytest.mark.parametrize(
    ("source", "model", "extra"),
    [
        ("hf://org/model", "org/model", {}),
        ("pvc://weights/llama/8b", "/models/llama/8b", {}),
        ("pvc://weights", "/models", {}),
        ("s3://bucket/llama", "s3://bucket/llama", {"--load-format": "runai_streamer"}),
    ],
)
def test_model_sources_become_vllm_model_arguments(
    source: str, model: str, extra: dict[str, str]
) -> None:
    spec = sla(source=source)
    opts = options(vllm_args(spec, placed(spec)))
    assert opts["--model"] == model
    for flag, value in extra.items():
        assert opts[flag] == value


def test_histogram_buckets_add_the_sla_thresholds_to_vllm_defaults() -> None:
    spec = sla()
    buckets = json.loads(options(vllm_args(spec, placed(spec)))["--custom-histogram-buckets"])
    assert buckets == histogram_buckets(spec)
    assert set(buckets) == {"time_to_first_token", "inter_token_latency", "request_latency"}
    assert 0.3 in buckets["time_to_first_token"]
    assert 0.045 in buckets["inter_token_latency"]
    assert set(VLLM_TTFT_BUCKETS) <= set(buckets["time_to_first_token"])
    assert set(VLLM_ITL_BUCKETS) <= set(buckets["inter_token_latency"])
    for family in buckets.values():
        assert all(b > 0 for b in family)
        assert all(a < b for a, b in pairwise(family))


def test_a_threshold_already_a_bucket_is_not_duplicated() -> None:
    spec = sla(objectives={"ttft": {"thresholdMs": 250, "targetPercent": 99}})
    assert len(histogram_buckets(spec)["time_to_first_token"]) == len(VLLM_TTFT_BUCKETS)


def test_deployment_requests_the_placement_s_gpus_on_its_tier_and_site() -> None:
    spec = sla()
    dep = build(spec)
    pod = dep["spec"]["template"]["spec"]
    vllm = container(dep, "vllm")
    assert vllm["image"] == VLLM_IMAGE
    assert vllm["command"] == ["vllm", "serve"]
    requests, limits = vllm["resources"]["requests"], vllm["resources"]["limits"]
    assert requests["nvidia.com/gpu"] == limits["nvidia.com/gpu"] == "1"
    assert "ports" not in vllm
    assert pod["nodeSelector"] == {
        "aiconn.io/tier": "edge",
        "nvidia.com/gpu.product": "NVIDIA-L40S",
        "topology.aiconn.io/site": "de-fra-edge-01",
    }
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert pod["priorityClassName"] == "aiconn-urllc-delay-critical"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "2Gi"}
    mounts = {m["name"]: m["mountPath"] for m in vllm["volumeMounts"]}
    assert mounts["dshm"] == "/dev/shm"
    env = {e["name"]: e for e in vllm["env"]}
    assert env["HF_HOME"]["value"] == mounts["model-cache"]
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["optional"] is True


def test_probes_reach_vllm_from_inside_and_the_gateway_from_the_kubelet() -> None:
    dep = build()
    vllm, gateway = container(dep, "vllm"), container(dep, "gateway")
    startup = vllm["startupProbe"]
    assert (startup["periodSeconds"], startup["failureThreshold"]) == (10, 60)
    assert "127.0.0.1:8001/health" in " ".join(startup["exec"]["command"])
    assert vllm["livenessProbe"]["periodSeconds"] == 10
    assert "readinessProbe" not in vllm
    readiness = gateway["readinessProbe"]
    assert readiness["httpGet"] == {"path": "/health", "port": "http"}
    assert readiness["periodSeconds"] == 5
    assert gateway["livenessProbe"]["periodSeconds"] == 10
    # Liveness waits for the gateway's socket: a slow interpreter start is not a dead gateway.
    assert gateway["startupProbe"]["tcpSocket"] == {"port": "http"}
    assert (
        gateway["startupProbe"]["periodSeconds"] * gateway["startupProbe"]["failureThreshold"]
        >= 120
    )


def test_gateway_env_is_what_the_gateway_settings_read() -> None:
    gateway = container(build(), "gateway")
    settings = GatewaySettings.model_validate(
        {
            e["name"].removeprefix("AICONN_").lower(): e["value"]
            for e in gateway["env"]
            if "value" in e
        }
    )
    assert settings.sla == "factory"
    assert settings.listen_port == 8000
    assert str(settings.keys_dir) == "/etc/aiconn/keys"
    assert (settings.ttft_threshold_ms, settings.tpot_threshold_ms) == (300, 45)


def test_gateway_sidecar_fronts_vllm_with_the_sla_s_contract() -> None:
    spec = sla(tokens={"rateLimit": {"requestsPerSecond": 40, "tokensPerMinute": 600000}})
    gateway = container(build(spec), "gateway")
    assert gateway["command"] == ["aiconn", "gateway"]
    assert gateway["ports"] == [
        {"name": "http", "containerPort": 8000, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9100, "protocol": "TCP"},
    ]
    env = {e["name"]: e["value"] for e in gateway["env"] if "value" in e}
    assert env["AICONN_SLA"] == "factory"
    assert env["AICONN_NAMESPACE"] == "acme"
    assert env["AICONN_MODEL"] == "llama-3-8b"
    assert env["AICONN_UPSTREAM"] == "http://127.0.0.1:8001"
    assert env["AICONN_LISTEN_PORT"] == "8000"
    assert env["AICONN_KEYS_DIR"] == "/etc/aiconn/keys"
    assert (env["AICONN_TTFT_THRESHOLD_MS"], env["AICONN_TPOT_THRESHOLD_MS"]) == ("300", "45")
    assert (env["AICONN_RATE_RPS"], env["AICONN_RATE_TPM"]) == ("40", "600000")
    keys = next(m for m in gateway["volumeMounts"] if m["name"] == "api-keys")
    assert keys == {"name": "api-keys", "mountPath": "/etc/aiconn/keys", "readOnly": True}
    sc = gateway["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}


def test_only_key_hashes_reach_the_pod() -> None:
    volumes = {v["name"]: v for v in build()["spec"]["template"]["spec"]["volumes"]}
    assert volumes["api-keys"]["secret"]["secretName"] == "factory-keys"
    assert volumes["api-keys"]["secret"]["items"] == [{"key": "keys", "path": "keys"}]


def test_pod_template_carries_labels_slice_annotations_and_scrape_hints() -> None:
    dep = build()
    template = dep["spec"]["template"]["metadata"]
    assert template["labels"]["aiconn.io/sla"] == "factory"
    assert template["labels"]["app.kubernetes.io/part-of"] == "aiconn"
    assert dep["spec"]["selector"]["matchLabels"] == pod_selector("factory")
    assert pod_selector("factory").items() <= template["labels"].items()
    annotations = template["annotations"]
    assert annotations["kubernetes.io/ingress-bandwidth"] == "200M"
    assert annotations["kubernetes.io/egress-bandwidth"] == "200M"
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "9100"


def test_children_are_owned_by_the_sla() -> None:
    spec = sla(capacity={"replicas": 2, "maxReplicas": 2})
    objects = [
        build(spec),
        service(sla_name="factory", namespace="acme", owner=OWNER),
        pod_disruption_budget(sla_name="factory", namespace="acme", spec=spec, owner=OWNER),
        api_key_secret(sla_name="factory", namespace="acme", keys=["k"], owner=OWNER),
    ]
    for obj in objects:
        assert obj is not None
        assert obj["metadata"]["namespace"] == "acme"
        assert obj["metadata"]["ownerReferences"] == [
            {**OWNER, "controller": True, "blockOwnerDeletion": True}
        ]
        assert obj["metadata"]["labels"]["aiconn.io/sla"] == "factory"


def test_pvc_sources_mount_the_claim_read_only() -> None:
    dep = build(sla(source="pvc://weights/llama"))
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert volumes["model"]["persistentVolumeClaim"] == {"claimName": "weights", "readOnly": True}
    mount = next(m for m in container(dep, "vllm")["volumeMounts"] if m["name"] == "model")
    assert mount == {"name": "model", "mountPath": "/models", "readOnly": True}


def test_a_provider_runtime_claim_reaches_vllm_alone_read_only() -> None:
    dep = build(vllm_runtime_claim="vllm-runtime")
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert volumes["vllm-runtime"]["persistentVolumeClaim"] == {
        "claimName": "vllm-runtime",
        "readOnly": True,
    }
    mount = next(m for m in container(dep, "vllm")["volumeMounts"] if m["name"] == "vllm-runtime")
    assert mount == {"name": "vllm-runtime", "mountPath": "/opt/vllm", "readOnly": True}
    assert all(m["name"] != "vllm-runtime" for m in container(dep, "gateway")["volumeMounts"])
    plain = build()
    assert all(v["name"] != "vllm-runtime" for v in plain["spec"]["template"]["spec"]["volumes"])


def test_service_targets_the_gateway_port_by_name() -> None:
    svc = service(sla_name="factory", namespace="acme", owner=OWNER)
    assert svc["metadata"]["name"] == "factory-vllm"
    assert svc["spec"]["ports"] == [
        {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}
    ]
    assert svc["spec"]["selector"] == pod_selector("factory")


@pytest.mark.parametrize(("replicas", "min_available"), [(1, None), (2, 1), (5, 4)])
def test_pod_disruption_budget_only_from_two_replicas(
    replicas: int, min_available: int | None
) -> None:
    spec = sla(capacity={"replicas": replicas, "maxReplicas": replicas})
    pdb = pod_disruption_budget(sla_name="factory", namespace="acme", spec=spec, owner=OWNER)
    if min_available is None:
        assert pdb is None
    else:
        assert pdb is not None
        assert pdb["spec"]["minAvailable"] == min_available
        assert pdb["spec"]["selector"]["matchLabels"] == pod_selector("factory")


def test_key_secret_stores_hashes_for_the_gateway_and_the_first_key_for_the_tenant() -> None:
    secret = api_key_secret(sla_name="factory", namespace="acme", keys=["k1", "k2"], owner=OWNER)
    assert secret["metadata"]["name"] == "factory-keys"
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["keys"].split("\n") == [
        hashlib.sha256(b"k1").hexdigest(),
        hashlib.sha256(b"k2").hexdigest(),
    ]
    assert data["api-key"] == "k1"


def test_key_secret_needs_a_key() -> None:
    with pytest.raises(ValueError, match="at least one API key"):
        api_key_secret(sla_name="factory", namespace="acme", keys=[], owner=OWNER)


def test_an_unplaced_sla_has_no_workload() -> None:
    spec = sla()
    unplaced = PlacementDecision(placed=False, message="no tier can serve this SLA: edge: x")
    with pytest.raises(ValueError, match="not placed"):
        vllm_args(spec, unplaced)


def test_owner_reference_needs_a_uid() -> None:
    with pytest.raises(ValueError, match="owner needs uid"):
        owner_reference({"apiVersion": "v1", "kind": "X", "name": "n"})


@pytest.mark.parametrize(
    ("sla_name", "suffix", "expected"),
    [
        ("factory", "vllm", "factory-vllm"),
        ("factory", "keys", "factory-keys"),
        ("a" * 58, "vllm", "a" * 58 + "-vllm"),
    ],
)
def test_short_child_names_are_readable(sla_name: str, suffix: str, expected: str) -> None:
    assert child_name(sla_name, suffix) == expected


@pytest.mark.parametrize(
    "sla_name", ["a" * 59, "b" * 253, "team.model.v1", "8b-model", "x" * 200 + ".y"]
)
def test_child_names_are_dns_labels_of_at_most_63_characters(sla_name: str) -> None:
    for name in vars(child_names(sla_name)).values():
        assert len(name) <= 63 and DNS_1035.match(name), name


def test_names_that_had_to_change_do_not_collide() -> None:
    assert child_name("a.b", "vllm") != child_name("a-b", "vllm")
    assert child_name("a" * 100 + "x", "vllm") != child_name("a" * 100 + "y", "vllm")
    assert label_value("a" * 100 + "x") != label_value("a" * 100 + "y")


def test_label_values_fit_63_characters() -> None:
    assert label_value("factory") == "factory"
    assert len(label_value("m." * 100 + "x")) <= 63


def test_the_gateway_reads_its_wallet_from_the_api_with_its_own_projected_token() -> None:
    dep = build(wallet_api_url="https://aiconn-api.aiconn-system.svc:8443")
    pod = dep["spec"]["template"]["spec"]
    gateway, vllm = container(dep, "gateway"), container(dep, "vllm")
    env = {e["name"]: e["value"] for e in gateway["env"]}
    assert env["AICONN_WALLET_API_URL"] == "https://aiconn-api.aiconn-system.svc:8443"
    assert env["AICONN_TENANT"] == "acme"
    assert "AICONN_LEDGER_URL" not in env, "no ledger credential in tenant pods"
    # The token is projected into the gateway only: vLLM and the pod default get none.
    assert pod["serviceAccountName"] == "factory-gateway"
    assert pod["automountServiceAccountToken"] is False
    (volume,) = [v for v in pod["volumes"] if v["name"] == "wallet-token"]
    token = volume["projected"]["sources"][0]["serviceAccountToken"]
    assert token == {"path": "token", "audience": "aiconn.io/api", "expirationSeconds": 3600}
    (mount,) = [m for m in gateway["volumeMounts"] if m["name"] == "wallet-token"]
    assert f"{mount['mountPath']}/token" == env["AICONN_WALLET_TOKEN_FILE"]
    assert mount["readOnly"] is True
    assert not [m for m in vllm["volumeMounts"] if m["name"] == "wallet-token"]
    settings = GatewaySettings.model_validate(
        {k.removeprefix("AICONN_").lower(): v for k, v in env.items()}
    )
    assert str(settings.wallet_token_file) == env["AICONN_WALLET_TOKEN_FILE"]


def test_the_gateway_alone_mounts_the_wallet_api_s_ca_bundle_from_the_sla_s_config_map() -> None:
    dep = build(wallet_api_url="https://aiconn-api.aiconn-system.svc:8443", wallet_ca=True)
    pod = dep["spec"]["template"]["spec"]
    gateway, vllm = container(dep, "gateway"), container(dep, "vllm")
    env = {e["name"]: e["value"] for e in gateway["env"]}
    bundle = wallet_ca_config_map(
        sla_name="factory", namespace="acme", owner=OWNER, ca_bundle="-----BEGIN CERTIFICATE-----"
    )
    assert bundle["kind"] == "ConfigMap"
    assert bundle["metadata"]["namespace"] == "acme"
    assert bundle["metadata"]["ownerReferences"][0]["uid"] == OWNER["uid"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "wallet-ca"]
    assert volume["configMap"]["name"] == bundle["metadata"]["name"] == "factory-wallet-ca"
    (item,) = volume["configMap"]["items"]
    assert item["key"] in bundle["data"]
    (mount,) = [m for m in gateway["volumeMounts"] if m["name"] == "wallet-ca"]
    assert mount["readOnly"] is True
    assert env["AICONN_WALLET_CA_FILE"] == f"{mount['mountPath']}/{item['path']}"
    assert not [m for m in vllm["volumeMounts"] if m["name"] == "wallet-ca"]
    settings = GatewaySettings.model_validate(
        {k.removeprefix("AICONN_").lower(): v for k, v in env.items()}
    )
    assert str(settings.wallet_ca_file) == env["AICONN_WALLET_CA_FILE"]
    assert settings.wallet_allow_plaintext is False
    # Without a bundle from the provider nothing is mounted: the system's CAs verify the API.
    plain = build(wallet_api_url="https://aiconn-api.aiconn-system.svc:8443")
    assert "wallet-ca" not in {v["name"] for v in plain["spec"]["template"]["spec"]["volumes"]}
    assert "AICONN_WALLET_CA_FILE" not in {e["name"] for e in container(plain, "gateway")["env"]}


def test_without_a_wallet_api_no_token_is_projected() -> None:
    dep = build()
    names = {v["name"] for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert "wallet-token" not in names
    env = {e["name"] for e in container(dep, "gateway")["env"]}
    assert "AICONN_WALLET_API_URL" not in env


def test_the_gateway_identity_may_read_only_its_namespace_s_slas() -> None:
    account = gateway_service_account(sla_name="factory", namespace="acme", owner=OWNER)
    role = gateway_role(sla_name="factory", namespace="acme", owner=OWNER)
    binding = gateway_role_binding(sla_name="factory", namespace="acme", owner=OWNER)
    assert account["automountServiceAccountToken"] is False
    assert role["rules"] == [
        {"apiGroups": ["aiconn.io"], "resources": ["aiinferenceslas"], "verbs": ["get"]}
    ]
    assert binding["roleRef"]["name"] == role["metadata"]["name"] == "factory-gateway"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "factory-gateway", "namespace": "acme"}
    ]
    for obj in (account, role, binding):
        assert obj["metadata"]["namespace"] == "acme"
        assert obj["metadata"]["ownerReferences"][0]["uid"] == OWNER["uid"]


@pytest.mark.parametrize("wallet", [None, "https://aiconn-api.aiconn-system.svc:8443"])
def test_every_container_meets_pod_security_restricted(wallet: str | None) -> None:
    pod = build(wallet_api_url=wallet, wallet_ca=wallet is not None)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {c["name"] for c in pod["containers"]} == {"vllm", "gateway"}
    for c in pod["containers"]:
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] > 0, c["name"]
        assert sc["allowPrivilegeEscalation"] is False, c["name"]
        assert sc["readOnlyRootFilesystem"] is True, c["name"]
        assert sc["capabilities"] == {"drop": ["ALL"]}, c["name"]
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, c["name"]


def test_every_container_has_cpu_and_memory_requests_and_limits() -> None:
    for c in build()["spec"]["template"]["spec"]["containers"]:
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"][kind]), (c["name"], kind)


def test_writable_volumes_are_bounded_and_shm_fits_the_memory_limit() -> None:
    dep = build()
    pod = dep["spec"]["template"]["spec"]
    empty_dirs = {v["name"]: v["emptyDir"] for v in pod["volumes"] if "emptyDir" in v}
    assert set(empty_dirs) == {"dshm", "model-cache", "vllm-scratch", "tmp"}
    assert all("sizeLimit" in e for e in empty_dirs.values())
    vllm = container(dep, "vllm")
    mounts = {m["mountPath"]: m["name"] for m in vllm["volumeMounts"]}
    assert mounts["/tmp"] == "vllm-scratch"
    assert {"name": "HOME", "value": "/tmp"} in vllm["env"]
    # 8B bf16 weights are 16 GB: the download cache holds them with room to spare.
    assert empty_dirs["model-cache"]["sizeLimit"] == "18Gi"
    shm_gib = int(empty_dirs["dshm"]["sizeLimit"].removesuffix("Gi"))
    assert int(vllm["resources"]["limits"]["memory"].removesuffix("Gi")) > shm_gib


def test_host_resources_grow_with_the_replica_s_gpus() -> None:
    spec = sla()
    one = build(spec)
    decision = dataclasses.replace(placed(spec), tensor_parallel_size=4, gpus_per_replica=4)
    four = factory_deployment("acme", spec, decision=decision, attachment=ATTACHMENT, owner=OWNER)
    small, big = container(one, "vllm")["resources"], container(four, "vllm")["resources"]
    assert big["limits"]["nvidia.com/gpu"] == "4"
    assert int(big["limits"]["cpu"]) == 4 * int(small["limits"]["cpu"])
    assert big["limits"]["memory"] == "72Gi" and small["limits"]["memory"] == "18Gi"
    assert big["requests"]["memory"] == "32Gi" and small["requests"]["memory"] == "8Gi"
    assert big["requests"]["cpu"] == "4" and small["requests"]["cpu"] == "1"


def test_the_operator_s_admission_policy_pins_exactly_the_images_the_operator_renders() -> None:
    policy = Path(__file__).resolve().parents[2] / "manifests" / "rbac" / "operator-admission.yaml"
    image_rules = [
        rule["expression"]
        for doc in yaml.safe_load_all(policy.read_text())
        for rule in doc["spec"].get("validations", [])
        if "images" in rule["expression"]
    ]
    assert len(image_rules) == 1
    (listed,) = re.findall(r"in \[([^\]]*)\]", image_rules[0])
    assert {i.strip(" '") for i in listed.split(",")} == {VLLM_IMAGE, AICONN_IMAGE}
