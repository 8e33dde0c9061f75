"""uvicorn, hardened for a port tenants reach, and the two ports the gateway serves.

uvicorn arms no timer before a request's headers are complete, so a connection that sends half a
request line is held forever; `header_timeout_protocol` closes it after `header_timeout_seconds`.
The connection cap is uvicorn's `limit_concurrency` (a 503 beyond it). uvicorn's own `Server` and
`Date` headers and its access log are off: a request line is one more place a careless client
could put a key.

The client port serves the OpenAI routes; the metrics port (`/metrics`, `/metrics/vllm`, `/health`)
is for Prometheus and the kubelet inside the cluster, never the Service.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def header_timeout_protocol(header_timeout_seconds: float) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol that closes a connection whose headers do not arrive in
    time (from connection or from a request's first byte)."""

    class HeaderTimeoutProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._header_timer is None:
                self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._header_timer = self.loop.call_later(header_timeout_seconds, self._expire)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _expire(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutProtocol


def config(
    app: ASGIApp,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    header_timeout_seconds: float,
    max_connections: int | None,
    **extra: Any,
) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=header_timeout_protocol(header_timeout_seconds),
        limit_concurrency=max_connections,
        # The gateway reads no client address; X-Forwarded-* would only be parsed for nothing.
        proxy_headers=False,
        server_header=False,
        date_header=False,
        access_log=False,
        **extra,
    )


async def serve_all(servers: Sequence[tuple[uvicorn.Server, list[socket.socket] | None]]) -> None:
    """Serve every server in this event loop until one stops; then stop them all."""
    tasks = [asyncio.ensure_future(server.serve(sockets=sockets)) for server, sockets in servers]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for server, _ in servers:
            server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
