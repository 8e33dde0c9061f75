"""Benchmark the SLA engine: one fleet evaluation of a month, and settling it into a ledger.

Usage: python bench/bench_sla_eval.py [--slas 10000] [--days 30] [--ledger-url URL]

Series are synthetic and in memory (Prometheus is not in the measurement): ~1 % of minutes down or
failing, ~0.5 % unknown. The pass is timed twice: every minute judged, and with the minute rules
real offers bring (three quarters of the SLAs under service hours in Berlin or New York or under
announced maintenance windows), building the rules included. Peak memory is what evaluation
allocates on top of its inputs (tracemalloc, which numpy reports to), plus the process's peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from aiconn.resources.v1alpha1.servicehours import ServiceHours
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec
from aiconn.sla.evaluate import FleetEvaluation, FleetSeries, FleetTerms, evaluate_fleet
from aiconn.sla.judged import MinuteRule, MinuteRules
from aiconn.sla.periods import Period
from aiconn.sla.settlement import fund_allowance, settle_period
from aiconn.sla.sli import Occurrences
from aiconn.store.ledger import Ledger


def synthetic_series(n: int, minutes: int, seed: int = 1) -> FleetSeries:
    rng = np.random.default_rng(seed)
    # A random block tiled over the fleet: realistic values without minutes of RNG time.
    block = rng.integers(0, 200, size=(64, minutes), dtype=np.uint16)
    in_contract = np.tile(block, (n // 64 + 1, 1))[:n]
    failed = np.zeros((n, minutes), dtype=np.uint16)
    up = np.ones((n, minutes), dtype=np.float32)
    cells = n * minutes
    flat_failed, flat_up = failed.reshape(-1), up.reshape(-1)
    flat_failed[rng.integers(0, cells, cells // 200)] = 50
    flat_up[rng.integers(0, cells, cells // 200)] = 0
    flat_up[rng.integers(0, cells, cells // 200)] = np.nan
    total = rng.integers(1_000, 100_000, n).astype(np.float64)
    ttft = Occurrences(good=np.floor(total * 0.992), total=total, exact=np.ones(n, dtype=bool))
    tpot = Occurrences(good=np.floor(total * 0.97), total=total, exact=np.ones(n, dtype=bool))
    tokens = rng.integers(0, 10**9, n, dtype=np.int64)
    return FleetSeries(
        in_contract=in_contract, failed=failed, up=up, ttft=ttft, tpot=tpot, tokens=tokens
    )


START = datetime(2025, 1, 1, tzinfo=UTC)


def minute_rules(n: int, minutes: int) -> MinuteRules:
    """Four kinds of SLA in turn: Berlin business hours with maintenance, New York business
    hours, round the clock with maintenance, and round the clock (no rule)."""
    weekdays = ["Mon", "Tue", "Wed", "Thu", "Fri"]
    berlin = ServiceHours(time_zone="Europe/Berlin", days=weekdays, start="08:00", end="18:00")
    new_york = ServiceHours(time_zone="America/New_York", days=weekdays, start="09:00", end="17:00")
    spans = tuple(
        (START + timedelta(days=d, hours=6), START + timedelta(days=d, hours=8))
        for d in range(3, minutes // 1440, 7)
    )
    kinds = (
        MinuteRule(service_hours=berlin, excused=spans),
        MinuteRule(service_hours=new_york),
        MinuteRule(excused=spans),
        MinuteRule(),
    )
    return MinuteRules.build([kinds[i % 4] for i in range(n)], start=START, columns=minutes)


def bench_evaluate(n: int, days: int, repeat: int = 3) -> tuple[FleetEvaluation, dict[str, str]]:
    spec = AIInferenceSLASpec.model_validate(
        {
            "model": {"name": "m", "source": "hf://org/m", "parametersBillions": 8},
            "network": {"rttBudgetMs": 20},
        }
    )
    terms = FleetTerms.from_specs([spec] * n)
    series = synthetic_series(n, days * 1440)
    input_bytes = series.in_contract.nbytes + series.failed.nbytes + series.up.nbytes
    # Interleaved and best of `repeat`: on a shared machine the load of the moment is noise.
    plain, ruled = [], []
    tracemalloc.start()
    for _ in range(repeat):
        started = time.perf_counter()
        evaluate_fleet(terms=terms, series=series)
        plain.append(time.perf_counter() - started)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        started = time.perf_counter()
        rules = minute_rules(n, days * 1440)
        result = evaluate_fleet(terms=terms, series=series, minute_rules=rules)
        ruled.append(time.perf_counter() - started)
        _, ruled_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
    tracemalloc.stop()
    elapsed, with_rules = min(plain), min(ruled)
    return result, {
        "SLAs x minutes": f"{n:,} x {days * 1440:,}",
        "input arrays": f"{input_bytes / 2**20:,.0f} MiB",
        "evaluate_fleet time": f"{elapsed:.2f} s (best of {repeat})",
        "evaluate_fleet peak extra memory": f"{peak / 2**20:,.0f} MiB",
        "evaluate_fleet time with service hours and maintenance": f"{with_rules:.2f} s",
        "... of which building the minute rules": f"{_timed(minute_rules, n, days * 1440):.2f} s",
        "peak extra memory with them": f"{ruled_peak / 2**20:,.0f} MiB",
        "excused minutes in the fleet": f"{int(np.sum(result.excused_minutes)):,}",
    }


def _timed(build: Callable[[int, int], MinuteRules], n: int, minutes: int) -> float:
    started = time.perf_counter()
    build(n, minutes)
    return time.perf_counter() - started


def bench_settle(result: FleetEvaluation, url: str) -> dict[str, str]:
    ledger = Ledger.open(url)
    period = Period(start=START, end=START + timedelta(minutes=result.minutes))
    run = uuid.uuid4().hex[:8]
    before = len(ledger.transfers())
    started = time.perf_counter()
    for i in range(len(result)):
        sla = {
            "sla_uid": f"{run}-{i}",
            "namespace": "bench",
            "name": f"sla-{i}",
            "tenant": f"t{i % 500}",
        }
        fund_allowance(ledger, **sla, period=period, tokens=10**9)
        settle_period(
            ledger,
            **sla,
            period=period,
            outcome=result.sla(i).outcome(),
            coverage_floor_percent=95.0,
        )
    elapsed = time.perf_counter() - started
    posted = len(ledger.transfers()) - before
    ledger.check_invariant()
    ledger.close()
    return {
        "ledger": url.split("://")[0],
        "settlements": f"{len(result):,}",
        "transfers posted": f"{posted:,}",
        "settle time": f"{elapsed:.1f} s",
        "transfers/second": f"{posted / elapsed:,.0f}",
        "settlements/second": f"{len(result) / elapsed:,.0f}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slas", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--ledger-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--repeat", type=int, default=3, help="passes timed; the best is shown")
    args = parser.parse_args()
    url = args.ledger_url or f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench-ledger.db'}"
    result, evaluation = bench_evaluate(args.slas, args.days, args.repeat)
    settling = bench_settle(result, url)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = evaluation | settling | {"process peak RSS": f"{rss:,.0f} MiB"}
    print("| measure | value |\n|---|---|")
    for key, value in rows.items():
        print(f"| {key} | {value} |")


if __name__ == "__main__":
    main()
