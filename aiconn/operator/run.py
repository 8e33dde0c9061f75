"""`aiconn operator`: the `kopf run` equivalent with the product's settings."""

from __future__ import annotations

import asyncio
import logging

import kopf

from aiconn.operator.settings import OperatorSettings


def run(*, verbose: bool = False) -> None:
    settings = OperatorSettings()
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    import aiconn.operator.handlers  # noqa: F401  (registers the handlers)

    namespaces = settings.namespaces or None
    asyncio.run(
        kopf.operator(
            clusterwide=namespaces is None,
            namespaces=namespaces or [],
            standalone=True,
            liveness_endpoint=(
                f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None
            ),
        )
    )
