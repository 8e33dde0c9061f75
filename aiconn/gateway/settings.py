"""The gateway's configuration, from `AICONN_*` environment variables the operator renders.

Defaults for thresholds and rates are the AIInferenceSLA spec's own defaults, so a gateway started
without them enforces and measures what an SLA without them promises.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from aiconn.contracts.gateway_pod import (
    ENV_PREFIX,
    GATEWAY_PORT,
    KEYS_MOUNT_PATH,
    METRICS_PORT,
    UPSTREAM_URL,
    WALLET_TOKEN_FILE,
)
from aiconn.gateway.allowance import FailMode
from aiconn.resources.v1alpha1.sla import Objectives, RateLimit

_OBJECTIVES = Objectives()
_RATE = RateLimit()


class GatewaySettings(BaseSettings):
    """One gateway: one SLA, one model, one vLLM behind it."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX)

    sla: str = ""
    """AIInferenceSLA name (the `sla` label)."""
    namespace: str = ""
    """The SLA's namespace (the `namespace` label)."""
    model: str = "unknown"
    """Served model name (the `model` label); fixed, so clients cannot multiply series."""
    upstream: str = UPSTREAM_URL
    """vLLM's private base URL."""
    listen_host: str = "0.0.0.0"
    """Address the gateway listens on."""
    listen_port: int = Field(default=GATEWAY_PORT, ge=1, le=65535)
    """Port the gateway listens on (the Service's port)."""
    metrics_host: str = "0.0.0.0"
    """Address the metrics port listens on."""
    metrics_port: int = Field(default=METRICS_PORT, ge=1, le=65535)
    """Port of `/metrics`, `/metrics/vllm` and `/health`: Prometheus and the kubelet reach it
    inside the cluster; it is not in the Service, and the client port does not serve metrics."""
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    """Largest request body; beyond it 413, and nothing more of the body is read."""
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    """A connection whose request headers are not complete in this time is closed."""
    body_timeout_seconds: float = Field(default=60.0, gt=0)
    """A request body not complete in this time after its headers is refused with 408."""
    max_connections: int = Field(default=2048, ge=1)
    """Open connections (and requests) beyond this get 503 from the server itself."""
    max_model_len: int | None = Field(default=None, ge=1)
    """The model's context length, the reservation for a request without `max_tokens`; unset
    means read from vLLM's `/v1/models`."""
    keys_dir: Path = Path(KEYS_MOUNT_PATH)
    """Directory of the mounted key Secret; its `keys` file lists sha256 hex digests."""
    ttft_threshold_ms: int = Field(default=_OBJECTIVES.ttft.threshold_ms, ge=1)
    """TTFT objective threshold, added to the TTFT histogram buckets."""
    tpot_threshold_ms: int = Field(default=_OBJECTIVES.tpot.threshold_ms, ge=1)
    """TPOT objective threshold, added to the TPOT histogram buckets."""
    rate_rps: float = Field(default=_RATE.requests_per_second, gt=0)
    """Contracted requests per second (per gateway)."""
    rate_tpm: int = Field(default=_RATE.tokens_per_minute, ge=1)
    """Contracted prompt plus completion tokens per minute (per gateway)."""
    allowance_tokens: int | None = None
    """A static token allowance for this process; unset means the allowance comes from elsewhere."""
    wallet_api_url: str | None = None
    """Reporting API whose wallet view gives the tenant's available tokens (the allowance in a
    cluster), asked with the ServiceAccount token in `wallet_token_file`."""
    wallet_token_file: Path = Path(WALLET_TOKEN_FILE)
    """Projected ServiceAccount token presented to the wallet API (re-read: it rotates)."""
    wallet_ca_file: Path | None = None
    """PEM CA bundle the wallet API's certificate is verified against (the ConfigMap the
    operator renders from the provider's bundle); unset means the system's trusted CAs."""
    wallet_allow_plaintext: bool = False
    """Accept an http:// `wallet_api_url`: a gateway and an API on one host, for development.
    Without it the token would cross the network in the clear, so the gateway refuses to start."""
    ledger_url: str | None = None
    """Ledger (SQLAlchemy URL) read directly for the allowance: single-host setups only, since
    the credential reads every wallet; clusters use `wallet_api_url`."""
    tenant: str = ""
    """Tenant whose wallet the allowance is read from (the SLA's tenant)."""
    allowance_fail_mode: FailMode = "open"
    """When the ledger cannot be read: serve within the grace (open) or refuse (closed)."""
    allowance_grace_seconds: float = Field(default=300.0, ge=0)
    """How long fail mode open serves after the last successful ledger read."""
    upstream_timeout_seconds: float = Field(default=600.0, gt=0)
    """Longest wait for vLLM to connect, or between two reads of its answer."""

    @model_validator(mode="after")
    def _wallet_over_tls(self) -> GatewaySettings:
        url = self.wallet_api_url
        if url and not url.lower().startswith("https://") and not self.wallet_allow_plaintext:
            raise ValueError(
                f"wallet_api_url (AICONN_WALLET_API_URL) {url!r} is not https://: the gateway"
                " presents its ServiceAccount token there; use the API's HTTPS address, or set"
                " AICONN_WALLET_ALLOW_PLAINTEXT=true for an API on the same host"
            )
        return self
