"""`make demo`'s code path end to end, in a real cluster: the SLA's pod runs on the real node, the
SLA is measured from it, breached by faults in the pod (a stalled engine, a crash the kubelet
restarts), its announced maintenance excused, and credited exactly once; the assurance scenes
scale out for a surge and fail over from a lost site on KWOK nodes; `dev down` leaves nothing
running."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pytest

from aiconn.devstack import assurance_scenes, demo, stack
from aiconn.devstack.node import NODE_NAME
from aiconn.store.ledger import Ledger

# The demo waits for a fresh 4-minute period and its settlement: 10-16 minutes on a busy machine.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]


def test_demo_places_measures_breaches_and_credits_once(tmp_path: Path) -> None:
    state = tmp_path / "dev"
    try:
        result = demo.run(state_dir=state)
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
