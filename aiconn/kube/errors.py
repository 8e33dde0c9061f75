"""The project's own errors for the API server's refusals, so that no library's exception leaks
into the operator's handlers or the API's routes.

`KubeError` (with `NotFound`, `Conflict` and `Gone`) is what the adapter raises when the API
server refuses a request. It is an `ApiException` too, so code that still catches the kubernetes
client's exception (Kopf, the devstack, tests) sees the same error as before, while the
adapter's callers catch the project's types.
"""

from __future__ import annotations

from kubernetes.client.exceptions import ApiException


class KubeError(ApiException):  # type: ignore[misc]
    """The API server refused a request: `status` (the HTTP code), `reason` and `body` as it
    answered them."""

    STATUS: int | None = None

    def __init__(
        self, status: int | None = None, reason: str | None = None, body: str | None = None
    ) -> None:
        super().__init__(status=self.STATUS if status is None else status, reason=reason)
        self.body = body


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


def kube_error(err: ApiException) -> KubeError:
    """`err` as the project's error type (itself when it is one already)."""
    if isinstance(err, KubeError):
        return err
    kind = _BY_STATUS.get(err.status or 0, KubeError)
    translated = kind(status=err.status, reason=err.reason, body=err.body)
    translated.headers = err.headers
    return translated
