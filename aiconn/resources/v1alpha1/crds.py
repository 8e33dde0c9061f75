"""Render the CustomResourceDefinitions from the pydantic models.

One source of truth: the models of this package carry every field's description, default, bound
and CEL rule, and `kinds.py` every resource's names; this module turns their JSON Schema into the
structural OpenAPI v3 schema the API server wants. `aiconn crds --write` regenerates `crds/`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from aiconn.resources.v1alpha1.kinds import (
    MAINTENANCE_WINDOW,
    NETWORK_SLICE,
    OFFER,
    SLA,
    TIER,
    TOPUP,
    ResourceKind,
)
from aiconn.resources.v1alpha1.maintenance import MaintenanceWindowSpec
from aiconn.resources.v1alpha1.meta import API_VERSION, GROUP, VERSION
from aiconn.resources.v1alpha1.offer import PROVIDER_OWNED, AIInferenceOfferSpec
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec, AIInferenceSLAStatus
from aiconn.resources.v1alpha1.slice import NetworkSliceSpec, NetworkSliceStatus
from aiconn.resources.v1alpha1.tier import InferenceTierSpec
from aiconn.resources.v1alpha1.topup import TopUpSpec, TopUpStatus

_DROP = {"title"}


@dataclass(frozen=True)
class CrdInfo:
    """Names and presentation of one custom resource."""

    resource: ResourceKind
    description: str
    spec: type[BaseModel]
    status: type[BaseModel] | None
    printer_columns: tuple[dict[str, str], ...] = field(default=())
    provider_owned: Mapping[str, str] = field(default_factory=dict)
    """Spec fields (dotted paths) the provider owns: rendered without server defaults."""

    @property
    def kind(self) -> str:
        return self.resource.kind

    @property
    def plural(self) -> str:
        return self.resource.plural

    @property
    def name(self) -> str:
        return self.resource.name


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_resolve(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        return _resolve(_merged(target, node, without="$ref"), defs)
    if "allOf" in node and len(node["allOf"]) == 1:
        return _resolve(_merged(node["allOf"][0], node, without="allOf"), defs)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        if len(options) == 1:
            merged = _merged(options[0], node, without="anyOf")
            if merged.get("default", 0) is None:
                del merged["default"]
            return _resolve(merged, defs)
    return {k: _resolve(v, defs) for k, v in node.items() if k not in _DROP}


def _merged(base: dict[str, Any], node: dict[str, Any], *, without: str) -> dict[str, Any]:
    """`base` (what `node[without]` points to) overlaid with the rest of `node`'s keys."""
    return {**base, **{k: v for k, v in node.items() if k != without}}


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _structural(
    node: dict[str, Any], path: str, owned: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Turn a resolved JSON Schema node into a structural OpenAPI v3 node; fields at `owned`
    paths are provider-owned: no server default, and a description saying where they come from."""
    owned = owned or {}
    out: dict[str, Any] = {}
    for key in (
        "description",
        "type",
        "enum",
        "pattern",
        "format",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "minimum",
        "maximum",
        "x-kubernetes-validations",
    ):
        if key in node:
            out[key] = node[key]
    if "exclusiveMinimum" in node:
        out["minimum"], out["exclusiveMinimum"] = node["exclusiveMinimum"], True
    if "exclusiveMaximum" in node:
        out["maximum"], out["exclusiveMaximum"] = node["exclusiveMaximum"], True
    if "const" in node:
        out["enum"] = [node["const"]]
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if path in owned:
        # No server default: the admission policy would take it for the tenant's own choice.
        out["description"] = (
            f"{out.get('description', '')} Provider-owned: with spec.offer set, the value is"
            f" {owned[path]}; a value outside the offer is refused."
        ).strip()
    elif "default" in node:
        # The API server validates a default as written (nested defaults are not applied to
        # it), so object defaults carry every field, as pydantic renders them.
        out["default"] = _without_nulls(node["default"])
    kind = node.get("type")
    if kind == "object":
        props = node.get("properties")
        if props:
            out["properties"] = {
                name: _structural(sub, f"{path}.{name}", owned) for name, sub in props.items()
            }
            if node.get("required"):
                out["required"] = list(node["required"])
        else:
            extra = node.get("additionalProperties", True)
            if extra is True or extra == {}:
                out["x-kubernetes-preserve-unknown-fields"] = True
            else:
                out["additionalProperties"] = _structural(extra, f"{path}[*]", owned)
    elif kind == "array":
        out["items"] = _structural(node["items"], f"{path}[*]", owned)
    if "type" not in out:
        raise ValueError(f"{path}: no type in the rendered schema ({sorted(node)})")
    if not out.get("description") and not path.endswith("[*]"):
        raise ValueError(f"{path}: every field needs a description (a docstring in the model)")
    return out


def model_schema(
    model: type[BaseModel], path: str, owned: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The structural schema of one model, descriptions and CEL rules included."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    resolved = _resolve(raw, defs)
    resolved.setdefault("description", (model.__doc__ or "").strip())
    return _structural(resolved, path, owned)


def render(info: CrdInfo) -> dict[str, Any]:
    """The CustomResourceDefinition object for one resource."""
    spec_schema = model_schema(info.spec, "spec", info.provider_owned)
    properties: dict[str, Any] = {
        "apiVersion": {"type": "string", "description": f"API version: {API_VERSION}."},
        "kind": {"type": "string", "description": f"Kind: {info.kind}."},
        "metadata": {"type": "object"},
        "spec": spec_schema,
    }
    version: dict[str, Any] = {"name": VERSION, "served": True, "storage": True}
    if info.status is not None:
        properties["status"] = model_schema(info.status, "status")
        version["subresources"] = {"status": {}}
    version["schema"] = {
        "openAPIV3Schema": {
            "type": "object",
            "description": info.description,
            "required": ["spec"],
            "properties": properties,
        }
    }
    if info.printer_columns:
        version["additionalPrinterColumns"] = [dict(c) for c in info.printer_columns]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": info.name},
        "spec": {
            "group": GROUP,
            "scope": info.resource.scope,
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": info.kind.lower(),
                "shortNames": list(info.resource.short_names),
                "categories": ["aiconn"],
            },
            "versions": [version],
        },
    }


def _col(name: str, kind: str, path: str, description: str) -> dict[str, str]:
    return {"name": name, "type": kind, "jsonPath": path, "description": description}


_AGE = _col("Age", "date", ".metadata.creationTimestamp", "Age")
_PHASE = _col("Phase", "string", ".status.phase", "Lifecycle phase")


RESOURCES: tuple[CrdInfo, ...] = (
    CrdInfo(
        resource=SLA,
        description="An AI inference service with guaranteed latency and uptime, placed on a "
        "telco tier, measured at the service boundary and paid back in token credits when missed.",
        spec=AIInferenceSLASpec,
        status=AIInferenceSLAStatus,
        provider_owned=PROVIDER_OWNED,
        printer_columns=(
            _col("Tier", "string", ".status.placement.tier", "Chosen inference tier"),
            _col("Model", "string", ".spec.model.name", "Served model"),
            # Strings written rounded by the operator: a number column prints Go's %v of a float.
            _col("Avail", "string", ".status.summary.availability", "Availability this period"),
            _col("Budget", "string", ".status.summary.budget", "Error budget remaining"),
            _col("Credits", "string", ".status.summary.credits", "Credits accrued this period"),
            _col("Compliant", "string", ".status.summary.compliant", "Objectives met so far"),
            _PHASE,
            _AGE,
        ),
    ),
    CrdInfo(
        resource=NETWORK_SLICE,
        description="A network slice (S-NSSAI, 5QI, latency, throughput, isolation) carrying a "
        "tenant's traffic to its inference pods; TS 28.541 attribute names.",
        spec=NetworkSliceSpec,
        status=NetworkSliceStatus,
        printer_columns=(
            _col("SST", "integer", ".spec.sst", "Slice/Service Type"),
            _col("SD", "string", ".spec.sd", "Slice Differentiator"),
            _col("5QI", "integer", ".spec.fiveQI", "5G QoS Identifier"),
            _col("Backend", "string", ".spec.backend", "Realization backend"),
            _PHASE,
            _AGE,
        ),
    ),
    CrdInfo(
        resource=OFFER,
        description="What the provider sells to AI inference SLAs: prices per model class, the "
        "token plan, credit schedules, rate ceilings, slice profiles and tiers. Tenants name an "
        "offer in their SLA's spec.offer and choose within it.",
        spec=AIInferenceOfferSpec,
        status=None,
        printer_columns=(
            _col("Currency", "string", ".spec.currency", "Currency of the prices"),
            _col(
                "Included",
                "integer",
                ".spec.plan.includedTokensPerPeriod",
                "Tokens included per tenant and period",
            ),
            _col("Period", "string", ".spec.plan.period", "Plan period"),
            _AGE,
        ),
    ),
    CrdInfo(
        resource=MAINTENANCE_WINDOW,
        description="Planned maintenance the provider announces for the SLAs of some offers. "
        "Its minutes are excused from availability (neither good, bad nor unknown) only from its "
        "creationTimestamp plus the offer's maintenance.noticeMinutes on, never retroactively; "
        "the spec cannot be changed once created.",
        spec=MaintenanceWindowSpec,
        status=None,
        printer_columns=(
            _col("Start", "string", ".spec.start", "First excused minute (UTC)"),
            _col("End", "string", ".spec.end", "End of the window (UTC, exclusive)"),
            _col("Reason", "string", ".spec.reason", "What is maintained"),
            _AGE,
        ),
    ),
    CrdInfo(
        resource=TOPUP,
        description="Tokens bought beyond the plan for a wallet of this namespace: the operator "
        "posts one ledger transfer per TopUp (keyed by its uid) with who, when and why. Creating "
        "one needs `create` on topups.aiconn.io (ClusterRole aiconn-billing), the same right the "
        "reporting API's top-ups need; the spec cannot be changed once created.",
        spec=TopUpSpec,
        status=TopUpStatus,
        printer_columns=(
            _col("Tokens", "integer", ".spec.tokens", "Tokens credited"),
            _col("Wallet", "string", ".status.wallet", "Wallet credited"),
            _col("By", "string", ".spec.requestedBy", "Who asked"),
            _col("Phase", "string", ".status.phase", "Applied or Refused"),
            _col("Transfer", "string", ".status.transferId", "Ledger transfer"),
            _AGE,
        ),
    ),
    CrdInfo(
        resource=TIER,
        description="A class of GPU sites (edge, regional, cloud) that AI inference SLAs are "
        "placed on.",
        spec=InferenceTierSpec,
        status=None,
        printer_columns=(
            _col("GPU", "string", ".spec.gpu.type", "GPU model"),
            _col("GPUs/Node", "integer", ".spec.gpu.countPerNode", "GPUs per node"),
            _col("MaxB", "number", ".spec.maxModelBillions", "Largest model (billions)"),
            _col("RTTms", "number", ".spec.networkRtt.maxMs", "Highest typical RTT"),
            _col("Price/1M", "number", ".spec.pricePerMillionTokens", "Price per 1M tokens"),
            _AGE,
        ),
    ),
)


def crd_path(root: Path, info: CrdInfo) -> Path:
    return root / f"{info.plural}.yaml"


def render_yaml(info: CrdInfo) -> str:
    header = "# Generated by `aiconn crds --write` from the pydantic models; do not edit.\n"
    return header + yaml.safe_dump(render(info), sort_keys=False, width=100)
