"""The whole of aiconn on one machine: `aiconn dev up` starts it, `aiconn dev down` stops it.

A real control plane with the CRDs, tiers and RBAC; the operator (under its ServiceAccount's
token, so the demo runs with the manifests' RBAC) and the reporting API as processes; Prometheus;
a real vLLM on the CPU with the token gateway in front of it and a fault injector between them.
The gateway + vLLM pair stands in for the edge tier's pod: Prometheus scrapes it with the labels
the in-cluster ServiceMonitor would give that pod. Every process is recorded by PID under the
state directory, so `dev down` stops everything even after the starting process is gone.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import ssl
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from aiconn.contracts.gateway_pod import KEYS_FILE, gateway_env
from aiconn.devstack.controlplane import ControlPlane
from aiconn.devstack.gateway import write_keys
from aiconn.devstack.kube import apply_manifests, apply_objects, service_account_token
from aiconn.devstack.pki import write_serving_tls
from aiconn.devstack.processes import ProcessGroup, free_port, http_ok, stop_recorded, wait_until
from aiconn.devstack.prometheus import PrometheusServer, ScrapeTarget
from aiconn.devstack.vllm import VllmServer, make_tiny_model
from aiconn.inference.workload import KEYS_SECRET_KEY, PLAINTEXT_SECRET_KEY, child_names
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec

ROOT = Path(__file__).resolve().parents[2]
DEMO_NAMESPACE = "demo"


def default_state_dir() -> Path:
    return Path(os.environ.get("AICONN_DEV_DIR", Path.cwd() / ".aiconn" / "dev"))


@dataclass
class Endpoints:
    """Where the running stack answers; written to `endpoints.json` in the state directory."""

    kubeconfig: str
    api: str
    noc: str
    prometheus: str
    gateway: str
    vllm: str
    injector_control: str
    ledger_url: str
    api_token: str
    gateway_key: str
    sla_name: str
    namespace: str
    gateway_keys_dir: str = ""
    """The local gateway's keys directory (a cluster mounts the SLA's Secret there)."""
    api_ca: str = ""
    """CA bundle the API's HTTPS certificate verifies against (the stack's own CA); empty: the
    system's CAs."""

    def api_tls(self) -> ssl.SSLContext:
        """A client context that trusts `api_ca` alone (the system's CAs when it is empty)."""
        return ssl.create_default_context(cafile=self.api_ca or None)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))
        path.chmod(0o600)


def say(message: str) -> None:
    print(f"[aiconn] {message}", flush=True)


def _aiconn(*args: str) -> list[str]:
    return [sys.executable, "-m", "aiconn.cli", *args]


def operator_token(api: Any) -> str:
    return service_account_token(api, "aiconn-system", "aiconn-operator")


def up(
    sla_file: Path,
    *,
    state_dir: Path | None = None,
    evaluation_interval: float = 5.0,
    settlement_grace: float = 20.0,
) -> Endpoints:
    """Start everything for `sla_file`'s SLA (not yet applied); idempotent: a running stack
    under the same state directory is stopped first."""
    state = state_dir or default_state_dir()
    if stop_recorded(state):
        say("stopped the previous stack")
    clear_data(state)
    state.mkdir(parents=True, exist_ok=True)
    group = ProcessGroup(state)
    sla = yaml.safe_load(sla_file.read_text())
    spec = AIInferenceSLASpec.model_validate(sla["spec"])
    name = sla["metadata"]["name"]

    say("starting the control plane (etcd, kube-apiserver, kube-controller-manager)")
    cp = ControlPlane(state_dir=state / "controlplane")
    cp.group = group
    cp.start(crds=sorted((ROOT / "crds").glob("*.yaml")))
    api = cp.api_client()
    from kubernetes import client

    core = client.CoreV1Api(api)
    for ns in ("aiconn-system", DEMO_NAMESPACE, "monitoring"):
        core.create_namespace({"metadata": {"name": ns}})
    # The provider's side: the tiers, and the offers the sample SLAs buy under.
    samples = ROOT / "manifests" / "samples"
    apply_manifests(api, [samples / "tiers.yaml", samples / "offers.yaml"])
    apply_manifests(api, [ROOT / "manifests" / "rbac" / "operator.yaml"])
    say(f"control plane ready at {cp.url}; CRDs, default tiers and operator RBAC installed")

    say("starting vLLM (CPU build, tiny model made on the spot; about a minute)")
    model_dir = make_tiny_model(state / "tiny-model")
    vllm = VllmServer(group=group, model_dir=model_dir, model=spec.model.name).start()
    say(f"vLLM serving {spec.model.name!r} at {vllm.url}")

    injector_port, control_port = free_port(), free_port()
    injector = group.start(
        "injector",
        [
            sys.executable,
            "-m",
            "aiconn.devstack.faultd",
            "--upstream",
            vllm.url,
            "--port",
            str(injector_port),
            "--control-port",
            str(control_port),
        ],
    )
    control = f"http://127.0.0.1:{control_port}/fault"
    wait_until(lambda: http_ok(control), timeout=30, what="fault injector", proc=injector)

    key = "aic_" + secrets.token_urlsafe(24)
    keys_dir = write_keys(state / "gateway-keys", key)
    gateway_port, gateway_metrics_port = free_port(), free_port()
    env = gateway_env(
        sla=name,
        namespace=DEMO_NAMESPACE,
        model=spec.model.name,
        upstream=f"http://127.0.0.1:{injector_port}",
        listen_host="127.0.0.1",
        listen_port=gateway_port,
        metrics_host="127.0.0.1",
        metrics_port=gateway_metrics_port,
        keys_dir=str(keys_dir),
        ttft_threshold_ms=spec.objectives.ttft.threshold_ms,
        tpot_threshold_ms=spec.objectives.tpot.threshold_ms,
        rate_rps=spec.tokens.rate_limit.requests_per_second,
        rate_tpm=spec.tokens.rate_limit.tokens_per_minute,
        allowance_tokens=spec.tokens.monthly_commitment,
    )
    gateway = group.start("gateway", _aiconn("gateway"), env=env)
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    gateway_metrics = f"http://127.0.0.1:{gateway_metrics_port}/metrics"
    wait_until(lambda: http_ok(gateway_metrics), timeout=60, what="gateway", proc=gateway)
    say(f"token gateway at {gateway_url} -> injector :{injector_port} -> vLLM")

    pod_labels = {"namespace": DEMO_NAMESPACE, "sla": name, "pod": f"{name}-vllm-0", "tier": "edge"}
    api_port = free_port()
    api_token = secrets.token_urlsafe(24)
    # The API serves HTTPS as in a cluster, with a CA made for this run (a cert-manager Secret's
    # files): the stack's clients trust that CA, and only for this API.
    api_tls = write_serving_tls(state / "api-tls", common_name="aiconn-api")
    prometheus = PrometheusServer(
        group=group,
        data_dir=state / "prometheus",
        scrape_interval="2s",
        targets=[
            ScrapeTarget("aiconn-gateway", f"127.0.0.1:{gateway_metrics_port}", pod_labels),
            ScrapeTarget("vllm", vllm.url.removeprefix("http://"), pod_labels),
            # The API's /metrics is a fleet view: scraped with the NOC token, and it is what the
            # NOC page's history reads back (AICONN_API_PROMETHEUS_URL).
            ScrapeTarget(
                "aiconn-api",
                f"127.0.0.1:{api_port}",
                bearer_token=api_token,
                ca_file=str(api_tls["ca.crt"]),
            ),
        ],
    ).start()
    say(f"Prometheus at {prometheus.url}, scraping the gateway and vLLM as the edge pod")

    ledger_url = f"sqlite:///{state / 'ledger.db'}"
    token_kubeconfig = cp.kubeconfig_with_token("aiconn-operator", operator_token(api))
    operator = group.start(
        "operator",
        _aiconn("operator"),
        env={
            "KUBECONFIG": str(token_kubeconfig),
            "AICONN_PROMETHEUS_URL": prometheus.url,
            "AICONN_LEDGER_URL": ledger_url,
            "AICONN_EVALUATION_INTERVAL_SECONDS": str(evaluation_interval),
            "AICONN_SETTLEMENT_GRACE_SECONDS": str(settlement_grace),
            "AICONN_HEALTH_PORT": str(free_port()),
            # The assurance scenes (aiconn.devstack.assurance_scenes): scaling on the gateways'
            # signals, and a return home a short stabilisation time after a site recovers.
            "AICONN_SCALING_ENABLED": "true",
            "AICONN_FAILBACK_STABILISATION_SECONDS": "15",
        },
    )
    tokens = state / "api-tokens.csv"
    tokens.write_text(f"{api_token},demo-admin,*\n")
    tokens.chmod(0o600)
    api_proc = group.start(
        "api",
        _aiconn("api"),
        env={
            "AICONN_API_LEDGER_URL": ledger_url,
            "AICONN_API_AUTH_MODE": "static",
            "AICONN_API_STATIC_TOKENS_FILE": str(tokens),
            "AICONN_API_KUBECONFIG": str(cp.kubeconfig),
            "AICONN_API_PORT": str(api_port),
            "AICONN_API_PROMETHEUS_URL": prometheus.url,
            "AICONN_API_TLS_CERT_FILE": str(api_tls["tls.crt"]),
            "AICONN_API_TLS_KEY_FILE": str(api_tls["tls.key"]),
        },
    )
    api_url = f"https://127.0.0.1:{api_port}"
    api_context = ssl.create_default_context(cafile=api_tls["ca.crt"])
    wait_until(
        lambda: http_ok(f"{api_url}/healthz", api_context),
        timeout=60,
        what="reporting API",
        proc=api_proc,
    )
    operator.ensure_alive()
    say(f"operator running (ServiceAccount aiconn-operator); reporting API at {api_url}")
    api.close()
    endpoints = Endpoints(
        kubeconfig=str(cp.kubeconfig),
        api=api_url,
        noc=f"{api_url}/noc#token={api_token}",
        prometheus=prometheus.url,
        gateway=gateway_url,
        vllm=vllm.url,
        injector_control=control,
        ledger_url=ledger_url,
        api_token=api_token,
        gateway_key=key,
        gateway_keys_dir=str(keys_dir),
        sla_name=name,
        namespace=DEMO_NAMESPACE,
        api_ca=str(api_tls["ca.crt"]),
    )
    endpoints.save(state / "endpoints.json")
    return endpoints


def apply_sla(kubeconfig: str, sla: dict[str, Any], *, keys_dir: str = "") -> str | None:
    """Apply the SLA. With `keys_dir`, the local gateway then also accepts the key in the SLA's
    Secret, the key the README tells tenants to use: in a cluster the gateway reads that Secret;
    here it reads `keys_dir`, so the Secret's digests are added there. Returns that key."""
    from aiconn.kube import api_client

    with api_client(kubeconfig) as api:
        apply_objects(api, [sla], namespace=DEMO_NAMESPACE)
        if not keys_dir:
            return None
        return trust_secret_keys(api, sla["metadata"]["name"], Path(keys_dir))


def trust_secret_keys(
    api: Any, sla_name: str, keys_dir: Path, *, namespace: str = DEMO_NAMESPACE
) -> str:
    """Add the digests of the SLA's Secret (written by the operator) to the gateway's keys file;
    the gateway re-reads the file when it changes. Returns the Secret's key."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    secret_name = child_names(sla_name).api_key_secret
    found: dict[str, dict[str, str]] = {}

    def secret_written() -> bool:
        found["data"] = core.read_namespaced_secret(secret_name, namespace).data or {}
        return KEYS_SECRET_KEY in found["data"]

    wait_until(secret_written, timeout=120, what=f"the operator's Secret {secret_name}")
    data = found["data"]
    path = keys_dir / KEYS_FILE
    known = path.read_text().split() if path.exists() else []
    added = base64.b64decode(data[KEYS_SECRET_KEY]).decode().split()
    staged = keys_dir / ".keys.new"
    staged.write_text("".join(f"{d}\n" for d in dict.fromkeys(known + added)))
    staged.replace(path)
    return base64.b64decode(data[PLAINTEXT_SECRET_KEY]).decode()


DATA = ("controlplane", "prometheus", "ledger.db", "gateway-keys", "api-tls", "endpoints.json")
"""What a stack run leaves that the next run must not inherit: the cluster's etcd (its SLAs and
namespaces), Prometheus's series, the ledger's settlements, keys, the API's CA and endpoints.
The tiny model is kept: it is made the same way every time, and making it is the slow part."""


def clear_data(state: Path) -> None:
    """Remove the previous run's data, so that every `dev up` starts from an empty cluster,
    history and ledger (a stopped stack's etcd would still hold the last demo's SLA)."""
    for name in DATA:
        path = state / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    for journal in state.glob("ledger.db-*"):
        journal.unlink()


def down(state_dir: Path | None = None) -> list[str]:
    """Stop every process the stack recorded, newest first, and the cluster `dev up --cluster`
    started (with the host state its real node changed)."""
    from aiconn.devstack.cluster import stop_cluster
    from aiconn.devstack.devcluster import CLUSTER_DIR

    state = state_dir or default_state_dir()
    return stop_cluster(state / CLUSTER_DIR) + stop_recorded(state)
