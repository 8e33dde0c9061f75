"""Small helpers over the Kubernetes client shared by the devstack, tests and the demo:
server-side apply of manifest files and waiting for CRDs to become Established."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from aiconn.devstack.processes import StackError

FIELD_MANAGER = "aiconn-devstack"


def load_documents(paths: Iterable[Path]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in paths:
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def apply_objects(
    api: Any, objects: Iterable[dict[str, Any]], *, namespace: str | None = None
) -> list[str]:
    """Server-side apply each object through the project's one Kubernetes adapter
    (`aiconn.kube.Kube`, which finds a kind it does not know by the API server's discovery);
    return their names. Namespaced objects without a namespace go to `namespace`."""
    from aiconn.kube import Kube

    kube = Kube(api)
    names = []
    for obj in objects:
        meta = obj.setdefault("metadata", {})
        if kube.kind(obj["apiVersion"], obj["kind"]).namespaced:
            meta.setdefault("namespace", namespace or "default")
        kube.apply(obj, field_manager=FIELD_MANAGER)
        names.append(meta["name"])
    return names


def apply_manifests(api: Any, paths: Iterable[Path], *, namespace: str | None = None) -> list[str]:
    return apply_objects(api, load_documents(paths), namespace=namespace)


def service_account_token(api: Any, namespace: str, name: str, *, seconds: int = 86400) -> str:
    """A token of the ServiceAccount `namespace/name` (TokenRequest), valid `seconds`."""
    from kubernetes import client

    request = {"spec": {"expirationSeconds": seconds}}
    answer = client.CoreV1Api(api).create_namespaced_service_account_token(name, namespace, request)
    return str(answer.status.token)


def wait_established(api: Any, names: Iterable[str], *, timeout: float = 60) -> None:
    from kubernetes import client

    ext = client.ApiextensionsV1Api(api)
    deadline = time.monotonic() + timeout
    for name in names:
        while True:
            crd = ext.read_custom_resource_definition(name)
            conditions = {c.type: c.status for c in (crd.status.conditions or [])}
            if conditions.get("Established") == "True":
                break
            if time.monotonic() > deadline:
                raise StackError(f"CRD {name} not Established after {timeout} s: {conditions}")
            time.sleep(0.2)
