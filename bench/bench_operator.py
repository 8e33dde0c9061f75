"""Operator throughput on a scheduling cluster: apply N SLAs across the three tiers at once and
time until every inference pod is Running on a KWOK node (kube-scheduler included); compare with
a plain client writing the same objects itself, in the same run, on the same cluster.

    .venv/bin/python bench/bench_operator.py --slas 1000

Starts its own cluster (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, KWOK) and
runs the operator as a separate process (`aiconn operator`), so its peak RSS (VmHWM) and CPU
time are its own. The SLAs are the three samples, one third each, with one replica of one GPU,
so that the tiers' sites need few simulated nodes: the edge sample (8B, DE) lands on edge, the
regional sample with an 8B model its offer sells, kept in France, on regional (edge serves EU
and DE; the cloud's RTT is over its budget), the cloud sample with an 8B model (at its offer's
price for that class: the sample's 405B price is refused) on cloud. The
operator places its SLAs on each tier's first site (the first with room: it is sized for all of
them); the plain client pins the same specs to each tier's second site, so neither run's pods
take the other's GPUs.

Writes and reads are counted from the API server's `apiserver_request_total` (by verb, resource
and subresource), before and after each run: everything that ran in between is counted (the
controller-manager, the scheduler and KWOK too), which both runs share. `--operator-src DIR`
runs the operator from another checkout (e.g. `git worktree add /tmp/base <commit>`), so a
change can be measured before and after on one machine in one session.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, watch

from aiconn.devstack.cluster import Cluster
from aiconn.devstack.kube import apply_objects, load_documents
from aiconn.devstack.processes import wait_until
from aiconn.devstack.tiernodes import SIMULATED_LABEL, simulated_node
from aiconn.inference import workload
from aiconn.inference.placement import PlacementDecision, default_tiers, plan
from aiconn.operator.offers import resolve
from aiconn.operator.reconcile import sla_children
from aiconn.operator.settings import OperatorSettings
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec
from aiconn.slices.kubernetes import network_policy, priority_class
from aiconn.slices.realize import slice_for

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "manifests" / "samples"
G, V = "aiconn.io", "v1alpha1"
CLIENT_THREADS = 16
WRITE_VERBS = ("POST", "PUT", "PATCH", "APPLY", "DELETE")
READ_VERBS = ("GET", "LIST", "WATCH")
HEADROOM = 1.1  # nodes for 10 % more GPUs than the SLAs need


def variants() -> list[dict[str, Any]]:
    """One SLA body per tier (see the module doc), each with one replica of one GPU."""
    edge = yaml.safe_load((SAMPLES / "sla-edge-urllc.yaml").read_text())
    edge["spec"]["capacity"] = {"replicas": 1, "maxReplicas": 2}
    regional = yaml.safe_load((SAMPLES / "sla-regional-eu-70b.yaml").read_text())
    cloud = yaml.safe_load((SAMPLES / "sla-cloud-405b.yaml").read_text())
    small = {
        "name": "llama-3-8b-instruct",
        "source": "hf://meta-llama/Meta-Llama-3-8B-Instruct",
        "parametersBillions": 8,
        "dtype": "bfloat16",
        "maxModelLen": 8192,
        "architecture": {"numLayers": 32, "numKvHeads": 8, "headDim": 128},
    }
    for body in (regional, cloud):
        body["spec"]["model"] = dict(small)
    # The 8B model is the offer's small class: its price is the offer's (0.5), not the 405B
    # sample's 3.0, which the operator refuses (OutsideOffer), so it is left unset.
    del cloud["spec"]["tokens"]["pricePerMillionTokens"]
    # Kept in France: the edge tier (EU, DE) cannot take it; the cloud's RTT is over budget.
    regional["spec"]["placement"]["dataResidency"] = "FR"
    return [edge, regional, cloud]


def decisions(bodies: list[dict[str, Any]]) -> list[PlacementDecision]:
    """Each variant's placement; raises when a variant is outside its offer's terms (the
    operator would refuse it with OutsideOffer, and the benchmark would wait for nothing)."""
    tiers = default_tiers()
    offers = {
        o["metadata"]["name"]: o
        for o in load_documents([SAMPLES / "offers.yaml"])
        if o.get("kind") == "AIInferenceOffer"
    }
    out = []
    for body, tier in zip(bodies, ("edge", "regional", "cloud"), strict=True):
        spec = AIInferenceSLASpec.model_validate(body["spec"])
        resolve(spec, offers.get(spec.offer or ""), require_offer=True)
        decision = plan(spec, tiers)
        assert decision.tier == tier and decision.gpus_per_replica == 1, (tier, decision.message)
        out.append(decision)
    return out


def nodes_for(n: int, site_index: int) -> list[dict[str, Any]]:
    """Simulated nodes at each tier's `site_index`-th site for n SLAs, one third per tier."""
    tiers = default_tiers()
    nodes = []
    for i, tier in enumerate(("edge", "regional", "cloud")):
        slas = len(range(i, n, 3))
        spec = tiers[tier]
        count = math.ceil(slas * HEADROOM / spec.gpu.count_per_node) + 1
        site = spec.sites[site_index]
        nodes += [simulated_node(tier, spec, site, k) for k in range(count)]
    return nodes


def add_nodes(cluster: Cluster, api: Any, nodes: list[dict[str, Any]]) -> None:
    apply_objects(api, nodes)
    core = client.CoreV1Api(api)
    names = {n["metadata"]["name"] for n in nodes}

    def all_ready() -> bool:
        listed = core.list_node(label_selector=f"{SIMULATED_LABEL}=true").items
        ready = {
            n.metadata.name
            for n in listed
            if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
        }
        return names <= ready

    wait_until(all_ready, timeout=300, what=f"{len(names)} KWOK nodes Ready", interval=1)


def request_counts(api: Any) -> Counter[tuple[str, str]]:
    """apiserver_request_total summed by (verb, resource[/subresource]) over codes and scopes."""
    response = api.call_api(
        "/metrics",
        "GET",
        auth_settings=["BearerToken"],
        _preload_content=False,
        header_params={"Accept": "text/plain"},
    )
    counts: Counter[tuple[str, str]] = Counter()
    for line in response[0].data.decode().splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line[: line.rindex("}")]))
        resource = labels.get("resource", "")
        if labels.get("subresource"):
            resource += "/" + labels["subresource"]
        counts[(labels.get("verb", ""), resource)] += int(float(line.rsplit(" ", 1)[1]))
    return counts


class PodsRunning:
    """Watches the inference pods of a namespace; done when `expected` SLAs each have a
    Running pod. Records, per SLA, when its first pod was seen Running."""

    def __init__(self, api: Any, namespace: str, expected: int) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace, self.expected = namespace, expected
        self.running: dict[str, float] = {}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        selector = f"app.kubernetes.io/component={workload.COMPONENT}"
        # A loaded API server ends watches early: watch again (a new watch lists first).
        while len(self.running) < self.expected:
            w = watch.Watch()
            try:
                for event in w.stream(
                    self.core.list_namespaced_pod,
                    self.namespace,
                    label_selector=selector,
                    timeout_seconds=1200,
                ):
                    pod = event["object"]
                    if event["type"] != "DELETED" and pod.status.phase == "Running":
                        sla = pod.metadata.labels.get(workload.SLA_LABEL, pod.metadata.name)
                        self.running.setdefault(sla, time.monotonic())
                    if len(self.running) >= self.expected:
                        w.stop()
            except Exception as err:  # a broken stream is watched again
                print(f"pod watch ended ({err}); watching again", file=sys.stderr)
                time.sleep(1)
        self.done.set()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def load() -> float:
    return os.getloadavg()[0]


def why_not_running(api: Any, namespace: str, running: set[str]) -> str:
    """The status conditions of the SLAs without a Running pod, one line per distinct reason."""
    custom = client.CustomObjectsApi(api)
    items = custom.list_namespaced_custom_object(G, V, namespace, "aiinferenceslas")["items"]
    reasons: Counter[str] = Counter()
    for sla in items:
        if workload.label_value(sla["metadata"]["name"]) in running:
            continue
        status = sla.get("status") or {}
        conditions = "; ".join(
            f"{c.get('type')}={c.get('status')} {c.get('reason')}: {c.get('message')}"
            for c in status.get("conditions") or []
            if c.get("status") != "True" or c.get("type") != "Ready"
        )
        reasons[f"phase {status.get('phase')}; {conditions}"] += 1
    return "\n".join(f"not Running: {k} SLAs: {why}" for why, k in reasons.most_common())


def timed_run(api: Any, namespace: str, n: int, create: Any, *, timeout: float) -> dict[str, Any]:
    """Create n SLAs with `create(i) -> name` (16 threads) and wait for their pods Running."""
    created: dict[str, float] = {}
    pods = PodsRunning(api, namespace, n)
    time.sleep(0.5)
    before = request_counts(api)
    load_before = load()

    def one(i: int) -> None:
        started = time.monotonic()
        name = create(i)
        created[workload.label_value(name)] = started

    start = time.monotonic()
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        list(pool.map(one, range(n)))
    applied = time.monotonic() - start
    pods.done.wait(timeout=timeout)
    after = request_counts(api)
    running = pods.running
    if len(running) < n:
        print(why_not_running(api, namespace, set(running)), file=sys.stderr)
    total = max(running.values()) - start if len(running) >= n else float("nan")
    latencies = [running[k] - created[k] for k in running if k in created]
    return {
        "applied_s": applied,
        "total_s": total,
        "p50_s": percentile(latencies, 0.5),
        "p99_s": percentile(latencies, 0.99),
        "running": len(running),
        "requests": after - before,
        "load": (load_before, load()),
    }


def plain_creator(api: Any, namespace: str, bodies: list[dict[str, Any]]) -> Any:
    """A create(i) that writes what the operator writes for SLA i (its `sla_children`, with
    the operator's settings from this environment), itself, at the second site: each child
    created (POST), never applied."""
    specs = [AIInferenceSLASpec.model_validate(b["spec"]) for b in bodies]
    tiers = default_tiers()
    placed = [dataclasses.replace(d, site=tiers[d.tier or ""].sites[1]) for d in decisions(bodies)]
    settings = OperatorSettings()
    custom = client.CustomObjectsApi(api)
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    net = client.NetworkingV1Api(api)
    rbac = client.RbacAuthorizationV1Api(api)
    sched = client.SchedulingV1Api(api)
    ns = namespace
    create_child: dict[str, Callable[[str, dict[str, Any]], Any]] = {
        "Secret": core.create_namespaced_secret,
        "NetworkSlice": lambda ns, body: custom.create_namespaced_custom_object(
            G, V, ns, "networkslices", body
        ),
        "ServiceAccount": core.create_namespaced_service_account,
        "Role": rbac.create_namespaced_role,
        "RoleBinding": rbac.create_namespaced_role_binding,
        "Deployment": apps.create_namespaced_deployment,
        "Service": core.create_namespaced_service,
        "PodDisruptionBudget": client.PolicyV1Api(api).create_namespaced_pod_disruption_budget,
    }

    def create(i: int) -> str:
        name = f"sla-{i:04d}"
        body = copy.deepcopy(bodies[i % 3])
        spec, decision = specs[i % 3], placed[i % 3]
        body["metadata"] = {"name": name}
        sla = custom.create_namespaced_custom_object(G, V, ns, "aiinferenceslas", body)
        children = sla_children(sla, spec, decision, settings)
        slice_spec = slice_for(name, spec, decision)
        # The operator applies the slice's PriorityClass (shared by slices of one class); the
        # pods are refused without it.
        try:
            sched.create_priority_class(priority_class(slice_spec))
        except client.ApiException as err:
            if err.status != 409:
                raise
        network_slice = workload.child_names(name).network_slice
        for child in (*children.create_once, *children.to_apply()):
            answer = create_child[child["kind"]](ns, child)
            if child["kind"] == "NetworkSlice":
                # The slice's handler writes its NetworkPolicy, owned by the slice.
                slice_owner = {
                    "apiVersion": f"{G}/{V}",
                    "kind": "NetworkSlice",
                    "name": network_slice,
                    "uid": answer["metadata"]["uid"],
                }
                net.create_namespaced_network_policy(
                    ns, network_policy(network_slice, ns, slice_spec, slice_owner)
                )
        custom.patch_namespaced_custom_object_status(
            G,
            V,
            ns,
            "aiinferenceslas",
            name,
            {"status": {"phase": "Provisioning", "placement": decision.to_status().to_k8s()}},
        )
        custom.patch_namespaced_custom_object_status(
            G, V, ns, "networkslices", network_slice, {"status": {"phase": "Ready"}}
        )
        return name

    return create


def operator_creator(api: Any, namespace: str, bodies: list[dict[str, Any]]) -> Any:
    custom = client.CustomObjectsApi(api)

    def create(i: int) -> str:
        body = copy.deepcopy(bodies[i % 3])
        body["metadata"] = {"name": f"sla-{i:04d}"}
        custom.create_namespaced_custom_object(G, V, namespace, "aiinferenceslas", body)
        return str(body["metadata"]["name"])

    return create


def start_operator(
    cluster: Cluster,
    namespace: str,
    state: Path,
    src: Path | None,
    extra_env: Mapping[str, str] = {},
) -> subprocess.Popen[bytes]:
    log = (state / "operator.log").open("wb")
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.control_plane.kubeconfig),
        "AICONN_NAMESPACES": json.dumps([namespace]),
        "AICONN_HEALTH_PORT": "0",
        **extra_env,
    }
    if src is not None:
        env["PYTHONPATH"] = str(src)
    return subprocess.Popen(
        [sys.executable, "-m", "aiconn.cli", "operator"],
        env=env,
        cwd=src or ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def requests_table(runs: Mapping[str, Mapping[str, Any]], n: int) -> list[str]:
    keys: set[tuple[str, str]] = set()
    for r in runs.values():
        keys |= {k for k, v in r["requests"].items() if v and k[0] in (*WRITE_VERBS, "GET", "LIST")}
    names = list(runs)
    lines = [
        "| verb | resource | " + " | ".join(f"{k} (per SLA)" for k in names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for verb, resource in sorted(keys, key=lambda k: (k[0] not in WRITE_VERBS, k[0], k[1])):
        cells = [f"{runs[k]['requests'][(verb, resource)] / n:.2f}" for k in names]
        lines.append(f"| {verb} | {resource} | " + " | ".join(cells) + " |")
    for label, verbs in (("all writes", WRITE_VERBS), ("all GET+LIST", ("GET", "LIST"))):
        cells = [
            f"{sum(v for k2, v in runs[k]['requests'].items() if k2[0] in verbs) / n:.2f}"
            for k in names
        ]
        lines.append(f"| **{label}** | | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slas", type=int, default=1000)
    parser.add_argument("--operator-src", type=Path, default=None)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--state-dir", type=Path, default=None)
    parser.add_argument(
        "--operator-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set in the operator's environment only (e.g. MALLOC_ARENA_MAX=2)",
    )
    args = parser.parse_args()
    operator_env = dict(item.split("=", 1) for item in args.operator_env)
    n = args.slas
    # A terminated benchmark still stops the cluster it started (the `finally` below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    state = args.state_dir or Path(tempfile.mkdtemp(prefix="aiconn-bench-"))
    bodies = variants()
    decisions(bodies)
    cluster = Cluster(state_dir=state / "cluster")
    op: subprocess.Popen[bytes] | None = None
    runs: dict[str, dict[str, Any]] = {}
    try:
        cluster.start(crds=sorted((ROOT / "crds").glob("*.yaml")))
        api = cluster.api_client()
        api.configuration.connection_pool_maxsize = CLIENT_THREADS * 2
        apply_objects(api, load_documents([SAMPLES / "tiers.yaml", SAMPLES / "offers.yaml"]))
        nodes = nodes_for(n, 0) + nodes_for(n, 1)
        add_nodes(cluster, api, nodes)
        print(f"cluster up with {len(nodes)} KWOK nodes, load {load():.1f}", file=sys.stderr)
        core = client.CoreV1Api(api)
        for ns in ("bench-plain", "bench-operator"):
            core.create_namespace({"metadata": {"name": ns}})
        runs["plain client"] = timed_run(
            api, "bench-plain", n, plain_creator(api, "bench-plain", bodies), timeout=args.timeout
        )
        print(f"plain client: {runs['plain client']['total_s']:.1f} s", file=sys.stderr)
        op = start_operator(cluster, "bench-operator", state, args.operator_src, operator_env)
        # Started once it has handled the tiers (Kopf's annotation on each), so that its first
        # look at the tiers and offers does not re-plan the SLAs being created.
        custom = client.CustomObjectsApi(api)
        wait_until(
            lambda: all(
                "aiconn.io/last-handled-configuration" in (t["metadata"].get("annotations") or {})
                for t in custom.list_cluster_custom_object(G, V, "inferencetiers")["items"]
            ),
            timeout=120,
            what="the operator handled the tiers",
            interval=0.5,
        )
        time.sleep(2)
        cpu0 = cpu_seconds(op.pid)
        result = timed_run(
            api,
            "bench-operator",
            n,
            operator_creator(api, "bench-operator", bodies),
            timeout=args.timeout,
        )
        result["cpu_s"] = cpu_seconds(op.pid) - cpu0
        result["rss_mib"] = peak_rss_mib(op.pid)
        runs["operator"] = result
        print(f"operator: {result['total_s']:.1f} s", file=sys.stderr)
    finally:
        if op is not None:
            op.terminate()
            op.wait(timeout=30)
        cluster.stop()
    plain = runs["plain client"]
    print(f"SLAs: {n}; KWOK nodes: {len(nodes)}; state: {state}")
    print()
    print(
        "| run | all applied (s) | all pods Running (s) | per-SLA p50 (s) | per-SLA p99 (s) "
        "| SLAs Running | ratio | operator CPU (s) | operator peak RSS (MiB) | load (start-end) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, r in runs.items():
        print(
            f"| {label} | {r['applied_s']:.1f} | {r['total_s']:.1f} | {r['p50_s']:.2f} "
            f"| {r['p99_s']:.2f} | {r['running']} | "
            f"{r['total_s'] / plain['total_s']:.2f} | {r.get('cpu_s', float('nan')):.1f} "
            f"| {r.get('rss_mib', float('nan')):.0f} | {r['load'][0]:.1f}-{r['load'][1]:.1f} |"
        )
    print()
    print("API requests per SLA (apiserver_request_total; all clients, both runs alike):")
    print()
    print("\n".join(requests_table(runs, n)))


if __name__ == "__main__":
    main()
