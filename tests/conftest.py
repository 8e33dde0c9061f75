"""Session fixtures that start real components: the control plane, PostgreSQL, Prometheus and
vLLM are started once per session, on loopback, and fail loudly when they cannot start.

Under pytest-xdist (`make test`) a session is one worker: each worker starts its own, on ports no
other worker can pick (`AICONN_PORT_SLOT`) and in state dirs of its own, and stops them when it
ends. How the files are spread over the workers: tests/parallel.py."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aiconn.devstack.controlplane import ControlPlane
from aiconn.devstack.postgres import PostgresServer
from aiconn.devstack.processes import ProcessGroup
from aiconn.devstack.prometheus import (
    PrometheusServer,
    ScrapeTarget,
    prometheus3_binary,
    prometheus_binary,
)
from aiconn.devstack.vllm import VllmServer, make_tiny_model

ROOT = Path(__file__).resolve().parents[1]
CRDS = sorted((ROOT / "crds").glob("*.yaml"))
SAMPLES = ROOT / "manifests" / "samples"


def pytest_configure(config: pytest.Config) -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is not None:
        # gw0 .. gwN-1: worker i gets only ports of slot i of N from free_port().
        slots = os.environ["PYTEST_XDIST_WORKER_COUNT"]
        os.environ["AICONN_PORT_SLOT"] = f"{worker.removeprefix('gw')}/{slots}"
    if config.pluginmanager.hasplugin("xdist"):
        from tests.parallel import XdistScheduling

        config.pluginmanager.register(XdistScheduling(), "aiconn-xdist-scheduling")


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    path = ROOT / "artifacts"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    cp = ControlPlane(state_dir=tmp_path_factory.mktemp("controlplane"))
    previous = os.environ.get("KUBECONFIG")
    try:
        cp.start(crds=CRDS)
        os.environ["KUBECONFIG"] = str(cp.kubeconfig)
        yield cp
    finally:
        cp.stop()
        if previous is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = previous


@pytest.fixture(scope="module")
def kwok_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A cluster that schedules: control plane, kube-scheduler and KWOK, one node per site of every
    shipped tier, with the sample tiers and offers installed. One per module: its tests fill
    sites and take nodes down."""
    from aiconn.devstack.cluster import Cluster
    from aiconn.devstack.kube import apply_objects, load_documents
    from aiconn.inference.placement import default_tiers

    started = Cluster(state_dir=tmp_path_factory.mktemp("cluster"))
    try:
        started.start(crds=CRDS)
        api = started.api_client()
        apply_objects(api, load_documents([SAMPLES / "tiers.yaml", SAMPLES / "offers.yaml"]))
        api.close()
        started.add_simulated_nodes(default_tiers())
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def kwok_k8s(kwok_cluster: Any) -> Iterator[Any]:
    """An admin ApiClient of the module's KWOK cluster."""
    from tests.helpers import admin_api

    yield from admin_api(kwok_cluster)


@pytest.fixture(scope="session")
def k8s(control_plane: ControlPlane) -> Iterator[Any]:
    """An admin ApiClient of the real API server."""
    from tests.helpers import admin_api

    yield from admin_api(control_plane)


@pytest.fixture
def namespace(k8s: Any) -> Iterator[str]:
    """A namespace of its own for each test, deleted afterwards."""
    from tests.helpers import fresh_namespace

    with fresh_namespace(k8s) as name:
        yield name


@pytest.fixture(scope="session")
def services_dir() -> Iterator[Path]:
    """State of the session's services. World-traversable: PostgreSQL runs as `postgres`."""
    path = Path(tempfile.mkdtemp(prefix="aiconn-test-"))
    path.chmod(0o755)
    yield path


@pytest.fixture
def groups() -> Iterator[list[ProcessGroup]]:
    """Process groups a test starts (backfilled Prometheus servers); all stopped after it."""
    started: list[ProcessGroup] = []
    yield started
    for group in started:
        group.stop_all()


@pytest.fixture(scope="session")
def postgres(services_dir: Path) -> Iterator[PostgresServer]:
    group = ProcessGroup(services_dir / "postgres")
    server = PostgresServer(group=group, data_dir=services_dir / "postgres" / "data")
    try:
        yield server.start()
    finally:
        group.stop_all()


@pytest.fixture(scope="session")
def postgres_url(postgres: PostgresServer) -> str:
    """URL of a real PostgreSQL database (Debian's server, started for this session)."""
    return postgres.url


@pytest.fixture(scope="session")
def tiny_model(services_dir: Path) -> Path:
    return make_tiny_model(services_dir / "tiny-model")


@pytest.fixture(scope="session")
def vllm_group(services_dir: Path) -> Iterator[ProcessGroup]:
    group = ProcessGroup(services_dir / "vllm")
    yield group
    group.stop_all()


@pytest.fixture(scope="session")
def vllm_server(vllm_group: ProcessGroup, tiny_model: Path) -> Iterator[VllmServer]:
    """A real vLLM (CPU build) serving the tiny model; tests that stop it must start it again."""
    server = VllmServer(group=vllm_group, model_dir=tiny_model).start()
    yield server
    server.stop()


PROMETHEUS_BINARIES = {"prom2": prometheus_binary, "prom3": prometheus3_binary}


@pytest.fixture(scope="module", params=sorted(PROMETHEUS_BINARIES))
def prometheus_bin(request: pytest.FixtureRequest) -> Path:
    """Each Prometheus the SLA engine must agree with: Debian's 2.x and 3.x built from its Go
    module. A test whose claim rests on Prometheus's semantics (range edges, counters, buckets)
    takes this fixture and runs once on each; a missing binary fails it, never skips it."""
    return PROMETHEUS_BINARIES[request.param]()


@pytest.fixture
def prometheus_factory(services_dir: Path) -> Iterator[Any]:
    """Start a real Prometheus scraping given targets: `prometheus_factory(targets)`."""
    started: list[ProcessGroup] = []

    def start(targets: list[ScrapeTarget], *, scrape_interval: str = "1s") -> PrometheusServer:
        group = ProcessGroup(Path(tempfile.mkdtemp(dir=services_dir, prefix="prom-")))
        started.append(group)
        return PrometheusServer(
            group=group,
            data_dir=group.state_dir / "data",
            targets=targets,
            scrape_interval=scrape_interval,
        ).start()

    yield start
    for group in started:
        group.stop_all()
