"""Burn-rate windows derived from the SLA window (issue 11, item 10): the workbook's table for a
month, scaled for any other length, whole minutes, readable names, one source for both the
operator's alerts and the generated PrometheusRule."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from aiconn.api.metrics import AVAILABILITY_BUDGET, BURN_RATE, FleetCollector
from aiconn.api.slas import SLA, parse_sla
from aiconn.operator.evaluation import with_stale_windows_removed
from aiconn.operator.health import burn_rates_sentence
from aiconn.resources.v1alpha1.sla import Window
from aiconn.sla.alertrules import DEFAULT_RULE_WINDOWS, prometheus_rule, render_yaml
from aiconn.sla.budget import BURN_WINDOWS, budget_report
from aiconn.sla.burnwindows import (
    alert_rules,
    burn_window,
    burn_windows,
    duration_text,
    longest_minutes,
    name_minutes,
    scaled_minutes,
    shortest_burn_rate,
    window_minutes,
)
from aiconn.sla.evaluate import FleetTerms, evaluate_fleet
from aiconn.sla.sli import Timeslices
from tests.factories import availability_series, small_sla_doc, small_sla_spec
from tests.unit.test_api_monitoring import MONITORING


def table(duration: str) -> list[tuple[str, int, int, float]]:
    return [
        (r.name, r.long.minutes, r.short.minutes, r.factor)
        for r in alert_rules(Window(duration=duration))
    ]


@pytest.mark.parametrize(
    ("duration", "minutes"),
    [("1M", 43_200), ("3M", 129_600), ("2w", 20_160), ("1d", 1440), ("90m", 90), ("6h", 360)],
)
def test_window_minutes_count_a_month_as_30_days(duration: str, minutes: int) -> None:
    assert window_minutes(Window(duration=duration)) == minutes


def test_a_month_keeps_the_workbook_windows_and_names() -> None:
    assert table("1M") == [
        ("page-1h", 60, 5, 14.4),
        ("page-6h", 360, 30, 6.0),
        ("ticket-1d", 1440, 120, 3.0),
        ("ticket-3d", 4320, 360, 1.0),
    ]
    assert [w.name for w in BURN_WINDOWS] == ["w5m", "w30m", "w1h", "w2h", "w6h", "w1d", "w3d"]


@pytest.mark.parametrize(
    ("duration", "expected"),
    [
        # 1/30 of the month's windows: 5 min scales to 10 s, floored to the 1-minute timeslice.
        (
            "1d",
            [
                ("page-2m", 2, 1, 14.4),
                ("page-12m", 12, 1, 6.0),
                ("ticket-48m", 48, 4, 3.0),
                ("ticket-2h24m", 144, 12, 1.0),
            ],
        ),
        (
            "1w",
            [
                ("page-14m", 14, 1, 14.4),
                ("page-1h24m", 84, 7, 6.0),
                ("ticket-5h36m", 336, 28, 3.0),
                ("ticket-16h48m", 1008, 84, 1.0),
            ],
        ),
        (
            "3M",
            [
                ("page-3h", 180, 15, 14.4),
                ("page-18h", 1080, 90, 6.0),
                ("ticket-3d", 4320, 360, 3.0),
                ("ticket-9d", 12_960, 1080, 1.0),
            ],
        ),
        # So short that both pages share one 1-minute window: the lower factor (6) is kept.
        ("1h", [("page-1m", 1, 1, 6.0), ("ticket-2m", 2, 1, 3.0), ("ticket-6m", 6, 1, 1.0)]),
    ],
)
def test_windows_scale_with_the_sla_window(
    duration: str, expected: list[tuple[str, int, int, float]]
) -> None:
    assert table(duration) == expected


@given(count=st.integers(1, 9999), unit=st.sampled_from(["m", "h", "d", "w", "M"]))
def test_every_window_is_whole_minutes_at_least_one_and_short_within_long(
    count: int, unit: str
) -> None:
    rules = alert_rules(Window(duration=f"{count}{unit}"))
    assert rules and len({r.name for r in rules}) == len(rules)
    for rule in rules:
        assert 1 <= rule.short.minutes <= rule.long.minutes
        assert name_minutes(rule.long.name) == rule.long.minutes


def test_scaling_rounds_half_up_in_integers() -> None:
    assert scaled_minutes(60, 360) == 1  # 0.5 minutes
    assert scaled_minutes(60, 359) == 1  # 0.4986: the floor
    assert scaled_minutes(60, 1080) == 2  # 1.5
    assert scaled_minutes(5, 43_200) == 5


@given(st.integers(1, 10_000_000))
def test_window_names_read_back(minutes: int) -> None:
    assert name_minutes(burn_window(minutes).name) == minutes


def test_window_names_are_readable() -> None:
    assert [duration_text(m) for m in (1, 5, 60, 144, 1440, 4320, 1441)] == [
        "1m",
        "5m",
        "1h",
        "2h24m",
        "1d",
        "3d",
        "1d1m",
    ]
    # Keys written before windows scaled were camel-cased (w5M): still read as 5 minutes.
    assert name_minutes("w5M") == 5
    assert name_minutes("w") is None and name_minutes("rate") is None
    assert burn_rates_sentence({"w2h24m": 1.5, "w1m": 100.0}) == (
        "burn rate 1.5x over 2 h 24 min, 100x over 1 min"
    )


def test_the_current_burn_is_the_shortest_window() -> None:
    assert shortest_burn_rate({"w1h": 2.0, "w5m": 20.0, "w3d": 0.5}) == 20.0
    assert shortest_burn_rate({"w2m": 3.0, "w1m": None}) is None  # no known minute: none
    assert shortest_burn_rate({"w5M": 7.0, "w1H": 1.0}) == 7.0
    assert shortest_burn_rate({}) is None
    # A 1-day SLA: its 1- and 4-minute windows are too short to act on (one bad minute is a
    # 1000x burn); the shortest of at least 5 minutes is read. All shorter: the shortest.
    assert shortest_burn_rate({"w1m": 1000.0, "w4m": 250.0, "w12m": 80.0, "w2h24m": 7.0}) == 80.0
    assert shortest_burn_rate({"w1m": 1000.0, "w4m": 250.0}) == 1000.0


def test_the_look_back_is_the_longest_window() -> None:
    assert longest_minutes(alert_rules()) == 4320
    assert longest_minutes(alert_rules(Window(duration="1d"))) == 144


def test_a_one_day_sla_pages_on_its_scaled_windows() -> None:
    # 99.9 % of a day is 1.44 minutes of budget: one bad minute now spends 69 % of it.
    rules = alert_rules(Window(duration="1d"))
    bad = np.zeros((1, 200), dtype=bool)
    bad[0, -1] = True
    report = budget_report(
        Timeslices(bad=bad, known=np.ones_like(bad)), target_percent=[99.9], rules=rules
    )
    assert sorted(report.burn_rates) == sorted(w.name for w in burn_windows(rules))
    assert report.firing(0) == ["page-2m", "page-12m", "ticket-48m", "ticket-2h24m"]
    # The monthly windows on the same 200 known minutes: 1 bad of 200 burns 5, below page-6h's 6.
    monthly = budget_report(Timeslices(bad=bad, known=np.ones_like(bad)), target_percent=[99.9])
    assert monthly.firing(0) == ["page-1h", "ticket-1d", "ticket-3d"]


def test_the_manifest_is_the_generated_rule() -> None:
    shipped = (MONITORING / "prometheusrule.yaml").read_text()
    assert shipped == render_yaml(DEFAULT_RULE_WINDOWS), "run `aiconn prometheusrule --write`"


def test_the_rule_reads_the_operators_windows_and_factors() -> None:
    groups = {g["name"]: g for g in prometheus_rule(["1M", "1d"])["spec"]["groups"]}
    for duration in ("1M", "1d"):
        alerts = {
            r["labels"]["burn_alert"]: r for r in groups[f"aiconn-sla-burn-{duration}"]["rules"]
        }
        rules = alert_rules(Window(duration=duration))
        assert list(alerts) == [r.name for r in rules]
        for rule in rules:
            expr = alerts[rule.name]["expr"]
            for span in (rule.long, rule.short):
                assert f")[{span.minutes * 60 - 1}s:1m])" in expr
            factor = rule.exact_factor
            assert f"* {100_000_000 * factor.denominator}\n" in expr
            assert f"* {factor.numerator}\n)" in expr
            assert f'{{window="{duration}"}}' in expr
            assert "for" not in alerts[rule.name]


def test_the_api_exports_each_slas_exact_budget_with_its_window() -> None:
    def sla(name: str, target: float, window: str) -> SLA:
        parsed = parse_sla(
            {
                "metadata": {"namespace": "acme", "name": name, "uid": name},
                "status": {"period": {"burnRates": {"w1m": 20.0, "w2m": None}}},
                "spec": small_sla_doc(
                    objectives={
                        "availability": {"targetPercent": target},
                        "window": {"duration": window},
                    },
                ),
            }
        )
        assert parsed is not None
        return parsed

    class Reader:
        def all(self) -> list[SLA]:
            return [sla("month", 99.9, "1M"), sla("day", 99.95, "1d")]

    families = {f.name: f for f in FleetCollector(Reader()).collect()}  # type: ignore[arg-type]
    samples = {
        (s.labels["sla"], s.labels["window"]): s.value
        for s in families[AVAILABILITY_BUDGET].samples
    }
    assert samples == {("month", "1M"): 100_000.0, ("day", "1d"): 50_000.0}
    # The engine's burn rates, for the dashboard: windows without a known minute are left out.
    burns = {
        (s.labels["sla"], s.labels["burn_window"]): s.value for s in families[BURN_RATE].samples
    }
    assert burns == {("month", "w1m"): 20.0, ("day", "w1m"): 20.0}


def test_promtool_reads_the_generated_groups_as_yaml() -> None:
    spec = yaml.safe_load(render_yaml(["1M", "2w"]))["spec"]
    assert [g["name"] for g in spec["groups"]] == [
        "aiconn-sla-burn-1M",
        "aiconn-sla-burn-2w",
        "aiconn-sla-evaluation",
    ]


def test_windows_no_longer_measured_are_removed_from_the_status() -> None:
    previous = {"burnRates": {"w5M": 3.0, "w1H": 1.0, "w5m": 2.0}}
    patch = with_stale_windows_removed(previous, {"burnRates": {"w5m": 4.0}, "alerts": []})
    assert patch == {"burnRates": {"w5M": None, "w1H": None, "w5m": 4.0}, "alerts": []}
    assert with_stale_windows_removed({}, {"alerts": []}) == {"alerts": []}


def test_one_day_slas_are_evaluated_on_their_own_windows() -> None:
    up = np.ones((1, 300), dtype=np.float32)
    up[0, -1] = 0
    spec = small_sla_spec(objectives={"window": {"duration": "1d"}})
    result = evaluate_fleet(
        terms=FleetTerms.from_specs([spec]),
        series=availability_series(up, lookback_minutes=144),
        rules=alert_rules(spec.objectives.window),
    ).sla(0)
    assert list(result.burn_rates) == ["w1m", "w2m", "w4m", "w12m", "w48m", "w2h24m"]
    assert result.alerts == ("page-2m", "page-12m", "ticket-48m", "ticket-2h24m")
