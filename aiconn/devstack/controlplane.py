"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager.

The binaries are built from Go modules by `tools/k8s/build.sh` into an envtest-style directory
(`KUBEBUILDER_ASSETS`), so existing envtest binaries are used when present. There is no kubelet:
pods never run. Tests and `aiconn dev up` share this module, and a start that fails raises with
the component's log tail, never a silent skip.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import ssl
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aiconn.devstack.pki import write_pki
from aiconn.devstack.processes import (
    ProcessGroup,
    StackError,
    cache_dir,
    free_port,
    http_ok,
    wait_until,
)
from aiconn.devstack.toolpins import TOOLS, pinned

K8S_VERSION = pinned(TOOLS / "k8s" / "build.sh", "K8S_VERSION")
SERVICE_RANGE = "198.19.0.0/16"
# The `kubernetes` Service's ClusterIP: the first address of the range, named in the certificate.
KUBERNETES_SERVICE_IP = "198.19.0.1"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")
# Controllers the product relies on: garbage collection of owned children, namespace deletion,
# Deployment -> ReplicaSet, and PodDisruptionBudget status.
CONTROLLERS = "garbagecollector,namespace,deployment,replicaset,disruption,serviceaccount"

# Users of the token auth file: name -> groups. Tokens are random per control plane.
DEFAULT_USERS: dict[str, tuple[str, ...]] = {
    "admin": ("system:masters",),
    "tenant-a": ("aiconn:tenants",),
    "tenant-b": ("aiconn:tenants",),
    "noc": ("aiconn:noc",),
    "nobody": (),
}


def assets_dir() -> Path:
    """Where the control-plane binaries live (envtest's KUBEBUILDER_ASSETS convention)."""
    explicit = os.environ.get("KUBEBUILDER_ASSETS")
    if explicit:
        return Path(explicit)
    cache = cache_dir()
    return cache / "k8s" / f"{K8S_VERSION}-linux-amd64"


def missing_binaries(directory: Path) -> list[str]:
    return [b for b in BINARIES if not os.access(directory / b, os.X_OK)]


@dataclass
class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager under `state_dir`."""

    state_dir: Path
    users: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_USERS))
    tokens: dict[str, str] = field(default_factory=dict)
    port: int = 0
    group: ProcessGroup | None = None
    # Where kube-apiserver listens: loopback, unless pods of a real node must reach it too.
    address: str = "127.0.0.1"
    controllers: str = CONTROLLERS
    # Pods get their ServiceAccount token volume only with this admission plugin; without
    # pods that run (no kubelet) it is left off, so a test's pods need no ServiceAccount.
    service_account_admission: bool = False
    # Extra flags of a larger stack (aiconn.devstack.cluster), e.g. client QPS.
    apiserver_args: list[str] = field(default_factory=list)
    controller_manager_args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"https://{self.address}:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def ca_file(self) -> Path:
        return self.state_dir / "pki" / "ca.crt"

    def kubeconfig_for(self, user: str) -> Path:
        """A kubeconfig that authenticates as `user` from the token file."""
        return self.kubeconfig_with_token(user, self.tokens[user])

    def kubeconfig_with_token(self, name: str, token: str) -> Path:
        """A kubeconfig that authenticates with any bearer token (e.g. a ServiceAccount's)."""
        return self._write_kubeconfig(self.state_dir / f"kubeconfig-{name}", name, token)

    def _write_kubeconfig(self, path: Path, user: str, token: str) -> Path:
        """Write `user`'s kubeconfig at `path`, readable by its owner only: it holds the token."""
        path.write_text(yaml.safe_dump(self._kubeconfig(user, token)))
        path.chmod(0o600)
        return path

    def _kubeconfig(self, user: str, token: str) -> dict[str, object]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "aiconn-local",
                    "cluster": {"server": self.url, "certificate-authority": str(self.ca_file)},
                }
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": user, "context": {"cluster": "aiconn-local", "user": user}}],
            "current-context": user,
        }

    def start(self, *, crds: list[Path] | None = None, timeout: float = 120) -> ControlPlane:
        """Start the three components; install `crds` before the controller-manager starts
        (its garbage collector only re-reads discovery every 30 s)."""
        assets = assets_dir()
        missing = missing_binaries(assets)
        if missing:
            raise StackError(
                f"control-plane binaries {missing} not found in {assets}; build them with "
                "`bash tools/k8s/build.sh` (or set KUBEBUILDER_ASSETS to envtest binaries)"
            )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.group is None:
            self.group = ProcessGroup(self.state_dir)
        pki = write_pki(self.state_dir / "pki", addresses=(self.address, KUBERNETES_SERVICE_IP))
        self.tokens = {user: secrets.token_urlsafe(24) for user in self.users}
        token_file = self.state_dir / "tokens.csv"
        token_file.write_text(
            "".join(f'{self.tokens[u]},{u},{u},"{",".join(g)}"\n' for u, g in self.users.items())
        )
        token_file.chmod(0o600)

        etcd_port, etcd_peer = free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        etcd = self.group.start(
            "etcd",
            [
                str(assets / "etcd"),
                f"--data-dir={self.state_dir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-cluster=default=http://127.0.0.1:{etcd_peer}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        wait_until(
            lambda: http_ok(f"{etcd_url}/health"),
            proc=etcd,
            timeout=timeout,
            what="etcd /health",
        )

        self.port = free_port()
        loopback = ipaddress.ip_address(self.address).is_loopback
        apiserver = self.group.start(
            "kube-apiserver",
            [
                str(assets / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                f"--bind-address={self.address}",
                f"--advertise-address={self.address}",
                # Loopback is refused by the endpoint reconciler; pods cannot reach it anyway.
                f"--endpoint-reconciler-type={'none' if loopback else 'lease'}",
                f"--secure-port={self.port}",
                f"--cert-dir={self.state_dir / 'certs'}",
                f"--tls-cert-file={pki['apiserver.crt']}",
                f"--tls-private-key-file={pki['apiserver.key']}",
                f"--client-ca-file={pki['ca.crt']}",
                f"--kubelet-client-certificate={pki['kubelet-client.crt']}",
                f"--kubelet-client-key={pki['kubelet-client.key']}",
                # Node names do not resolve here; their InternalIP is reachable.
                "--kubelet-preferred-address-types=InternalIP",
                # Room for the benchmarks (every SLA has a ClusterIP Service), in the
                # benchmarking range so that nothing looks like a private network's address.
                f"--service-cluster-ip-range={SERVICE_RANGE}",
                "--authorization-mode=RBAC",
                f"--service-account-issuer=https://127.0.0.1:{self.port}",
                f"--service-account-key-file={pki['sa.pub']}",
                f"--service-account-signing-key-file={pki['sa.key']}",
                f"--token-auth-file={token_file}",
                *(
                    []
                    if self.service_account_admission
                    else ["--disable-admission-plugins=ServiceAccount"]
                ),
                *self.apiserver_args,
                "--allow-privileged=true",
                "--v=1",
            ],
        )
        self._write_kubeconfig(self.kubeconfig, "admin", self.tokens["admin"])
        wait_until(
            self._ready,
            proc=apiserver,
            timeout=timeout,
            what="kube-apiserver /readyz and namespace default",
        )
        if crds:
            self.apply_crds(crds)
        self.group.start(
            "kube-controller-manager",
            [
                str(assets / "kube-controller-manager"),
                f"--kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--secure-port=0",
                "--use-service-account-credentials=false",
                f"--controllers={self.controllers}",
                f"--service-account-private-key-file={pki['sa.key']}",
                f"--root-ca-file={pki['ca.crt']}",
                *self.controller_manager_args,
                "--v=1",
            ],
        )
        return self

    def _get(self, path: str) -> tuple[int, bytes]:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        req = urllib.request.Request(
            f"{self.url}{path}", headers={"Authorization": f"Bearer {self.tokens['admin']}"}
        )
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=5) as resp:
                return int(resp.status), bytes(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, b""

    def _ready(self) -> bool:
        return self._get("/readyz")[0] == 200 and self._get("/api/v1/namespaces/default")[0] == 200

    def apply_crds(self, paths: list[Path], *, timeout: float = 60) -> None:
        """Create or update CRDs with server-side apply and wait until they are Established."""
        from aiconn.devstack.kube import apply_manifests, wait_established

        api = self.api_client()
        try:
            names = apply_manifests(api, paths)
            wait_established(api, names, timeout=timeout)
        finally:
            api.close()

    def api_client(self, user: str = "admin") -> Any:
        from aiconn.kube import api_client

        return api_client(self.kubeconfig if user == "admin" else self.kubeconfig_for(user))

    def stop(self) -> None:
        if self.group is not None:
            self.group.stop_all()

    def alive(self) -> bool:
        return self.group is not None and all(p.alive() for p in self.group.procs)
