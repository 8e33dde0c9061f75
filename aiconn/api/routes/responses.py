"""Error responses shared by the routers, so the OpenAPI schema documents every status sent."""

from __future__ import annotations

from typing import Any

from aiconn.api.models import Problem

_PROBLEM: dict[str, Any] = {"model": Problem}

UNAUTHENTICATED: dict[int | str, dict[str, Any]] = {
    401: {**_PROBLEM, "description": "No bearer token, or one that is not valid."},
    422: {**_PROBLEM, "description": "A path or query parameter is malformed."},
    503: {**_PROBLEM, "description": "The Kubernetes API or the ledger is unavailable."},
}
TENANT: dict[int | str, dict[str, Any]] = {
    **UNAUTHENTICATED,
    404: {
        **_PROBLEM,
        "description": "Not found, or not readable by the caller: the two are indistinguishable.",
    },
}
NOC: dict[int | str, dict[str, Any]] = {
    **UNAUTHENTICATED,
    403: {**_PROBLEM, "description": "The caller may not list SLAs in all namespaces."},
}
