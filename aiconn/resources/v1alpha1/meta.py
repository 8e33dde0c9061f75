"""The API group and version, and the pieces every resource model of v1alpha1 shares.

The pydantic models are the single source of truth for the CRDs: `aiconn crds` renders
`crds/*.yaml` from them (descriptions, defaults, bounds and CEL rules included, see `crds.py`),
and a test proves the committed YAML is what the models render.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "aiconn.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


class CamelModel(BaseModel):
    """A model whose JSON names are camelCase, as Kubernetes resources spell them."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )

    def to_k8s(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase, without unset optionals."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    """One `x-kubernetes-validations` entry; `field_path` points the error at a field."""
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def once_each(message: str, key: str | None = None) -> dict[str, str]:
    """The CEL rule that a list holds each item once: no two items with the same `key` field
    (the same value, when `key` is None)."""
    a, b = ("a", "b") if key is None else (f"a.{key}", f"b.{key}")
    return cel(f"self.all(a, self.exists_one(b, {b} == {a}))", message)


def validations(*rules: dict[str, str]) -> dict[str, Any]:
    """`json_schema_extra` carrying CEL rules for a model or field."""
    return {"x-kubernetes-validations": list(rules)}


def with_rules(*rules: dict[str, str]) -> ConfigDict:
    """The `model_config` of a CamelModel whose objects as a whole obey the CEL `rules`."""
    return CamelModel.model_config | ConfigDict(json_schema_extra=validations(*rules))


class Condition(CamelModel):
    """A standard Kubernetes condition (metav1.Condition shape and bounds)."""

    type: str = Field(max_length=316)
    """Condition type: Ready, Placed, SliceReady, InferenceReady or Compliant."""
    status: str = Field(max_length=16)
    """True, False or Unknown."""
    reason: str = Field(max_length=1024)
    """One CamelCase word that says why, for machines."""
    message: str = Field(default="", max_length=32768)
    """A sentence that says why, for people (the operator keeps it under 1024 characters)."""
    last_transition_time: str | None = None
    """When the status last changed (RFC 3339)."""
    observed_generation: int | None = None
    """The spec generation this condition was computed from."""
