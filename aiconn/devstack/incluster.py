"""The demo's first act, in a real cluster: aiconn installed from its own manifests, an SLA's
inference pod scheduled onto the real node and serving a client outside the cluster.

`act_one` starts the dev cluster with its real node (containerd, kubelet, kube-proxy), KWOK nodes
for the other tiers' sites and a Prometheus that discovers pods as the manifests' PodMonitor
selects them (`start_monitoring`), then does what a provider and a tenant would:
- the provider applies `manifests/overlays/devcluster` (the operator and the reporting API as
  pods from the image built here, under their own ServiceAccounts), the tiers and the offers, and
  binds what a bare cluster lacks to host directories (no storage provisioner, no cert-manager
  runs here): the ledger's volume, the API's certificate, vLLM's environment;
- the tenant, in a namespace enforcing Pod Security "restricted", applies the edge sample SLA for
  the tiny model (made on the spot) from a claim of its own;
- the operator renders the pod, the scheduler places it on the edge tier's node, kubelet runs
  vLLM and the gateway sidecar, and a chat completion sent from the host to the SLA's Service with
  the tenant's key is answered through the gateway, which meters it, and Prometheus scrapes the
  pod.

Each phase's time is printed; the cluster is left running for the measured act
(`aiconn.devstack.demo`). `tests/e2e/test_demo.py` checks what act one leaves further (the
processes' users, the root filesystem, vLLM's own counters) before the measured act.
"""

from __future__ import annotations

import base64
import functools
import os
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml

from aiconn.contracts.gateway_pod import GATEWAY_PORT, METRICS_PORT
from aiconn.devstack.cluster import Cluster
from aiconn.devstack.images import node_images
from aiconn.devstack.kube import (
    apply_manifests,
    apply_objects,
    load_documents,
    service_account_token,
    wait_established,
)
from aiconn.devstack.node import NODE_ADDRESS, NODE_NAME
from aiconn.devstack.pki import write_serving_tls
from aiconn.devstack.podmonitor import POD_MONITOR, scrape_configs
from aiconn.devstack.processes import StackError, cache_dir
from aiconn.devstack.prometheus import PrometheusServer, prometheus3_binary
from aiconn.devstack.stack import ROOT, say
from aiconn.devstack.toolpins import pinned
from aiconn.devstack.vllm import make_tiny_model, vllm_python
from aiconn.inference import workload
from aiconn.inference.placement import default_tiers
from aiconn.resources.v1alpha1.kinds import SLA
from aiconn.resources.v1alpha1.meta import GROUP, VERSION
from aiconn.sla import metricnames as mn

T = TypeVar("T")

SYSTEM = "aiconn-system"
NONROOT = 65532
"""The user aiconn's and vLLM's images run as."""
API_ADDRESS = "198.19.0.80"
"""The API Service's address in manifests/overlays/devcluster."""
API_URL = f"https://{API_ADDRESS}:8443"
API_SERVER_NAME = f"aiconn-api.{SYSTEM}.svc"
NOC_ROLE = "aiconn-dev-noc"
OVERLAY = "manifests/overlays/devcluster"
RUNTIME_CLAIM = "vllm-runtime"
"""The claim manifests/overlays/devcluster names in AICONN_VLLM_RUNTIME_CLAIM."""
MODEL_CLAIM = "models"
MONITORING_CRDS = sorted((ROOT / "tests" / "fixtures" / "monitoring-crds").glob("*.yaml"))
"""The Prometheus Operator's CRDs (ServiceMonitor, PrometheusRule), which the manifests use."""
SAMPLE = ROOT / "manifests" / "samples" / "sla-edge-urllc.yaml"
SLA_NAME = "tiny-edge"
TENANT_NAMESPACE = "acme-edge"
OPERATOR = "app.kubernetes.io/name=aiconn,app.kubernetes.io/component=operator"
API = "app.kubernetes.io/name=aiconn,app.kubernetes.io/component=api"
KUSTOMIZE_SCRIPT = ROOT / "tools" / "kustomize" / "build.sh"
MONITORS = ROOT / "manifests" / "base" / "servicemonitors.yaml"
PROMETHEUS_PORT = 9090
"""Prometheus on the real node's address, where pods reach it: the overlay's `prometheus-url`."""
MONITORING = "monitoring"


def kustomize_binary() -> Path:
    """The binary tools/kustomize/build.sh builds, at the version pinned there."""
    version = pinned(KUSTOMIZE_SCRIPT, "KUSTOMIZE_VERSION")
    cache = cache_dir()
    binary = cache / "kustomize" / version / "kustomize"
    if not os.access(binary, os.X_OK):
        raise StackError(f"kustomize is not built: run `bash {KUSTOMIZE_SCRIPT}` (make kustomize)")
    return binary


def render(directory: str) -> list[dict[str, Any]]:
    """`kustomize build` of one of the repository's kustomizations."""
    result = subprocess.run(
        [str(kustomize_binary()), "build", str(ROOT / directory)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        raise StackError(f"kustomize build {directory}: {result.stderr.strip()}")
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def host_volume(name: str, path: Path, *, namespace: str, claim: str, mode: str) -> dict[str, Any]:
    """A PersistentVolume of a host directory, bound in advance to one claim (no provisioner
    runs here). The pods see only the claim, which Pod Security "restricted" allows."""
    return {
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": "10Gi"},
            "accessModes": [mode],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "hostPath": {"path": str(path), "type": "Directory"},
            "claimRef": {"namespace": namespace, "name": claim},
        },
    }


def volume_claim(name: str, namespace: str, *, volume: str, mode: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "accessModes": [mode],
            "storageClassName": "",
            "volumeName": volume,
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }


def poll(check: Callable[[], T], *, timeout: float, what: str, interval: float = 2.0) -> T:
    """Call `check` until it returns instead of raising; raise StackError with its last reason."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except (AssertionError, OSError, httpx.TransportError) as err:
            if time.monotonic() > deadline:
                raise StackError(
                    f"timed out after {timeout:.0f} s waiting for {what}: {err}"
                ) from err
        time.sleep(interval)


def ready_pod(k8s: Any, namespace: str, selector: str) -> Any:
    """A Running and Ready pod matching `selector`; otherwise raise with what the pods and their
    namespace's latest events say."""
    from kubernetes import client

    core = client.CoreV1Api(k8s)
    pods = core.list_namespaced_pod(namespace, label_selector=selector).items
    for pod in pods:
        conditions = {c.type: c.status for c in pod.status.conditions or []}
        if pod.status.phase == "Running" and conditions.get("Ready") == "True":
            return pod
    events = core.list_namespaced_event(namespace).items
    raise AssertionError(
        {
            "pods": [
                (p.metadata.name, p.status.phase, p.spec.node_name, p.status.container_statuses)
                for p in pods
            ],
            "events": [(e.involved_object.name, e.reason, e.message) for e in events[-8:]],
        }
    )


def start_monitoring(cluster: Cluster, k8s: Any) -> PrometheusServer:
    """Prometheus on the host, standing in for the one a provider runs in-cluster: it discovers
    the SLAs' pods through the API server as the manifests' PodMonitor selects them (the
    Prometheus Operator's translation, `aiconn.devstack.podmonitor`), under a ServiceAccount
    that may only read pods, and listens on the real node's address, where the operator and the
    API in their pods reach it (`prometheus-url` in manifests/overlays/devcluster)."""
    from kubernetes import client

    core = client.CoreV1Api(k8s)
    core.create_namespace({"metadata": {"name": MONITORING}})
    pods = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
    token = _service_account_with_role(k8s, MONITORING, "prometheus", "aiconn-dev-prometheus", pods)
    kubeconfig = cluster.control_plane.kubeconfig_with_token("prometheus", token)
    monitors = [d for d in load_documents([MONITORS]) if d["kind"] == POD_MONITOR]
    jobs = [job for m in monitors for job in scrape_configs(m, kubeconfig=kubeconfig)]
    return PrometheusServer(
        group=cluster.group,
        data_dir=cluster.state_dir / "prometheus",
        host=NODE_ADDRESS,
        port=PROMETHEUS_PORT,
        scrape_interval="15s",
        scrape_configs=jobs,
        # Debian's Prometheus has no Kubernetes discovery; tools/prometheus/build.sh's has.
        binary=prometheus3_binary(),
    ).start()


def _service_account_with_role(
    k8s: Any, namespace: str, name: str, role: str, *rules: dict[str, Any]
) -> str:
    """A ServiceAccount bound to a ClusterRole of `rules` alone; a token of it (24 h)."""
    from kubernetes import client

    client.CoreV1Api(k8s).create_namespaced_service_account(namespace, {"metadata": {"name": name}})
    rbac = client.RbacAuthorizationV1Api(k8s)
    rbac.create_cluster_role({"metadata": {"name": role}, "rules": list(rules)})
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": role},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role,
            },
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        }
    )
    return service_account_token(k8s, namespace, name)


def noc_token(k8s: Any) -> str:
    """A token for the NOC's engineers: a ServiceAccount that may read every SLA, which is what
    the API's SubjectAccessReviews ask for its reports, evidence and the NOC page."""
    slas = {"apiGroups": [GROUP], "resources": [SLA.plural], "verbs": ["get", "list"]}
    return _service_account_with_role(k8s, SYSTEM, "noc-engineer", NOC_ROLE, slas)


def scrape_api(prometheus: PrometheusServer, k8s: Any, state_dir: Path) -> None:
    """What the manifests' ServiceMonitor `aiconn-api` has Prometheus do (its interval, HTTPS
    with the API's CA and Service name, the metrics scraper's token, the per-SLA labels kept):
    scrape the API's fleet view, which the NOC page's history reads back."""
    token = prometheus.data_dir / "aiconn-metrics-scraper.token"
    token.touch(mode=0o600)
    token.write_text(service_account_token(k8s, SYSTEM, "aiconn-metrics-scraper"))
    prometheus.add_scrape_configs(
        [
            {
                "job_name": "aiconn-api",
                "honor_labels": True,
                "scrape_interval": "30s",
                "scheme": "https",
                "tls_config": {
                    "ca_file": str(state_dir / "api-tls" / "ca.crt"),
                    "server_name": API_SERVER_NAME,
                },
                "authorization": {"credentials_file": str(token)},
                "static_configs": [{"targets": [API_URL.removeprefix("https://")]}],
            }
        ]
    )


def install(k8s: Any, state_dir: Path, *, operator_env: Mapping[str, str] | None = None) -> None:
    """The provider's install: `manifests/overlays/devcluster` applied as a user would, the
    tiers and offers, plus what a bare cluster lacks: the Prometheus Operator's CRDs, a volume
    for the ledger's claim and the API's certificate (as manifests/tls would issue it)."""
    from kubernetes import client

    wait_established(k8s, apply_objects(k8s, load_documents(MONITORING_CRDS)))
    ledger = state_dir / "ledger-volume"
    ledger.mkdir(exist_ok=True)
    os.chown(ledger, NONROOT, NONROOT)
    core = client.CoreV1Api(k8s)
    core.create_persistent_volume(
        host_volume(
            "aiconn-ledger", ledger, namespace=SYSTEM, claim="aiconn-ledger", mode="ReadWriteOnce"
        )
    )
    # For the fixed Service address the gateways are told (no cluster DNS here); the operator
    # copies its CA beside the SLA's pods.
    tls = write_serving_tls(
        state_dir / "api-tls",
        common_name="aiconn-api",
        dns_names=(API_SERVER_NAME,),
        addresses=(API_ADDRESS,),
    )
    core.create_namespace({"metadata": {"name": SYSTEM}})
    core.create_namespaced_secret(
        SYSTEM,
        {
            "metadata": {"name": "aiconn-api-tls"},
            "type": "kubernetes.io/tls",
            "stringData": {key: path.read_text() for key, path in tls.items()},
        },
    )
    objects = render(OVERLAY)
    if operator_env:
        _set_operator_env(objects, operator_env)
    apply_objects(k8s, objects)
    samples = ROOT / "manifests" / "samples"
    apply_manifests(k8s, [samples / "tiers.yaml", samples / "offers.yaml"])


def _set_operator_env(objects: list[dict[str, Any]], env: Mapping[str, str]) -> None:
    """The provider's settings of the operator (`AICONN_*`), as `kubectl set env` would add them
    to its Deployment before it is applied."""
    (deployment,) = [
        o
        for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "aiconn-operator"
    ]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    kept = [e for e in container.get("env", []) if e["name"] not in env]
    container["env"] = kept + [{"name": k, "value": v} for k, v in env.items()]


def tenant_namespace(k8s: Any, state_dir: Path, namespace: str) -> None:
    """A tenant namespace enforcing Pod Security "restricted", with the provider's runtime claim
    (vLLM's environment, read-only) and the tenant's own model claim (the tiny model, made here)
    bound to host directories."""
    from kubernetes import client

    core = client.CoreV1Api(k8s)
    core.create_namespace(
        {
            "metadata": {
                "name": namespace,
                "labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                },
            }
        }
    )
    # vLLM's environment as its own interpreter places it (whatever its Python version).
    purelib = subprocess.run(
        [str(vllm_python()), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    site_packages = Path(purelib).resolve()
    if not site_packages.is_dir():
        raise StackError(f"vLLM's site-packages {site_packages} is not a directory")
    models = state_dir / f"models-{namespace}"
    models.mkdir(exist_ok=True)
    models.chmod(0o755)
    make_tiny_model(models / "tiny-llama")
    for name, path, claim in (
        (f"{namespace}-runtime", site_packages, RUNTIME_CLAIM),
        (f"{namespace}-models", models, MODEL_CLAIM),
    ):
        core.create_persistent_volume(
            host_volume(name, path, namespace=namespace, claim=claim, mode="ReadOnlyMany")
        )
        core.create_namespaced_persistent_volume_claim(
            namespace, volume_claim(claim, namespace, volume=name, mode="ReadOnlyMany")
        )


def tiny_sla(*, site: str | None = None, window: str | None = None) -> dict[str, Any]:
    """The edge sample for the tiny model from the tenant's claim, one replica; on `site` only,
    when given (the site the real node stands for, where KWOK nodes serve the others); periods
    of `window` (e.g. "5m"), calendar-aligned, when given."""
    (sla, *_) = load_documents([SAMPLE])
    sla["metadata"]["name"] = SLA_NAME
    model = sla["spec"]["model"]
    model["source"] = f"pvc://{MODEL_CLAIM}/tiny-llama"
    model["maxModelLen"] = 512
    model.pop("architecture")
    sla["spec"]["capacity"] = {"replicas": 1, "maxReplicas": 1}
    if site:
        sla["spec"]["placement"] = {**sla["spec"]["placement"], "tier": "edge", "sites": [site]}
    if window:
        sla["spec"]["objectives"]["window"] = {"duration": window, "calendarAligned": True}
    return sla


def gateway_tokens(pod_ip: str) -> dict[str, float]:
    """The gateway's token counter by type, read from its metrics port as Prometheus would."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://{pod_ip}:{METRICS_PORT}/metrics", timeout=10).text
    counted: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == mn.GATEWAY_TOKENS:
                counted[sample.labels[mn.TOKEN_TYPE_LABEL]] = sample.value
    return counted


def pod_series(pod: Any) -> str:
    """The label matchers of a pod's series as the PodMonitor labels them."""
    sla = pod.metadata.labels["aiconn.io/sla"]
    return f'namespace="{pod.metadata.namespace}",sla="{sla}",pod="{pod.metadata.name}"'


def wait_scraped(prometheus: PrometheusServer, pod: Any, *, timeout: float = 180) -> dict[str, str]:
    """Wait until Prometheus has scraped both of the pod's endpoints (the gateway's series and
    vLLM's through it) with the SLA's labels; `up` by job."""
    where = pod_series(pod)

    def scraped() -> dict[str, str]:
        up = {r["metric"]["job"]: r["value"][1] for r in prometheus.query(f"up{{{where}}}")}
        # The first scrape may come while vLLM answers its first /metrics slowly: up once.
        assert up == {"aiconn-gateway": "1", "vllm": "1"}, (up, prometheus.scrape_errors())
        return up

    return poll(scraped, timeout=timeout, what="Prometheus scraping the pod", interval=3)


def advertise_gpus(k8s: Any, count: int = 4) -> None:
    """The real node stands for the edge tier's first site but has no GPU: advertise some the way
    a device plugin would, so the scheduler can place the pods' nvidia.com/gpu requests there."""
    from kubernetes import client

    gpus = {"nvidia.com/gpu": str(count)}
    client.CoreV1Api(k8s).patch_node_status(
        NODE_NAME, {"status": {"capacity": gpus, "allocatable": gpus}}
    )


@dataclass
class Served:
    """What the in-cluster act saw."""

    pod: Any
    """The SLA's inference pod, Running and Ready."""
    url: str
    """The SLA's Service, from the host."""
    model: str
    answer: dict[str, Any]
    """The chat completion's body."""
    refused: int
    """The status of the same request without a key."""
    metered: dict[str, float]
    """The gateway's token counter by type, from its metrics port, after the answer."""
    key: str = ""
    """The tenant's API key (the SLA's Secret)."""
    scraped: dict[str, str] = field(default_factory=dict)
    """`up` of the pod's scrape jobs in Prometheus, by job."""
    timings: dict[str, float] = field(default_factory=dict)


@contextmanager
def phase(timings: dict[str, float], name: str) -> Iterator[None]:
    began = time.monotonic()
    yield
    timings[name] = time.monotonic() - began
    say(f"{name}: {timings[name]:.1f} s")


def serve(k8s: Any, namespace: str, sla: dict[str, Any], *, timeout: float = 900) -> Served:
    """Apply `sla` in `namespace`, wait for its pod to run and answer a completion through its
    Service with the tenant's key; the time of each phase in `Served.timings`."""
    from kubernetes import client

    core = client.CoreV1Api(k8s)
    name = sla["metadata"]["name"]
    timings: dict[str, float] = {}
    with phase(timings, "operator and API pods Ready"):
        for what, selector in (("operator", OPERATOR), ("reporting API", API)):
            poll(
                functools.partial(ready_pod, k8s, SYSTEM, selector),
                timeout=timeout,
                what=f"the {what} pod Running and Ready",
            )
    client.CustomObjectsApi(k8s).create_namespaced_custom_object(
        GROUP, VERSION, namespace, SLA.plural, sla
    )
    selector = ",".join(f"{k}={v}" for k, v in workload.pod_selector(name).items())

    def scheduled() -> Any:
        pods = core.list_namespaced_pod(namespace, label_selector=selector).items
        assert [p for p in pods if p.spec.node_name], "no pod scheduled yet"
        return pods

    with phase(timings, "inference pod scheduled"):
        poll(scheduled, timeout=timeout, what="the SLA's inference pod scheduled")
    # vLLM's start on a loaded 2-core machine takes minutes: the bound is generous.
    with phase(timings, "inference pod Running and Ready (vLLM started)"):
        pod = poll(
            functools.partial(ready_pod, k8s, namespace, selector),
            timeout=timeout,
            what="the SLA's inference pod Running and Ready",
        )
    names = workload.child_names(name)
    secret = core.read_namespaced_secret(names.api_key_secret, namespace)
    key = base64.b64decode(secret.data[workload.PLAINTEXT_SECRET_KEY]).decode()
    address = core.read_namespaced_service(names.service, namespace).spec.cluster_ip
    url = f"http://{address}:{GATEWAY_PORT}/v1/chat/completions"
    model = sla["spec"]["model"]["name"]
    question = {
        "model": model,
        "messages": [{"role": "user", "content": "Is the edge within its latency budget?"}],
        "max_tokens": 8,
    }

    def answered() -> httpx.Response:
        # Until the Service's endpoints reach kube-proxy the connection is refused; until the
        # operator's first evaluation pass funds the tenant's plan the gateway answers 402.
        response = httpx.post(
            url, json=question, headers={"Authorization": f"Bearer {key}"}, timeout=120
        )
        assert response.status_code == 200, (response.status_code, response.text)
        return response

    with phase(timings, "first completion through the gateway"):
        response = poll(answered, timeout=120, what="a completion through the Service")
    refused = httpx.post(url, json=question, timeout=60).status_code
    return Served(
        pod=pod,
        url=url,
        model=model,
        answer=response.json(),
        refused=refused,
        metered=gateway_tokens(pod.status.pod_ip),
        key=key,
        timings=timings,
    )


@dataclass
class ActOne:
    """The cluster act one leaves running, for the measured act that follows."""

    cluster: Cluster
    k8s: Any
    """An admin client of the cluster (closed by `close`)."""
    prometheus: PrometheusServer
    served: Served
    sla: dict[str, Any]
    """The SLA as applied."""

    def close(self) -> None:
        self.k8s.close()


def act_one(
    cluster: Cluster,
    *,
    window: str | None = None,
    operator_env: Mapping[str, str] | None = None,
) -> ActOne:
    """Start `cluster` (real node, KWOK nodes for the other sites, Prometheus), install aiconn,
    serve the tiny SLA (with the objectives' `window`, when given) and say what happened; the
    cluster is left running. `operator_env` is the provider's settings of the operator."""
    say("act 1, in a real cluster: aiconn installed from its manifests, an SLA served on the node")
    timings: dict[str, float] = {}
    with phase(timings, "images built or reused"):
        images = node_images(aiconn=True, vllm=True)
    with phase(timings, "cluster up (control plane, scheduler, real node, images imported)"):
        cluster.start(crds=sorted((ROOT / "crds").glob("*.yaml")), node_images=images)
    with phase(timings, "KWOK nodes for the other tiers' sites Ready"):
        nodes = cluster.add_simulated_nodes(default_tiers())
    say(f"nodes: {NODE_NAME} (real, edge site {cluster.node_site}) and {len(nodes)} on KWOK")
    k8s = cluster.api_client()
    try:
        with phase(timings, "Prometheus discovering pods through the PodMonitor"):
            prometheus = start_monitoring(cluster, k8s)
        say(f"Prometheus at {prometheus.url}")
        with phase(timings, "aiconn installed (manifests/overlays/devcluster)"):
            install(k8s, cluster.state_dir, operator_env=operator_env)
            tenant_namespace(k8s, cluster.state_dir, TENANT_NAMESPACE)
            advertise_gpus(k8s)
        sla = tiny_sla(site=cluster.node_site, window=window)
        served = serve(k8s, TENANT_NAMESPACE, sla)
        with phase(served.timings, "Prometheus scraping the pod (the PodMonitor's endpoints up)"):
            served.scraped = wait_scraped(prometheus, served.pod)
    except BaseException:
        k8s.close()
        raise
    served.timings = timings | served.timings
    usage = served.answer["usage"]
    metered = ", ".join(f"{int(n)} {kind}" for kind, n in sorted(served.metered.items()))
    say(
        f"{served.model} answered from pod {served.pod.metadata.name} on node "
        f"{served.pod.spec.node_name} through its gateway at {served.url}: usage "
        f"{usage['prompt_tokens']} prompt + {usage['completion_tokens']} completion tokens; "
        f"the gateway metered {metered}; without the tenant's key: HTTP {served.refused}"
    )
    say(f"act 1 took {sum(served.timings.values()):.1f} s")
    return ActOne(cluster=cluster, k8s=k8s, prometheus=prometheus, served=served, sla=sla)
