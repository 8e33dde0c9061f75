"""Every status aiconn writes, checked against its typed model where it is written.

The operator writes the status of its own kinds through one adapter (`KubeApi.patch_status`,
`KubeApi.update_status`) and, for a NetworkSlice realized on the first try, through Kopf's
patch; all of them pass the fields through `typed_status` first. A field the model does not
know, or a value of the wrong type, raises here instead of being pruned without a word by the
API server's structural schema (money is a string or integer micro-units there: a float
raises); the camelCase names and the JSON form are the model's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiconn.resources.v1alpha1.kinds import NETWORK_SLICE, SLA, TOPUP
from aiconn.resources.v1alpha1.meta import CamelModel
from aiconn.resources.v1alpha1.sla import AIInferenceSLAStatus
from aiconn.resources.v1alpha1.slice import NetworkSliceStatus
from aiconn.resources.v1alpha1.topup import TopUpStatus

STATUS_MODELS: dict[str, type[CamelModel]] = {
    SLA.kind: AIInferenceSLAStatus,
    NETWORK_SLICE.kind: NetworkSliceStatus,
    TOPUP.kind: TopUpStatus,
}
"""The status model of each aiconn kind that has a status subresource."""


def typed_status(kind: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """`fields` of a `kind`'s status (a merge patch: only the fields given, None clears one) as
    its typed model writes them. An unknown field or a wrong type raises pydantic's
    ValidationError; a kind that is not aiconn's (no model here) is returned as given."""
    model = STATUS_MODELS.get(kind)
    if model is None:
        return dict(fields)
    return model.model_validate(fields).model_dump(by_alias=True, exclude_unset=True, mode="json")
