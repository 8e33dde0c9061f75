"""The gateway pod contract holds on both sides: what the operator and the dev stack write into
the gateway's environment and key Secret is what the gateway's settings and key store read."""

from __future__ import annotations

import base64
import inspect
from pathlib import Path

import pytest

from aiconn.contracts import gateway_pod
from aiconn.contracts.gateway_pod import ENV_PREFIX, gateway_env, hash_key
from aiconn.gateway.keys import KeyStore
from aiconn.gateway.settings import GatewaySettings
from aiconn.inference.workload import api_key_secret

EVERY_SETTING = {
    "sla": "chat",
    "namespace": "acme",
    "model": "m",
    "upstream": "http://127.0.0.1:9999",
    "listen_port": 18000,
    "metrics_port": 19100,
    "keys_dir": "/keys",
    "ttft_threshold_ms": 250,
    "tpot_threshold_ms": 40,
    "rate_rps": 2.5,
    "rate_tpm": 1234,
    "tenant": "acme",
    "listen_host": "127.0.0.2",
    "metrics_host": "127.0.0.3",
    "wallet_api_url": "https://api:8443",
    "wallet_token_file": "/token",
    "allowance_tokens": 77,
}


def _settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> GatewaySettings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return GatewaySettings()


def test_every_variable_the_contract_writes_is_a_gateway_setting() -> None:
    parameters = set(inspect.signature(gateway_env).parameters)
    assert parameters == set(EVERY_SETTING)
    assert parameters <= set(GatewaySettings.model_fields)
    assert set(gateway_env(**EVERY_SETTING)) == {ENV_PREFIX + p.upper() for p in parameters}


def test_the_gateway_reads_back_every_value_the_contract_writes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = _settings(gateway_env(**EVERY_SETTING), monkeypatch)
    read = {name: getattr(settings, name) for name in EVERY_SETTING}
    assert read == {
        **EVERY_SETTING,
        "keys_dir": Path("/keys"),
        "wallet_token_file": Path("/token"),
    }


def test_unset_settings_are_left_to_the_gateways_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    required = {k: v for k, v in EVERY_SETTING.items() if k not in {"tenant", "allowance_tokens"}}
    required = {k: v for k, v in required.items() if "host" not in k and "wallet" not in k}
    env = gateway_env(**required)  # type: ignore[arg-type]
    assert f"{ENV_PREFIX}ALLOWANCE_TOKENS" not in env and f"{ENV_PREFIX}LISTEN_HOST" not in env
    settings = _settings(env, monkeypatch)
    assert settings.allowance_tokens is None and settings.wallet_api_url is None


def test_the_gateways_defaults_are_the_pod_contract() -> None:
    # A gateway started with no environment at all still serves the pod's ports and mounts.
    defaults = GatewaySettings.model_construct()
    assert defaults.listen_port == gateway_pod.GATEWAY_PORT == 8000
    assert defaults.metrics_port == gateway_pod.METRICS_PORT == 9100
    assert defaults.upstream == gateway_pod.UPSTREAM_URL == "http://127.0.0.1:8001"
    assert str(defaults.keys_dir) == gateway_pod.KEYS_MOUNT_PATH == "/etc/aiconn/keys"
    assert str(defaults.wallet_token_file) == gateway_pod.WALLET_TOKEN_FILE


def test_a_key_in_the_operators_secret_is_accepted_by_the_gateway(tmp_path: Path) -> None:
    secret = api_key_secret(
        sla_name="chat",
        namespace="acme",
        keys=["sk-first", "sk-second"],
        owner={
            "apiVersion": "aiconn.io/v1alpha1",
            "kind": "AIInferenceSLA",
            "name": "chat",
            "uid": "u",
        },
    )
    # The kubelet mounts each Secret key as a file of that name.
    for name, data in secret["data"].items():
        (tmp_path / name).write_bytes(base64.b64decode(data))
    store = KeyStore(tmp_path)
    assert store.accepts("sk-first") and store.accepts("sk-second")
    assert not store.accepts("sk-third") and not store.accepts(hash_key("sk-first"))
