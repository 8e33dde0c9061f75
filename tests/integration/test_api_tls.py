"""The wallet API over TLS, with real components: `aiconn api` started as a process with a
certificate (the files of a cert-manager Secret), the real kube-apiserver reviewing the
gateway's projected-audience token, and the gateway built from its settings as the operator
renders them. The gateway reads its wallet when it trusts the API's CA, and refuses to serve
(fail mode closed) when the certificate is another CA's or the URL is plain HTTP; the API answers
nothing in plaintext and will not start without a certificate unless told to serve plain HTTP."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client

from aiconn.api.demo import create_sla
from aiconn.devstack.controlplane import ControlPlane
from aiconn.devstack.gateway import write_keys
from aiconn.devstack.kube import apply_objects
from aiconn.devstack.pki import write_serving_tls
from aiconn.devstack.processes import ProcessGroup, free_port
from aiconn.gateway.server import create_apps
from aiconn.gateway.settings import GatewaySettings
from aiconn.gateway.wallet import WalletApiReader, WalletUnavailable
from aiconn.inference import workload
from aiconn.sla.ledger import Ledger, fund_allowance
from aiconn.sla.periods import period_containing
from aiconn.sla.spec import Window, wallet_owner
from tests.helpers import eventually

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

    eventually(healthy, timeout=60, what="the API serving HTTPS")
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


def gateway_settings(served: Served, **overrides: Any) -> GatewaySettings:
    """The gateway's settings as the operator renders them (aiconn.inference.workload), in fail
    mode closed: a wallet that cannot be read refuses the request."""
    keys = write_keys(served.tmp / "keys", KEY)
    values: dict[str, Any] = {
        "sla": SLA,
        "namespace": served.namespace,
        "tenant": served.tenant,
        "keys_dir": keys,
        "wallet_api_url": served.url,
        "wallet_ca_file": served.ca,
        "wallet_token_file": served.token_file,
        "allowance_fail_mode": "closed",
        **overrides,
    }
    return GatewaySettings.model_validate(values)


def reader(served: Served, *, url: str | None = None, ca: Path | None = None) -> WalletApiReader:
    return WalletApiReader(
        url or served.url,
        namespace=served.namespace,
        tenant=served.tenant,
        token_file=served.token_file,
        ca_file=ca or served.ca,
    )


def completion(settings: GatewaySettings) -> httpx.Response:
    """One request through the gateway's client app; `max_tokens` is set, so admission decides
    without asking vLLM (none runs here): 402 when the wallet is read and short, 503 when the
    allowance cannot be verified."""

    async def send() -> httpx.Response:
        apps = create_apps(settings)
        transport = httpx.ASGITransport(app=apps.client)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as c:
            return await c.post(
                "/v1/chat/completions",
                headers={"Authorization": f"Bearer {KEY}"},
                json={
                    "model": "unknown",
                    "messages": [{"role": "user", "content": "hi"}],
                    "max_tokens": FUNDED + 1,
                },
            )

    return asyncio.run(send())


def test_the_gateway_reads_its_wallet_over_tls_with_the_provider_s_ca(served: Served) -> None:
    assert reader(served)() == FUNDED
    # Through the gateway: the wallet was read (FUNDED tokens), and the request asks for more.
    refused = completion(gateway_settings(served))
    assert refused.status_code == 402, refused.text
    assert refused.json()["error"]["code"] == "insufficient_quota"


def test_a_certificate_from_another_ca_fails_closed(served: Served) -> None:
    with pytest.raises(WalletUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        reader(served, ca=served.other_ca)()
    refused = completion(gateway_settings(served, wallet_ca_file=served.other_ca))
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "allowance_unavailable"


def test_the_system_cas_do_not_trust_the_provider_s_private_ca(served: Served) -> None:
    """Without the provider's bundle the gateway verifies against the system's CAs: a private
    CA's certificate is refused, not accepted unverified."""
    settings = gateway_settings(served, wallet_ca_file=None)
    refused = completion(settings)
    assert refused.status_code == 503, refused.text


def test_a_rotated_ca_bundle_is_picked_up_without_a_restart(served: Served) -> None:
    bundle = served.tmp / "mounted-ca.crt"
    bundle.write_bytes(served.other_ca.read_bytes())
    read = reader(served, ca=bundle)
    with pytest.raises(WalletUnavailable):
        read()
    bundle.write_bytes(served.ca.read_bytes())  # the kubelet updated the ConfigMap's file
    assert read() == FUNDED


def test_the_api_answers_nothing_in_plaintext(served: Served) -> None:
    plain = f"http://127.0.0.1:{served.port}"
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{plain}/healthz")
    # A gateway allowed plaintext for development gets no wallet from it either: it fails closed.
    with pytest.raises(WalletUnavailable, match="unreachable"):
        reader(served, url=plain)()
    refused = completion(
        gateway_settings(served, wallet_api_url=plain, wallet_allow_plaintext=True)
    )
    assert refused.status_code == 503, refused.text


def test_the_gateway_will_not_start_with_a_plain_http_wallet_url(served: Served) -> None:
    with pytest.raises(ValueError, match="AICONN_WALLET_ALLOW_PLAINTEXT"):
        gateway_settings(served, wallet_api_url=f"http://127.0.0.1:{served.port}")


def test_the_api_will_not_serve_plaintext_unless_told_to(tmp_path: Path) -> None:
    started = subprocess.run(
        [sys.executable, "-m", "aiconn.cli", "api"],
        env=_api_env(
            AICONN_API_LEDGER_URL=f"sqlite:///{tmp_path / 'ledger.db'}",
            AICONN_API_PORT=str(free_port()),
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert started.returncode == 2, started.stderr
    assert "AICONN_API_TLS_CERT_FILE" in started.stderr
    assert "AICONN_API_ALLOW_PLAINTEXT" in started.stderr
