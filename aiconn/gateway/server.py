"""Assembles the gateway into two ASGI apps and serves them with uvicorn (`aiconn gateway`).

The client app (the Service's port) answers the OpenAI routes of `routes.ROUTES` and `/health`;
everything else is an OpenAI-shaped JSON error. The metrics app (`metrics_port`, scraped by
Prometheus inside the cluster, not in the Service) answers `/metrics`, `/metrics/vllm` and
`/health`. Both share one upstream session, so they are served from one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass

import uvicorn
import uvloop
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route as StarletteRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from aiconn.gateway.allowance import (
    NOTHING_RECORDED,
    AllowanceSource,
    LedgerAllowance,
    StaticAllowance,
    WalletReading,
)
from aiconn.gateway.health import HealthProbe
from aiconn.gateway.keys import KeyStore
from aiconn.gateway.metrics import GatewayMetrics
from aiconn.gateway.proxy import Gateway, error_body
from aiconn.gateway.routes import SUPPORTED, route_of
from aiconn.gateway.serving import config, serve_all
from aiconn.gateway.settings import GatewaySettings
from aiconn.gateway.upstream import Upstream, UpstreamError
from aiconn.gateway.wallet import WalletApiReader


@dataclass(frozen=True, slots=True)
class GatewayApps:
    """The two apps of one gateway; serve them from one event loop (`lifespan` opens the
    upstream session and the health prober)."""

    client: ASGIApp
    metrics: ASGIApp
    gateway: Gateway


async def _json(send: Send, status: int, document: object) -> None:
    await _send_json_body(send, status, json.dumps(document).encode())


async def _send_json_body(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _not_served(status: int, scope: Scope) -> bytes:
    what = "method" if status == 405 else "route"
    return error_body(
        message=f"{scope['method']} {scope['path']}: no such {what}; supported: {SUPPORTED}",
        code="not_found" if status == 404 else "method_not_allowed",
        kind="invalid_request_error",
    )


class ClientApp:
    """The client port: a fixed route table, no redirects, JSON errors."""

    def __init__(self, gateway: Gateway, probe: HealthProbe, upstream: Upstream) -> None:
        self._gateway = gateway
        self._probe = probe
        self._upstream = upstream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/health" and scope["method"] == "GET":
            await self._health(send)
            return
        route = route_of(path)
        if route is None or route.method != scope["method"]:
            status = 404 if route is None else 405
            await _send_json_body(send, status, _not_served(status, scope))
            return
        if route.kind == "metered":
            await self._gateway.metered(scope, receive, send, route)
        else:
            await self._gateway.passthrough(scope, receive, send)

    async def _health(self, send: Send) -> None:
        state = self._probe.state
        if state.up:
            await _json(send, 200, {"status": "ok"})
        else:
            await _json(send, 503, {"status": "unavailable", "reason": state.reason})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        prober: asyncio.Task[None] | None = None
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self._upstream.open()
                await self._probe.check()
                prober = asyncio.ensure_future(self._probe.run())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if prober is not None:
                    prober.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await prober
                self._gateway.parser.close()
                await self._upstream.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_apps(
    settings: GatewaySettings, *, allowance: AllowanceSource | None = None
) -> GatewayApps:
    """The gateway for one SLA; `allowance` defaults to `AICONN_ALLOWANCE_TOKENS` when set."""
    if allowance is None and settings.allowance_tokens is not None:
        allowance = StaticAllowance(settings.allowance_tokens)
    elif allowance is None and settings.wallet_api_url:
        allowance = _wallet_allowance(
            settings,
            WalletApiReader(
                settings.wallet_api_url,
                namespace=settings.namespace,
                tenant=settings.tenant,
                token_file=settings.wallet_token_file,
                ca_file=settings.wallet_ca_file,
            ).reading,
        )
    elif allowance is None and settings.ledger_url:
        allowance = _ledger_allowance(settings, settings.ledger_url)
    upstream = Upstream(settings.upstream, timeout_seconds=settings.upstream_timeout_seconds)
    metrics = GatewayMetrics(
        sla=settings.sla,
        namespace=settings.namespace,
        model=settings.model,
        ttft_threshold_ms=settings.ttft_threshold_ms,
        tpot_threshold_ms=settings.tpot_threshold_ms,
    )
    probe = HealthProbe(upstream.health, metrics.upstream_up)
    gateway = Gateway(
        upstream=upstream,
        keys=KeyStore(settings.keys_dir),
        metrics=metrics,
        probe=probe,
        rate_rps=settings.rate_rps,
        rate_tpm=settings.rate_tpm,
        allowance=allowance,
        max_body_bytes=settings.max_body_bytes,
        body_timeout_seconds=settings.body_timeout_seconds,
        max_model_len=settings.max_model_len,
    )

    async def health(_: Request) -> Response:
        state = probe.state
        if state.up:
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "unavailable", "reason": state.reason}, status_code=503)

    async def vllm_metrics(_: Request) -> Response:
        # vLLM listens on the pod's loopback only; its own metrics (the inference part of the
        # latency split) reach Prometheus through here.
        try:
            status, headers, content = await upstream.fetch(
                "GET", "/metrics", body=None, headers=[], timeout=5
            )
        except UpstreamError as err:
            return JSONResponse({"status": "unavailable", "reason": str(err)}, status_code=503)
        content_type = next(
            (value.decode("latin-1") for name, value in headers if name.lower() == b"content-type"),
            CONTENT_TYPE_LATEST,
        )
        return Response(content, status_code=status, media_type=content_type)

    async def prometheus(_: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    metrics_app = Starlette(
        routes=[
            StarletteRoute("/metrics", prometheus, methods=["GET"]),
            StarletteRoute("/metrics/vllm", vllm_metrics, methods=["GET"]),
            StarletteRoute("/health", health, methods=["GET"]),
        ],
    )
    metrics_app.router.redirect_slashes = False
    return GatewayApps(
        client=ClientApp(gateway, probe, upstream), metrics=metrics_app, gateway=gateway
    )


def _ledger_allowance(settings: GatewaySettings, url: str) -> LedgerAllowance:
    from aiconn.sla.plans import overage_mode
    from aiconn.store.ledger import Ledger

    ledger: list[Ledger] = []

    def read_balance() -> WalletReading:
        # Opened on first use, in the allowance's worker thread, so a ledger that is down at
        # start-up is handled by the fail-mode policy like any later outage.
        if not ledger:
            ledger.append(Ledger.open(url))
        if overage_mode(ledger[0], settings.tenant) == "PayPerUse":
            return WalletReading(None)
        # The instant first: usage recorded between the two reads is then in the balance and
        # counted twice (refused early), never forgotten unpaid.
        through = ledger[0].usage_recorded_through(settings.tenant) or NOTHING_RECORDED
        return WalletReading(ledger[0].available_tokens(settings.tenant), usage_through=through)

    return _wallet_allowance(settings, read_balance)


def _wallet_allowance(
    settings: GatewaySettings, read_balance: Callable[[], WalletReading]
) -> LedgerAllowance:
    """The wallet's balance as the allowance, under the settings' fail-mode policy, whichever
    way it is read (the reporting API's wallet route, or the ledger directly)."""
    return LedgerAllowance(
        read_balance,
        fail_mode=settings.allowance_fail_mode,
        grace_seconds=settings.allowance_grace_seconds,
    )


def servers(
    apps: GatewayApps,
    settings: GatewaySettings,
    *,
    client_socket: socket.socket | None = None,
    metrics_socket: socket.socket | None = None,
    **extra: object,
) -> list[tuple[uvicorn.Server, list[socket.socket] | None]]:
    """The client and metrics servers; pass bound sockets to serve on ports chosen elsewhere."""
    hardening = {
        "header_timeout_seconds": settings.header_timeout_seconds,
        "max_connections": settings.max_connections,
    }
    client = config(
        apps.client,
        host=settings.listen_host,
        port=settings.listen_port,
        lifespan="on",
        **hardening,  # type: ignore[arg-type]
        **extra,  # type: ignore[arg-type]
    )
    metrics = config(
        apps.metrics,
        host=settings.metrics_host,
        port=settings.metrics_port,
        lifespan="off",
        **hardening,  # type: ignore[arg-type]
        **extra,  # type: ignore[arg-type]
    )
    return [
        (uvicorn.Server(client), None if client_socket is None else [client_socket]),
        (uvicorn.Server(metrics), None if metrics_socket is None else [metrics_socket]),
    ]


def run(
    settings: GatewaySettings | None = None, *, allowance: AllowanceSource | None = None
) -> None:
    """Serve the gateway until stopped; settings default to the `AICONN_*` environment."""
    settings = settings or GatewaySettings()
    apps = create_apps(settings, allowance=allowance)
    # What is loaded by now lives as long as the process: out of the collector's full passes,
    # which would otherwise walk it all every few thousand requests (a latency spike each).
    gc.freeze()
    # uvloop: the event loop's own work (polling, reads, writes, timers) in C; it was a third
    # of the gateway's CPU per streamed event on asyncio's loop.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve_all(servers(apps, settings)))
