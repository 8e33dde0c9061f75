"""Error responses shared by the routers, so the OpenAPI schema documents every status sent."""

from __future__ import annotations

from typing import Any

from aiconn.api.models import Problem


def problem(description: str) -> dict[str, Any]:
    """A documented error status: a `Problem` body, and when it is sent."""
    return {"model": Problem, "description": description}


UNAUTHENTICATED: dict[int | str, dict[str, Any]] = {
    401: problem("No bearer token, or one that is not valid."),
    422: problem("A path or query parameter is malformed."),
    503: problem("The Kubernetes API or the ledger is unavailable."),
}
TENANT: dict[int | str, dict[str, Any]] = {
    **UNAUTHENTICATED,
    404: problem("Not found, or not readable by the caller: the two are indistinguishable."),
}
NOC: dict[int | str, dict[str, Any]] = {
    **UNAUTHENTICATED,
    403: problem("The caller may not list SLAs in all namespaces."),
}
WITH_BODY: dict[int | str, dict[str, Any]] = {
    **UNAUTHENTICATED,
    422: problem("The body is malformed (the field is named)."),
}
"""A route that reads a JSON body: its 422 names the body's field as well."""
