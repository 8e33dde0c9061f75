"""The OpenSLO export of every sample SLA against the OpenSLO v1 schema, written down here as
pydantic models (the OpenSLO project's `oslo` validator is not served here). The rules are the
spec's (github.com/OpenSLO/OpenSLO, v1) as oslo v0.12's Go types enforce them: names are RFC 1123
labels, labels map to lists of strings, one time window (a calendar one for calendar-aligned SLAs),
Occurrences or Timeslices budgeting, targets in [0, 1), and a Timeslices objective needs its
slice target and window. Beyond the schema: the indicators count what the SLA engine counts."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from aiconn import planning
from aiconn.cli import main
from aiconn.export.openslo import calendar_start, dns_label, openslo_documents
from aiconn.export.sloth import UnsupportedWindow, sloth_period
from aiconn.resources.v1alpha1.sla import Window
from aiconn.sla import metricnames as mn
from aiconn.sla.periods import period_containing

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = sorted((ROOT / "manifests" / "samples").glob("sla-*.yaml"))

Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")]
Duration = Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]*[smhdwMQY]$")]
Description = Annotated[str, StringConstraints(max_length=1050)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Metadata(Strict):
    name: Name
    displayName: Annotated[str, StringConstraints(max_length=63)] | None = None
    labels: dict[str, list[str]] | None = None
    annotations: dict[str, str] | None = None


class Service(Strict):
    apiVersion: Literal["openslo/v1"]
    kind: Literal["Service"]
    metadata: Metadata
    spec: dict[Literal["description"], Description]


class MetricSource(Strict):
    type: str = Field(min_length=1)
    spec: dict[str, str]


class MetricSourceHolder(Strict):
    metricSource: MetricSource


class RatioMetric(Strict):
    counter: bool
    good: MetricSourceHolder | None = None
    bad: MetricSourceHolder | None = None
    total: MetricSourceHolder

    @model_validator(mode="after")
    def _good_or_bad(self) -> RatioMetric:
        assert (self.good is None) != (self.bad is None), "exactly one of good and bad"
        return self


class SLISpec(Strict):
    description: Description | None = None
    ratioMetric: RatioMetric


class SLIInline(Strict):
    metadata: Metadata
    spec: SLISpec


class Calendar(Strict):
    startTime: Annotated[str, StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")]
    timeZone: str


class TimeWindow(Strict):
    duration: Duration
    isRolling: bool
    calendar: Calendar | None = None

    @model_validator(mode="after")
    def _calendar(self) -> TimeWindow:
        assert self.isRolling or self.calendar is not None, "a calendar window needs calendar"
        return self


class Objective(Strict):
    displayName: str | None = None
    target: float = Field(ge=0, lt=1)
    timeSliceTarget: float | None = Field(default=None, gt=0, le=1)
    timeSliceWindow: Duration | None = None


class SLOSpec(Strict):
    description: Description | None = None
    service: Name
    indicator: SLIInline
    budgetingMethod: Literal["Occurrences", "Timeslices"]
    timeWindow: list[TimeWindow] = Field(min_length=1, max_length=1)
    objectives: list[Objective] = Field(min_length=1)

    @model_validator(mode="after")
    def _timeslices(self) -> SLOSpec:
        for objective in self.objectives:
            sliced = objective.timeSliceTarget is not None and objective.timeSliceWindow is not None
            assert sliced == (self.budgetingMethod == "Timeslices"), "slices only for Timeslices"
        return self


class SLO(Strict):
    apiVersion: Literal["openslo/v1"]
    kind: Literal["SLO"]
    metadata: Metadata
    spec: SLOSpec


@pytest.mark.parametrize("sample", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_every_sample_exports_valid_openslo(sample: Path) -> None:
    name, spec = planning.load_sla(sample)
    service, *slos = openslo_documents(namespace="acme", name=name, spec=spec)
    Service.model_validate(service)
    parsed = {s.spec.indicator.metadata.name: s for s in map(SLO.model_validate, slos)}
    assert all(s.spec.service == service["metadata"]["name"] for s in parsed.values())
    methods = {s.metadata.name.removeprefix(f"acme-{name}-"): s.spec for s in parsed.values()}
    assert {k: v.budgetingMethod for k, v in methods.items()} == {
        "availability": "Timeslices",
        "ttft": "Occurrences",
        "tpot": "Occurrences",
    }
    availability = methods["availability"]
    assert availability.objectives[0].target == pytest.approx(
        spec.objectives.availability.target_percent / 100
    )
    assert availability.objectives[0].timeSliceWindow == "1m"
    ratio = availability.indicator.spec.ratioMetric
    assert ratio.good is not None and ratio.counter
    assert 'outcome="success"' in ratio.good.metricSource.spec["query"]
    assert "|".join(mn.IN_CONTRACT_OUTCOMES) in ratio.total.metricSource.spec["query"]
    ttft = methods["ttft"].indicator.spec.ratioMetric
    assert ttft.good is not None
    threshold = spec.objectives.ttft.threshold_ms / 1000
    [le] = re.findall(r'le=~"([^"]*)"', ttft.good.metricSource.spec["query"])
    pattern = re.compile(le.replace("\\\\", "\\"))  # the PromQL string's escapes undone
    assert pattern.fullmatch(str(threshold)), "the bucket as the gateway's client writes it"
    assert not pattern.fullmatch(f"{threshold}5") and not pattern.fullmatch(f"1{threshold}")
    assert (
        f'{mn.GATEWAY_TTFT}_bucket{{namespace="acme",sla="{name}",le="+Inf"}}'
        in (ttft.total.metricSource.spec["query"])
    )
    window = availability.timeWindow[0]
    assert window.duration == spec.objectives.window.duration
    assert window.isRolling == (not spec.objectives.window.calendar_aligned)


def test_long_names_stay_labels_and_distinct() -> None:
    long = "a" * 60
    assert dns_label(f"ns-{long}-1") != dns_label(f"ns-{long}-2")
    assert all(len(dns_label(f"ns-{long}-{i}")) <= 63 for i in range(3))


def test_the_cli_prints_the_documents_and_names_a_bad_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = SAMPLES[0]
    assert main(["export", "openslo", str(sample), "--namespace", "acme"]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["kind"] for d in docs] == ["Service", "SLO", "SLO", "SLO"]
    assert main(["export", "sloth", str(sample)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# sloth generate --default-slo-period 30d")
    assert yaml.safe_load(out)["service"].startswith("default-")
    bad = tmp_path / "bad.yaml"
    raw = yaml.safe_load(sample.read_text())
    raw["spec"]["objectives"] = {"availability": {"targetPercent": 100}}
    bad.write_text(yaml.safe_dump(raw))
    assert main(["export", "openslo", str(bad)]) == 2
    assert "spec.objectives.availability.targetPercent" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("duration", "period"), [("1M", "30d"), ("30d", "30d"), ("28d", "28d"), ("4w", "28d")]
)
def test_sloth_periods_follow_the_window(duration: str, period: str) -> None:
    assert sloth_period(Window(duration=duration)) == period


def test_a_window_sloth_has_no_catalog_for_is_refused_naming_the_field() -> None:
    with pytest.raises(UnsupportedWindow, match=r"spec\.objectives\.window\.duration: '7d'"):
        sloth_period(Window(duration="7d", calendar_aligned=False))


@pytest.mark.parametrize("duration", ["1M", "1w", "2w", "7d", "9d"])
def test_calendar_windows_start_where_aiconn_periods_start(duration: str) -> None:
    window = Window(duration=duration)
    start = datetime.strptime(calendar_start(window), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    assert period_containing(window, start).start == start
    if duration in ("1w", "2w"):
        assert start.weekday() == 0  # aiconn's weeks start on Mondays
