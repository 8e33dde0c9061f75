"""The real node leaves nothing behind: after a pod ran (bridge, veth, network namespace,
iptables rules from kube-proxy and the CNI plugin, kubelet's sysctls and cgroups), stopping the
cluster puts the host back as it was, and a second start on the same state works."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from aiconn.devstack.cluster import Cluster
from aiconn.devstack.hoststate import HostState
from aiconn.devstack.images import node_images
from aiconn.devstack.node import NODE_NAME, SANDBOX_IMAGE
from tests.helpers import eventually

pytestmark = pytest.mark.integration


def comparable(state: HostState) -> dict[str, Any]:
    """What the stack may change, as it stands (mounts and netns of other tenants aside)."""
    rules = {
        binary: {table: sorted(t["rules"]) for table, t in tables.items() if t["rules"]}
        for binary, tables in state.iptables.items()
    }
    return {
        "sysctls": state.sysctls,
        "links": state.links,
        "addresses": state.addresses,
        "cgroups": state.cgroups,
        "iptables": rules,
    }


def run_a_pod(cluster: Cluster) -> None:
    api = cluster.api_client()
    core = client.CoreV1Api(api)
    try:
        core.create_namespaced_pod(
            "default",
            {
                "metadata": {"name": "sandbox-only"},
                "spec": {
                    "nodeName": NODE_NAME,
                    "automountServiceAccountToken": False,
                    "containers": [
                        {"name": "pause", "image": SANDBOX_IMAGE, "imagePullPolicy": "Never"}
                    ],
                },
            },
        )
        pod = eventually(
            lambda: (
                (p := core.read_namespaced_pod("sandbox-only", "default")).status.phase == "Running"
                and p
            ),
            what="a pod Running on the real node",
        )
        assert pod.status.pod_ip.startswith("198.18.0.")
    finally:
        api.close()


def test_stop_restores_the_host_and_a_second_start_works(tmp_path: Path) -> None:
    before = comparable(HostState.read())
    images = node_images()
    cluster = Cluster(state_dir=tmp_path / "cluster", real_node=True)
    try:
        cluster.start(node_images=images)
        run_a_pod(cluster)
        assert comparable(HostState.read()) != before
    finally:
        stopped = cluster.stop()
    assert {"kubelet", "containerd", "kube-proxy", "kube-apiserver", "etcd"} <= set(stopped)
    pids = [int(p.read_text()) for p in (tmp_path / "cluster" / "pids").glob("*.pid")]
    assert pids == []
    assert comparable(HostState.read()) == before

    again = Cluster(state_dir=tmp_path / "cluster", real_node=True)
    try:
        again.start(node_images=images)
        run_a_pod(again)
    finally:
        again.stop()
    assert comparable(HostState.read()) == before
    assert not any(os.path.exists(f"/proc/{pid}") for pid in pids)
