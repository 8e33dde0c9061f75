"""An SLA's network half: the NetworkSlice it needs and its kubernetes realization."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from aiconn.inference.workload import pod_selector
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec
from aiconn.resources.v1alpha1.slice import NetworkSliceSpec
from aiconn.slices.kubernetes import (
    bandwidth_annotations,
    network_policy,
    pod_attachment,
    priority_class,
    priority_class_name,
)
from aiconn.slices.realize import slice_for, split_rtt
from tests.factories import small_sla_spec

OWNER = {"apiVersion": "aiconn.io/v1alpha1", "kind": "NetworkSlice", "name": "s", "uid": "u-2"}


@dataclass(frozen=True)
class Decision:
    site: str | None


def sla(**network: Any) -> AIInferenceSLASpec:
    return small_sla_spec(
        objectives={"availability": {"targetPercent": 99.95}},
        network={"rttBudgetMs": 20, **network},
    )


def slice_spec(**overrides: Any) -> NetworkSliceSpec:
    doc = {
        "sst": 1,
        "dLLatency": 10,
        "uLLatency": 10,
        "availability": 99.9,
        "dLThptPerSlice": {"guaThpt": 0, "maxThpt": 100_000},
        "uLThptPerSlice": {"guaThpt": 0, "maxThpt": 100_000},
        "podSelector": {"aiconn.io/sla": "s"},
        **overrides,
    }
    return NetworkSliceSpec.model_validate(doc)


def test_sla_network_maps_to_ts_28_541_attributes() -> None:
    spec = sla(
        sst=2,
        sd="0000A1",
        fiveQI=82,
        guaranteedMbps=50,
        maxMbps=200,
        isolation="dedicated",
        allowedSources=[{"cidr": "10.45.0.0/16"}, {"namespace": "acme-apps"}],
    )
    result = slice_for("factory", spec, Decision(site="de-fra-edge-01")).to_k8s()
    assert result == {
        "sst": 2,
        "sd": "0000A1",
        "fiveQI": 82,
        "dLLatency": 10,
        "uLLatency": 10,
        "availability": 99.95,
        "dLThptPerSlice": {"guaThpt": 50_000, "maxThpt": 200_000},
        "uLThptPerSlice": {"guaThpt": 50_000, "maxThpt": 200_000},
        "networkSliceSharingIndicator": "NON_SHARED",
        "site": "de-fra-edge-01",
        "podSelector": pod_selector("factory"),
        "allowedSources": [{"cidr": "10.45.0.0/16"}, {"namespace": "acme-apps"}],
        "backend": "kubernetes",
    }


@pytest.mark.parametrize(("rtt", "dl", "ul"), [(20, 10, 10), (21, 11, 10), (2, 1, 1), (1, 1, 1)])
def test_round_trip_budget_splits_into_one_way_legs(rtt: int, dl: int, ul: int) -> None:
    assert split_rtt(rtt) == (dl, ul)


def test_shared_isolation_is_a_shared_slice_without_a_site() -> None:
    result = slice_for("s", sla(), Decision(site=None))
    assert result.network_slice_sharing_indicator == "SHARED"
    assert result.site is None


def test_nsmf_backend_carries_its_endpoint() -> None:
    spec = sla(backend="nsmf", nsmfUrl="https://nsmf.core.example/ProvMnS/v1700")
    result = slice_for("s", spec, Decision(site=None))
    assert result.backend == "nsmf"
    assert result.nsmf is not None
    assert result.nsmf.url == "https://nsmf.core.example/ProvMnS/v1700"


def test_nsmf_backend_without_url_names_the_missing_field() -> None:
    with pytest.raises(ValueError, match=r"spec\.network\.nsmfUrl is required"):
        slice_for("s", sla(backend="nsmf"), Decision(site=None))


@pytest.mark.parametrize(
    ("sst", "five_qi", "name"),
    [
        (2, 9, "aiconn-urllc"),
        (2, 82, "aiconn-urllc-delay-critical"),
        (1, 9, "aiconn-embb"),
        (1, 85, "aiconn-embb-delay-critical"),
        (3, 9, "aiconn-miot"),
        (4, 9, "aiconn-default"),
        (200, 9, "aiconn-default"),
        (1, 80, "aiconn-embb"),
        (1, 86, "aiconn-embb"),
    ],
)
def test_priority_class_by_slice_type_and_5qi(sst: int, five_qi: int, name: str) -> None:
    spec = slice_spec(sst=sst, fiveQI=five_qi)
    pc = priority_class(spec)
    assert pc["metadata"]["name"] == priority_class_name(spec) == name
    assert pc["globalDefault"] is False
    assert "ownerReferences" not in pc["metadata"]
    assert "namespace" not in pc["metadata"]


def test_priorities_order_urllc_over_embb_over_miot_and_bump_only_within_a_class() -> None:
    def value(sst: int, five_qi: int = 9) -> int:
        result: int = priority_class(slice_spec(sst=sst, fiveQI=five_qi))["value"]
        return result

    assert value(2) > value(1) > value(3) > value(200)
    assert value(2, 82) > value(2)
    assert value(1, 82) > value(1)
    assert value(1, 85) < value(2)
    assert value(3, 84) < value(1)
    assert value(200, 83) < value(3)
    assert value(2, 82) <= 1_000_000_000


def test_bandwidth_annotations_follow_the_device_s_directions() -> None:
    spec = slice_spec(
        dLThptPerSlice={"guaThpt": 0, "maxThpt": 200_000},
        uLThptPerSlice={"guaThpt": 0, "maxThpt": 1_500},
    )
    assert bandwidth_annotations(spec) == {
        "kubernetes.io/egress-bandwidth": "200M",
        "kubernetes.io/ingress-bandwidth": "2M",
    }


def test_pod_attachment_bundles_priority_and_bandwidth() -> None:
    spec = slice_spec(sst=2, fiveQI=82)
    attachment = pod_attachment(spec)
    assert attachment.priority_class_name == "aiconn-urllc-delay-critical"
    assert attachment.annotations == bandwidth_annotations(spec)


def test_dedicated_slice_admits_only_its_sources_and_monitoring() -> None:
    spec = slice_spec(
        networkSliceSharingIndicator="NON_SHARED",
        allowedSources=[{"namespace": "acme-apps"}, {"cidr": "10.45.0.0/16"}],
    )
    policy = network_policy("factory-slice", "acme", spec, OWNER, monitoring_namespace="obs")
    assert policy["metadata"]["namespace"] == "acme"
    assert policy["metadata"]["ownerReferences"][0]["uid"] == "u-2"
    body = policy["spec"]
    assert body["podSelector"] == {"matchLabels": {"aiconn.io/sla": "s"}}
    assert body["policyTypes"] == ["Ingress"]
    assert body["ingress"] == [
        {
            "from": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "acme-apps"}
                    }
                },
                {"ipBlock": {"cidr": "10.45.0.0/16"}},
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "obs"}}},
            ],
            "ports": [{"protocol": "TCP", "port": "http"}],
        },
        {
            "from": [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "obs"}}}
            ],
            "ports": [{"protocol": "TCP", "port": "metrics"}],
        },
    ]


def test_dedicated_slice_without_sources_admits_monitoring_only() -> None:
    policy = network_policy(
        "x", "acme", slice_spec(networkSliceSharingIndicator="NON_SHARED"), OWNER
    )
    rule, metrics = policy["spec"]["ingress"]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    assert metrics["from"] == rule["from"]
    assert metrics["ports"] == [{"protocol": "TCP", "port": "metrics"}]


def test_shared_slice_still_has_a_policy_that_admits_everyone() -> None:
    policy = network_policy("x", "acme", slice_spec(), OWNER)
    assert policy["spec"]["ingress"] == [{}]
    assert policy["spec"]["podSelector"] == {"matchLabels": {"aiconn.io/sla": "s"}}
