"""The tenant's available tokens from the reporting API, asked as the pod's own ServiceAccount.

In a cluster the gateway holds no ledger credential: it presents the projected ServiceAccount
token the kubelet mounts for it (re-read on every call, because the kubelet rotates it) to the
reporting API's wallet view, and the API asks the Kubernetes API server (TokenReview, then a
SubjectAccessReview for `get aiinferenceslas` in the namespace) before it answers. What the pod
may see is decided by RBAC, never by the pod: another namespace's wallet is a 404 to it.

The API is reached over HTTPS and its certificate verified against the CA bundle the provider
gives (`ca_file`, mounted from the ConfigMap the operator renders; re-read when the kubelet
updates it, so a rotated CA needs no restart) or, without one, the system's trusted CAs. A
failed handshake is a failed read like any other: the fail-mode policy decides, and the token was
never sent.

`WalletApiReader.reading` is the blocking `read_balance` callable of `LedgerAllowance`, which runs
it in a thread, caches it and applies the fail-mode policy when it raises.
"""

from __future__ import annotations

import ssl
from datetime import datetime
from pathlib import Path

import httpx

from aiconn.gateway.allowance import NOTHING_RECORDED, WalletReading


class WalletUnavailable(Exception):
    """The wallet API did not answer with this tenant's wallet."""


class WalletApiReader:
    """`GET <api>/v1/namespaces/<namespace>/wallet`, the entry of `tenant`, its availableTokens."""

    def __init__(
        self,
        base_url: str,
        *,
        namespace: str,
        tenant: str,
        token_file: Path,
        ca_file: Path | None = None,
        client: httpx.Client | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self._url = f"{base_url.rstrip('/')}/v1/namespaces/{namespace}/wallet"
        self._namespace = namespace
        self._tenant = tenant
        self._token_file = token_file
        self._ca_file = None if client is not None else ca_file
        self._ca_pem: bytes | None = None
        self._timeout_s = timeout_s
        self._client = client or httpx.Client(timeout=timeout_s)

    def _current_client(self) -> httpx.Client:
        """The client, rebuilt when the CA bundle's content changed since the last call."""
        if self._ca_file is None:
            return self._client
        pem = self._ca_file.read_bytes()
        if pem != self._ca_pem:
            context = ssl.create_default_context(cadata=pem.decode())
            self._client.close()
            self._client = httpx.Client(timeout=self._timeout_s, verify=context)
            self._ca_pem = pem
        return self._client

    def __call__(self) -> int | None:
        """The available tokens; None when the tenant's plan pays overage per use (the gateway
        then serves past the wallet: the overage is charged at the period's close)."""
        return self.reading().available

    def reading(self) -> WalletReading:
        """The available tokens (as `__call__`) and up to when the tenant's usage is in them:
        what `LedgerAllowance` reads."""
        token = self._token_file.read_text().strip()
        try:
            response = self._current_client().get(
                self._url, headers={"Authorization": f"Bearer {token}"}
            )
        except httpx.HTTPError as err:
            # The failure's own words (a certificate that does not verify, a refused connection)
            # name no header, so no token reaches the logs.
            raise WalletUnavailable(f"wallet API unreachable: {err}") from err
        if response.status_code != 200:
            # The reason, never the token: this message reaches the logs.
            raise WalletUnavailable(
                f"wallet API answered {response.status_code} for namespace {self._namespace}"
            )
        for wallet in response.json().get("wallets", []):
            if wallet.get("tenant") == self._tenant:
                if wallet.get("overage") == "PayPerUse":
                    return WalletReading(None)
                return WalletReading(int(wallet["availableTokens"]), usage_through=_through(wallet))
        raise WalletUnavailable(f"no wallet of tenant {self._tenant} in {self._namespace}")


def _through(wallet: dict[str, object]) -> datetime | None:
    """The wallet's `usageRecordedThrough`: null says no usage was ever recorded
    (`NOTHING_RECORDED`); a wallet API that predates the field says nothing (None)."""
    if "usageRecordedThrough" not in wallet:
        return None
    through = wallet["usageRecordedThrough"]
    return NOTHING_RECORDED if through is None else datetime.fromisoformat(str(through))
