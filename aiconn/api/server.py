"""`aiconn api`: serve the reporting API with uvicorn.

uvicorn's access log is off: it would print query strings, and the logs of an API that
handles bearer tokens are the last place a token-shaped string should land. Requests are
counted by the Prometheus scrape instead.
"""

from __future__ import annotations

import uvicorn

from aiconn.api.app import create_app
from aiconn.api.settings import ApiSettings


def run(settings: ApiSettings) -> None:
    """Serve until interrupted."""
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        access_log=False,
        proxy_headers=False,
        server_header=False,
    )
