"""The reporting API as an ASGI app: `create_app(settings)` wires ledger, SLA reader and auth.

Tests and the benchmark pass their own ledger or Kubernetes client; anything not passed is built
from the settings and closed when the app shuts down. The SLA cache's refresh thread runs for the
app's lifetime (started and stopped by the lifespan).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from aiconn.api import docs, errors
from aiconn.api.auth import Authorizer
from aiconn.api.deps import AppParts
from aiconn.api.kubeauth import KubernetesAuthorizer
from aiconn.api.metrics import fleet_registry
from aiconn.api.routes import (
    assurance,
    evidence,
    export,
    fleet,
    health,
    noc,
    prices,
    review,
    tenant,
    topups,
)
from aiconn.api.routes.noc import STATIC_DIR
from aiconn.api.settings import ApiSettings
from aiconn.api.slas import CachedSLAReader, DirectSLAReader, SLAReader
from aiconn.api.staticauth import StaticAuthorizer
from aiconn.kube import connect
from aiconn.store.ledger import Ledger

# Route handlers run in a thread pool and share one Kubernetes client.
KUBE_POOL_SIZE = 32


def kube_client(settings: ApiSettings) -> Any:
    """The API's own connection to Kubernetes: the kubeconfig in the settings, else in-cluster,
    else KUBECONFIG (`aiconn.kube.connect`)."""
    return connect(settings.kubeconfig, pool_size=KUBE_POOL_SIZE)


def _authorizer(settings: ApiSettings, kube: Any) -> Authorizer:
    if settings.auth_mode == "static":
        assert settings.static_tokens_file is not None  # the settings validator guarantees it
        return StaticAuthorizer.from_file(settings.static_tokens_file)
    return KubernetesAuthorizer(
        kube,
        cache_seconds=settings.auth_cache_seconds,
        cache_size=settings.auth_cache_size,
        audience=settings.token_audience,
        accept_default_audience=settings.accept_default_audience,
    )


def create_app(settings: ApiSettings, *, ledger: Ledger | None = None, kube: Any = None) -> FastAPI:
    """The app; `ledger` and `kube` (an ApiClient) default to ones built from `settings`."""
    owned_ledger = ledger is None
    owned_kube = kube is None
    the_ledger = Ledger.open(settings.ledger_url) if ledger is None else ledger
    the_kube = kube_client(settings) if kube is None else kube
    direct = DirectSLAReader(the_kube)
    cache = (
        CachedSLAReader(direct, seconds=settings.sla_cache_seconds)
        if settings.sla_cache_seconds > 0
        else None
    )
    reader: SLAReader = cache if cache is not None else direct

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if cache is not None:
            cache.start()
        try:
            yield
        finally:
            if cache is not None:
                cache.stop()
            if owned_ledger:
                the_ledger.close()
            if owned_kube:
                the_kube.close()

    app = FastAPI(
        title="aiconn reporting API",
        version="1",
        summary="SLA reports, credits and wallet statements for tenants; the fleet for the NOC.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.parts = AppParts(
        settings=settings,
        ledger=the_ledger,
        reader=reader,
        authorizer=_authorizer(settings, the_kube),
        registry=fleet_registry(reader),
        kube=the_kube,
    )
    errors.install(app)
    docs.install(app)
    for router in (
        tenant.router,
        evidence.router,
        review.router,
        topups.router,
        prices.router,
        export.router,
        fleet.router,
        health.router,
        noc.router,
    ):
        app.include_router(router)
    app.include_router(assurance.router)
    app.mount("/noc/static", StaticFiles(directory=STATIC_DIR), name="noc-static")
    return app
