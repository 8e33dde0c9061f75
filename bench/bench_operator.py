"""Operator throughput: apply N SLAs at once and time until every one is placed with its
children; compare with a plain client creating the same objects itself, in the same run.

    .venv/bin/python bench/bench_operator.py --sizes 100 500 1000

Starts its own control plane (etcd, kube-apiserver, kube-controller-manager) and runs the
operator as a separate process (`aiconn operator`), so the operator's peak RSS is its own.
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, watch

from aiconn.devstack.controlplane import ControlPlane
from aiconn.devstack.kube import apply_objects, load_documents
from aiconn.inference import workload
from aiconn.inference.placement import default_tiers, plan
from aiconn.sla.spec import AIInferenceSLASpec
from aiconn.slices.kubernetes import network_policy, pod_attachment
from aiconn.slices.realize import slice_for

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "manifests" / "samples"
G, V = "aiconn.io", "v1alpha1"
CLIENT_THREADS = 16


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


def run_operator(api: Any, n: int, base: dict[str, Any]) -> dict[str, float]:
    ns = f"bench-op-{n}"
    custom = client.CustomObjectsApi(api)
    created: dict[str, float] = {}
    placed: dict[str, float] = {}
    done = threading.Event()

    def watcher() -> None:
        w = watch.Watch()
        for event in w.stream(
            custom.list_namespaced_custom_object, G, V, ns, "aiinferenceslas", timeout_seconds=600
        ):
            obj = event["object"]
            status = obj.get("status") or {}
            if status.get("children", {}).get("service") and status.get("placement", {}).get(
                "tier"
            ):
                placed.setdefault(obj["metadata"]["name"], time.monotonic())
            if len(placed) >= n:
                w.stop()
        done.set()

    thread = threading.Thread(target=watcher, daemon=True)
    thread.start()
    time.sleep(0.5)

    def create(i: int) -> None:
        body = copy.deepcopy(base)
        body["metadata"] = {"name": f"sla-{i:04d}"}
        created[body["metadata"]["name"]] = time.monotonic()
        custom.create_namespaced_custom_object(G, V, ns, "aiinferenceslas", body)

    start = time.monotonic()
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        list(pool.map(create, range(n)))
    done.wait(timeout=900)
    total = max(placed.values()) - start if len(placed) == n else float("nan")
    latencies = [placed[k] - created[k] for k in placed]
    return {
        "total_s": total,
        "p50_s": percentile(latencies, 0.5),
        "p99_s": percentile(latencies, 0.99),
        "placed": float(len(placed)),
    }


def run_plain_client(api: Any, n: int, base: dict[str, Any]) -> float:
    """The same objects the operator writes for each SLA, written directly by a client."""
    ns = f"bench-plain-{n}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": ns}})
    spec = AIInferenceSLASpec.model_validate(base["spec"])
    decision = plan(spec, default_tiers())
    custom = client.CustomObjectsApi(api)
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    policy_api = client.PolicyV1Api(api)
    net = client.NetworkingV1Api(api)
    rbac = client.RbacAuthorizationV1Api(api)

    def create(i: int) -> None:
        name = f"sla-{i:04d}"
        body = copy.deepcopy(base)
        body["metadata"] = {"name": name}
        sla = custom.create_namespaced_custom_object(G, V, ns, "aiinferenceslas", body)
        owner = {
            "apiVersion": f"{G}/{V}",
            "kind": "AIInferenceSLA",
            "name": name,
            "uid": sla["metadata"]["uid"],
        }
        names = workload.child_names(name)
        core.create_namespaced_secret(
            ns, workload.api_key_secret(sla_name=name, namespace=ns, keys=["k"], owner=owner)
        )
        slice_spec = slice_for(name, spec, decision)
        nslice = custom.create_namespaced_custom_object(
            G,
            V,
            ns,
            "networkslices",
            {
                "apiVersion": f"{G}/{V}",
                "kind": "NetworkSlice",
                "metadata": {
                    "name": names.network_slice,
                    "ownerReferences": [workload.owner_reference(owner)],
                },
                "spec": slice_spec.to_k8s(),
            },
        )
        slice_owner = {
            "apiVersion": f"{G}/{V}",
            "kind": "NetworkSlice",
            "name": names.network_slice,
            "uid": nslice["metadata"]["uid"],
        }
        net.create_namespaced_network_policy(
            ns, network_policy(names.network_slice, ns, slice_spec, slice_owner)
        )
        core.create_namespaced_service_account(
            ns, workload.gateway_service_account(sla_name=name, namespace=ns, owner=owner)
        )
        rbac.create_namespaced_role(
            ns, workload.gateway_role(sla_name=name, namespace=ns, owner=owner)
        )
        rbac.create_namespaced_role_binding(
            ns, workload.gateway_role_binding(sla_name=name, namespace=ns, owner=owner)
        )
        apps.create_namespaced_deployment(
            ns,
            workload.deployment(
                sla_name=name,
                namespace=ns,
                spec=spec,
                decision=decision,
                attachment=pod_attachment(slice_spec),
                owner=owner,
                api_key_secret=names.api_key_secret,
            ),
        )
        core.create_namespaced_service(
            ns, workload.service(sla_name=name, namespace=ns, owner=owner)
        )
        pdb = workload.pod_disruption_budget(sla_name=name, namespace=ns, spec=spec, owner=owner)
        if pdb:
            policy_api.create_namespaced_pod_disruption_budget(ns, pdb)
        custom.patch_namespaced_custom_object_status(
            G,
            V,
            ns,
            "aiinferenceslas",
            name,
            {"status": {"phase": "Provisioning", "placement": decision.to_status().to_k8s()}},
        )
        custom.patch_namespaced_custom_object_status(
            G, V, ns, "networkslices", names.network_slice, {"status": {"phase": "Ready"}}
        )

    start = time.monotonic()
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        list(pool.map(create, range(n)))
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500, 1000])
    args = parser.parse_args()
    # A terminated benchmark still stops the control plane it started (the `finally` below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    base = yaml.safe_load((SAMPLES / "sla-edge-urllc.yaml").read_text())
    state = Path(tempfile.mkdtemp(prefix="aiconn-bench-"))
    cp = ControlPlane(state_dir=state / "cp").start(crds=sorted((ROOT / "crds").glob("*.yaml")))
    api = cp.api_client()
    api.configuration.connection_pool_maxsize = CLIENT_THREADS * 2
    apply_objects(api, load_documents([SAMPLES / "tiers.yaml", SAMPLES / "offers.yaml"]))
    # The plain client runs first, with no operator around to race it for the same objects.
    plain_times = {n: run_plain_client(api, n, base) for n in args.sizes}
    for n in args.sizes:
        client.CoreV1Api(api).create_namespace({"metadata": {"name": f"bench-op-{n}"}})
    namespaces = json.dumps([f"bench-op-{n}" for n in args.sizes])
    log = (state / "operator.log").open("wb")
    op = subprocess.Popen(
        [sys.executable, "-m", "aiconn.cli", "operator"],
        env={
            **os.environ,
            "KUBECONFIG": str(cp.kubeconfig),
            "AICONN_NAMESPACES": namespaces,
            "AICONN_HEALTH_PORT": "0",
        },
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    rows = []
    try:
        time.sleep(3)
        for n in args.sizes:
            plain = plain_times[n]
            result = run_operator(api, n, base)
            rows.append((n, result, plain, peak_rss_mib(op.pid)))
            print(
                f"n={n}: operator {result['total_s']:.1f} s (p50 {result['p50_s']:.2f} s, "
                f"p99 {result['p99_s']:.2f} s), plain client {plain:.1f} s",
                file=sys.stderr,
            )
    finally:
        op.terminate()
        op.wait(timeout=30)
        cp.stop()
    print(
        "| SLAs | operator: all placed (s) | per-SLA p50 (s) | per-SLA p99 (s) "
        "| plain client (s) | ratio | operator peak RSS (MiB) |"
    )
    print("|---|---|---|---|---|---|---|")
    for n, r, plain, rss in rows:
        print(
            f"| {n} | {r['total_s']:.1f} | {r['p50_s']:.2f} | {r['p99_s']:.2f} | {plain:.1f} | "
            f"{r['total_s'] / plain:.2f} | {rss:.0f} |"
        )


if __name__ == "__main__":
    main()
