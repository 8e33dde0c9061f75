"""`aiconn dev up --cluster [--real-node]`: the cluster alone, for trying aiconn's manifests and
placement by hand. CRDs, the default tiers and the sample offers are installed and every tier's
sites become KWOK nodes; the real node, when asked for, stands for the edge tier's first site.
`aiconn dev down` stops it (`aiconn.devstack.cluster.stop_cluster`)."""

from __future__ import annotations

import time
from pathlib import Path

from aiconn.devstack.cluster import Cluster, fresh_cluster_dir
from aiconn.devstack.images import node_images
from aiconn.devstack.kube import apply_manifests
from aiconn.devstack.stack import ROOT, default_state_dir, say
from aiconn.inference.placement import default_tiers

CLUSTER_DIR = "cluster"


def up(*, state_dir: Path | None = None, real_node: bool = False) -> Cluster:
    state = (state_dir or default_state_dir()) / CLUSTER_DIR
    if fresh_cluster_dir(state):
        say("stopped the previous cluster")
    began = time.monotonic()
    what = "control plane, scheduler, KWOK" + (", a real node" if real_node else "")
    say(f"starting the cluster ({what})")
    cluster = Cluster(state_dir=state, real_node=real_node)
    try:
        images = node_images(aiconn=True) if real_node else ()
        cluster.start(crds=sorted((ROOT / "crds").glob("*.yaml")), node_images=images)
        api = cluster.api_client()
        try:
            samples = ROOT / "manifests" / "samples"
            # The provider's side: the tiers, and the offers the sample SLAs buy under.
            apply_manifests(api, [samples / "tiers.yaml", samples / "offers.yaml"])
        finally:
            api.close()
        nodes = cluster.add_simulated_nodes(default_tiers())
    except BaseException:
        cluster.stop()
        raise
    for phase, seconds in cluster.timings.items():
        say(f"{phase}: {seconds:.1f} s")
    say(
        f"{len(nodes)} KWOK nodes Ready for the tiers' sites; "
        f"all up in {time.monotonic() - began:.1f} s"
    )
    say(f"KUBECONFIG={cluster.control_plane.kubeconfig}   (stop it all: aiconn dev down)")
    return cluster
