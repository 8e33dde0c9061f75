"""The inference workload of an SLA as plain Kubernetes objects: vLLM behind the token gateway.

Pure builders (spec + placement decision in, dicts out), so the operator only applies what they
return and tests can read every field without a cluster.

The pod runs two containers. vLLM listens on 127.0.0.1:8001 only, private to the pod; the token
gateway (`aiconn gateway`) listens on 8000, is the Service's target, and is where the SLA is
measured, metered and enforced. Nothing outside the pod can bypass the gateway, because nothing
outside the pod can reach vLLM.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiconn.contracts.gateway_pod import (
    GATEWAY_PORT,
    GATEWAY_PORT_NAME,
    KEYS_FILE,
    KEYS_MOUNT_PATH,
    METRICS_PORT,
    METRICS_PORT_NAME,
    UPSTREAM_URL,
    VLLM_HOST,
    VLLM_PORT,
    WALLET_TOKEN_DIR,
    WALLET_TOKEN_FILE,
    gateway_env,
    hash_key,
)
from aiconn.inference.capacity import GPU_RESOURCE
from aiconn.inference.images import AICONN_IMAGE, VLLM_IMAGE
from aiconn.inference.placement import PlacementDecision
from aiconn.inference.sizing import DEFAULT_GPU_MEMORY_UTILIZATION, GIB, weight_bytes
from aiconn.resources.v1alpha1.kinds import SLA
from aiconn.resources.v1alpha1.meta import GROUP
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec
from aiconn.resources.v1alpha1.tier import SITE_LABEL
from aiconn.sla.metricnames import with_threshold
from aiconn.sla.wallets import wallet_owner

SLA_LABEL = "aiconn.io/sla"
COMPONENT = "inference"

KEYS_SECRET_KEY = KEYS_FILE
"""Secret key holding the SHA-256 hex hashes of valid API keys, one per line."""
PLAINTEXT_SECRET_KEY = "api-key"
"""Secret key holding the first API key in plain text, for the tenant to read."""
HF_HOME = "/cache/huggingface"
MODELS_PATH = "/models"
HF_TOKEN_SECRET = "aiconn-hf-token"
WALLET_TOKEN_SECONDS = 3600
"""Lifetime of the gateway's projected ServiceAccount token; the kubelet renews it at 80 %."""
WALLET_CA_DIR = "/etc/aiconn/wallet-ca"
WALLET_CA_KEY = "ca.crt"
"""Key of the CA bundle in the ConfigMap the operator renders next to each SLA's Deployment."""
WALLET_TOKEN_AUDIENCE = "aiconn.io/api"
"""Audience of the gateway's projected token: the reporting API reviews it for this audience,
and the Kubernetes API server, which accepts only its own, refuses it."""
SCRATCH_PATH = "/tmp"
"""vLLM's writable scratch (HOME, torch.compile and Triton caches): its root filesystem is
read-only."""
VLLM_RUNTIME_PATH = "/opt/vllm"
"""Where a vLLM runtime volume (the operator's `vllm_runtime_claim`) is mounted, read-only: for
an image that carries the interpreter and not vLLM (the dev cluster's CPU build)."""
POD_USER = 65532
"""The non-root user both containers run as (the distroless `nonroot` uid)."""

# Host resources per GPU of the replica. vLLM's CPU work (tokenization, scheduling, one process
# per tensor-parallel rank) and host memory (weights stream through it on load) grow with the
# GPUs it drives; the memory limit also covers the memory-backed /dev/shm, which counts against it.
# Requests are what a replica needs once serving (small enough for a one-node dev cluster), limits
# the ceiling of a load with room to spare.
VLLM_CPU_REQUEST_PER_GPU = 1
VLLM_CPU_LIMIT_PER_GPU = 4
VLLM_MEMORY_REQUEST_GIB_PER_GPU = 8
VLLM_MEMORY_LIMIT_GIB_PER_GPU = 16
SHM_GIB_PER_GPU = 2
"""NCCL exchanges tensor-parallel shards through /dev/shm; the 64 MiB default is too small."""
SCRATCH_SIZE = "4Gi"
GATEWAY_TMP_SIZE = "64Mi"
"""Optional Secret (key `token`) in the SLA's namespace, for gated Hugging Face models."""


def _buckets(bounds: str) -> tuple[float, ...]:
    return tuple(float(b) for b in bounds.split())


# vLLM 0.33's default buckets; the SLA's thresholds are added so its latency SLI is a bucket ratio.
VLLM_TTFT_BUCKETS = _buckets(
    "0.001 0.005 0.01 0.02 0.04 0.06 0.08 0.1 0.25 0.5 0.75 1 2.5 5 7.5 10 20 40 80 160 640 2560"
)
VLLM_ITL_BUCKETS = _buckets(
    "0.01 0.025 0.05 0.075 0.1 0.15 0.2 0.3 0.4 0.5 0.75 1 2.5 5 7.5 10 20 40 80"
)
VLLM_REQUEST_LATENCY_BUCKETS = _buckets(
    "0.3 0.5 0.8 1 1.5 2 2.5 5 10 15 20 30 40 50 60 120 240 480 960 1920 7680"
)

_MAX_NAME = 63
_HASH_LEN = 8


@dataclass(frozen=True)
class ChildNames:
    """Names of the objects an SLA owns, all valid DNS-1035 labels of at most 63 characters."""

    deployment: str
    service: str
    pod_disruption_budget: str
    api_key_secret: str
    network_slice: str
    gateway_identity: str
    """The gateway's ServiceAccount and its Role and RoleBinding (one name for the three)."""
    wallet_ca: str
    """ConfigMap with the CA bundle the gateway verifies the wallet API's certificate with."""


@dataclass(frozen=True)
class SliceAttachment:
    """What the SLA's network slice puts on the inference pods."""

    priority_class_name: str | None = None
    """PriorityClass the pods run with."""
    annotations: Mapping[str, str] = field(default_factory=dict)
    """Pod annotations, e.g. kubernetes.io/ingress-bandwidth."""


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH_LEN]


def child_name(sla_name: str, suffix: str) -> str:
    """`<sla>-<suffix>`, made a valid DNS-1035 label of at most 63 characters.

    SLA names are DNS-1123 subdomains (dots, leading digits, up to 253 characters); Services need
    DNS-1035 labels. When the name has to change, a hash of the original keeps two SLAs that
    differ only in the changed part from colliding.
    """
    base = sla_name.replace(".", "-")
    if not base[0].isalpha():
        base = f"sla-{base}"
    plain = f"{base}-{suffix}"
    if base == sla_name and len(plain) <= _MAX_NAME:
        return plain
    keep = _MAX_NAME - len(suffix) - _HASH_LEN - 2
    return f"{base[:keep].rstrip('-')}-{_digest(sla_name)}-{suffix}"


def child_names(sla_name: str) -> ChildNames:
    """The deterministic names of an SLA's children."""
    workload = child_name(sla_name, "vllm")
    return ChildNames(
        deployment=workload,
        service=workload,
        pod_disruption_budget=workload,
        api_key_secret=child_name(sla_name, "keys"),
        network_slice=child_name(sla_name, "slice"),
        gateway_identity=child_name(sla_name, "gateway"),
        wallet_ca=child_name(sla_name, "wallet-ca"),
    )


def label_value(sla_name: str) -> str:
    """The SLA name as a label value (at most 63 characters; longer names get a hash suffix)."""
    if len(sla_name) <= _MAX_NAME:
        return sla_name
    keep = _MAX_NAME - _HASH_LEN - 1
    return f"{sla_name[:keep].rstrip('-.')}-{_digest(sla_name)}"


def pod_selector(sla_name: str) -> dict[str, str]:
    """Labels that select exactly the inference pods of one SLA."""
    return {SLA_LABEL: label_value(sla_name), "app.kubernetes.io/component": COMPONENT}


def labels(sla_name: str) -> dict[str, str]:
    """Labels of every object of the SLA's workload."""
    return {
        **pod_selector(sla_name),
        "app.kubernetes.io/name": "vllm",
        "app.kubernetes.io/instance": label_value(sla_name),
        "app.kubernetes.io/part-of": "aiconn",
        "app.kubernetes.io/managed-by": "aiconn",
    }


def owner_reference(owner: Mapping[str, str]) -> dict[str, Any]:
    """A controller ownerReference, so deleting the SLA garbage-collects its children."""
    missing = [k for k in ("apiVersion", "kind", "name", "uid") if not owner.get(k)]
    if missing:
        raise ValueError(f"owner needs {', '.join(missing)}; got keys {sorted(owner)}")
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["name"],
        "uid": owner["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(name: str, namespace: str, sla_name: str, owner: Mapping[str, str]) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "labels": labels(sla_name),
        "ownerReferences": [owner_reference(owner)],
    }


def _require_placed(decision: PlacementDecision) -> int:
    if not decision.placed or decision.tensor_parallel_size is None:
        raise ValueError(f"the SLA is not placed, so it has no workload: {decision.message}")
    return decision.tensor_parallel_size


def histogram_buckets(spec: AIInferenceSLASpec) -> dict[str, list[float]]:
    """vLLM's `--custom-histogram-buckets`: its defaults plus the SLA's thresholds in seconds.

    request_latency is pinned to vLLM's defaults so an upstream change cannot move the bounds
    that dashboards and the inference/network split read.
    """
    return {
        "time_to_first_token": list(
            with_threshold(VLLM_TTFT_BUCKETS, spec.objectives.ttft.threshold_ms / 1000)
        ),
        "inter_token_latency": list(
            with_threshold(VLLM_ITL_BUCKETS, spec.objectives.tpot.threshold_ms / 1000)
        ),
        "request_latency": list(VLLM_REQUEST_LATENCY_BUCKETS),
    }


def _model_location(source: str) -> tuple[str, list[str]]:
    """vLLM's --model for a source URI, and any extra arguments it needs."""
    scheme, _, rest = source.partition("://")
    if scheme == "hf":
        return rest, []
    if scheme == "pvc":
        _, _, path = rest.partition("/")
        return f"{MODELS_PATH}/{path}".rstrip("/"), []
    # vLLM streams s3:// weights itself with the Run:ai model streamer.
    return source, ["--load-format", "runai_streamer"]


def _dtype_args(dtype: str) -> list[str]:
    if dtype in ("bfloat16", "float16"):
        return ["--dtype", dtype]
    if dtype == "fp8":
        # fp8 weights compute in bf16; vLLM quantizes a 16-bit checkpoint on load or reads an
        # fp8 checkpoint as is.
        return ["--dtype", "bfloat16", "--quantization", "fp8"]
    # int8/int4 weights come as pre-quantized checkpoints (GPTQ, AWQ, compressed-tensors) whose
    # config names the method; forcing one here would reject checkpoints made with another, and
    # AWQ kernels need the checkpoint's own 16-bit dtype, hence auto.
    return ["--dtype", "auto"]


def vllm_args(spec: AIInferenceSLASpec, decision: PlacementDecision) -> list[str]:
    """Arguments of `vllm serve` for this SLA on its placement."""
    tp = _require_placed(decision)
    model, extra = _model_location(spec.model.source)
    return [
        "--model",
        model,
        *extra,
        "--served-model-name",
        spec.model.name,
        "--tensor-parallel-size",
        str(tp),
        "--max-model-len",
        str(spec.model.max_model_len),
        "--gpu-memory-utilization",
        str(DEFAULT_GPU_MEMORY_UTILIZATION),
        *_dtype_args(spec.model.dtype),
        "--host",
        VLLM_HOST,
        "--port",
        str(VLLM_PORT),
        "--custom-histogram-buckets",
        json.dumps(histogram_buckets(spec), separators=(",", ":")),
    ]


# Kubelet probes connect to the pod IP, which vLLM (bound to 127.0.0.1) does not listen on. So
# vLLM's own startup and liveness probes run inside its container, and readiness is the gateway's
# /health, which reflects upstream: a pod is in the Service exactly when a request would succeed.
_VLLM_HEALTH = [
    "python3",
    "-c",
    f"import urllib.request as r; r.urlopen('http://{VLLM_HOST}:{VLLM_PORT}/health', timeout=5)",
]


def _restricted() -> dict[str, Any]:
    """Pod Security "restricted" for a container: non-root, no privilege escalation, no
    capabilities, RuntimeDefault seccomp, and nothing written outside its bounded volumes."""
    return {
        "runAsNonRoot": True,
        "runAsUser": POD_USER,
        "runAsGroup": POD_USER,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _vllm_container(
    spec: AIInferenceSLASpec, decision: PlacementDecision, image: str, *, runtime: bool
) -> dict[str, Any]:
    tp = _require_placed(decision)
    mounts: list[dict[str, Any]] = [
        {"name": "dshm", "mountPath": "/dev/shm"},
        {"name": "model-cache", "mountPath": HF_HOME},
        {"name": "vllm-scratch", "mountPath": SCRATCH_PATH},
    ]
    if spec.model.source.startswith("pvc://"):
        mounts.append({"name": "model", "mountPath": MODELS_PATH, "readOnly": True})
    if runtime:
        mounts.append({"name": "vllm-runtime", "mountPath": VLLM_RUNTIME_PATH, "readOnly": True})
    exec_probe: dict[str, Any] = {"exec": {"command": _VLLM_HEALTH}, "timeoutSeconds": 10}
    return {
        "name": "vllm",
        "image": image,
        "command": ["vllm", "serve"],
        "args": vllm_args(spec, decision),
        "env": [
            # Everything vLLM, torch and Triton write under HOME lands in the bounded scratch;
            # USER spares getpass a lookup of a uid the image's /etc/passwd does not have.
            {"name": "HOME", "value": SCRATCH_PATH},
            {"name": "USER", "value": "vllm"},
            {"name": "HF_HOME", "value": HF_HOME},
            {
                "name": "HF_TOKEN",
                "valueFrom": {
                    "secretKeyRef": {"name": HF_TOKEN_SECRET, "key": "token", "optional": True}
                },
            },
            # Inference for a telco's tenants must not report usage to third parties.
            {"name": "VLLM_NO_USAGE_STATS", "value": "1"},
            {"name": "DO_NOT_TRACK", "value": "1"},
        ],
        "resources": _vllm_resources(tp),
        "volumeMounts": mounts,
        # Loading weights takes minutes: up to 60 x 10 s before liveness starts counting.
        "startupProbe": {**exec_probe, "periodSeconds": 10, "failureThreshold": 60},
        # /health turns 503 when the engine died; only a restart brings it back.
        "livenessProbe": {**exec_probe, "periodSeconds": 10, "failureThreshold": 3},
        "securityContext": _restricted(),
    }


def _vllm_resources(tp: int) -> dict[str, dict[str, str]]:
    """CPU and memory requests and limits sized by the replica's GPUs; GPUs are requested whole."""
    return {
        "requests": {
            GPU_RESOURCE: str(tp),
            "cpu": str(tp * VLLM_CPU_REQUEST_PER_GPU),
            "memory": f"{tp * VLLM_MEMORY_REQUEST_GIB_PER_GPU}Gi",
        },
        "limits": {
            GPU_RESOURCE: str(tp),
            "cpu": str(tp * VLLM_CPU_LIMIT_PER_GPU),
            "memory": f"{tp * (VLLM_MEMORY_LIMIT_GIB_PER_GPU + SHM_GIB_PER_GPU)}Gi",
        },
    }


def _model_cache_size(spec: AIInferenceSLASpec) -> str:
    """Room for the weights vLLM downloads into HF_HOME, plus a tenth and 1 GiB for the rest."""
    return f"{math.ceil(weight_bytes(spec.model) * 1.1 / GIB) + 1}Gi"


def gateway_container(
    *,
    sla_name: str,
    namespace: str,
    spec: AIInferenceSLASpec,
    image: str = AICONN_IMAGE,
    wallet_api_url: str | None = None,
    wallet_ca: bool = False,
) -> dict[str, Any]:
    """The token gateway sidecar: the only way into the pod, and where the SLA is measured.

    With `wallet_api_url` (the reporting API) the gateway reads its tenant's available tokens
    there, authenticated by its own ServiceAccount token (see `gateway_role`): the API server
    decides what it may read, and the pod holds no ledger credential. With `wallet_ca` it
    verifies the API's certificate against the bundle in `wallet_ca_config_map`.
    """
    env = gateway_env(
        sla=sla_name,
        namespace=namespace,
        model=spec.model.name,
        upstream=UPSTREAM_URL,
        listen_port=GATEWAY_PORT,
        metrics_port=METRICS_PORT,
        keys_dir=KEYS_MOUNT_PATH,
        ttft_threshold_ms=spec.objectives.ttft.threshold_ms,
        tpot_threshold_ms=spec.objectives.tpot.threshold_ms,
        rate_rps=spec.tokens.rate_limit.requests_per_second,
        rate_tpm=spec.tokens.rate_limit.tokens_per_minute,
        tenant=wallet_owner(namespace, spec.tenant),
        wallet_api_url=wallet_api_url or None,
        wallet_token_file=WALLET_TOKEN_FILE if wallet_api_url else None,
    )
    mounts = [
        {"name": "api-keys", "mountPath": KEYS_MOUNT_PATH, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    if wallet_api_url:
        mounts.append({"name": "wallet-token", "mountPath": WALLET_TOKEN_DIR, "readOnly": True})
        if wallet_ca:
            env["AICONN_WALLET_CA_FILE"] = f"{WALLET_CA_DIR}/{WALLET_CA_KEY}"
            mounts.append({"name": "wallet-ca", "mountPath": WALLET_CA_DIR, "readOnly": True})
    return {
        "name": "gateway",
        "image": image,
        "command": ["aiconn", "gateway"],
        "ports": [
            {"name": GATEWAY_PORT_NAME, "containerPort": GATEWAY_PORT, "protocol": "TCP"},
            {"name": METRICS_PORT_NAME, "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        "env": [{"name": k, "value": v} for k, v in env.items()],
        # A generous CPU limit: throttling would add latency to exactly the requests the SLA
        # measures, so it bounds a runaway gateway without touching normal load.
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "2", "memory": "512Mi"},
        },
        "volumeMounts": mounts,
        "readinessProbe": {
            "httpGet": {"path": "/health", "port": GATEWAY_PORT_NAME},
            "periodSeconds": 5,
            "failureThreshold": 2,
        },
        # Liveness counts only once the socket is up: on a loaded node the interpreter's start
        # alone outlasted liveness' 30 s, and kubelet killed a gateway that was about to serve.
        "startupProbe": {
            "tcpSocket": {"port": GATEWAY_PORT_NAME},
            "periodSeconds": 5,
            "failureThreshold": 36,
        },
        # Liveness checks only the gateway's own socket: restarting it cannot heal vLLM, whose
        # state readiness already reflects.
        "livenessProbe": {
            "tcpSocket": {"port": GATEWAY_PORT_NAME},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "securityContext": _restricted(),
    }


def deployment(
    *,
    sla_name: str,
    namespace: str,
    spec: AIInferenceSLASpec,
    decision: PlacementDecision,
    attachment: SliceAttachment,
    owner: Mapping[str, str],
    api_key_secret: str,
    vllm_image: str = VLLM_IMAGE,
    gateway_image: str = AICONN_IMAGE,
    wallet_api_url: str | None = None,
    wallet_ca: bool = False,
    vllm_runtime_claim: str | None = None,
) -> dict[str, Any]:
    """The apps/v1 Deployment running vLLM and the gateway on the placed tier and site.

    The pods run as the SLA's gateway ServiceAccount with no token mounted by default; with
    `wallet_api_url` a projected token reaches the gateway container alone, never vLLM, and
    with `wallet_ca` the gateway alone mounts the wallet API's CA bundle. With
    `vllm_runtime_claim` (a provider setting) vLLM's container mounts that claim of the SLA's
    namespace read-only at VLLM_RUNTIME_PATH.
    """
    tp = _require_placed(decision)
    names = child_names(sla_name)
    node_selector = dict(decision.node_selector)
    if decision.site:
        node_selector[SITE_LABEL] = decision.site
    volumes: list[dict[str, Any]] = [
        # Every writable volume is bounded: the kubelet evicts a pod that outgrows one instead
        # of letting it fill the node's disk or memory.
        {
            "name": "dshm",
            "emptyDir": {"medium": "Memory", "sizeLimit": f"{tp * SHM_GIB_PER_GPU}Gi"},
        },
        {"name": "model-cache", "emptyDir": {"sizeLimit": _model_cache_size(spec)}},
        {"name": "vllm-scratch", "emptyDir": {"sizeLimit": SCRATCH_SIZE}},
        {"name": "tmp", "emptyDir": {"sizeLimit": GATEWAY_TMP_SIZE}},
        # Only the hashes reach the gateway; world-readable because it runs as a non-root user
        # that does not own the files.
        {
            "name": "api-keys",
            "secret": {
                "secretName": api_key_secret,
                "items": [{"key": KEYS_SECRET_KEY, "path": KEYS_SECRET_KEY}],
                "defaultMode": 0o444,
            },
        },
    ]
    if wallet_api_url:
        volumes.append(
            {
                "name": "wallet-token",
                "projected": {
                    "sources": [
                        {
                            "serviceAccountToken": {
                                "path": "token",
                                "audience": WALLET_TOKEN_AUDIENCE,
                                "expirationSeconds": WALLET_TOKEN_SECONDS,
                            }
                        }
                    ],
                    "defaultMode": 0o444,
                },
            }
        )
        if wallet_ca:
            volumes.append(
                {
                    "name": "wallet-ca",
                    "configMap": {
                        "name": names.wallet_ca,
                        "items": [{"key": WALLET_CA_KEY, "path": WALLET_CA_KEY}],
                        "defaultMode": 0o444,
                    },
                }
            )
    if spec.model.source.startswith("pvc://"):
        claim = spec.model.source.removeprefix("pvc://").split("/", 1)[0]
        volumes.append(
            {"name": "model", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        )
    if vllm_runtime_claim:
        volumes.append(
            {
                "name": "vllm-runtime",
                "persistentVolumeClaim": {"claimName": vllm_runtime_claim, "readOnly": True},
            }
        )
    pod_annotations = {
        # The gateway is the SLA's measurement point; its metrics port is not in the Service.
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(METRICS_PORT),
        "prometheus.io/path": "/metrics",
        **attachment.annotations,
    }
    pod_spec: dict[str, Any] = {
        "containers": [
            _vllm_container(spec, decision, vllm_image, runtime=bool(vllm_runtime_claim)),
            gateway_container(
                sla_name=sla_name,
                namespace=namespace,
                spec=spec,
                image=gateway_image,
                wallet_api_url=wallet_api_url,
                wallet_ca=wallet_ca,
            ),
        ],
        "volumes": volumes,
        "nodeSelector": node_selector,
        "tolerations": [dict(t) for t in decision.tolerations],
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": pod_selector(sla_name)},
            }
        ],
        "serviceAccountName": names.gateway_identity,
        "automountServiceAccountToken": False,
        # Service links inject *_PORT variables; vLLM reads VLLM_* variables as configuration.
        "enableServiceLinks": False,
        # Lets streams in flight finish after the pod leaves the Service.
        "terminationGracePeriodSeconds": 60,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": POD_USER,
            "runAsGroup": POD_USER,
            "fsGroup": POD_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if attachment.priority_class_name:
        pod_spec["priorityClassName"] = attachment.priority_class_name
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(names.deployment, namespace, sla_name, owner),
        "spec": {
            "replicas": spec.capacity.replicas,
            "selector": {"matchLabels": pod_selector(sla_name)},
            # Surge instead of unavailability: a rollout waits for a spare GPU rather than
            # spending the availability budget; startup alone can take ten minutes.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "progressDeadlineSeconds": 1800,
            "revisionHistoryLimit": 3,
            "template": {
                "metadata": {"labels": labels(sla_name), "annotations": pod_annotations},
                "spec": pod_spec,
            },
        },
    }


def gateway_service_account(
    *, sla_name: str, namespace: str, owner: Mapping[str, str]
) -> dict[str, Any]:
    """The inference pods' identity: a ServiceAccount of their own, no token mounted."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(child_names(sla_name).gateway_identity, namespace, sla_name, owner),
        "automountServiceAccountToken": False,
    }


def wallet_ca_config_map(
    *, sla_name: str, namespace: str, owner: Mapping[str, str], ca_bundle: str
) -> dict[str, Any]:
    """The CA bundle the gateway verifies the wallet API with, copied from the provider's
    (pods mount ConfigMaps of their own namespace only). Public certificates, not a secret."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(child_names(sla_name).wallet_ca, namespace, sla_name, owner),
        "data": {WALLET_CA_KEY: ca_bundle},
    }


def gateway_role(*, sla_name: str, namespace: str, owner: Mapping[str, str]) -> dict[str, Any]:
    """What the gateway may read: the SLAs of its own namespace, which is what the reporting
    API's SubjectAccessReview asks before it answers with the namespace's wallet."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _metadata(child_names(sla_name).gateway_identity, namespace, sla_name, owner),
        "rules": [{"apiGroups": [GROUP], "resources": [SLA.plural], "verbs": ["get"]}],
    }


def gateway_role_binding(
    *, sla_name: str, namespace: str, owner: Mapping[str, str]
) -> dict[str, Any]:
    """Binds the gateway Role to the gateway ServiceAccount, in the SLA's namespace only."""
    name = child_names(sla_name).gateway_identity
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _metadata(name, namespace, sla_name, owner),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
    }


def service(*, sla_name: str, namespace: str, owner: Mapping[str, str]) -> dict[str, Any]:
    """The ClusterIP Service clients call: the gateway's port, never vLLM's."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(child_names(sla_name).service, namespace, sla_name, owner),
        "spec": {
            "type": "ClusterIP",
            "selector": pod_selector(sla_name),
            "ports": [
                {
                    "name": GATEWAY_PORT_NAME,
                    "port": GATEWAY_PORT,
                    "targetPort": GATEWAY_PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        },
    }


def pod_disruption_budget(
    *, sla_name: str, namespace: str, spec: AIInferenceSLASpec, owner: Mapping[str, str]
) -> dict[str, Any] | None:
    """A PodDisruptionBudget keeping all but one replica up, or None below two replicas.

    With one replica a budget would either block node drains forever (minAvailable 1) or
    promise nothing (minAvailable 0).
    """
    replicas = spec.capacity.replicas
    if replicas < 2:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(
            child_names(sla_name).pod_disruption_budget, namespace, sla_name, owner
        ),
        "spec": {"minAvailable": replicas - 1, "selector": {"matchLabels": pod_selector(sla_name)}},
    }


def api_key_secret(
    *, sla_name: str, namespace: str, keys: Sequence[str], owner: Mapping[str, str]
) -> dict[str, Any]:
    """The Secret of an SLA's API keys: hashes for the gateway, the first key for the tenant.

    The caller generates the keys, so rebuilding this object never rotates them.
    """
    if not keys:
        raise ValueError("api_key_secret needs at least one API key")
    hashes = "\n".join(hash_key(k) for k in keys)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(child_names(sla_name).api_key_secret, namespace, sla_name, owner),
        "type": "Opaque",
        "data": {
            KEYS_SECRET_KEY: base64.b64encode(hashes.encode()).decode(),
            PLAINTEXT_SECRET_KEY: base64.b64encode(keys[0].encode()).decode(),
        },
    }
