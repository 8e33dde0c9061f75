"""The one place a connection to the API server is configured, for every caller.

`connect` is what the operator and the reporting API use: the project's lean transport
(`aiconn.kube.transport`). `api_client` is the official client's `ApiClient`, configured the
same way, for the devstack and the tests, which use its typed API; it imports the official
client only when called. Their precedence is the same:

1. an explicit kubeconfig file (the API's `kubeconfig` setting, a test's cluster);
2. else the pod's service account, when running in a pod (`KUBERNETES_SERVICE_HOST` and
   `KUBERNETES_SERVICE_PORT` set, the token and CA files mounted);
3. else the kubeconfig that `KUBECONFIG` names, read at the call (the kubernetes client reads it
   once at import), or the default `~/.kube/config`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from aiconn.kube.transport import Transport, from_kubeconfig, in_cluster

DEFAULT_POOL_SIZE = 32
"""Connections a client keeps to the API server unless its caller says otherwise."""
DEFAULT_KUBECONFIG = "~/.kube/config"


def connect(
    kubeconfig: str | Path | None = None,
    *,
    pool_size: int = DEFAULT_POOL_SIZE,
    retries: int | None = None,
) -> Transport:
    """The project's transport, configured by the precedence in the module doc, `pool_size`
    connections wide; `retries` overrides urllib3's retries of a failed connection (0: fail at
    once)."""
    if kubeconfig is not None:
        credentials = from_kubeconfig(kubeconfig)
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        # In a pod: its ServiceAccount, and an error naming what is missing (the mounted token)
        # rather than a fall-back to a kubeconfig that a pod does not have.
        credentials = in_cluster()
    else:
        # KUBECONFIG may list several files: the first that exists, as kubectl reads contexts.
        named = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
        existing = [p for p in named if Path(p).expanduser().is_file()]
        credentials = from_kubeconfig((existing or named or [DEFAULT_KUBECONFIG])[0])
    return Transport(credentials, pool_size=pool_size, retries=retries)


def api_client(
    kubeconfig: str | Path | None = None,
    *,
    pool_size: int = DEFAULT_POOL_SIZE,
    retries: int | None = None,
) -> Any:
    """The official client's `ApiClient`, configured as `connect` is (for typed calls in the
    devstack and the tests)."""
    from kubernetes import client, config

    configuration = client.Configuration()
    if kubeconfig is not None:
        config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)
    else:
        config.load_kube_config(
            config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration
        )
    configuration.connection_pool_maxsize = pool_size
    if retries is not None:
        configuration.retries = retries
    return client.ApiClient(configuration)
