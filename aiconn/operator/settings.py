"""Operator settings, from the environment (AICONN_ prefix) with documented defaults."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from aiconn.inference.images import AICONN_IMAGE, VLLM_IMAGE


class OperatorSettings(BaseSettings):
    """How the operator runs. Every field is an AICONN_<NAME> environment variable."""

    model_config = SettingsConfigDict(env_prefix="AICONN_", extra="ignore")

    vllm_image: str = VLLM_IMAGE
    """vLLM container image of the inference pods."""
    vllm_runtime_claim: str | None = None
    """PersistentVolumeClaim, in each SLA's namespace, that holds vLLM's Python environment and
    is mounted read-only into the vLLM container (`workload.VLLM_RUNTIME_PATH`): for a vLLM image
    that carries only the interpreter, like the dev cluster's CPU build; None for full images."""
    gateway_image: str = AICONN_IMAGE
    """Image of the token-gateway sidecar (the operator's own image)."""
    wallet_api_url: str | None = None
    """Reporting API the inference pods' gateways read their tenant's available tokens from
    (with their own ServiceAccount token); None leaves the gateways without an allowance.
    HTTPS only: the gateways present their token there."""
    wallet_ca_file: Path | None = None
    """PEM CA bundle of the wallet API's certificate (the `ca.crt` of the aiconn-api-tls
    Secret, mounted); copied into a ConfigMap beside each SLA's pods, re-read every reconcile.
    Unset: the gateways trust the system's CAs (an API certificate from a public CA)."""
    monitoring_namespace: str = "monitoring"
    """Namespace whose Prometheus may always scrape the inference pods."""
    namespaces: list[str] = Field(default_factory=list)
    """Namespaces to serve; empty means the whole cluster."""
    prometheus_url: str | None = None
    """Prometheus to measure SLAs from; None turns the evaluation loop off."""
    ledger_url: str = "sqlite:///aiconn-ledger.db"
    """SQLAlchemy URL of the ledger (SQLite file or postgresql+psycopg://)."""
    evaluation_interval_seconds: float = 30.0
    """How often the fleet-wide evaluation loop runs."""
    settlement_grace_seconds: float = 120.0
    """Wait after a period closes before settling it (late scrapes)."""
    coverage_floor_percent: float = 90.0
    """Periods with less data coverage are held for review, not paid."""
    assurance_interval_seconds: float = Field(default=15.0, gt=0)
    """How often the assurance loop re-plans unplaced SLAs and checks the serving sites."""
    failback_stabilisation_seconds: float = Field(default=300.0, ge=0)
    """How long a failed site must host an SLA again without a break before it moves back."""
    unschedulable_grace_seconds: float = Field(default=120.0, ge=0)
    """How long an SLA's pods may stay unschedulable before it fails over."""
    scaling_enabled: bool = False
    """Let the assurance loop scale inference Deployments within [replicas, maxReplicas] on the
    gateways' signals (needs prometheus_url); off: the replica count is the spec's."""
    health_port: int = Field(default=8080, ge=0, le=65535)
    """Port of the liveness endpoint (/healthz) on all interfaces; 0 turns it off."""
    nsmf_plmn_mcc: str = "001"
    """Mobile country code of the operator's PLMN (for NSMF slice profiles)."""
    nsmf_plmn_mnc: str = "01"
    """Mobile network code of the operator's PLMN."""
    concurrent_applies: int = Field(default=64, ge=1)
    """How many SLA reconciles may render and apply their children at once (the rest wait their
    turn after placement, holding no rendered child). Twice the operator's API threads keeps them
    all busy (with 128 a burst of 1000 SLAs took as long and as much memory as with 64,
    `bench/RESULTS.md`)."""
    require_offer: bool = False
    """Serve only SLAs that name an AIInferenceOffer (the manifests set it); False lets SLAs
    created before offers keep their own terms while they are migrated."""

    @model_validator(mode="after")
    def _wallet_over_tls(self) -> OperatorSettings:
        url = self.wallet_api_url
        if url and not url.lower().startswith("https://"):
            raise ValueError(
                f"wallet_api_url (AICONN_WALLET_API_URL) {url!r} is not https://: inference"
                " gateways present their ServiceAccount token there; give the API's HTTPS address"
            )
        return self
