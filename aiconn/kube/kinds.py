"""One address for every kind the operator and the API read or write: `KINDS[kind].path(...)`.

A path is built here and nowhere else, the way Kopf's `Resource.get_url` builds it: the core
group under `/api/v1`, every other group under `/apis/<group>/<version>`; a namespaced kind
without a namespace is its collection across the cluster. aiconn's own kinds come from
`aiconn.resources` (their group, version and plural are written once there).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiconn.resources.v1alpha1.kinds import RESOURCE_KINDS


@dataclass(frozen=True)
class Kind:
    api_version: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None, name: str | None = None) -> str:
        """The URL path of the collection, or of the object `name`. A namespaced kind without
        a namespace is its cluster-wide collection (a list across all namespaces); one of its
        objects has no address without a namespace (ValueError)."""
        prefix = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced and namespace is None and name:
            raise ValueError(f"a {self.plural} object needs a namespace: {name!r} has none")
        ns = f"/namespaces/{namespace}" if self.namespaced and namespace is not None else ""
        tail = f"/{name}" if name else ""
        return f"{prefix}{ns}/{self.plural}{tail}"


KINDS: dict[str, Kind] = {
    "Deployment": Kind("apps/v1", "deployments"),
    "Service": Kind("v1", "services"),
    "Pod": Kind("v1", "pods"),
    "Namespace": Kind("v1", "namespaces", namespaced=False),
    "Secret": Kind("v1", "secrets"),
    "ConfigMap": Kind("v1", "configmaps"),
    "ServiceAccount": Kind("v1", "serviceaccounts"),
    "Event": Kind("v1", "events"),
    "Role": Kind("rbac.authorization.k8s.io/v1", "roles"),
    "RoleBinding": Kind("rbac.authorization.k8s.io/v1", "rolebindings"),
    "PodDisruptionBudget": Kind("policy/v1", "poddisruptionbudgets"),
    "NetworkPolicy": Kind("networking.k8s.io/v1", "networkpolicies"),
    "PriorityClass": Kind("scheduling.k8s.io/v1", "priorityclasses", namespaced=False),
    "TokenReview": Kind("authentication.k8s.io/v1", "tokenreviews", namespaced=False),
    "SubjectAccessReview": Kind(
        "authorization.k8s.io/v1", "subjectaccessreviews", namespaced=False
    ),
    **{r.kind: Kind(r.api_version, r.plural, namespaced=r.namespaced) for r in RESOURCE_KINDS},
}
