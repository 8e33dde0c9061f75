"""One real Kubernetes node on this machine: containerd, kubelet and kube-proxy.

Debian's containerd 1.6, runc and CNI plugins run pods from images built here
(`aiconn.devstack.images`); kubelet and kube-proxy come from the project's Go module
(`tools/k8s/build.sh`). Settings this kind of machine requires (see the notes on a real node):
no CAP_SYS_RESOURCE, so containerd must not lower `oom_score_adj` (`restrict_oom_score_adj`);
cgroup v1 with systemd not PID 1, so kubelet needs `failCgroupV1: false` and the cgroupfs
driver; no registry, so the sandbox image is a local one. containerd gets its own root, state
and socket under the state directory. Addresses stay inside the machine: the node and the API
server listen on NODE_ADDRESS (added to `lo`), pods get 198.18.0.0/24 on the `aiconn0` bridge,
Services 198.19.0.0/16.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from aiconn.devstack.images import ImageArchive
from aiconn.devstack.processes import ProcessGroup, StackError, free_port, wait_until

NODE_ADDRESS = "198.18.255.1"
NODE_NAME = "aiconn-node"
POD_SUBNET = "198.18.0.0/24"
POD_GATEWAY = "198.18.0.1"
# Real and simulated pods together; kube-proxy masquerades traffic from outside it.
CLUSTER_CIDR = "198.18.0.0/17"
BRIDGE = "aiconn0"
SANDBOX_IMAGE = "localhost/pause:3.10"
CNI_BIN_DIR = "/usr/lib/cni"
# Snapshotters this machine has no use for (and which log errors when probed).
DISABLED_PLUGINS = [
    f"io.containerd.snapshotter.v1.{name}" for name in ("aufs", "btrfs", "zfs", "devmapper")
]
SYSTEM_BINARIES = ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "ip")


def node_dir(state_dir: Path) -> Path:
    """Where a node's runtime state goes: a short path named by the stack's state directory,
    because containerd and kubelet put unix sockets there, whose paths may not exceed 104 bytes
    (test directories are deeper)."""
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"aiconn-node-{digest}"


def missing_system_binaries() -> list[str]:
    import shutil

    return [b for b in SYSTEM_BINARIES if shutil.which(b) is None]


def add_node_address() -> None:
    """NODE_ADDRESS on `lo`: reachable from the host and, through the bridge, from pods, and
    from nowhere else. The host-state snapshot removes it again on `down`."""
    shown = subprocess.run(
        ["ip", "-o", "addr", "show", "dev", "lo"], capture_output=True, text=True, check=True
    ).stdout
    if f" {NODE_ADDRESS}/" not in shown:
        subprocess.run(["ip", "addr", "add", f"{NODE_ADDRESS}/32", "dev", "lo"], check=True)


@dataclass
class RealNode:
    """containerd + kubelet + kube-proxy for node `name`, registered with `labels` and
    `taints` (the tier and site it stands for)."""

    group: ProcessGroup
    state_dir: Path
    assets: Path
    kubeconfig: Path
    ca_file: Path
    name: str = NODE_NAME
    labels: dict[str, str] | None = None
    taints: list[dict[str, str]] | None = None

    @property
    def socket(self) -> Path:
        return self.state_dir / "containerd" / "containerd.sock"

    def ctr(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`ctr` against this node's containerd, in the CRI's namespace."""
        argv = ["ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args]
        return subprocess.run(argv, capture_output=True, text=True, check=False)

    def start_containerd(self, *, timeout: float = 60) -> None:
        config = self.state_dir / "containerd" / "config.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(self._containerd_config())
        cni = self.state_dir / "cni" / "net.d"
        cni.mkdir(parents=True, exist_ok=True)
        (cni / "10-aiconn.conflist").write_text(json.dumps(self._cni_config(), indent=1))
        proc = self.group.start("containerd", ["containerd", "--config", str(config)])
        wait_until(
            lambda: self.ctr("version").returncode == 0,
            proc=proc,
            timeout=timeout,
            what="containerd",
        )

    def import_image(self, image: ImageArchive) -> None:
        """Import an OCI archive built here; its index names only a tag, so `--base-name`
        gives the repository."""
        result = self.ctr("images", "import", "--base-name", image.repository, str(image.path))
        if result.returncode != 0:
            raise StackError(f"importing {image.path} failed: {result.stderr.strip()}")

    def start_kubelet(self, *, timeout: float = 120) -> None:
        kubelet_dir = self.state_dir / "kubelet"
        kubelet_dir.mkdir(parents=True, exist_ok=True)
        config = kubelet_dir / "config.yaml"
        config.write_text(yaml.safe_dump(self._kubelet_config()))
        argv = [
            str(self.assets / "kubelet"),
            f"--config={config}",
            f"--kubeconfig={self.kubeconfig}",
            f"--root-dir={kubelet_dir / 'root'}",
            f"--cert-dir={kubelet_dir / 'pki'}",
            f"--node-ip={NODE_ADDRESS}",
            f"--hostname-override={self.name}",
            "--v=1",
        ]
        if self.labels:
            argv.append("--node-labels=" + ",".join(f"{k}={v}" for k, v in self.labels.items()))
        if self.taints:
            argv.append(
                "--register-with-taints="
                + ",".join(f"{t['key']}={t.get('value', '')}:{t['effect']}" for t in self.taints)
            )
        self.group.start("kubelet", argv)

    def start_kube_proxy(self) -> None:
        config = self.state_dir / "kube-proxy.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
                    "kind": "KubeProxyConfiguration",
                    "clientConnection": {"kubeconfig": str(self.kubeconfig)},
                    "mode": "iptables",
                    "clusterCIDR": CLUSTER_CIDR,
                    "hostnameOverride": self.name,
                    "bindAddress": NODE_ADDRESS,
                    "healthzBindAddress": f"127.0.0.1:{free_port()}",
                    "metricsBindAddress": f"127.0.0.1:{free_port()}",
                    "nodePortAddresses": [f"{NODE_ADDRESS}/32"],
                    # Zero leaves the host's conntrack limits and timeouts as they are.
                    "conntrack": {
                        "maxPerCore": 0,
                        "min": 0,
                        "tcpEstablishedTimeout": "0s",
                        "tcpCloseWaitTimeout": "0s",
                    },
                }
            )
        )
        self.group.start("kube-proxy", [str(self.assets / "kube-proxy"), f"--config={config}"])

    def task_pid(self, container_id: str) -> int:
        """The host PID of a running container's main process (`containerd://` prefix or not)."""
        container_id = container_id.removeprefix("containerd://")
        tasks = self.ctr("tasks", "ls").stdout.splitlines()
        found = [t for t in tasks if t.startswith(container_id)]
        if len(found) != 1:
            raise StackError(f"container {container_id[:12]} has no task on the node: {tasks}")
        return int(found[0].split()[1])

    def kill_leftover_tasks(self) -> list[str]:
        """Containers kubelet did not stop (it was stopped first or died): kill and delete
        them through containerd, so no shim outlives the stack."""
        tasks = self.ctr("tasks", "ls", "-q").stdout.split()
        for task in tasks:
            self.ctr("tasks", "delete", "--force", task)
        for container in self.ctr("containers", "ls", "-q").stdout.split():
            self.ctr("containers", "delete", container)
        return tasks

    def _containerd_config(self) -> str:
        root = self.state_dir / "containerd"
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        return "\n".join(
            [
                "version = 2",
                f'root = "{root / "root"}"',
                f'state = "{root / "state"}"',
                "disabled_plugins = " + json.dumps(DISABLED_PLUGINS),
                "[grpc]",
                f'  address = "{self.socket}"',
                "[ttrpc]",
                f'  address = "{self.socket}.ttrpc"',
                '[plugins."io.containerd.internal.v1.opt"]',
                f'  path = "{root / "opt"}"',
                f"[{cri}]",
                f'  sandbox_image = "{SANDBOX_IMAGE}"',
                # No CAP_SYS_RESOURCE: asking for -998 fails every sandbox without this.
                "  restrict_oom_score_adj = true",
                "  enable_selinux = false",
                "  disable_apparmor = true",
                f"[{cri}.containerd]",
                '  snapshotter = "overlayfs"',
                '  default_runtime_name = "runc"',
                f"[{cri}.containerd.runtimes.runc]",
                '  runtime_type = "io.containerd.runc.v2"',
                f"[{cri}.containerd.runtimes.runc.options]",
                "  SystemdCgroup = false",
                f"[{cri}.cni]",
                f'  bin_dir = "{CNI_BIN_DIR}"',
                f'  conf_dir = "{self.state_dir / "cni" / "net.d"}"',
                "",
            ]
        )

    def _cni_config(self) -> dict[str, Any]:
        return {
            "cniVersion": "1.0.0",
            "name": "aiconn",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    # Pods talk to each other, Services and the node; nothing to masquerade.
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_SUBNET, "gateway": POD_GATEWAY}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.state_dir / "cni" / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }

    def _kubelet_config(self) -> dict[str, Any]:
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # cgroup v1 (hybrid) here: kubelet 1.37 refuses it without this.
            "failCgroupV1": False,
            # systemd is not PID 1.
            "cgroupDriver": "cgroupfs",
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "address": NODE_ADDRESS,
            "port": free_port(),
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": free_port(),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.ca_file)},
            },
            "authorization": {"mode": "Webhook"},
            "failSwapOn": False,
            # Kept under the state directory instead of /var/log/pods and /usr/libexec.
            "podLogsDir": str(self.state_dir / "pod-logs"),
            "volumePluginDir": str(self.state_dir / "volume-plugins"),
            "resolvConf": "/etc/resolv.conf",
            "clusterDomain": "cluster.local",
            "serializeImagePulls": False,
            "maxPods": 30,
            # A shared disk that is mostly full must not evict the stack's pods.
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "nodeStatusUpdateFrequency": "2s",
            "syncFrequency": "10s",
        }

    def ready(self, core: Any) -> bool:
        node = core.read_node(self.name)
        conds = {c.type: c.status for c in (node.status.conditions or [])}
        return conds.get("Ready") == "True"


def require_node_binaries(assets: Path) -> None:
    missing = [b for b in ("kubelet", "kube-proxy") if not (assets / b).exists()]
    missing += missing_system_binaries()
    if missing:
        raise StackError(
            f"a real node needs {missing}: `make system-deps` installs containerd, runc, the CNI "
            "plugins and iptables; `bash tools/k8s/build.sh` builds kubelet and kube-proxy"
        )
