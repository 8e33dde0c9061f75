"""Benchmark one assurance pass over a fleet: CPU seconds of `AssuranceLoop.run_once`.

Usage: python bench/bench_assurance.py [--slas 1000] [--nodes 160]

The API server is not in the measurement: the loop's reads are answered from memory with the
objects the API would return (tiers, GPU nodes, the SLAs' status and pods), and its writes are
counted. Two fleets: every SLA serving in place (its pods bound to Ready nodes of its site, the
steady state) and every SLA's pods unbound (as just after a mass placement, or on a cluster
without a scheduler), where each SLA's capacity is worked out without its own pods.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiconn.inference.placement import default_tiers
from aiconn.inference.workload import pod_selector
from aiconn.operator.assurance import AssuranceLoop
from aiconn.operator.settings import OperatorSettings
from aiconn.resources.v1alpha1.tier import SITE_LABEL

TIERS = default_tiers()


class MemoryKube:
    """Answers the loop's list calls from memory and counts its writes."""

    def __init__(self, listing: dict[str, list[dict[str, Any]]]) -> None:
        self.listing = listing
        self.writes = 0

    async def call(self, method: str, path: str, **_: Any) -> dict[str, Any]:
        plural = path.rsplit("/", 1)[-1]
        return {"items": self.listing[plural]}

    async def list_all(
        self, path: str, query: Any = None, *, keep: Callable[[Any], Any] = lambda item: item
    ) -> list[dict[str, Any]]:
        kept = (keep(item) for item in (await self.call("GET", path))["items"])
        return [item for item in kept if item is not None]

    async def list(self, kind: str, namespace: str | None = None, **_: Any) -> list[dict[str, Any]]:
        """The offers the loop reads each pass: none in this fleet (its SLAs name no offer)."""
        return []

    async def patch_status(
        self, kind: str, name: str, namespace: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        """Merge the patch into the listed SLA, as the API server would."""
        self.writes += 1
        for sla in self.listing["aiinferenceslas"]:
            meta = sla["metadata"]
            if (meta["name"], meta["namespace"]) == (name, namespace):
                assurance = sla["status"].setdefault("assurance", {})
                assurance.update(status.get("assurance") or {})
        return {}


def fleet(slas: int, nodes: int, *, bound: bool) -> dict[str, list[dict[str, Any]]]:
    tier_objs = [
        {"metadata": {"name": name}, "spec": tier.model_dump(by_alias=True, exclude_none=True)}
        for name, tier in TIERS.items()
    ]
    node_objs, where = [], []
    for index in range(nodes):
        name = "edge" if index % 2 else "regional"
        site = TIERS[name].sites[index % len(TIERS[name].sites)]
        node_objs.append(
            {
                "metadata": {
                    "name": f"node-{index}",
                    "labels": {**TIERS[name].node_selector, SITE_LABEL: site},
                },
                "status": {
                    "allocatable": {"nvidia.com/gpu": "8"},
                    "conditions": [{"type": "Ready", "status": "True"}],
                },
            }
        )
        where.append((name, site))
    sla_objs, pod_objs = [], []
    spec = {
        "model": {"name": "m", "source": "hf://org/m", "parametersBillions": 8},
        "network": {"rttBudgetMs": 60},
        "objectives": {"ttft": {"thresholdMs": 1000, "targetPercent": 99}},
    }
    for index in range(slas):
        node = index % nodes
        tier, site = where[node]
        name = f"sla-{index}"
        sla_objs.append(
            {
                "metadata": {"name": name, "namespace": f"ns-{index % 50}", "uid": str(index)},
                "spec": spec,
                "status": {
                    "phase": "Ready",
                    "placement": {"tier": tier, "site": site, "gpusPerReplica": 1},
                    "assurance": {
                        "objectives": [],
                        "placementHistory": [{"tier": tier, "site": site}],
                    },
                },
            }
        )
        pod_spec: dict[str, Any] = {
            "containers": [{"resources": {"requests": {"nvidia.com/gpu": "1"}}}],
            "nodeSelector": {**TIERS[tier].node_selector, SITE_LABEL: site},
        }
        if bound:
            pod_spec["nodeName"] = f"node-{node}"
        pod_objs.append(
            {
                "metadata": {
                    "name": f"{name}-0",
                    "namespace": f"ns-{index % 50}",
                    "labels": pod_selector(name),
                },
                "spec": pod_spec,
                "status": {"phase": "Running" if bound else "Pending"},
            }
        )
    return {
        "inferencetiers": tier_objs,
        "nodes": node_objs,
        "pods": pod_objs,
        "aiinferenceslas": sla_objs,
    }


def measure(slas: int, nodes: int, *, bound: bool) -> tuple[float, int, dict[str, int]]:
    kube = MemoryKube(fleet(slas, nodes, bound=bound))
    loop = AssuranceLoop(kube, OperatorSettings())  # type: ignore[arg-type]
    asyncio.run(loop.run_once())  # warm: objectives written once
    kube.writes = 0
    started = time.process_time()
    counts = asyncio.run(loop.run_once())
    return time.process_time() - started, kube.writes, {k.value: v for k, v in counts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slas", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=160)
    args = parser.parse_args()
    for bound in (True, False):
        cpu, writes, counts = measure(args.slas, args.nodes, bound=bound)
        label = "serving in place" if bound else "pods unbound"
        print(
            f"{args.slas} SLAs, {args.nodes} nodes, {label}: {cpu:.3f} s CPU, "
            f"{writes} writes, steps {counts}"
        )


if __name__ == "__main__":
    main()
