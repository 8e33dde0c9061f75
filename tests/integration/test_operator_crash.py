"""Kill the operator process at arbitrary points of a 50-SLA rollout, ten times over: the
result is exactly one child of each kind per SLA, every SLA placed, nothing orphaned."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from aiconn.devstack.kube import apply_objects, load_documents
from tests.helpers import condition_of, eventually, operator_kubeconfig

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "manifests" / "samples"
SLAS = 50
KILLS = 10


def start_operator(kubeconfig: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "aiconn.cli", "operator"],
            env={**os.environ, "KUBECONFIG": str(kubeconfig), "AICONN_HEALTH_PORT": "0"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_crashes_during_rollout_leave_exactly_one_child_each(
    control_plane: Any, k8s: Any, namespace: str, tmp_path: Path
) -> None:
    # The sample SLA buys under a sample offer (the provider's, as the tiers are).
    apply_objects(k8s, load_documents([SAMPLES / "tiers.yaml", SAMPLES / "offers.yaml"]))
    kubeconfig = operator_kubeconfig(control_plane, k8s)
    base = yaml.safe_load((SAMPLES / "sla-edge-urllc.yaml").read_text())
    custom = client.CustomObjectsApi(k8s)
    log = tmp_path / "operator.log"
    rng = random.Random(7)

    proc = start_operator(kubeconfig, log)
    for i in range(SLAS):
        body = {**base, "metadata": {"name": f"crash-{i:02d}"}}
        custom.create_namespaced_custom_object(
            "aiconn.io", "v1alpha1", namespace, "aiinferenceslas", body
        )
    for _ in range(KILLS):
        time.sleep(rng.uniform(0.2, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc = start_operator(kubeconfig, log)

    def all_placed() -> bool:
        items = custom.list_namespaced_custom_object(
            "aiconn.io", "v1alpha1", namespace, "aiinferenceslas"
        )["items"]
        return len(items) == SLAS and all(
            (i.get("status") or {}).get("placement", {}).get("tier") == "edge"
            and (i.get("status") or {}).get("children", {}).get("service")
            # An SLA is placed before its slice is realized: wait for SliceReady too, or the
            # operator may be stopped with a NetworkPolicy still to be written.
            and (condition_of(i.get("status"), "SliceReady") or {}).get("status") == "True"
            for i in items
        )

    try:
        eventually(all_placed, timeout=300, interval=1, what="all SLAs placed after the crashes")
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    def owners(items: list[Any]) -> Counter[str]:
        return Counter(
            ref.name
            for obj in items
            for ref in (obj.metadata.owner_references or [])
            if ref.kind == "AIInferenceSLA"
        )

    apps, core = client.AppsV1Api(k8s), client.CoreV1Api(k8s)
    per_kind = {
        "Deployment": owners(apps.list_namespaced_deployment(namespace).items),
        "Service": owners(core.list_namespaced_service(namespace).items),
        "Secret": owners(core.list_namespaced_secret(namespace).items),
        "PodDisruptionBudget": owners(
            client.PolicyV1Api(k8s).list_namespaced_pod_disruption_budget(namespace).items
        ),
        "ServiceAccount": owners(core.list_namespaced_service_account(namespace).items),
        "Role": owners(client.RbacAuthorizationV1Api(k8s).list_namespaced_role(namespace).items),
        "RoleBinding": owners(
            client.RbacAuthorizationV1Api(k8s).list_namespaced_role_binding(namespace).items
        ),
    }
    slices = custom.list_namespaced_custom_object(
        "aiconn.io", "v1alpha1", namespace, "networkslices"
    )["items"]
    per_kind["NetworkSlice"] = Counter(
        r["name"] for s in slices for r in s["metadata"].get("ownerReferences", [])
    )
    expected = Counter({f"crash-{i:02d}": 1 for i in range(SLAS)})
    for kind, counts in per_kind.items():
        assert counts == expected, f"{kind}: {counts - expected} extra, {expected - counts} missing"
    assert len(apps.list_namespaced_deployment(namespace).items) == SLAS
    assert len(slices) == SLAS
    # The operator is stopped: what is there now is all there will be.
    policies = client.NetworkingV1Api(k8s).list_namespaced_network_policy(namespace).items
    assert len(policies) == SLAS, "one NetworkPolicy per slice"
    assert not re.search(r'aiconn-operator\\*" cannot', log.read_text())
