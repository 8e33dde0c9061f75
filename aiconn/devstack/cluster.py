"""A Kubernetes cluster on this machine: the control plane, kube-scheduler, KWOK's simulated GPU
nodes and, optionally, one real node (containerd, kubelet, kube-proxy).

Where `ControlPlane` stops at an API server whose pods never run, this is what schedules and
runs them: the scheduler places pods by the tiers' node selectors, tolerations and GPU
requests; KWOK plays the kubelet of the simulated nodes (pods Running at once, leases renewed);
the real node runs containers from images built here. Every process is recorded by PID under
the state directory and every change to the host (address, sysctls, iptables, bridge, mounts,
cgroups) is snapshotted first, so `stop()` or `stop_cluster()` from another process puts the
machine back as it was.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiconn.devstack import hoststate
from aiconn.devstack.controlplane import CONTROLLERS, ControlPlane, assets_dir
from aiconn.devstack.images import ImageArchive
from aiconn.devstack.kube import apply_objects
from aiconn.devstack.node import (
    NODE_ADDRESS,
    NODE_NAME,
    RealNode,
    add_node_address,
    node_dir,
    require_node_binaries,
)
from aiconn.devstack.processes import ProcessGroup, StackError, cache_dir, stop_recorded, wait_until
from aiconn.devstack.tiernodes import KWOK_ANNOTATION, KWOK_MANAGED, simulated_nodes
from aiconn.devstack.toolpins import TOOLS, pinned
from aiconn.resources.v1alpha1.tier import InferenceTierSpec

KWOK_VERSION = pinned(TOOLS / "kwok" / "build.sh", "KWOK_VERSION")
# Pod addresses KWOK hands out: inside the pod range, apart from the real node's subnet.
KWOK_POD_CIDR = "198.18.64.0/18"
# For pods that run: Service endpoints, the CA ConfigMap their token volumes mount, volume
# binding, and node lifecycle (it lifts the not-ready taint new nodes are created with); the
# rest as for the control plane alone.
CLUSTER_CONTROLLERS = (
    CONTROLLERS
    + ",endpoint,endpointslice,root-ca-cert-publisher,persistentvolume-binder,nodelifecycle"
)
# The default client QPS (20) makes hundreds of pods wait on the controllers' rate limits.
CLIENT_QPS = ("--kube-api-qps=200", "--kube-api-burst=400")
HOST_STATE = "host-state.json"
NODE_MARKER = "real-node"

log = logging.getLogger(__name__)


def kwok_dir() -> Path:
    cache = cache_dir()
    return cache / "kwok" / KWOK_VERSION


def require_cluster_binaries() -> None:
    missing = [b for b in ("kube-scheduler",) if not (assets_dir() / b).exists()]
    missing += [str(p) for p in (kwok_dir() / "kwok", kwok_dir() / "stages.yaml") if not p.exists()]
    if missing:
        raise StackError(
            f"cluster binaries {missing} not found; build them with `bash tools/k8s/build.sh` "
            "and `bash tools/kwok/build.sh` (`make cluster`)"
        )


def start_scheduling(group: ProcessGroup, kubeconfig: Path) -> None:
    """kube-scheduler and KWOK against the API server of `kubeconfig`: what makes a control
    plane place pods on nodes and KWOK's simulated nodes run them. `Cluster` starts them beside
    its own control plane; the demo's assurance scenes beside the demo's."""
    group.start(
        "kube-scheduler",
        [
            str(assets_dir() / "kube-scheduler"),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--leader-elect=false",
            "--secure-port=0",
            *CLIENT_QPS,
            "--v=1",
        ],
    )
    group.start(
        "kwok",
        [
            str(kwok_dir() / "kwok"),
            f"--kubeconfig={kubeconfig}",
            f"--config={kwok_dir() / 'stages.yaml'}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}={KWOK_MANAGED}",
            f"--cidr={KWOK_POD_CIDR}",
            "--node-ip=198.18.127.254",
            "--node-lease-duration-seconds=40",
        ],
    )


@dataclass
class Cluster:
    """The cluster under `state_dir`; `real_node` adds containerd + kubelet + kube-proxy,
    registered as `node_site` of `node_tier` (that tier's labels)."""

    state_dir: Path
    real_node: bool = False
    node_tier: str = "edge"
    node_site: str | None = None
    group: ProcessGroup = field(init=False)
    control_plane: ControlPlane = field(init=False)
    node: RealNode | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.group = ProcessGroup(self.state_dir)
        self.control_plane = ControlPlane(
            state_dir=self.state_dir / "controlplane",
            group=self.group,
            address=NODE_ADDRESS if self.real_node else "127.0.0.1",
            controllers=CLUSTER_CONTROLLERS,
            service_account_admission=True,
            controller_manager_args=list(CLIENT_QPS),
        )

    def start(
        self, *, crds: list[Path] | None = None, node_images: tuple[ImageArchive, ...] = ()
    ) -> Cluster:
        """Start everything; raises StackError naming what could not start."""
        require_cluster_binaries()
        if self.real_node:
            require_node_binaries(assets_dir())
        started = time.monotonic()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.real_node:
            hoststate.snapshot(self.state_dir / HOST_STATE)
            (self.state_dir / NODE_MARKER).write_text("")
            add_node_address()
        self.control_plane.start(crds=crds)
        self.timings["control plane"] = time.monotonic() - started
        start_scheduling(self.group, self.control_plane.kubeconfig)
        if self.real_node:
            self._start_node(node_images)
        self.timings["cluster up"] = time.monotonic() - started
        return self

    def _start_node(self, images: tuple[ImageArchive, ...]) -> None:
        from aiconn.devstack.tiernodes import tier_labels
        from aiconn.inference.placement import default_tiers

        spec = default_tiers()[self.node_tier]
        site = self.node_site = self.node_site or spec.sites[0]
        cp = self.control_plane
        self.node = RealNode(
            group=self.group,
            state_dir=node_dir(self.state_dir),
            assets=assets_dir(),
            kubeconfig=cp.kubeconfig,
            ca_file=cp.ca_file,
            # The tier's labels, so its pods select this node; not its taints, because the
            # one real node also runs aiconn's own pods (operator, API), which tolerate none.
            labels=tier_labels(self.node_tier, spec, site),
        )
        began = time.monotonic()
        self.node.start_containerd()
        for image in images:
            self.node.import_image(image)
        self.node.start_kubelet()
        self.node.start_kube_proxy()
        api = cp.api_client()
        try:
            from kubernetes import client

            core = client.CoreV1Api(api)
            kubelet = next(p for p in self.group.procs if p.name == "kubelet")
            wait_until(
                lambda: self.node is not None and self.node.ready(core),
                proc=kubelet,
                timeout=120,
                what=f"node {self.node.name} Ready",
            )
        finally:
            api.close()
        self.timings["real node Ready"] = time.monotonic() - began

    def add_simulated_nodes(
        self,
        tiers: Mapping[str, InferenceTierSpec],
        *,
        nodes_per_site: int = 1,
        timeout: float = 60,
    ) -> list[str]:
        """KWOK nodes for the tiers' sites (not the one the real node stands for); waits until
        they are Ready and returns their names."""
        skip = frozenset([self.node_site] if self.node and self.node_site else [])
        nodes = simulated_nodes(tiers, nodes_per_site=nodes_per_site, skip_sites=skip)
        api = self.control_plane.api_client()
        try:
            from kubernetes import client

            apply_objects(api, nodes)
            core = client.CoreV1Api(api)
            names = [n["metadata"]["name"] for n in nodes]
            kwok = next(p for p in self.group.procs if p.name == "kwok")

            def all_ready() -> bool:
                listed = core.list_node(label_selector="aiconn.io/simulated=true").items
                ready = {
                    n.metadata.name
                    for n in listed
                    if any(
                        c.type == "Ready" and c.status == "True" for c in n.status.conditions or []
                    )
                }
                return set(names) <= ready

            wait_until(all_ready, proc=kwok, timeout=timeout, what=f"{len(names)} KWOK nodes Ready")
            return names
        finally:
            api.close()

    def api_client(self) -> Any:
        return self.control_plane.api_client()

    def stop(self) -> list[str]:
        self.group.procs.clear()
        return stop_cluster(self.state_dir)


def stop_cluster(state_dir: Path) -> list[str]:
    """Stop the cluster recorded under `state_dir` and undo its host changes: the scheduler
    first (so nothing is placed again), the real node's pods through kubelet (so their network
    is torn down by the CNI plugins), then kube-proxy, kubelet, containerd, and the rest newest
    first (KWOK, controller-manager, kube-apiserver, etcd)."""
    done = stop_recorded(state_dir, only={"kube-scheduler"})
    if (state_dir / NODE_MARKER).exists():
        try:
            _drain_real_node(state_dir)
        except Exception as err:  # a failed drain must not leave the rest running
            log.warning("draining the real node failed (%s); its containers are killed", err)
        done += stop_recorded(state_dir, only={"kube-proxy", "kubelet"})
        node = RealNode(
            group=ProcessGroup(state_dir),
            state_dir=node_dir(state_dir),
            assets=assets_dir(),
            kubeconfig=state_dir / "controlplane" / "kubeconfig",
            ca_file=state_dir / "controlplane" / "pki" / "ca.crt",
        )
        if node.socket.exists():
            done += [f"container {t}" for t in node.kill_leftover_tasks()]
        done += stop_recorded(state_dir, only={"containerd"})
    done += stop_recorded(state_dir)
    undone = hoststate.restore(
        state_dir / HOST_STATE, mounts_under=(state_dir, node_dir(state_dir))
    )
    # The node's containers, images and logs: a second start imports the images again.
    if (state_dir / NODE_MARKER).exists():
        shutil.rmtree(node_dir(state_dir), ignore_errors=True)
    if undone:
        kinds = Counter(entry.split()[0] for entry in undone)
        done.append("host state restored (" + ", ".join(f"{n} {k}" for k, n in kinds.items()) + ")")
    (state_dir / NODE_MARKER).unlink(missing_ok=True)
    return done


KEPT = ("models-", HOST_STATE)
"""What a fresh start keeps of a stopped cluster's directory: the tiny models (made the same way
every time) and the snapshot of the host state (in case a restore was cut short)."""


def fresh_cluster_dir(state_dir: Path) -> list[str]:
    """Stop the cluster under `state_dir`, if one runs, and remove what it left (etcd's data and
    so its SLAs and namespaces, the ledger's volume, Prometheus's series, certificates): the next
    start begins from an empty cluster. Returns what was stopped."""
    stopped = stop_cluster(state_dir)
    if state_dir.is_dir():
        for entry in state_dir.iterdir():
            if entry.name.startswith(KEPT):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    return stopped


def _drain_real_node(state_dir: Path, *, timeout: float = 60) -> None:
    """Delete the pods on the real node and wait until kubelet has stopped them; a control
    plane that is gone already leaves that to `kill_leftover_tasks`."""
    kubeconfig = state_dir / "controlplane" / "kubeconfig"
    if not kubeconfig.exists():
        return
    import urllib3
    from kubernetes import client

    from aiconn.kube import api_client

    with api_client(kubeconfig, retries=0) as api:
        core = client.CoreV1Api(api)
        selector = f"spec.nodeName={NODE_NAME}"
        try:
            pods = core.list_pod_for_all_namespaces(field_selector=selector, _request_timeout=5)
        except (OSError, urllib3.exceptions.HTTPError):
            return  # the API server is gone: nothing to drain through
        for pod in pods.items:
            with contextlib.suppress(client.ApiException):  # gone already: nothing to delete
                core.delete_namespaced_pod(
                    pod.metadata.name,
                    pod.metadata.namespace,
                    grace_period_seconds=5,
                    _request_timeout=5,
                )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left = core.list_pod_for_all_namespaces(field_selector=selector, _request_timeout=5)
            if not left.items:
                return
            time.sleep(0.5)
