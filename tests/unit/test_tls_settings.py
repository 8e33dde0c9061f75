"""Plaintext is a choice made by name, never a fallback: the API will not serve HTTP unasked,
and neither the gateway nor the operator sends a ServiceAccount token to an http:// wallet URL
unless development plaintext is allowed (the gateway) or at all (the operator)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from aiconn.api.settings import ApiSettings
from aiconn.gateway.settings import GatewaySettings
from aiconn.operator.settings import OperatorSettings


def test_the_api_serves_https_with_its_certificate_and_key() -> None:
    settings = ApiSettings(tls_cert_file=Path("/tls/tls.crt"), tls_key_file=Path("/tls/tls.key"))
    assert settings.serving_tls() == (Path("/tls/tls.crt"), Path("/tls/tls.key"))


def test_the_api_refuses_to_serve_plaintext_unless_asked() -> None:
    with pytest.raises(ValueError, match="AICONN_API_TLS_CERT_FILE") as refused:
        ApiSettings().serving_tls()
    assert "AICONN_API_ALLOW_PLAINTEXT" in str(refused.value)
    assert ApiSettings(allow_plaintext=True).serving_tls() is None


def test_a_certificate_without_its_key_is_refused() -> None:
    with pytest.raises(ValidationError, match="tls_cert_file and tls_key_file"):
        ApiSettings(tls_cert_file=Path("/tls/tls.crt"))


@pytest.mark.parametrize("url", ["http://aiconn-api:8080", "aiconn-api:8443", "HTTP://api"])
def test_the_gateway_refuses_a_wallet_url_that_is_not_https(url: str) -> None:
    with pytest.raises(ValidationError, match="AICONN_WALLET_API_URL") as refused:
        GatewaySettings(wallet_api_url=url)
    assert "AICONN_WALLET_ALLOW_PLAINTEXT" in str(refused.value)


def test_the_gateway_takes_a_plain_http_wallet_url_only_when_allowed() -> None:
    allowed = GatewaySettings(wallet_api_url="http://127.0.0.1:8080", wallet_allow_plaintext=True)
    assert allowed.wallet_api_url == "http://127.0.0.1:8080"
    secure = GatewaySettings(wallet_api_url="https://aiconn-api.aiconn-system.svc:8443")
    assert secure.wallet_ca_file is None and secure.wallet_allow_plaintext is False


def test_the_operator_renders_only_an_https_wallet_url() -> None:
    with pytest.raises(ValidationError, match="AICONN_WALLET_API_URL"):
        OperatorSettings(wallet_api_url="http://aiconn-api.aiconn-system.svc:8080")
    settings = OperatorSettings(
        wallet_api_url="https://aiconn-api.aiconn-system.svc:8443",
        wallet_ca_file=Path("/etc/aiconn/api-ca/ca.crt"),
    )
    assert settings.wallet_ca_file == Path("/etc/aiconn/api-ca/ca.crt")
