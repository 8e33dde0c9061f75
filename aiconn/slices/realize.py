"""From an SLA's network requirements to the NetworkSlice that carries its traffic.

The SLA speaks the tenant's language (a round-trip budget, Mbit/s, shared or dedicated); the
NetworkSlice speaks 3GPP TS 28.541 (one-way dLLatency/uLLatency in ms, throughput in kbit/s,
SHARED/NON_SHARED), so the same object can be handed to a 5G core's slice manager unchanged.
"""

from __future__ import annotations

from typing import Protocol

from aiconn.inference.workload import pod_selector
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec
from aiconn.resources.v1alpha1.slice import NetworkSliceSpec, NsmfEndpoint, Throughput

KBPS_PER_MBPS = 1000


class Placed(Protocol):
    """The part of a placement decision a slice depends on: where the pods run."""

    @property
    def site(self) -> str | None: ...


def split_rtt(rtt_budget_ms: int) -> tuple[int, int]:
    """(dLLatency, uLLatency): a round trip is one downlink plus one uplink leg, so each gets
    half. An odd millisecond goes to the downlink, where the streamed tokens travel; each leg is
    at least 1 ms because TS 28.541 latencies are positive."""
    ul = max(1, rtt_budget_ms // 2)
    dl = max(1, rtt_budget_ms - ul)
    return dl, ul


def slice_for(sla_name: str, spec: AIInferenceSLASpec, decision: Placed) -> NetworkSliceSpec:
    """The NetworkSlice an SLA needs on its placement.

    The SLA states one bandwidth for both directions, so downlink and uplink get the same
    throughput. The slice must be at least as available as the SLA promises end to end.
    """
    net = spec.network
    nsmf = None
    if net.backend == "nsmf":
        if net.nsmf_url is None:
            raise ValueError(
                "spec.network.nsmfUrl is required when spec.network.backend is nsmf; "
                "set it to the slice manager's ProvMnS root or use backend kubernetes"
            )
        nsmf = NsmfEndpoint(url=net.nsmf_url)
    throughput = Throughput(
        gua_thpt=net.guaranteed_mbps * KBPS_PER_MBPS, max_thpt=net.max_mbps * KBPS_PER_MBPS
    )
    dl, ul = split_rtt(net.rtt_budget_ms)
    return NetworkSliceSpec(
        sst=net.sst,
        sd=net.sd,
        five_qi=net.five_qi,
        d_l_latency=dl,
        u_l_latency=ul,
        availability=spec.objectives.availability.target_percent,
        d_l_thpt_per_slice=throughput,
        u_l_thpt_per_slice=throughput,
        network_slice_sharing_indicator="NON_SHARED" if net.isolation == "dedicated" else "SHARED",
        site=decision.site,
        pod_selector=pod_selector(sla_name),
        allowed_sources=list(net.allowed_sources),
        backend=net.backend,
        nsmf=nsmf,
    )
