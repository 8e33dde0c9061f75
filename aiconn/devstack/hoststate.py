"""Host state a real node changes, recorded before it starts and put back after it stops.

kubelet sets kernel sysctls (`kernel.panic`, `vm.overcommit_memory`, ...), kube-proxy and the
CNI bridge plugin add iptables chains and rules, turn on forwarding and create a bridge, the
node's address goes on `lo`, the container runtime mounts overlays and network namespaces, and
kubelet makes cgroups.
`snapshot()` writes what was there before to a JSON file; `restore()` removes exactly what is
new since then (rules, chains, links, mounts, namespaces, cgroups) and writes the old sysctl
values back. Everything is found by the names recorded, never by a pattern on what is running,
so state this stack did not make is left alone.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

SYSCTLS = (
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxbytes",
    "kernel.keys.root_maxkeys",
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_tcp_timeout_established",
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
)
IPTABLES = ("iptables", "ip6tables")
BUILTIN_CHAINS = frozenset({"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"})
NETNS_DIRS = (Path("/run/netns"), Path("/var/run/netns"))
CGROUP_ROOT = Path("/sys/fs/cgroup")
# Top-level cgroups kubelet makes with the cgroupfs driver (cgroupsPerQOS, cgroupRoot "/").
KUBELET_CGROUPS = ("kubepods", "kubepods.slice")


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def _run(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout


def _iptables_state(binary: str) -> dict[str, dict[str, list[str]]]:
    """table -> {"chains": [...], "rules": ["-A ..."]} from `<binary>-save`."""
    if shutil.which(f"{binary}-save") is None:
        return {}
    tables: dict[str, dict[str, list[str]]] = {}
    table = ""
    for line in _run([f"{binary}-save"]).splitlines():
        if line.startswith("*"):
            table = line[1:]
            tables[table] = {"chains": [], "rules": []}
        elif line.startswith(":") and table:
            tables[table]["chains"].append(line[1:].split()[0])
        elif line.startswith("-A ") and table:
            tables[table]["rules"].append(line)
    return tables


def _links() -> list[str]:
    return sorted(p.name for p in Path("/sys/class/net").iterdir())


def _addresses() -> list[str]:
    """ "<link> <address/prefix>" for every address of every link."""
    lines = _run(["ip", "-o", "addr", "show"]).splitlines()
    return sorted(f"{f[1]} {f[3]}" for f in (line.split() for line in lines) if len(f) > 3)


def _mounts() -> list[str]:
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return [line.split()[4] for line in lines]


def _netns() -> list[str]:
    return sorted(str(p) for d in NETNS_DIRS if d.is_dir() for p in d.iterdir())


def _cgroups() -> list[str]:
    if not CGROUP_ROOT.is_dir():
        return []
    found = []
    for hierarchy in CGROUP_ROOT.iterdir():
        for name in KUBELET_CGROUPS:
            if (hierarchy / name).is_dir():
                found.append(str(hierarchy / name))
    return sorted(found)


@dataclass
class HostState:
    sysctls: dict[str, str] = field(default_factory=dict)
    iptables: dict[str, dict[str, dict[str, list[str]]]] = field(default_factory=dict)
    links: list[str] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    netns: list[str] = field(default_factory=list)
    cgroups: list[str] = field(default_factory=list)

    @classmethod
    def read(cls) -> HostState:
        sysctls = {}
        for name in SYSCTLS:
            with contextlib.suppress(OSError):
                sysctls[name] = _sysctl_path(name).read_text().strip()
        return cls(
            sysctls=sysctls,
            iptables={b: _iptables_state(b) for b in IPTABLES},
            links=_links(),
            addresses=_addresses(),
            mounts=_mounts(),
            netns=_netns(),
            cgroups=_cgroups(),
        )


def snapshot(path: Path) -> HostState:
    """Record the host state to `path`, unless a snapshot is already there: a stack that died
    without `down` must be restored to what was there before it, not to what it left."""
    if path.exists():
        return load(path)
    state = HostState.read()
    path.write_text(json.dumps(asdict(state), indent=1))
    return state


def load(path: Path) -> HostState:
    return HostState(**json.loads(path.read_text()))


def restore(path: Path, *, mounts_under: tuple[Path, ...]) -> list[str]:
    """Undo what is new since the snapshot at `path`; return what was done, then drop the file.
    Only mounts under `mounts_under` (the stack's state directories) and network namespaces are
    unmounted: other mounts made meanwhile are not the stack's."""
    if not path.exists():
        return []
    before, now = load(path), HostState.read()
    done: list[str] = []
    done += _restore_mounts(before, now, mounts_under)
    done += _restore_netns(before, now)
    done += _restore_iptables(before, now)
    for entry in sorted(set(now.addresses) - set(before.addresses)):
        link, address = entry.split()
        if link in before.links:
            subprocess.run(["ip", "addr", "del", address, "dev", link], capture_output=True)
            done.append(f"address {address} on {link}")
    for link in sorted(set(now.links) - set(before.links)):
        subprocess.run(["ip", "link", "delete", link], capture_output=True, check=False)
        done.append(f"link {link}")
    done += _restore_cgroups(before, now)
    for name, value in before.sysctls.items():
        if now.sysctls.get(name) != value:
            with contextlib.suppress(OSError):
                _sysctl_path(name).write_text(value)
                done.append(f"sysctl {name}={value}")
    path.unlink()
    return done


def _restore_mounts(before: HostState, now: HostState, under: tuple[Path, ...]) -> list[str]:
    done = []
    ours = (*(str(d.resolve()) for d in under), *(str(d) for d in NETNS_DIRS))
    new = [m for m in now.mounts if m not in set(before.mounts)]
    for mount in reversed([m for m in new if m.startswith(ours)]):
        result = subprocess.run(["umount", "-l", mount], capture_output=True, check=False)
        if result.returncode == 0:
            done.append(f"umount {mount}")
    return done


def _restore_netns(before: HostState, now: HostState) -> list[str]:
    done = []
    for ns in sorted(set(now.netns) - set(before.netns)):
        subprocess.run(["umount", "-l", ns], capture_output=True, check=False)
        with contextlib.suppress(OSError):
            Path(ns).unlink()
            done.append(f"netns {ns}")
    return done


def _restore_iptables(before: HostState, now: HostState) -> list[str]:
    done = []
    for binary, tables in now.iptables.items():
        old_tables = before.iptables.get(binary, {})
        for table, state in tables.items():
            old = old_tables.get(table, {"chains": [], "rules": []})
            for rule in reversed([r for r in state["rules"] if r not in set(old["rules"])]):
                argv = [binary, "-w", "-t", table, "-D", *shlex.split(rule)[1:]]
                if subprocess.run(argv, capture_output=True, check=False).returncode == 0:
                    done.append(f"rule {binary} -t {table} {rule}")
            # Built-in chains appear with their table; an empty one with policy ACCEPT is inert.
            new_chains = [
                c
                for c in state["chains"]
                if c not in set(old["chains"]) and c not in BUILTIN_CHAINS
            ]
            for chain in new_chains:
                subprocess.run([binary, "-w", "-t", table, "-F", chain], capture_output=True)
            for chain in new_chains:
                subprocess.run([binary, "-w", "-t", table, "-X", chain], capture_output=True)
                done.append(f"chain {binary} -t {table} {chain}")
    return done


def _restore_cgroups(before: HostState, now: HostState) -> list[str]:
    done = []
    for top in sorted(set(now.cgroups) - set(before.cgroups)):
        # Leaves first: a cgroup directory can only be removed once it has no children.
        dirs = sorted((p for p in Path(top).rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for directory in [*dirs, Path(top)]:
            with contextlib.suppress(OSError):
                directory.rmdir()
        if not Path(top).exists():
            done.append(f"cgroup {top}")
    return done
