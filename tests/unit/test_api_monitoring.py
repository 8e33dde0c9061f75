"""The PrometheusRule and the Grafana dashboard use only metrics that something exports, and
Prometheus's own checker accepts the rules."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from aiconn.api import metrics as api_metrics
from aiconn.sla import metricnames as mn

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "manifests" / "monitoring"
EXPORTED = {
    value
    for module in (mn, api_metrics)
    for value in vars(module).values()
    if isinstance(value, str) and value.startswith("aiconn_")
}


def _rule_spec() -> dict[str, object]:
    rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    assert rule["kind"] == "PrometheusRule"
    spec: dict[str, object] = rule["spec"]
    return spec


def _names(text: str) -> set[str]:
    names = set(re.findall(r"\baiconn_[a-z_]+", text))
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}


def test_rules_and_dashboard_use_only_exported_metrics() -> None:
    used = _names(json.dumps(_rule_spec())) | _names(
        (MONITORING / "grafana-dashboard.json").read_text()
    )
    assert used <= EXPORTED, used - EXPORTED


def test_burn_rate_alerts_follow_the_multi_window_table() -> None:
    # Issue 11 item 10: the alerts count bad minutes over `[window:1m]` subqueries (one second
    # short, see aiconn.sla.alertrules) and compare in integers, p/q as 100 % x q vs p x budget.
    groups = {g["name"]: g for g in _rule_spec()["groups"]}  # type: ignore[attr-defined]
    monthly = {r["labels"]["burn_alert"]: r["expr"] for r in groups["aiconn-sla-burn-1M"]["rules"]}
    for name, long, short, (p, q) in (
        ("page-1h", 60, 5, (72, 5)),
        ("page-6h", 360, 30, (6, 1)),
        ("ticket-1d", 1440, 120, (3, 1)),
        ("ticket-3d", 4320, 360, (1, 1)),
    ):
        for minutes in (long, short):
            assert f")[{minutes * 60 - 1}s:1m]) * {100_000_000 * q}\n" in monthly[name]
        assert f"* {p}\n)" in monthly[name]
    assert "aiconn_sla_evaluation_age_seconds" in json.dumps(_rule_spec())


def test_the_dashboard_reads_only_recorded_rules() -> None:
    recorded = {
        rule["record"]
        for group in _rule_spec()["groups"]  # type: ignore[attr-defined]
        for rule in group["rules"]
        if "record" in rule
    }
    used = set(
        re.findall(r"\baiconn:[a-z0-9_:]+", (MONITORING / "grafana-dashboard.json").read_text())
    )
    assert used <= recorded, used - recorded


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_rules(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(_rule_spec()))
    result = subprocess.run(
        ["promtool", "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
