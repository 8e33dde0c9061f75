"""/docs (Swagger UI) and /redoc served from installed files, so they work without internet.

FastAPI's default pages load their JavaScript and CSS from a CDN, a favicon from FastAPI's site,
fonts from Google and ask Swagger's online validator about the schema: on an operator's network
without internet /docs is a blank page. The assets come from the `fastapi-offline` wheel, which
ships the Swagger UI and ReDoc distributions; this module only serves them.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs-static"
ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"
# The online validator is another outside call Swagger UI would make.
SWAGGER_PARAMETERS = {"validatorUrl": None}


def install(app: FastAPI) -> None:
    """Serve /docs and /redoc from the package's assets; `app` must have docs_url=None,
    redoc_url=None (FastAPI's CDN pages) and its schema at app.openapi_url."""
    openapi_url = app.openapi_url or "/openapi.json"
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-static")

    # URLs carry the root path, as FastAPI's own pages do, so the pages work behind a prefix.
    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            swagger_ui_parameters=SWAGGER_PARAMETERS,
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
