"""Session fixtures that start real components: the control plane, PostgreSQL, Prometheus and
vLLM are started once per session, on loopback, and fail loudly when they cannot start."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aiconn.devstack.controlplane import ControlPlane

ROOT = Path(__file__).resolve().parents[1]
CRDS = sorted((ROOT / "crds").glob("*.yaml"))


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    path = ROOT / "artifacts"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    cp = ControlPlane(state_dir=tmp_path_factory.mktemp("controlplane"))
    try:
        cp.start(crds=CRDS)
        os.environ["KUBECONFIG"] = str(cp.kubeconfig)
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def k8s(control_plane: ControlPlane) -> Iterator[Any]:
    """An admin ApiClient of the real API server."""
    api = control_plane.api_client()
    yield api
    api.close()


@pytest.fixture
def namespace(k8s: Any) -> Iterator[str]:
    """A namespace of its own for each test, deleted afterwards."""
    from kubernetes import client

    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(k8s)
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)
