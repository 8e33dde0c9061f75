"""Only the provider writes what decides money: no ClusterRole aiconn ships (the operator's, the
API's, any aggregated into a tenant's edit role) may write offers or maintenance windows.
Reading them is what the operator and the API need; writing is the provider's own admin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
PROVIDER_OWNED = {"aiinferenceoffers", "maintenancewindows"}
WRITES = {"create", "update", "patch", "delete", "deletecollection", "*"}


def _rules() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted((ROOT / "manifests").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") in ("ClusterRole", "Role"):
                name = f"{path.relative_to(ROOT)}:{doc['metadata']['name']}"
                found += [(name, rule) for rule in doc.get("rules") or []]
    return found


def test_no_shipped_role_writes_offers_or_maintenance_windows() -> None:
    rules = _rules()
    assert any(PROVIDER_OWNED & set(r.get("resources", [])) for _, r in rules), "roles not found"
    for name, rule in rules:
        resources = set(rule.get("resources", []))
        if "aiconn.io" not in rule.get("apiGroups", []) and "*" not in rule.get("apiGroups", []):
            continue
        if resources & (PROVIDER_OWNED | {"*"}):
            assert not WRITES & set(rule.get("verbs", [])), (name, rule)
