"""Is vLLM behind the gateway up? Probed in the background, judged over several probes.

A probe is a short `GET /health`. One failed probe is not an outage: a tenant can stall vLLM's
`/health` for seconds with one large request, so the upstream is marked down only after
`FAILURES_TO_DOWN` failed probes (or proxied requests that could not connect) within
`FAILURE_WINDOW_SECONDS` with no success in between; one successful probe marks it up again.
A background task probes every `PROBE_INTERVAL_SECONDS`, so the verdict does not depend on how
often Kubernetes or Prometheus ask. The verdict drives `aiconn_gateway_upstream_up`, which the
SLA engine reads as "down".
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prometheus_client.metrics import Gauge

PROBE_TIMEOUT_SECONDS = 2.0
PROBE_INTERVAL_SECONDS = 1.0
FAILURES_TO_DOWN = 3
FAILURE_WINDOW_SECONDS = 10.0

Probe = Callable[[float], Awaitable[int]]
"""Asks the upstream's `/health` within a timeout; its status code, or raises `OSError` or
`TimeoutError`."""


@dataclass(frozen=True, slots=True)
class Health:
    """The upstream's state, and why when it is down."""

    up: bool
    reason: str


class HealthProbe:
    """The upstream's verdict from its recent probes and failed connections."""

    def __init__(
        self,
        probe: Probe,
        gauge: Gauge,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probe = probe
        self._gauge = gauge
        self._clock = clock
        self._failures: deque[float] = deque()
        self._state = Health(up=True, reason="ok")
        self._gauge.set(1)

    @property
    def state(self) -> Health:
        return self._state

    async def check(self) -> Health:
        """Probe once and return the verdict."""
        try:
            status = await self._probe(PROBE_TIMEOUT_SECONDS)
        except TimeoutError:
            self.failed(f"upstream health check timed out after {PROBE_TIMEOUT_SECONDS:g} s")
        except OSError as exc:
            self.failed(f"upstream unreachable: {type(exc).__name__}")
        else:
            if status == 200:
                self._failures.clear()
                self._set(Health(up=True, reason="ok"))
            else:
                self.failed(f"upstream /health answered {status}")
        return self._state

    def failed(self, reason: str) -> None:
        """One failed probe, or a proxied request that could not reach the upstream."""
        now = self._clock()
        self._failures.append(now)
        while self._failures and self._failures[0] < now - FAILURE_WINDOW_SECONDS:
            self._failures.popleft()
        if len(self._failures) >= FAILURES_TO_DOWN:
            self._set(Health(up=False, reason=reason))

    async def run(self) -> None:
        """Probe every `PROBE_INTERVAL_SECONDS` until cancelled."""
        while True:
            await asyncio.sleep(PROBE_INTERVAL_SECONDS)
            await self.check()

    def _set(self, health: Health) -> None:
        self._state = health
        self._gauge.set(1 if health.up else 0)
