"""Exact scrape histories in a real Prometheus, for tests of the SLA engine's PromQL.

Scraping live exporters cannot place a sample at a chosen second, drop a pod's series at a chosen
minute or stop Prometheus for exactly five minutes. Writing the samples as OpenMetrics and
backfilling them with `promtool tsdb create-blocks-from openmetrics` can, and the engine still
queries a real Prometheus with its own queries: Debian's 2.x or 3.x (the `prometheus_bin`
fixture), both reading the blocks Debian's promtool writes.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from aiconn.devstack.processes import ProcessGroup
from aiconn.devstack.prometheus import PrometheusServer
from aiconn.sla import metricnames as mn

PROMTOOL = "/usr/bin/promtool"
SCRAPE_SECONDS = 15


@dataclass
class History:
    """Samples by series, written out grouped by metric name as OpenMetrics requires."""

    start: datetime
    """Minute 0 of the history; scrapes fall every 15 s inside each minute, `offset_s` after a
    boundary (modulo 15 s)."""
    offset_s: int = 7
    series: dict[tuple[str, tuple[tuple[str, str], ...]], dict[int, float]] = field(
        default_factory=dict
    )

    def scrapes(self, minutes: Iterable[int]) -> list[int]:
        """Unix seconds of every scrape in the given minutes."""
        base = int(self.start.timestamp())
        return [
            base + minute * 60 + second
            for minute in minutes
            for second in sorted(
                (self.offset_s + k * SCRAPE_SECONDS) % 60 for k in range(60 // SCRAPE_SECONDS)
            )
        ]

    def gauge(
        self, name: str, labels: Mapping[str, str], value: float, minutes: Iterable[int]
    ) -> None:
        """`value` at every scrape of `minutes`."""
        samples = self.series.setdefault((name, tuple(sorted(labels.items()))), {})
        for t in self.scrapes(minutes):
            samples[t] = value

    def sample(self, name: str, labels: Mapping[str, str], second: int, value: float) -> None:
        """One sample `second` seconds after minute 0 (replacing a scrape's there)."""
        samples = self.series.setdefault((name, tuple(sorted(labels.items()))), {})
        samples[int(self.start.timestamp()) + second] = value

    def counter(
        self,
        name: str,
        labels: Mapping[str, str],
        per_minute: Mapping[int, float],
        minutes: Iterable[int],
    ) -> None:
        """A counter scraped in `minutes`, growing by `per_minute[m]` spread over minute m.

        The increase of minute m is counted at its scrapes; a counter absent from per_minute
        stays flat.
        """
        samples = self.series.setdefault((name, tuple(sorted(labels.items()))), {})
        total = 0.0
        per_scrape = 60 // SCRAPE_SECONDS
        for minute in sorted(minutes):
            for t in self.scrapes([minute]):
                total += per_minute.get(minute, 0.0) / per_scrape
                samples[t] = total

    def openmetrics(self) -> str:
        lines: list[str] = []
        for (name, labels), samples in sorted(self.series.items()):
            text = ",".join(f'{k}="{v}"' for k, v in labels)
            lines.extend(f"{name}{{{text}}} {samples[t]} {t}" for t in sorted(samples))
        return "\n".join([*lines, "# EOF", ""])


def gateway_pod(sla: str, replica: str, namespace: str = "acme") -> dict[str, str]:
    """The labels the ServiceMonitor gives one gateway replica's series."""
    return {"namespace": namespace, "sla": sla, "pod": f"{sla}-{replica}", "job": "gateway"}


def serving(
    history: History,
    sla: str,
    replica: str,
    minutes: range,
    *,
    per_minute: int,
    namespace: str = "acme",
) -> None:
    """One gateway replica scraped in `minutes`, healthy, serving `per_minute` requests of 10
    completion tokens each."""
    labels = gateway_pod(sla, replica, namespace)
    history.gauge("up", labels, 1, minutes)
    history.gauge(mn.GATEWAY_UPSTREAM_UP, labels, 1, minutes)
    history.counter(
        mn.GATEWAY_REQUESTS,
        {**labels, "outcome": "success"},
        dict.fromkeys(minutes, per_minute),
        minutes,
    )
    history.counter(
        mn.GATEWAY_TOKENS,
        {**labels, "type": "completion"},
        dict.fromkeys(minutes, per_minute * 10),
        minutes,
    )


def backfilled_prometheus(
    history: History,
    group_dir: Path,
    *,
    binary: Path,
    rule_files: Iterable[Path] = (),
    retention: str = "2d",
) -> tuple[PrometheusServer, ProcessGroup]:
    """A Prometheus started on a TSDB holding exactly `history`, evaluating `rule_files`; stop it
    with the group."""
    work = Path(tempfile.mkdtemp(dir=group_dir, prefix="prom-backfill-"))
    data = work / "history.om"
    data.write_text(history.openmetrics())
    tsdb = work / "prom" / "data" / "tsdb"
    subprocess.run(
        [PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(data), str(tsdb)],
        check=True,
        capture_output=True,
    )
    group = ProcessGroup(work / "prom")
    # Its self-scrape writes at the present, after the history: it does not touch its minutes.
    server = PrometheusServer(
        group=group,
        data_dir=work / "prom" / "data",
        binary=binary,
        rule_files=list(rule_files),
        retention=retention,
    )
    return server.start(), group
