"""Settings of the reporting API, read from the environment (prefix `AICONN_API_`).

Authentication is a deliberate choice, never a fallback: `kubernetes` (TokenReview and
SubjectAccessReview, the default and what the manifests deploy) or `static`, which must be named
explicitly together with its token file and exists for a laptop without a cluster's RBAC.

So is plaintext: the API serves HTTPS with the certificate and key it is given (the manifests
mount them from the `aiconn-api-tls` Secret); bearer tokens and wallets never cross the network
in the clear unless `allow_plaintext` is set, for a process on loopback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from aiconn.inference.workload import WALLET_TOKEN_AUDIENCE


class ApiSettings(BaseSettings):
    """How the API listens, where its ledger is, and how it checks callers."""

    model_config = SettingsConfigDict(env_prefix="AICONN_API_", extra="forbid", frozen=True)

    ledger_url: str = "sqlite:///aiconn-ledger.db"
    """SQLAlchemy URL of the ledger: sqlite:///path or postgresql+psycopg://..."""
    auth_mode: Literal["kubernetes", "static"] = "kubernetes"
    """kubernetes: TokenReview + SubjectAccessReview; static: the tokens file below."""
    static_tokens_file: Path | None = None
    """CSV lines `token,user,namespace...`; namespace `*` grants the fleet (NOC) views."""
    kubeconfig: Path | None = None
    """Kubeconfig of the API's own identity; unset means the in-cluster service account."""
    host: str = "127.0.0.1"
    """Listen address."""
    port: int = Field(default=8080, ge=1, le=65535)
    """Listen port."""
    tls_cert_file: Path | None = None
    """PEM certificate chain the API serves HTTPS with (a cert-manager Secret's `tls.crt`)."""
    tls_key_file: Path | None = None
    """PEM private key of `tls_cert_file` (the Secret's `tls.key`)."""
    allow_plaintext: bool = False
    """Serve plain HTTP when no certificate is given: local use only, never deployed."""
    workers: int = Field(default=1, ge=1, le=64)
    """uvicorn worker processes; each builds its app from the environment (its own SLA cache)."""
    default_page_size: int = Field(default=100, ge=1, le=500)
    """Statement entries per page when the caller gives no `limit`."""
    max_page_size: int = Field(default=500, ge=1, le=10_000)
    """Largest `limit` a caller may ask for; larger asks are refused with 422."""
    token_audience: str = WALLET_TOKEN_AUDIENCE
    """Audience the API's TokenReview asks for first: the one inference gateways' tokens carry."""
    accept_default_audience: bool = True
    """Also accept tokens for the Kubernetes API server's own audience (what `kubectl create
    token` and older gateways present); false accepts only `token_audience`."""
    auth_cache_seconds: float = Field(default=5.0, ge=0, le=300)
    """How long a TokenReview or SubjectAccessReview answer is reused (0 disables the cache)."""
    auth_cache_size: int = Field(default=4096, ge=1, le=1_000_000)
    """Most cached decisions; the least recently used are dropped first."""
    sla_cache_seconds: float = Field(default=5.0, ge=0, le=3600)
    """Refresh interval of the in-memory copy of all SLAs; 0 reads the API server per request."""
    prometheus_url: str | None = None
    """Prometheus that scrapes this API's /metrics; the NOC's budget history reads it."""

    @model_validator(mode="after")
    def _static_needs_file(self) -> ApiSettings:
        if self.auth_mode == "static" and self.static_tokens_file is None:
            raise ValueError(
                "auth_mode 'static' needs static_tokens_file (AICONN_API_STATIC_TOKENS_FILE),"
                " a CSV of `token,user,namespace...` lines"
            )
        return self

    @model_validator(mode="after")
    def _tls_cert_and_key_together(self) -> ApiSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError(
                "tls_cert_file and tls_key_file (AICONN_API_TLS_CERT_FILE, AICONN_API_TLS_KEY_FILE)"
                " go together: give both for HTTPS"
            )
        return self

    def serving_tls(self) -> tuple[Path, Path] | None:
        """The certificate and key to serve with; None only where plaintext was asked for.
        Raises ValueError, naming the settings, for an API that would serve plaintext unasked."""
        if self.tls_cert_file is not None and self.tls_key_file is not None:
            return self.tls_cert_file, self.tls_key_file
        if self.allow_plaintext:
            return None
        raise ValueError(
            "the API serves HTTPS: set AICONN_API_TLS_CERT_FILE and AICONN_API_TLS_KEY_FILE"
            " (the aiconn-api-tls Secret's tls.crt and tls.key), or AICONN_API_ALLOW_PLAINTEXT=true"
            " for a local process that serves plain HTTP"
        )
