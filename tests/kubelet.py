"""The kubelet's part for tests on a control plane without a node: report pods Running and Ready.

The local control plane (and the test one) has no kubelet, so nothing would ever mark a pod
started. The real Deployment and ReplicaSet controllers compute availability from pod status, so
writing the status a kubelet would write lets them do their real work.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

READY_CONDITIONS = ("PodScheduled", "Initialized", "ContainersReady", "Ready")


def mark_running(
    core: Any, namespace: str, pods: Iterable[Any], *, pod_ip: str, host_ip: str
) -> None:
    """Patch each pod's status (`core` is a `CoreV1Api`) as a kubelet would once it is Ready."""
    now = dt.datetime.now(dt.UTC).isoformat()
    for pod in pods:
        ready = [{"type": t, "status": "True", "lastTransitionTime": now} for t in READY_CONDITIONS]
        core.patch_namespaced_pod_status(
            pod.metadata.name,
            namespace,
            {
                "status": {
                    "phase": "Running",
                    "conditions": ready,
                    "startTime": now,
                    "podIP": pod_ip,
                    "hostIP": host_ip,
                }
            },
        )
