"""The gateway pod contract: what the operator renders, the gateway reads and the dev stack starts.

The token gateway is configured only through `AICONN_*` environment variables
(`aiconn.gateway.settings.GatewaySettings`), listens on fixed ports the Service and Prometheus
target, reaches vLLM on the pod's loopback, and reads the SLA's API keys as sha256 digests from
a mounted Secret. The operator (`aiconn.inference.workload`), the gateway and the dev stack
(`aiconn.devstack.stack`) all take these facts from here; `gateway_env` names only settings
the gateway has (a unit test holds it to `GatewaySettings`).
"""

from __future__ import annotations

import hashlib

ENV_PREFIX = "AICONN_"
"""Prefix of the gateway's settings in its environment."""

GATEWAY_PORT = 8000
"""The client port: the Service's target, the only way into the pod."""
GATEWAY_PORT_NAME = "http"
METRICS_PORT = 9100
"""The gateway's `/metrics` and `/metrics/vllm`: scraped in the pod, never in the Service."""
METRICS_PORT_NAME = "metrics"
HEALTH_PATH = "/health"
"""Answered on both ports: ready when vLLM behind the gateway answers."""

VLLM_HOST = "127.0.0.1"
VLLM_PORT = 8001
UPSTREAM_URL = f"http://{VLLM_HOST}:{VLLM_PORT}"
"""vLLM's private base URL: the pod's loopback, so nothing reaches vLLM around the gateway."""

KEYS_MOUNT_PATH = "/etc/aiconn/keys"
"""Where the SLA's key Secret is mounted in the gateway container."""
KEYS_FILE = "keys"
"""The Secret's key, hence the mounted file: SHA-256 hex digests of valid API keys, one a line."""

WALLET_TOKEN_DIR = "/var/run/secrets/aiconn"
WALLET_TOKEN_FILE = f"{WALLET_TOKEN_DIR}/token"
"""The projected ServiceAccount token the gateway presents to the wallet API."""


def hash_key(key: str) -> str:
    """SHA-256 hex of an API key: what the Secret stores and the gateway compares."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def gateway_env(
    *,
    sla: str,
    namespace: str,
    model: str,
    upstream: str,
    listen_port: int,
    metrics_port: int,
    keys_dir: str,
    ttft_threshold_ms: int,
    tpot_threshold_ms: int,
    rate_rps: float,
    rate_tpm: int,
    tenant: str | None = None,
    listen_host: str | None = None,
    metrics_host: str | None = None,
    wallet_api_url: str | None = None,
    wallet_token_file: str | None = None,
    allowance_tokens: int | None = None,
) -> dict[str, str]:
    """The gateway's environment for one SLA; settings left None are not set (their defaults in
    `GatewaySettings` apply)."""
    values: dict[str, object | None] = {
        "sla": sla,
        "namespace": namespace,
        "model": model,
        "upstream": upstream,
        "listen_host": listen_host,
        "listen_port": listen_port,
        "metrics_host": metrics_host,
        "metrics_port": metrics_port,
        "keys_dir": keys_dir,
        "ttft_threshold_ms": ttft_threshold_ms,
        "tpot_threshold_ms": tpot_threshold_ms,
        "rate_rps": f"{rate_rps:g}",
        "rate_tpm": rate_tpm,
        "tenant": tenant,
        "wallet_api_url": wallet_api_url,
        "wallet_token_file": wallet_token_file,
        "allowance_tokens": allowance_tokens,
    }
    return {f"{ENV_PREFIX}{k.upper()}": str(v) for k, v in values.items() if v is not None}
