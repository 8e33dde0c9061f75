"""The Kubernetes edge that the operator, the reporting API and the dev harness share, written
once: the client factory (`client.py`), the project's own error types (`errors.py`), one address
per kind (`kinds.py`) and the blocking verbs every call goes through (`verbs.py`).

The operator wraps the verbs in async ones on its own threads (`aiconn.operator.kubeapi`); the
API calls them from its request threads. Callers import these names from here.
"""

from aiconn.kube.client import DEFAULT_POOL_SIZE, api_client
from aiconn.kube.errors import Conflict, Gone, KubeError, NotFound, kube_error
from aiconn.kube.kinds import KINDS, Kind
from aiconn.kube.verbs import (
    LIST_PAGE,
    Item,
    Keep,
    Kube,
    Query,
    apply_request,
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
    "NotFound",
    "Query",
    "api_client",
    "apply_request",
    "kube_error",
    "read_list",
    "without_managed_fields",
]
