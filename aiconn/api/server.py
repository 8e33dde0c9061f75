"""`aiconn api`: serve the reporting API with uvicorn.

uvicorn's access log is off: it would print query strings, and the logs of an API that
handles bearer tokens are the last place a token-shaped string should land. Requests are
counted by the Prometheus scrape instead.
"""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from aiconn.api.app import create_app
from aiconn.api.settings import ApiSettings

_SERVER_OPTIONS = {"access_log": False, "proxy_headers": False, "server_header": False}


def app_from_environment() -> FastAPI:
    """The app of one worker process, from the `AICONN_API_*` environment."""
    return create_app(ApiSettings())


def run(settings: ApiSettings) -> None:
    """Serve until interrupted. With `workers` > 1, uvicorn starts that many processes, and each
    builds its app from the environment: the settings must have come from there too."""
    if settings.workers > 1:
        uvicorn.run(
            f"{__name__}:app_from_environment",
            factory=True,
            workers=settings.workers,
            host=settings.host,
            port=settings.port,
            **_SERVER_OPTIONS,  # type: ignore[arg-type]
        )
        return
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        **_SERVER_OPTIONS,  # type: ignore[arg-type]
    )
