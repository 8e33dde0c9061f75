"""The dev cluster's Prometheus scrapes what the manifests' PodMonitor selects, labelled as the
PodMonitor says: the translation the Prometheus Operator would make, checked by Prometheus's own
config checker and by relabeling a discovered pod's labels the way Prometheus does."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from aiconn.devstack import incluster
from aiconn.devstack.kube import load_documents
from aiconn.devstack.node import NODE_ADDRESS
from aiconn.devstack.podmonitor import POD_MONITOR, scrape_configs
from aiconn.devstack.processes import StackError


def _monitor() -> dict[str, Any]:
    (monitor,) = [d for d in load_documents([incluster.MONITORS]) if d["kind"] == POD_MONITOR]
    return monitor


def _relabel(rules: list[dict[str, Any]], labels: dict[str, str]) -> dict[str, str] | None:
    """Prometheus's relabeling for the actions the translation uses (keep, drop, replace);
    None when the target is dropped."""
    labels = dict(labels)
    for rule in rules:
        value = rule.get("separator", ";").join(
            labels.get(s, "") for s in rule.get("source_labels", [])
        )
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        action = rule.get("action", "replace")
        if action == "keep" and not match:
            return None
        if action == "drop" and match:
            return None
        if action == "replace" and match:
            labels[rule["target_label"]] = match.expand(
                rule.get("replacement", "$1").replace("$1", r"\1")
            )
    return {k: v for k, v in labels.items() if not k.startswith("__")}


def _pod(**overrides: str) -> dict[str, str]:
    discovered = {
        "__meta_kubernetes_namespace": "acme-edge",
        "__meta_kubernetes_pod_name": "tiny-edge-vllm-7d9f-abcde",
        "__meta_kubernetes_pod_container_name": "gateway",
        "__meta_kubernetes_pod_container_port_name": "metrics",
        "__meta_kubernetes_pod_phase": "Running",
        "__meta_kubernetes_pod_label_app_kubernetes_io_component": "inference",
        "__meta_kubernetes_pod_labelpresent_app_kubernetes_io_component": "true",
        "__meta_kubernetes_pod_label_app_kubernetes_io_managed_by": "aiconn",
        "__meta_kubernetes_pod_labelpresent_app_kubernetes_io_managed_by": "true",
        "__meta_kubernetes_pod_label_aiconn_io_sla": "tiny-edge",
        "__meta_kubernetes_pod_labelpresent_aiconn_io_sla": "true",
    }
    return discovered | overrides


def test_an_inference_pod_s_metrics_port_is_scraped_twice_with_the_sla_s_labels() -> None:
    gateway, vllm = scrape_configs(_monitor(), kubeconfig=Path("/k"))
    assert (gateway["metrics_path"], vllm["metrics_path"]) == ("/metrics", "/metrics/vllm")
    assert (gateway["honor_labels"], vllm["honor_labels"]) == (True, False)
    assert gateway["kubernetes_sd_configs"] == [{"role": "pod", "kubeconfig_file": "/k"}]
    for job, name in ((gateway, "aiconn-gateway"), (vllm, "vllm")):
        labels = _relabel(job["relabel_configs"], _pod())
        assert labels is not None
        assert labels["job"] == name
        assert labels["endpoint"] == "metrics"
        assert (labels["namespace"], labels["sla"], labels["pod"]) == (
            "acme-edge",
            "tiny-edge",
            "tiny-edge-vllm-7d9f-abcde",
        )


@pytest.mark.parametrize(
    "overrides",
    [
        {"__meta_kubernetes_pod_container_port_name": "http"},
        {"__meta_kubernetes_pod_label_app_kubernetes_io_component": "api"},
        {
            "__meta_kubernetes_pod_label_app_kubernetes_io_managed_by": "",
            "__meta_kubernetes_pod_labelpresent_app_kubernetes_io_managed_by": "",
        },
        {"__meta_kubernetes_pod_labelpresent_aiconn_io_sla": ""},
        {"__meta_kubernetes_pod_phase": "Succeeded"},
    ],
)
def test_pods_the_selector_does_not_select_are_not_scraped(overrides: dict[str, str]) -> None:
    for job in scrape_configs(_monitor(), kubeconfig=Path("/k")):
        assert _relabel(job["relabel_configs"], _pod(**overrides)) is None


def test_selectors_it_cannot_translate_are_refused() -> None:
    monitor = _monitor()
    monitor["spec"]["selector"]["matchExpressions"][0]["operator"] = "NotIn"
    with pytest.raises(StackError, match="NotIn"):
        scrape_configs(monitor, kubeconfig=Path("/k"))


def test_the_operator_and_the_api_are_told_where_that_prometheus_listens() -> None:
    overlay = yaml.safe_load(
        (incluster.ROOT / incluster.OVERLAY / "kustomization.yaml").read_text()
    )
    literals = dict(
        literal.split("=", 1)
        for generator in overlay["configMapGenerator"]
        for literal in generator["literals"]
    )
    assert literals["prometheus-url"] == f"http://{NODE_ADDRESS}:{incluster.PROMETHEUS_PORT}"
