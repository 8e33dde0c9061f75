"""The tenant's available tokens from the reporting API, asked as the pod's own ServiceAccount.

In a cluster the gateway holds no ledger credential: it presents the projected ServiceAccount
token the kubelet mounts for it (re-read on every call, because the kubelet rotates it) to the
reporting API's wallet view, and the API asks the Kubernetes API server (TokenReview, then a
SubjectAccessReview for `get aiinferenceslas` in the namespace) before it answers. What the pod
may see is decided by RBAC, never by the pod: another namespace's wallet is a 404 to it.

`WalletApiReader` is the blocking `read_balance` callable of `LedgerAllowance`, which runs it in a
thread, caches it and applies the fail-mode policy when it raises.
"""

from __future__ import annotations

from pathlib import Path

import httpx


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
        client: httpx.Client | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self._url = f"{base_url.rstrip('/')}/v1/namespaces/{namespace}/wallet"
        self._namespace = namespace
        self._tenant = tenant
        self._token_file = token_file
        self._client = client or httpx.Client(timeout=timeout_s)

    def __call__(self) -> int | None:
        """The available tokens; None when the tenant's plan pays overage per use (the gateway
        then serves past the wallet: the overage is charged at the period's close)."""
        token = self._token_file.read_text().strip()
        response = self._client.get(self._url, headers={"Authorization": f"Bearer {token}"})
        if response.status_code != 200:
            # The reason, never the token: this message reaches the logs.
            raise WalletUnavailable(
                f"wallet API answered {response.status_code} for namespace {self._namespace}"
            )
        for wallet in response.json().get("wallets", []):
            if wallet.get("tenant") == self._tenant:
                if wallet.get("overage") == "PayPerUse":
                    return None
                return int(wallet["availableTokens"])
        raise WalletUnavailable(f"no wallet of tenant {self._tenant} in {self._namespace}")
