"""The tiers' sites as nodes: what the scheduler will match the operator's pods against."""

from __future__ import annotations

from aiconn.devstack.tiernodes import (
    GPU_RESOURCE,
    KWOK_ANNOTATION,
    simulated_nodes,
    tier_taints,
)
from aiconn.inference.placement import default_tiers
from aiconn.inference.workload import SITE_LABEL


def test_every_site_of_every_tier_is_a_node_with_the_tiers_labels_and_gpus() -> None:
    tiers = default_tiers()
    nodes = simulated_nodes(tiers, nodes_per_site=2)
    assert len(nodes) == 2 * sum(len(t.sites) for t in tiers.values())
    by_site: dict[str, list[dict[str, object]]] = {}
    for node in nodes:
        by_site.setdefault(node["metadata"]["labels"][SITE_LABEL], []).append(node)
    for spec in tiers.values():
        for site in spec.sites:
            assert len(by_site[site]) == 2
            for node in by_site[site]:
                labels = node["metadata"]["labels"]  # type: ignore[index]
                assert {k: labels[k] for k in spec.node_selector} == spec.node_selector
                assert node["status"]["allocatable"][GPU_RESOURCE] == str(  # type: ignore[index]
                    spec.gpu.count_per_node
                )
                assert node["metadata"]["annotations"][KWOK_ANNOTATION] == "fake"  # type: ignore[index]
    assert len({n["metadata"]["name"] for n in nodes}) == len(nodes)


def test_the_site_a_real_node_stands_for_gets_no_simulated_node() -> None:
    nodes = simulated_nodes(default_tiers(), skip_sites=frozenset({"de-fra-edge-01"}))
    assert "de-fra-edge-01" not in {n["metadata"]["labels"][SITE_LABEL] for n in nodes}
    assert "de-muc-edge-01" in {n["metadata"]["labels"][SITE_LABEL] for n in nodes}


def test_taints_are_what_the_tier_tolerates() -> None:
    edge = default_tiers()["edge"]
    assert tier_taints(edge) == [
        {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"},
        {"key": "aiconn.io/tier", "value": "edge", "effect": "NoSchedule"},
    ]
