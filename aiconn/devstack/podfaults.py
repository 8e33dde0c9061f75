"""Faults in an SLA's pod on the real node, as they happen to a vLLM that serves: its engine
stalls (a noisy neighbour, a GPU that throttles), or it crashes and Kubernetes restarts it.

Nothing stands between the gateway and vLLM to fake them: the engine's processes are stopped and
continued (SIGSTOP / SIGCONT) in a duty cycle, so requests wait for it while vLLM's HTTP server
still answers its probes; a crash is SIGKILL of the container's main process, and what follows
is the kubelet's own restart, so the outage lasts as long as vLLM takes to come back.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiconn.devstack.node import RealNode
from aiconn.devstack.processes import StackError


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The command may hold spaces and parentheses: the fields after its last ')'.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


class VllmFaults:
    """Faults in the vLLM container of the pod `pod_name` in `namespace`."""

    def __init__(self, k8s: Any, node: RealNode, namespace: str, pod_name: str) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(k8s)
        self.node = node
        self.namespace = namespace
        self.pod_name = pod_name

    def _status(self) -> Any:
        pod = self.core.read_namespaced_pod(self.pod_name, self.namespace)
        (vllm,) = [s for s in pod.status.container_statuses or [] if s.name == "vllm"]
        return vllm

    def main_pid(self) -> int:
        return self.node.task_pid(self._status().container_id)

    def restarts(self) -> int:
        return int(self._status().restart_count)

    @contextlib.contextmanager
    def stalled(self, *, stalled: float, every: float = 1.0) -> Iterator[None]:
        """For the block's length, vLLM's engine is stopped `stalled` seconds of every `every`:
        requests wait up to that long, while the HTTP server (the main process) answers
        /health. Everything is continued at the end, whatever happens."""
        main = self.main_pid()
        engine = children(main) or [main]
        done = threading.Event()

        def signal_all(sig: signal.Signals) -> None:
            for pid in engine:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)

        def cycle() -> None:
            while not done.is_set():
                signal_all(signal.SIGSTOP)
                done.wait(stalled)
                signal_all(signal.SIGCONT)
                done.wait(max(0.0, every - stalled))

        thread = threading.Thread(target=cycle, name="vllm-stall", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join(timeout=every + 5)
            signal_all(signal.SIGCONT)

    def crash(self) -> int | None:
        """SIGKILL vLLM's main process (its container exits; the kubelet restarts it); returns
        the restart count before the crash, or None when vLLM was not running (nothing killed:
        still starting, or restarting)."""
        status = self._status()
        if not (status.ready and status.container_id):
            return None
        try:
            pid = self.node.task_pid(status.container_id)
        except StackError:  # exited already; the API server has not heard yet
            return None
        os.kill(pid, signal.SIGKILL)
        return int(status.restart_count)

    def ready_after(self, restarts: int) -> bool:
        """vLLM's container restarted since it had `restarts` restarts, and is ready again."""
        status = self._status()
        return int(status.restart_count) > restarts and bool(status.ready)
