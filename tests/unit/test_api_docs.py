"""/docs and /redoc work offline: every asset they reference is served by the app itself."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aiconn.api.app import create_app
from aiconn.store.ledger import Ledger
from tests.helpers import static_token_settings

_REFERENCE = re.compile(r"""(?:src|href|url)\s*[=:(]\s*['"]?([^'")\s>]+)""")


@pytest.fixture
def http(tmp_path: Path) -> Iterator[TestClient]:
    settings = static_token_settings(tmp_path / "tokens.csv", ["tok,noc,*"])
    ledger = Ledger.open("sqlite://")
    # The docs pages never reach Kubernetes; no client is needed to serve them.
    with TestClient(create_app(settings, ledger=ledger, kube=object())) as client:
        yield client
    ledger.close()


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_reference_no_external_url_and_their_assets_are_served(
    http: TestClient, page: str
) -> None:
    response = http.get(page)
    assert response.status_code == 200
    html = response.text
    assert "http://" not in html and "https://" not in html, html
    assert "//cdn" not in html and "fonts.googleapis" not in html
    references = set(_REFERENCE.findall(html)) | set(re.findall(r"url: '([^']+)'", html))
    assets = {r for r in references if r.startswith("/")}
    assert "/openapi.json" in assets
    assert len(assets) >= 3, references
    for asset in sorted(assets):
        served = http.get(asset)
        assert served.status_code == 200, asset
        assert len(served.content) > 100, asset


def test_swagger_ui_does_not_call_the_online_validator(http: TestClient) -> None:
    assert '"validatorUrl": null' in http.get("/docs").text
