"""The Prometheus Operator's part, for a cluster that runs none: the scrape configuration a
PodMonitor of `manifests/base/servicemonitors.yaml` stands for, so that a Prometheus outside the
cluster discovers the SLAs' pods and labels their series exactly as the manifests say.

What the Prometheus Operator generates for a PodMonitor endpoint, in the parts the manifests use:
pod discovery through the Kubernetes API (`kubernetes_sd_configs`, role `pod`), a `keep` per
`matchLabels` entry and per `Exists` expression, the endpoint's port chosen by name, pods that
ended (Succeeded, Failed) dropped, the default target labels (namespace, pod, container, endpoint;
job `<namespace>/<name>`), then the endpoint's own relabelings, which win. Selectors the manifests
do not use (`In`, `NotIn`, `DoesNotExist`, namespace lists) are refused rather than ignored.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from aiconn.devstack.processes import StackError

POD_MONITOR = "PodMonitor"


def _meta_label(label: str) -> str:
    """A pod label's name as Kubernetes discovery exposes it (`aiconn.io/sla` ->
    `aiconn_io_sla`)."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", label)


def _selector_keeps(selector: dict[str, Any]) -> list[dict[str, Any]]:
    keeps: list[dict[str, Any]] = []
    for label, value in sorted((selector.get("matchLabels") or {}).items()):
        name = _meta_label(label)
        keeps.append(
            {
                "action": "keep",
                "source_labels": [
                    f"__meta_kubernetes_pod_label_{name}",
                    f"__meta_kubernetes_pod_labelpresent_{name}",
                ],
                "regex": f"({re.escape(str(value))});true",
            }
        )
    for expression in selector.get("matchExpressions") or []:
        if expression.get("operator") != "Exists":
            raise StackError(f"PodMonitor selector operator {expression.get('operator')!r}")
        name = _meta_label(expression["key"])
        keeps.append(
            {
                "action": "keep",
                "source_labels": [f"__meta_kubernetes_pod_labelpresent_{name}"],
                "regex": "true",
            }
        )
    return keeps


def _relabeling(rule: dict[str, Any]) -> dict[str, Any]:
    """A PodMonitor relabeling (camelCase) as Prometheus configuration (snake_case)."""
    keys = {
        "sourceLabels": "source_labels",
        "targetLabel": "target_label",
        "replacement": "replacement",
        "regex": "regex",
        "action": "action",
        "separator": "separator",
        "modulus": "modulus",
    }
    unknown = set(rule) - set(keys)
    if unknown:
        raise StackError(f"PodMonitor relabeling fields {sorted(unknown)} are not supported")
    return {keys[k]: v for k, v in rule.items()}


def scrape_configs(monitor: dict[str, Any], *, kubeconfig: Path) -> list[dict[str, Any]]:
    """The scrape jobs of one PodMonitor, discovering pods through `kubeconfig`'s API server."""
    if monitor.get("kind") != POD_MONITOR:
        raise StackError(f"not a PodMonitor: {monitor.get('kind')}")
    spec = monitor["spec"]
    if not (spec.get("namespaceSelector") or {}).get("any"):
        raise StackError("only `namespaceSelector: {any: true}` is supported")
    meta = monitor["metadata"]
    job = f"{meta.get('namespace', 'default')}/{meta['name']}"
    selected = _selector_keeps(spec.get("selector") or {})
    jobs = []
    for index, endpoint in enumerate(spec["podMetricsEndpoints"]):
        relabel = [
            *selected,
            {
                "action": "keep",
                "source_labels": ["__meta_kubernetes_pod_container_port_name"],
                "regex": re.escape(endpoint["port"]),
            },
            {
                "action": "drop",
                "source_labels": ["__meta_kubernetes_pod_phase"],
                "regex": "(Failed|Succeeded)",
            },
            *(
                {"source_labels": [source], "target_label": target}
                for source, target in (
                    ("__meta_kubernetes_namespace", "namespace"),
                    ("__meta_kubernetes_pod_name", "pod"),
                    ("__meta_kubernetes_pod_container_name", "container"),
                )
            ),
            {"target_label": "endpoint", "replacement": endpoint["port"]},
            {"target_label": "job", "replacement": job},
            *(_relabeling(rule) for rule in endpoint.get("relabelings") or []),
        ]
        interval = endpoint.get("interval", "30s")
        jobs.append(
            {
                "job_name": f"podMonitor/{job}/{index}",
                "honor_labels": bool(endpoint.get("honorLabels", False)),
                "scrape_interval": interval,
                "scrape_timeout": endpoint.get("scrapeTimeout", "10s"),
                "metrics_path": endpoint.get("path", "/metrics"),
                "scheme": endpoint.get("scheme", "http"),
                "kubernetes_sd_configs": [{"role": "pod", "kubeconfig_file": str(kubeconfig)}],
                "relabel_configs": relabel,
            }
        )
    return jobs
