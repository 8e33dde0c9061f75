"""The wallet API over TLS, with real components: `aiconn api` started as a process with a
certificate (the files of a cert-manager Secret), the real kube-apiserver reviewing the
gateway's projected-audience token, and the gateway built from its settings as the operator
renders them. The gateway reads its wallet when it trusts the API's CA, and refuses to serve
(fail mode closed) when the certificate is another CA's or the URL is plain HTTP; the API answers
nothing in plaintext and will not start without a certificate unless told to serve plain HTTP."""

from __future__ import annotations

import os
import ssl
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client

from aiconn.devstack.controlplane import ControlPlane
from aiconn.devstack.gateway import write_keys
from aiconn.devstack.kube import apply_objects
from aiconn.devstack.pki import write_serving_tls
from aiconn.devstack.processes import ProcessGroup, free_port
from aiconn.gateway.allowance import NOTHING_RECORDED, WalletReading
from aiconn.gateway.wallet import WalletApiReader, WalletUnavailable
from aiconn.inference import workload
from aiconn.resources.v1alpha1.sla import Window
from aiconn.sla.periods import period_containing
from aiconn.sla.settlement import fund_allowance
from aiconn.sla.wallets import wallet_owner
from aiconn.store.ledger import Ledger
from tests.helpers import aiconn_cli, eventually
from tests.seeding import create_sla

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SLA = "chat"
KEY = "aic_tls-test-key"
FUNDED = 1234


@dataclass(frozen=True)
class Served:
    url: str
    """https://127.0.0.1:<port> of the running API."""
    port: int
    ca: Path
    """The CA that signed the API's certificate."""
    other_ca: Path
    """A CA that did not."""
    namespace: str
    tenant: str
    token_file: Path
    """A token of the SLA's gateway ServiceAccount, for the API's own audience."""
    tmp: Path


def _api_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


@pytest.fixture
def served(
    control_plane: ControlPlane,
    k8s: Any,
    namespace: str,
    tmp_path: Path,
    groups: list[ProcessGroup],
) -> Iterator[Served]:
    uid = create_sla(k8s, namespace, SLA, tenant="tenant-a", index=0)
    owner = {"apiVersion": "aiconn.io/v1alpha1", "kind": "AIInferenceSLA", "name": SLA, "uid": uid}
    apply_objects(
        k8s,
        [
            build(sla_name=SLA, namespace=namespace, owner=owner)
            for build in (
                workload.gateway_service_account,
                workload.gateway_role,
                workload.gateway_role_binding,
            )
        ],
    )
    token = client.CoreV1Api(k8s).create_namespaced_service_account_token(
        workload.child_names(SLA).gateway_identity,
        namespace,
        {"spec": {"audiences": [workload.WALLET_TOKEN_AUDIENCE], "expirationSeconds": 600}},
    )
    token_file = tmp_path / "token"
    token_file.write_text(token.status.token)

    tenant = wallet_owner(namespace, "tenant-a")
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = Ledger.open(ledger_url)
    period = period_containing(Window(duration="1M", calendar_aligned=True), datetime.now(UTC))
    fund_allowance(
        ledger,
        sla_uid=uid,
        namespace=namespace,
        name=SLA,
        tenant=tenant,
        period=period,
        tokens=FUNDED,
    )
    ledger.close()

    tls = write_serving_tls(tmp_path / "api-tls", common_name="aiconn-api")
    other = write_serving_tls(tmp_path / "other-tls", common_name="aiconn-api")
    port = free_port()
    group = ProcessGroup(tmp_path / "procs")
    groups.append(group)
    api = group.start(
        "api",
        [sys.executable, "-m", "aiconn.cli", "api"],
        env=_api_env(
            AICONN_API_LEDGER_URL=ledger_url,
            AICONN_API_KUBECONFIG=str(control_plane.kubeconfig),
            AICONN_API_PORT=str(port),
            AICONN_API_TLS_CERT_FILE=str(tls["tls.crt"]),
            AICONN_API_TLS_KEY_FILE=str(tls["tls.key"]),
            AICONN_API_AUTH_CACHE_SECONDS="0",
            AICONN_API_SLA_CACHE_SECONDS="0",
        ),
    )
    url = f"https://127.0.0.1:{port}"
    trusted = ssl.create_default_context(cafile=tls["ca.crt"])

    def healthy() -> bool | None:
        api.ensure_alive()
        try:
            return httpx.get(f"{url}/healthz", verify=trusted).status_code == 200 or None
        except httpx.TransportError:
            return None

    eventually(healthy, what="the API serving HTTPS")
    yield Served(
        url=url,
        port=port,
        ca=tls["ca.crt"],
        other_ca=other["ca.crt"],
        namespace=namespace,
        tenant=tenant,
        token_file=token_file,
        tmp=tmp_path,
    )


def gateway_env(served: Served, **overrides: str) -> dict[str, str]:
    """The gateway's environment as the operator renders it (aiconn.inference.workload), in fail
    mode closed: a wallet that cannot be read refuses the request. Its vLLM is a port nobody
    listens on: every request here is decided at admission."""
    keys = write_keys(served.tmp / "keys", KEY)
    return {
        "AICONN_SLA": SLA,
        "AICONN_NAMESPACE": served.namespace,
        "AICONN_TENANT": served.tenant,
        "AICONN_KEYS_DIR": str(keys),
        "AICONN_UPSTREAM": f"http://127.0.0.1:{free_port()}",
        "AICONN_WALLET_API_URL": served.url,
        "AICONN_WALLET_CA_FILE": str(served.ca),
        "AICONN_WALLET_TOKEN_FILE": str(served.token_file),
        "AICONN_ALLOWANCE_FAIL_MODE": "closed",
        **overrides,
    }


def reader(served: Served, *, url: str | None = None, ca: Path | None = None) -> WalletApiReader:
    return WalletApiReader(
        url or served.url,
        namespace=served.namespace,
        tenant=served.tenant,
        token_file=served.token_file,
        ca_file=ca or served.ca,
    )


def completion(
    served: Served, groups: list[ProcessGroup], *, without: tuple[str, ...] = (), **overrides: str
) -> httpx.Response:
    """One request through a real `aiconn gateway` process. `max_tokens` asks for more than the
    wallet holds: 402 when the wallet was read, 503 when the allowance cannot be verified."""
    port, metrics = free_port(), free_port()
    env = {k: v for k, v in gateway_env(served, **overrides).items() if k not in without}
    env |= {
        "AICONN_LISTEN_HOST": "127.0.0.1",
        "AICONN_LISTEN_PORT": str(port),
        "AICONN_METRICS_HOST": "127.0.0.1",
        "AICONN_METRICS_PORT": str(metrics),
    }
    group = ProcessGroup(served.tmp / f"gateway-{port}")
    groups.append(group)
    gateway = group.start(
        "gateway", [sys.executable, "-m", "aiconn.cli", "gateway"], env=_api_env(**env)
    )

    def listening() -> bool | None:
        gateway.ensure_alive()
        try:
            return httpx.get(f"http://127.0.0.1:{metrics}/metrics").status_code == 200 or None
        except httpx.TransportError:
            return None

    eventually(listening, what="the gateway listening")
    try:
        return httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            headers={"Authorization": f"Bearer {KEY}"},
            json={
                "model": "unknown",
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": FUNDED + 1,
            },
            timeout=30,
        )
    finally:
        group.stop_all()


def test_the_gateway_reads_its_wallet_over_tls_with_the_provider_s_ca(
    served: Served, groups: list[ProcessGroup]
) -> None:
    assert reader(served)() == FUNDED
    # No usage was ever recorded in it: the API says so (null), and the gateway keeps every
    # token it meters counted against the balance.
    assert reader(served).reading() == WalletReading(FUNDED, usage_through=NOTHING_RECORDED)
    # Through the gateway: the wallet was read (FUNDED tokens), and the request asks for more.
    refused = completion(served, groups)
    assert refused.status_code == 402, refused.text
    assert refused.json()["error"]["code"] == "insufficient_quota"


def test_a_certificate_from_another_ca_fails_closed(
    served: Served, groups: list[ProcessGroup]
) -> None:
    with pytest.raises(WalletUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        reader(served, ca=served.other_ca)()
    refused = completion(served, groups, AICONN_WALLET_CA_FILE=str(served.other_ca))
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "allowance_unavailable"


def test_the_system_cas_do_not_trust_the_provider_s_private_ca(
    served: Served, groups: list[ProcessGroup]
) -> None:
    """Without the provider's bundle the gateway verifies against the system's CAs: a private
    CA's certificate is refused, not accepted unverified."""
    refused = completion(served, groups, without=("AICONN_WALLET_CA_FILE",))
    assert refused.status_code == 503, refused.text


def test_a_rotated_ca_bundle_is_picked_up_without_a_restart(served: Served) -> None:
    bundle = served.tmp / "mounted-ca.crt"
    bundle.write_bytes(served.other_ca.read_bytes())
    read = reader(served, ca=bundle)
    with pytest.raises(WalletUnavailable):
        read()
    bundle.write_bytes(served.ca.read_bytes())  # the kubelet updated the ConfigMap's file
    assert read() == FUNDED


def test_the_api_answers_nothing_in_plaintext(served: Served, groups: list[ProcessGroup]) -> None:
    plain = f"http://127.0.0.1:{served.port}"
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{plain}/healthz")
    # A gateway allowed plaintext for development gets no wallet from it either: it fails closed.
    with pytest.raises(WalletUnavailable, match="unreachable"):
        reader(served, url=plain)()
    refused = completion(
        served, groups, AICONN_WALLET_API_URL=plain, AICONN_WALLET_ALLOW_PLAINTEXT="true"
    )
    assert refused.status_code == 503, refused.text


def test_the_gateway_will_not_start_with_a_plain_http_wallet_url(served: Served) -> None:
    env = gateway_env(served, AICONN_WALLET_API_URL=f"http://127.0.0.1:{served.port}")
    started = aiconn_cli("gateway", env=env, timeout=60)
    assert started.returncode != 0
    assert "AICONN_WALLET_ALLOW_PLAINTEXT" in started.stderr, started.stderr[-2000:]


def test_the_api_will_not_serve_plaintext_unless_told_to(tmp_path: Path) -> None:
    started = aiconn_cli(
        "api",
        env={
            "AICONN_API_LEDGER_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
            "AICONN_API_PORT": str(free_port()),
        },
        timeout=60,
    )
    assert started.returncode == 2, started.stderr
    assert "AICONN_API_TLS_CERT_FILE" in started.stderr
    assert "AICONN_API_ALLOW_PLAINTEXT" in started.stderr
