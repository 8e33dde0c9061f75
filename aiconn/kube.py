"""The Kubernetes edge shared by the operator and the reporting API: the one client factory and
the project's own error types.

`api_client` is the one place a Kubernetes client is configured. Its precedence, the same for
every caller:

1. an explicit kubeconfig file (the API's `kubeconfig` setting, a test's cluster);
2. else the pod's service account, when running in a pod (`KUBERNETES_SERVICE_HOST` and
   `KUBERNETES_SERVICE_PORT` set, the token and CA files mounted);
3. else the kubeconfig that `KUBECONFIG` names, read at the call (the kubernetes client reads it
   once at import), or the default `~/.kube/config`.

`KubeError` (with `NotFound`, `Conflict` and `Gone`) is what the adapter raises when the API
server refuses a request. It is an `ApiException` too, so code that still catches the kubernetes
client's exception (Kopf's, the typed APIs' callers, tests) sees the same error as before, while
the adapter's callers catch the project's types.
"""

from __future__ import annotations

import os
from pathlib import Path

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

DEFAULT_POOL_SIZE = 32
"""Connections a client keeps to the API server unless its caller says otherwise."""


def api_client(
    kubeconfig: str | Path | None = None, *, pool_size: int = DEFAULT_POOL_SIZE
) -> client.ApiClient:
    """A client configured by the precedence in the module doc, `pool_size` connections wide."""
    configuration = client.Configuration()
    if kubeconfig is not None:
        config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        # In a pod: its ServiceAccount, and an error naming what is missing (the mounted token)
        # rather than a fall-back to a kubeconfig that a pod does not have.
        config.load_incluster_config(client_configuration=configuration)
    else:
        config.load_kube_config(
            config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration
        )
    configuration.connection_pool_maxsize = pool_size
    return client.ApiClient(configuration)


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
