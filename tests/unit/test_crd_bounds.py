"""Every string and list a tenant writes into an AIInferenceSLA is bounded in the CRD itself, so
no value can grow the operator's status, Events or child objects past what etcd accepts."""

from __future__ import annotations

from typing import Any

from aiconn.resources.v1alpha1 import crds
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec
from aiconn.resources.v1alpha1.slice import NetworkSliceSpec


def _unbounded(node: dict[str, Any], path: str) -> list[str]:
    found = []
    kind = node.get("type")
    if kind == "string" and "maxLength" not in node and "enum" not in node:
        found.append(path)
    if kind == "array" and "maxItems" not in node:
        found.append(path)
    if kind == "object" and "properties" not in node and "maxProperties" not in node:
        found.append(path)
    for name, sub in node.get("properties", {}).items():
        found += _unbounded(sub, f"{path}.{name}")
    for key, suffix in (("items", "[*]"), ("additionalProperties", "{*}")):
        if isinstance(node.get(key), dict):
            found += _unbounded(node[key], path + suffix)
    return found


def test_every_sla_spec_string_and_list_is_bounded() -> None:
    assert _unbounded(crds.model_schema(AIInferenceSLASpec, "spec"), "spec") == []


def test_every_network_slice_spec_string_and_list_is_bounded() -> None:
    assert _unbounded(crds.model_schema(NetworkSliceSpec, "spec"), "spec") == []


def test_the_walk_finds_an_unbounded_field() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "array", "items": {"type": "string"}}}}
    assert _unbounded(schema, "spec") == ["spec.a", "spec.a[*]"]


def test_cidrs_and_the_nsmf_url_carry_cel_rules() -> None:
    network = crds.model_schema(AIInferenceSLASpec, "spec")["properties"]["network"]
    cidr = network["properties"]["allowedSources"]["items"]["properties"]["cidr"]
    assert "isCIDR(self)" in cidr["x-kubernetes-validations"][0]["rule"]
    # At the spec's level: an SLA under an offer takes the offer's slice manager instead.
    spec = crds.model_schema(AIInferenceSLASpec, "spec")
    rules = {r.get("fieldPath"): r["rule"] for r in spec["x-kubernetes-validations"]}
    assert "has(self.network.nsmfUrl)" in rules[".network.nsmfUrl"]
    assert "has(self.offer)" in rules[".network.nsmfUrl"]
