"""The Kubernetes edge that the operator, the reporting API and the dev harness share, written
once: the connection factory (`client.py`) and the transport it configures (`transport.py`), the
project's own error types (`errors.py`), one address per kind (`kinds.py`) and the blocking verbs
every call goes through (`verbs.py`). None of it imports the official client's package.

The operator wraps the verbs in async ones on its own threads (`aiconn.operator.kubeapi`); the
API calls them from its request threads. Callers import these names from here.
"""

from aiconn.kube.client import DEFAULT_POOL_SIZE, api_client, connect
from aiconn.kube.errors import Conflict, Gone, KubeError, NotFound, error_for, kube_error
from aiconn.kube.kinds import KINDS, Kind
from aiconn.kube.transport import KubeconfigError, Transport
from aiconn.kube.verbs import (
    LIST_PAGE,
    Item,
    Keep,
    Kube,
    Query,
    apply_request,
    parse_list,
    read_list,
    without_managed_fields,
)

__all__ = [
    "DEFAULT_POOL_SIZE",
    "KINDS",
    "LIST_PAGE",
    "Conflict",
    "Gone",
    "Item",
    "Keep",
    "Kind",
    "Kube",
    "KubeError",
    "KubeconfigError",
    "NotFound",
    "Query",
    "Transport",
    "api_client",
    "apply_request",
    "connect",
    "error_for",
    "kube_error",
    "parse_list",
    "read_list",
    "without_managed_fields",
]
