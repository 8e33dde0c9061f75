"""The one Kubernetes client factory that the operator and the reporting API share.

`api_client` is the one place a Kubernetes client is configured. Its precedence, the same for
every caller:

1. an explicit kubeconfig file (the API's `kubeconfig` setting, a test's cluster);
2. else the pod's service account, when running in a pod (`KUBERNETES_SERVICE_HOST` and
   `KUBERNETES_SERVICE_PORT` set, the token and CA files mounted);
3. else the kubeconfig that `KUBECONFIG` names, read at the call (the kubernetes client reads it
   once at import), or the default `~/.kube/config`.
"""

from __future__ import annotations

import os
from pathlib import Path

from kubernetes import client, config

DEFAULT_POOL_SIZE = 32
"""Connections a client keeps to the API server unless its caller says otherwise."""


def api_client(
    kubeconfig: str | Path | None = None,
    *,
    pool_size: int = DEFAULT_POOL_SIZE,
    retries: int | None = None,
) -> client.ApiClient:
    """A client configured by the precedence in the module doc, `pool_size` connections wide;
    `retries` overrides urllib3's retries of a failed connection (0: fail at once)."""
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
    if retries is not None:
        configuration.retries = retries
    return client.ApiClient(configuration)
