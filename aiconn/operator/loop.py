"""Starts and stops the fleet-wide SLA evaluation loop with the operator.

One asyncio task, spawned at startup and cancelled at cleanup, runs a pass every
`evaluation_interval_seconds` (see `aiconn.operator.evaluation`). Kopf timers or daemons would
run one coroutine per SLA; the point of the loop is one batched measurement for the whole fleet.
The loop is off unless `AICONN_PROMETHEUS_URL` is set: without a source there is nothing to
measure, and an operator that only deploys must not fail for want of Prometheus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import kopf

from aiconn.operator import state

if TYPE_CHECKING:
    # Imported when the loop starts: the SLA engine (SQLAlchemy, numpy) is about 34 MiB of an
    # operator's memory, which one without AICONN_PROMETHEUS_URL does not need.
    from aiconn.operator.evaluation import FleetEvaluator
    from aiconn.store.ledger import Ledger

log = logging.getLogger(__name__)

_task: asyncio.Task[None] | None = None
_ledger: Ledger | None = None
_evaluator: FleetEvaluator | None = None


def evaluator() -> FleetEvaluator | None:
    """The running loop's evaluator (None while the SLA engine is off), for deletions to settle."""
    return _evaluator


def ledger() -> Ledger | None:
    """The running loop's ledger (None while the SLA engine is off), for top-ups to share."""
    return _ledger


async def run_forever(evaluator: FleetEvaluator, interval_s: float) -> None:
    """A pass every `interval_s` (measured start to start); a failed pass is logged, not fatal."""
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        try:
            report = await evaluator.run_once()
            log.info(
                "SLA pass: %d SLAs, %d evaluated, %d unmeasured, %d settled in %.2f s",
                report.slas,
                report.evaluated,
                report.unavailable,
                len(report.settled),
                loop.time() - started,
            )
        except Exception:
            log.exception("SLA evaluation pass failed; retrying in %.0f s", interval_s)
        await asyncio.sleep(max(0.0, interval_s - (loop.time() - started)))


@kopf.on.startup()
async def start_evaluation_loop(**_: Any) -> None:
    global _task, _ledger, _evaluator
    # Startup handlers may run before the one that opens the runtime; opening is idempotent.
    runtime = state.open_runtime()
    settings = runtime.settings
    if not settings.prometheus_url:
        log.info("AICONN_PROMETHEUS_URL is not set: the SLA evaluation loop is off")
        return
    from aiconn.operator.evaluation import FleetEvaluator
    from aiconn.store.ledger import Ledger
    from aiconn.store.prometheus import PrometheusSource

    _ledger = await asyncio.to_thread(Ledger.open, settings.ledger_url)
    evaluator = FleetEvaluator(
        kube=runtime.kube,
        source=PrometheusSource.from_url(settings.prometheus_url),
        ledger=_ledger,
        settings=settings,
    )
    _evaluator = evaluator
    _task = asyncio.create_task(
        run_forever(evaluator, settings.evaluation_interval_seconds), name="sla-evaluation"
    )


@kopf.on.cleanup()
async def stop_evaluation_loop(**_: Any) -> None:
    global _task, _ledger, _evaluator
    _evaluator = None
    if _task is not None:
        _task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await _task
        _task = None
    if _ledger is not None:
        await asyncio.to_thread(_ledger.close)
        _ledger = None
