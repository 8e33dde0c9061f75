"""Batched Prometheus queries for a whole fleet versus one query per SLA, on a real Prometheus.

The SLA engine asks Prometheus once per SLI for every SLA (`PrometheusSource.fetch_fleet`,
grouped `by (namespace, sla)`); the obvious alternative asks once per SLA. This benchmark fills a
real Prometheus (Debian's package) with an hour of synthetic gateway metrics for N SLAs, written
as OpenMetrics and backfilled with `promtool tsdb create-blocks-from openmetrics` (scraping 200
exporters for an hour would measure the scraper, not the queries), then times, in one run:

- the same SLI (in-contract requests per minute) for all SLAs: one batched range query versus
  `per_sla_query`'s one range query per SLA;
- the whole `fetch_fleet` (every SLI, histograms and tokens) for all SLAs, against the same
  per-SLA loop, which covers only one SLI of the several a real per-SLA engine would need.

Evaluating 10,000 SLAs over a 30-day month is `bench/bench_sla_eval.py` (bench/RESULTS-sla.md).

Run: `.venv/bin/python bench/bench_prometheus_batching.py [--slas 200] [--repeat 3]`.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiconn.devstack.processes import ProcessGroup
from aiconn.devstack.prometheus import PrometheusServer
from aiconn.gateway.metrics import tpot_buckets, ttft_buckets
from aiconn.sla import metricnames as mn
from aiconn.sla.periods import Period, floor_minute
from aiconn.sla.promql import pod_counter
from aiconn.store.prometheus import (
    PrometheusSource,
    SLATarget,
    per_sla_query,
)

PROMTOOL = "/usr/bin/promtool"
SCRAPE_SECONDS = 15
MINUTES = 60
TTFT_MS = 500
TPOT_MS = 100


def openmetrics(slas: int, start: int, end: int, seed: int = 7) -> Iterator[str]:
    """One hour of one gateway's families per SLA, one sample per scrape, grouped by family."""
    rng = random.Random(seed)
    times = range(start, end + 1, SCRAPE_SECONDS)
    labels = [f'namespace="tenant-{i % 20}",sla="sla-{i}",pod="sla-{i}-0"' for i in range(slas)]
    rates = [rng.uniform(0.5, 5.0) for _ in range(slas)]

    def counter(name: str, extra: str, per_scrape: Callable[[int], float]) -> Iterator[str]:
        for i, base in enumerate(labels):
            total = 0.0
            for t in times:
                yield f"{name}{{{base}{extra}}} {total:.3f} {t}\n"
                total += per_scrape(i)

    for outcome, share in (("success", 0.99), ("upstream_error", 0.008), ("timeout", 0.002)):
        yield from counter(
            mn.GATEWAY_REQUESTS,
            f',outcome="{outcome}"',
            lambda i, s=share: rates[i] * SCRAPE_SECONDS * s,
        )
    for kind, per_request in (("prompt", 30), ("completion", 120)):
        yield from counter(
            mn.GATEWAY_TOKENS,
            f',type="{kind}"',
            lambda i, n=per_request: rates[i] * SCRAPE_SECONDS * n,
        )
    for name in (mn.GATEWAY_UPSTREAM_UP, "up"):
        for base in labels:
            for t in times:
                yield f"{name}{{{base}}} 1 {t}\n"
    for family, bounds, scale in (
        (mn.GATEWAY_TTFT, ttft_buckets(TTFT_MS), 0.25),
        (mn.GATEWAY_TPOT, tpot_buckets(TPOT_MS), 0.04),
    ):
        for le in [*bounds, float("inf")]:
            # An exponential latency with mean `scale`: the share at or under `le`.
            share = 1.0 if le == float("inf") else 1.0 - 2.718281828 ** (-le / scale)
            yield from counter(
                f"{family}_bucket",
                f',le="{le:g}"' if le != float("inf") else ',le="+Inf"',
                lambda i, s=share: rates[i] * SCRAPE_SECONDS * s,
            )
    yield "# EOF\n"


def timed(call: Callable[[], Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--slas", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    end = floor_minute(datetime.now(UTC)) - timedelta(minutes=5)
    start = end - timedelta(minutes=MINUTES + 5)
    period = Period(start=end - timedelta(minutes=MINUTES), end=end)
    work = Path(tempfile.mkdtemp(prefix="aiconn-bench-prom-"))
    data = work / "om.txt"
    began = time.perf_counter()
    with data.open("w") as out:
        out.writelines(openmetrics(args.slas, int(start.timestamp()), int(end.timestamp())))
    tsdb = work / "prom" / "data" / "tsdb"
    subprocess.run(
        [PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(data), str(tsdb)],
        check=True,
        capture_output=True,
    )
    print(
        f"backfilled {data.stat().st_size / 2**20:.0f} MiB in {time.perf_counter() - began:.1f} s"
    )
    group = ProcessGroup(work / "prom")
    server = PrometheusServer(group=group, data_dir=work / "prom" / "data").start()
    try:
        source = PrometheusSource.from_url(server.url, timeout_s=120)
        targets = [
            SLATarget(f"tenant-{i % 20}", f"sla-{i}", TTFT_MS / 1000, TPOT_MS / 1000)
            for i in range(args.slas)
        ]
        index = {(t.namespace, t.name): i for i, t in enumerate(targets)}
        one_sli = pod_counter(mn.GATEWAY_REQUESTS, mn.IN_CONTRACT_OUTCOMES)
        batched = source._counter_minutes(one_sli, index, period.start, period.minutes)
        per_sla = per_sla_query(source, targets, period)
        assert (batched == per_sla).all(), "both ways must read the same numbers"
        fleet = source.fetch_fleet(targets, period)
        assert fleet.ttft.exact.all() and int(fleet.in_contract.sum()) > 0

        t_batched = timed(
            lambda: source._counter_minutes(one_sli, index, period.start, period.minutes),
            args.repeat,
        )
        t_per_sla = timed(lambda: per_sla_query(source, targets, period), args.repeat)
        t_fleet = timed(lambda: source.fetch_fleet(targets, period), args.repeat)
    finally:
        group.stop_all()
    print(f"SLAs {args.slas}, period {period.minutes} minutes, best of {args.repeat}")
    print(f"one SLI, batched (1 query):             {t_batched * 1000:8.1f} ms")
    print(f"one SLI, per SLA ({args.slas} queries):        {t_per_sla * 1000:8.1f} ms")
    print(f"ratio, same SLI:                        {t_per_sla / t_batched:8.1f} x")
    print(f"fetch_fleet, every SLI (9 queries):     {t_fleet * 1000:8.1f} ms")
    print(f"ratio, per-SLA one SLI / fleet all SLIs: {t_per_sla / t_fleet:8.1f} x")


if __name__ == "__main__":
    main()
