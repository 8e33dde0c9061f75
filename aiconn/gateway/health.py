"""Is vLLM behind the gateway up? A short probe of its `/health`, cached for about a second.

Kubernetes probes, Prometheus scrapes and the proxy's own connection errors all ask; caching
keeps a burst of them from becoming a burst of upstream calls, and one probe at a time runs.
The answer drives `aiconn_gateway_upstream_up`, which the SLA engine reads as "down".
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx
from prometheus_client.metrics import Gauge

PROBE_TIMEOUT_SECONDS = 1.0
CACHE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Health:
    """The upstream's state, and why when it is down."""

    up: bool
    reason: str


class HealthProbe:
    """Probes `<upstream>/health` at most once per `CACHE_SECONDS`."""

    def __init__(self, client: httpx.AsyncClient, gauge: Gauge) -> None:
        self._client = client
        self._gauge = gauge
        self._lock = asyncio.Lock()
        self._last: Health | None = None
        self._checked_at = 0.0

    async def check(self) -> Health:
        async with self._lock:
            if self._last is None or time.monotonic() - self._checked_at >= CACHE_SECONDS:
                self._set(await self._probe())
            assert self._last is not None
            return self._last

    def mark_down(self, reason: str) -> None:
        """A proxied request could not reach the upstream."""
        self._set(Health(up=False, reason=reason))

    def _set(self, health: Health) -> None:
        self._last, self._checked_at = health, time.monotonic()
        self._gauge.set(1 if health.up else 0)

    async def _probe(self) -> Health:
        try:
            response = await self._client.get("/health", timeout=PROBE_TIMEOUT_SECONDS)
        except httpx.TimeoutException:
            return Health(
                up=False,
                reason=f"upstream health check timed out after {PROBE_TIMEOUT_SECONDS:g} s",
            )
        except httpx.TransportError as exc:
            return Health(up=False, reason=f"upstream unreachable: {type(exc).__name__}")
        if response.status_code != 200:
            return Health(up=False, reason=f"upstream /health answered {response.status_code}")
        return Health(up=True, reason="ok")
