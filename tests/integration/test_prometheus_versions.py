"""Debian's Prometheus 2.x and Prometheus 3.x both scrape a live gateway (issue 11, item 2).

Prometheus 3 negotiates the scrape protocol from the target's Content-Type and fails a scrape it
cannot parse, spells `le="1"` as `le="1.0"`, and selects ranges left-open. The counting tests
replay exact histories on both (`prometheus_bin`); this one checks the live path those histories
stand for: a real gateway's `/metrics` scraped by each, with the labels the pod monitor gives it,
and the engine's range rule read from each; and the shipped alerting rules load on each.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
from prometheus_api_client import PrometheusConnect

from aiconn.devstack.gateway import GatewayThread, write_keys
from aiconn.devstack.processes import ProcessGroup, free_port
from aiconn.devstack.prometheus import PrometheusServer
from aiconn.gateway.settings import GatewaySettings
from aiconn.sla import metricnames as mn
from aiconn.store.prometheus import RangeRule
from tests.factories import sla_pod_targets

pytestmark = [pytest.mark.integration]

TTFT_THRESHOLD_MS = 1000
ROOT = Path(__file__).resolve().parents[2]


def test_each_prometheus_scrapes_the_gateway_and_tells_its_range_rule(
    services_dir: Path, prometheus_bin: Path, tmp_path: Path
) -> None:
    settings = GatewaySettings(
        sla="versions",
        namespace="acme",
        model="tiny",
        # Nothing listens there: the gateway reports its upstream down, and still serves metrics.
        upstream=f"http://127.0.0.1:{free_port()}",
        keys_dir=write_keys(tmp_path / "keys", "sk-versions"),
        ttft_threshold_ms=TTFT_THRESHOLD_MS,
        tpot_threshold_ms=100,
    )
    group = ProcessGroup(services_dir / f"prom-versions-{uuid.uuid4().hex[:6]}")
    with GatewayThread(settings) as gateway:
        prometheus = PrometheusServer(
            group=group,
            data_dir=group.state_dir / "data",
            targets=sla_pod_targets("acme", "versions", gateway.metrics_url),
            scrape_interval="1s",
            binary=prometheus_bin,
        )
        try:
            prometheus.start()
            prometheus.wait_for_series(f'{mn.GATEWAY_UPSTREAM_UP}{{sla="versions"}}', timeout=30)
            [up] = prometheus.query('up{job="aiconn-gateway"}')
            upstream = prometheus.query(f"{mn.GATEWAY_UPSTREAM_UP}")
            buckets = prometheus.query(f'{mn.GATEWAY_TTFT}_bucket{{sla="versions"}}')
            rule = RangeRule.ask(PrometheusConnect(url=prometheus.url), timeout_s=10)
            major = prometheus.version().split(".")[0]
        finally:
            group.stop_all()

    assert up["value"][1] == "1", "the scrape succeeded: the Content-Type is one both accept"
    assert [s["metric"]["pod"] for s in upstream] == ["versions-0"]
    assert [s["value"][1] for s in upstream] == ["0"]
    assert TTFT_THRESHOLD_MS / 1000 in {float(s["metric"]["le"]) for s in buckets}
    # Prometheus 3 selects ranges left-open, Prometheus 2 with the left edge.
    assert rule.left_open == (major == "3"), f"Prometheus {major}: {rule}"


def test_each_prometheus_loads_the_sla_rules(
    services_dir: Path, prometheus_bin: Path, tmp_path: Path
) -> None:
    """The shipped PrometheusRule's groups parse on both: Prometheus refuses to start on a rule
    file it cannot parse (Prometheus 3 dropped `holt_winters`, for one)."""
    rule = yaml.safe_load((ROOT / "manifests" / "monitoring" / "prometheusrule.yaml").read_text())
    rules_file = tmp_path / "rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    group = ProcessGroup(services_dir / f"prom-rules-{uuid.uuid4().hex[:6]}")
    prometheus = PrometheusServer(
        group=group,
        data_dir=group.state_dir / "data",
        rule_files=[rules_file],
        binary=prometheus_bin,
    )
    try:
        prometheus.start()
        with urllib.request.urlopen(f"{prometheus.url}/api/v1/rules", timeout=10) as resp:
            loaded = json.load(resp)["data"]["groups"]
    finally:
        group.stop_all()

    shipped = {
        g["name"]: [r.get("record") or r["alert"] for r in g["rules"]]
        for g in rule["spec"]["groups"]
    }
    assert {g["name"]: [r["name"] for r in g["rules"]] for g in loaded} == shipped
    assert all(r["health"] != "err" for g in loaded for r in g["rules"])
