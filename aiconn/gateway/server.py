"""Assembles the gateway into an ASGI app and serves it with uvicorn (`aiconn gateway`).

uvicorn's own `Server` and `Date` headers are off so vLLM's pass through unchanged, and its access
log is off: the gateway's metrics are the record, and a request line is one more place a careless
client could put a key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from aiconn.gateway.allowance import AllowanceSource, LedgerAllowance, StaticAllowance
from aiconn.gateway.health import HealthProbe
from aiconn.gateway.keys import KeyStore
from aiconn.gateway.metrics import GatewayMetrics
from aiconn.gateway.proxy import Gateway
from aiconn.gateway.settings import GatewaySettings
from aiconn.gateway.wallet import WalletApiReader

POOL_LIMITS = httpx.Limits(max_connections=None, max_keepalive_connections=256)


class _Raw:
    """Starlette wraps plain functions as request/response endpoints; this keeps one raw ASGI."""

    def __init__(self, handler: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self._handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._handler(scope, receive, send)


def create_app(settings: GatewaySettings, *, allowance: AllowanceSource | None = None) -> Starlette:
    """The gateway for one SLA; `allowance` defaults to `AICONN_ALLOWANCE_TOKENS` when set."""
    if allowance is None and settings.allowance_tokens is not None:
        allowance = StaticAllowance(settings.allowance_tokens)
    elif allowance is None and settings.wallet_api_url:
        allowance = LedgerAllowance(
            WalletApiReader(
                settings.wallet_api_url,
                namespace=settings.namespace,
                tenant=settings.tenant,
                token_file=settings.wallet_token_file,
            ),
            fail_mode=settings.allowance_fail_mode,
            grace_seconds=settings.allowance_grace_seconds,
        )
    elif allowance is None and settings.ledger_url:
        allowance = _ledger_allowance(settings, settings.ledger_url)
    client = httpx.AsyncClient(
        base_url=settings.upstream,
        limits=POOL_LIMITS,
        timeout=httpx.Timeout(settings.upstream_timeout_seconds),
    )
    # httpx's default User-Agent, Accept and encoding would replace the client's own.
    client.headers = httpx.Headers()
    metrics = GatewayMetrics(
        sla=settings.sla,
        namespace=settings.namespace,
        model=settings.model,
        ttft_threshold_ms=settings.ttft_threshold_ms,
        tpot_threshold_ms=settings.tpot_threshold_ms,
    )
    probe = HealthProbe(client, metrics.upstream_up)
    gateway = Gateway(
        client=client,
        keys=KeyStore(settings.keys_dir),
        metrics=metrics,
        probe=probe,
        rate_rps=settings.rate_rps,
        rate_tpm=settings.rate_tpm,
        allowance=allowance,
    )

    async def health(_: Request) -> Response:
        state = await probe.check()
        if state.up:
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "unavailable", "reason": state.reason}, status_code=503)

    async def vllm_metrics(_: Request) -> Response:
        # vLLM listens on the pod's loopback only; its own metrics (the inference part of the
        # latency split) reach Prometheus through here.
        try:
            upstream = await client.get("/metrics", timeout=5)
        except httpx.HTTPError as err:
            return JSONResponse({"status": "unavailable", "reason": str(err)}, status_code=503)
        return Response(
            upstream.content,
            status_code=upstream.status_code,
            media_type=upstream.headers.get("content-type", CONTENT_TYPE_LATEST),
        )

    async def prometheus(_: Request) -> Response:
        # A scrape refreshes the upstream gauge, so it is never older than the scrape interval.
        await probe.check()
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with client:
            yield

    completions = _Raw(gateway.completions)
    return Starlette(
        routes=[
            Route("/v1/chat/completions", completions, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/models", _Raw(gateway.models), methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/metrics", prometheus, methods=["GET"]),
            Route("/metrics/vllm", vllm_metrics, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def _ledger_allowance(settings: GatewaySettings, url: str) -> LedgerAllowance:
    from aiconn.sla.ledger import Ledger

    ledger: list[Ledger] = []

    def read_balance() -> int:
        # Opened on first use, in the allowance's worker thread, so a ledger that is down at
        # start-up is handled by the fail-mode policy like any later outage.
        if not ledger:
            ledger.append(Ledger.open(url))
        return ledger[0].available_tokens(settings.tenant)

    return LedgerAllowance(
        read_balance,
        fail_mode=settings.allowance_fail_mode,
        grace_seconds=settings.allowance_grace_seconds,
    )


def run(
    settings: GatewaySettings | None = None, *, allowance: AllowanceSource | None = None
) -> None:
    """Serve the gateway until stopped; settings default to the `AICONN_*` environment."""
    settings = settings or GatewaySettings()
    uvicorn.run(
        create_app(settings, allowance=allowance),
        host=settings.listen_host,
        port=settings.listen_port,
        server_header=False,
        date_header=False,
        access_log=False,
    )
