"""Schemathesis against the API's own OpenAPI schema: generated requests never get a 5xx, and
every response matches the schema (status code, content type, headers, body).

The app runs in static-token mode on a seeded SQLite ledger and reads SLAs from the real API
server; requests carry a token that may read everything, so generated cases reach the handlers
and not only the authorization check. The number of cases run is printed and written to
`artifacts/schemathesis-cases.txt`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from aiconn.api.app import create_app
from aiconn.store.ledger import Ledger
from tests.helpers import static_token_settings
from tests.seeding import create_sla, settle_history

pytestmark = pytest.mark.integration
TOKEN = "schemathesis-token"
MAX_EXAMPLES = 60
CHECKS = (
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
)
CASES = {"count": 0}


@pytest.fixture(scope="module")
def app(k8s: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    from kubernetes import client

    state = tmp_path_factory.mktemp("schemathesis")
    namespace = "schemathesis"
    core = client.CoreV1Api(k8s)
    core.create_namespace({"metadata": {"name": namespace}})
    ledger = Ledger.open(f"sqlite:///{state / 'ledger.db'}")
    for index, name in enumerate(("chat", "vision")):
        uid = create_sla(k8s, namespace, name, tenant="acme", index=index + 2)
        settle_history(
            ledger,
            sla_uid=uid,
            namespace=namespace,
            name=name,
            tenant="acme",
            index=index + 2,
            months=3,
            now=datetime.now(UTC),
        )
    settings_ = static_token_settings(state / "tokens.csv", [f"{TOKEN},fuzzer,*"])
    yield create_app(settings_, ledger=ledger, kube=k8s)
    ledger.close()
    core.delete_namespace(namespace)


def test_no_server_errors_and_no_schema_violations(app: FastAPI) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            CASES["count"] += 1
            case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS)

        run()


@pytest.fixture(scope="module", autouse=True)
def _report_case_count(artifacts_dir: Path) -> Iterator[None]:
    yield
    line = f"schemathesis cases run: {CASES['count']}"
    print(line)
    (artifacts_dir / "schemathesis-cases.txt").write_text(line + "\n")


EDGE_PERIODS = [
    f"{day}{offset}"
    for day in ("0001-01-01T00:00:00", "9999-12-31T23:59:59", "9999-12-31T23:59:59.999999")
    for offset in ("+23:59", "-23:59", "+00:01", "-00:01", "Z", "")
] + ["0001-01", "9999-12", "1969-12", "1970-01", "2024-02-29T00:00:00Z", "2023-02-29T00:00:00Z"]


@pytest.mark.parametrize("period", EDGE_PERIODS)
def test_periods_at_the_calendars_edges_get_a_4xx_with_a_reason(app: FastAPI, period: str) -> None:
    from fastapi.testclient import TestClient

    with TestClient(app) as http:
        response = http.get(
            "/v1/namespaces/schemathesis/slas/chat/report",
            params={"period": period},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
    assert 400 <= response.status_code < 500 or response.status_code == 200, response.text
    if response.status_code != 200:
        assert period in response.json()["detail"]


@pytest.mark.parametrize("period", EDGE_PERIODS)
def test_evidence_of_periods_at_the_calendars_edges_is_a_4xx_with_a_reason(
    app: FastAPI, period: str
) -> None:
    from fastapi.testclient import TestClient

    with TestClient(app) as http:
        response = http.get(
            "/v1/namespaces/schemathesis/slas/chat/evidence",
            params={"period": period},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
    # The seeded history was settled without evidence: a settled period answers 404 too.
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["detail"]
