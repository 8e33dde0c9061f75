"""A real Prometheus on loopback, scraping the stack's targets: Debian's package (2.x) by default,
or Prometheus 3 built from its Go module (`tools/prometheus/build.sh`), which the SLA engine's
tests also run against, since 3.x selects ranges differently.

Targets get the labels the in-cluster ServiceMonitor would give a pod (namespace, sla, pod,
tier), so the SLA engine queries the local stack exactly as it queries a cluster. Prometheus also
scrapes itself: its own `up` samples are how the SLA engine tells a minute in which monitoring
worked (an SLA without series then had nothing serving) from one in which it did not (unknown).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aiconn.devstack.processes import (
    Proc,
    ProcessGroup,
    StackError,
    cache_dir,
    free_port,
    http_ok,
    wait_until,
)
from aiconn.devstack.toolpins import TOOLS, pinned


@dataclass(frozen=True)
class ScrapeTarget:
    job: str
    address: str
    labels: dict[str, str] = field(default_factory=dict)
    metrics_path: str = "/metrics"
    bearer_token: str | None = None
    """Sent as `Authorization: Bearer`, for targets such as the API's /metrics (a fleet view)."""
    ca_file: str | None = None
    """Scrape over HTTPS, verifying the target's certificate against this CA bundle."""


PROMETHEUS3_SCRIPT = TOOLS / "prometheus" / "build.sh"
PROMETHEUS3_VERSION = pinned(PROMETHEUS3_SCRIPT, "PROM_VERSION")
PROMETHEUS3_BUILD = pinned(PROMETHEUS3_SCRIPT, "PROM_SD")
"""Its build's service discovery beside file and HTTP."""


def prometheus_binary() -> Path:
    found = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not Path(found).exists():
        raise StackError(
            "prometheus not found; install Debian's package: apt-get install prometheus"
        )
    return Path(found)


def prometheus3_binary() -> Path:
    """Prometheus 3, as `tools/prometheus/build.sh` leaves it in the aiconn cache."""
    cache = cache_dir()
    path = cache / f"prometheus-{PROMETHEUS3_VERSION}-{PROMETHEUS3_BUILD}" / "prometheus"
    if not os.access(path, os.X_OK):
        raise StackError(
            f"{path} not found; build it with `bash tools/prometheus/build.sh` (`make prometheus3`)"
        )
    return path


def _write_config(path: Path, config: dict[str, Any]) -> None:
    """The configuration, readable by its owner only (it names credentials' files)."""
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def add_scrape_jobs(data_dir: Path, jobs: list[dict[str, Any]], *, pid: int) -> None:
    """Add `jobs` to the configuration of the Prometheus running as `pid` with its data in
    `data_dir`, and have it reload (SIGHUP; jobs added before are kept)."""
    path = data_dir / "prometheus.yml"
    config = yaml.safe_load(path.read_text())
    config["scrape_configs"].extend(jobs)
    _write_config(path, config)
    os.kill(pid, signal.SIGHUP)


def running_pid(state_dir: Path, name: str = "prometheus") -> int:
    """The PID of the stack's process `name`, from its PID file under `state_dir/pids`."""
    (pidfile,) = (state_dir / "pids").glob(f"*-{name}.pid")
    return int(pidfile.read_text())


@dataclass
class PrometheusServer:
    group: ProcessGroup
    data_dir: Path
    targets: list[ScrapeTarget] = field(default_factory=list)
    scrape_interval: str = "2s"
    port: int = 0
    rule_files: list[Path] = field(default_factory=list)
    name: str = "prometheus"
    binary: Path | None = None
    """The Prometheus to run; Debian's when None."""
    retention: str = "2d"
    """How far back it keeps samples (a backfilled history longer than that is dropped)."""
    scrape_configs: list[dict[str, Any]] = field(default_factory=list)
    """Scrape jobs beside `targets`' (pod discovery: `aiconn.devstack.podmonitor`)."""
    host: str = "127.0.0.1"
    """The address it listens on (the real node's, for pods to reach it)."""
    proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def config(self) -> dict[str, Any]:
        jobs: dict[tuple[str, str, str | None, str | None], list[ScrapeTarget]] = {}
        for t in self.targets:
            jobs.setdefault((t.job, t.metrics_path, t.bearer_token, t.ca_file), []).append(t)
        return {
            "global": {
                "scrape_interval": self.scrape_interval,
                "evaluation_interval": self.scrape_interval,
            },
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": [
                {
                    "job_name": "prometheus",
                    "scrape_timeout": self.scrape_interval,
                    "static_configs": [{"targets": [f"{self.host}:{self.port}"]}],
                },
                *(
                    {
                        "job_name": job,
                        "metrics_path": path,
                        "scrape_timeout": self.scrape_interval,
                        "static_configs": [
                            {"targets": [t.address], "labels": t.labels} for t in targets
                        ],
                        **({"authorization": {"credentials": token}} if token else {}),
                        **({"scheme": "https", "tls_config": {"ca_file": ca}} if ca else {}),
                    }
                    for (job, path, token, ca), targets in jobs.items()
                ),
                *self.scrape_configs,
            ],
        }

    def start(self, *, timeout: float = 60) -> PrometheusServer:
        if not self.port:
            self.port = free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "prometheus.yml"
        _write_config(config, self.config())
        self.proc = self.group.start(
            self.name,
            [
                str(self.binary or prometheus_binary()),
                f"--config.file={config}",
                f"--storage.tsdb.path={self.data_dir / 'tsdb'}",
                f"--web.listen-address={self.host}:{self.port}",
                # On loopback only: where pods reach it, a pod could stop or reload it. A
                # reload is a SIGHUP (`add_scrape_jobs`) either way.
                *(["--web.enable-lifecycle"] if self.host == "127.0.0.1" else []),
                f"--storage.tsdb.retention.time={self.retention}",
            ],
        )
        wait_until(self.ready, timeout=timeout, what="Prometheus /-/ready", proc=self.proc)
        return self

    def add_scrape_configs(self, jobs: list[dict[str, Any]]) -> None:
        """Scrape `jobs` too, from now on (`add_scrape_jobs`)."""
        assert self.proc is not None, "Prometheus is not running"
        add_scrape_jobs(self.data_dir, jobs, pid=self.proc.popen.pid)

    def ready(self) -> bool:
        return http_ok(f"{self.url}/-/ready")

    def stop(self) -> None:
        self.group.stop(self.name)
        self.proc = None

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query; the result vector."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.load(resp)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def scrape_errors(self) -> dict[str, str]:
        """The last scrape error of each failing target, by scrape URL."""
        with urllib.request.urlopen(f"{self.url}/api/v1/targets", timeout=10) as resp:
            active = json.load(resp)["data"]["activeTargets"]
        return {t["scrapeUrl"]: t["lastError"] for t in active if t.get("lastError")}

    def version(self) -> str:
        """The running Prometheus's version, from its build information."""
        with urllib.request.urlopen(f"{self.url}/api/v1/status/buildinfo", timeout=10) as resp:
            return str(json.load(resp)["data"]["version"])

    def wait_for_series(self, promql: str, *, timeout: float = 60) -> None:
        wait_until(lambda: bool(self.query(promql)), timeout=timeout, what=f"series {promql}")
