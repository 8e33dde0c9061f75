"""The project's own errors for the API server's refusals, so that no library's exception leaks
into the operator's handlers or the API's routes.

`KubeError` (with `NotFound`, `Conflict` and `Gone`) is what the adapter raises when the API
server refuses a request, whichever client carried it: the project's transport
(`aiconn.kube.transport`) or, in the devstack and the tests, the official client (whose
`ApiException` is translated by `kube_error`).
"""

from __future__ import annotations

from typing import Any


class KubeError(Exception):
    """The API server refused a request: `status` (the HTTP code), `reason` and `body` as it
    answered them, and its `headers`."""

    STATUS: int | None = None

    def __init__(
        self,
        status: int | None = None,
        reason: str | None = None,
        body: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = self.STATUS if status is None else status
        self.reason = reason
        self.body = body
        self.headers = headers
        super().__init__(self.status, reason)

    def __str__(self) -> str:
        detail = f"({self.status})\nReason: {self.reason}\n"
        if self.body:
            detail += f"HTTP response body: {self.body}\n"
        return detail


class NotFound(KubeError):
    """404: the object (or its collection) is not there."""

    STATUS = 404


class Conflict(KubeError):
    """409: the object exists already, or changed since the resourceVersion a write carried."""

    STATUS = 409


class Gone(KubeError):
    """410: a list's continue token (or a watch's resourceVersion) expired."""

    STATUS = 410


_BY_STATUS: dict[int, type[KubeError]] = {404: NotFound, 409: Conflict, 410: Gone}


def error_for(
    status: int | None,
    *,
    reason: str | None = None,
    body: str | None = None,
    headers: dict[str, str] | None = None,
) -> KubeError:
    """The error for a refusal with this status (`NotFound`, `Conflict`, `Gone` or `KubeError`)."""
    return _BY_STATUS.get(status or 0, KubeError)(
        status=status, reason=reason, body=body, headers=headers
    )


def kube_error(err: Any) -> KubeError:
    """`err` (the official client's `ApiException`, or one of ours) as the project's error type."""
    if isinstance(err, KubeError):
        return err
    headers = err.headers
    return error_for(
        err.status,
        reason=err.reason,
        body=err.body,
        headers=dict(headers) if headers is not None else None,
    )
