"""`aiconn api`: serve the reporting API with uvicorn.

uvicorn's access log is off: it would print query strings, and the logs of an API that
handles bearer tokens are the last place a token-shaped string should land. Requests are
counted by the Prometheus scrape instead.

HTTPS only, unless plaintext is asked for by name (`ApiSettings.serving_tls`): the wallet view
answers inference gateways, and every caller presents a bearer token. A plain-HTTP request to
the HTTPS port fails the handshake; nothing is answered on it. The certificate is read at start:
a renewed Secret takes effect when the pod restarts (cert-manager renews weeks before expiry).
"""

from __future__ import annotations

from typing import Any

import uvicorn
from fastapi import FastAPI

from aiconn.api.app import create_app
from aiconn.api.settings import ApiSettings

_SERVER_OPTIONS: dict[str, Any] = {
    "access_log": False,
    "proxy_headers": False,
    "server_header": False,
}


def app_from_environment() -> FastAPI:
    """The app of one worker process, from the `AICONN_API_*` environment."""
    return create_app(ApiSettings())


def _tls_options(settings: ApiSettings) -> dict[str, Any]:
    tls = settings.serving_tls()
    if tls is None:
        return {}
    cert, key = tls
    return {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}


def run(settings: ApiSettings) -> None:
    """Serve until interrupted. With `workers` > 1, uvicorn starts that many processes, and each
    builds its app from the environment: the settings must have come from there too."""
    options = {**_SERVER_OPTIONS, **_tls_options(settings)}  # refuses unasked plaintext first
    if settings.workers > 1:
        uvicorn.run(
            f"{__name__}:app_from_environment",
            factory=True,
            workers=settings.workers,
            host=settings.host,
            port=settings.port,
            **options,
        )
        return
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        **options,
    )
