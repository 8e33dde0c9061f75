"""The names of aiconn's resources, written once: kind, plural, short names and scope.

Kopf handlers, API clients, RBAC checks and the CRDs address a resource by these names; a string
literal elsewhere would be a second source of truth that could drift from the CRD.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiconn.resources.v1alpha1.meta import API_VERSION, GROUP


@dataclass(frozen=True)
class ResourceKind:
    """One custom resource's names in aiconn.io/v1alpha1."""

    kind: str
    plural: str
    short_names: tuple[str, ...]
    namespaced: bool
    """False: cluster-scoped (the provider's objects, like StorageClass)."""

    @property
    def api_version(self) -> str:
        return API_VERSION

    @property
    def name(self) -> str:
        """The CRD's name, `<plural>.<group>`."""
        return f"{self.plural}.{GROUP}"

    @property
    def scope(self) -> str:
        """The CRD's scope: Namespaced or Cluster."""
        return "Namespaced" if self.namespaced else "Cluster"


SLA = ResourceKind("AIInferenceSLA", "aiinferenceslas", ("aisla",), namespaced=True)
NETWORK_SLICE = ResourceKind("NetworkSlice", "networkslices", ("nslice",), namespaced=True)
OFFER = ResourceKind("AIInferenceOffer", "aiinferenceoffers", ("aioffer",), namespaced=False)
MAINTENANCE_WINDOW = ResourceKind(
    "MaintenanceWindow", "maintenancewindows", ("mw",), namespaced=False
)
TOPUP = ResourceKind("TopUp", "topups", ("topup",), namespaced=True)
TIER = ResourceKind("InferenceTier", "inferencetiers", ("itier",), namespaced=False)

RESOURCE_KINDS: tuple[ResourceKind, ...] = (
    SLA,
    NETWORK_SLICE,
    OFFER,
    MAINTENANCE_WINDOW,
    TOPUP,
    TIER,
)
"""Every kind aiconn serves, in the order the CRDs are rendered."""
