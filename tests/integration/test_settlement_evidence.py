"""Evidence with every settlement, end to end on real components (issue 11, item 9).

A real Prometheus (Debian's 2.x and the built 3.x) holds an exact scrape history
(`tests.integration.promdata`), the SLA lives in the real API server, the ledger is SQLite and a
real PostgreSQL. The operator's own
`settle_closed` settles the period; the reporting API serves the evidence; `aiconn verify`, run
as a separate process, recomputes the credit from the downloaded file and from the ledger, and
reports a mismatch once the stored evidence is edited.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from kubernetes import client
from prometheus_api_client import PrometheusConnect
from sqlalchemy import text

from aiconn.api.app import create_app
from aiconn.devstack import demo, stack
from aiconn.devstack.processes import free_port
from aiconn.operator.evaluation import SLARef, settle_closed
from aiconn.resources.v1alpha1.sla import Window
from aiconn.sla import metricnames as mn
from aiconn.sla.accounting import Kind, SettlementState
from aiconn.sla.evidence import result_sha256
from aiconn.sla.periods import Period, period_containing
from aiconn.sla.verify import from_download, verify
from aiconn.store.ledger import Ledger
from aiconn.store.prometheus import PrometheusSource
from tests.factories import tiny_sla_manifest
from tests.helpers import (
    ROOT,
    aiconn_cli,
    eventually,
    get_sla_route,
    ledger_url_for,
    static_token_settings,
)
from tests.integration.promdata import History, backfilled_prometheus, gateway_pod, serving

pytestmark = pytest.mark.integration

TOKEN = "evidence-token"
NAME = "chat"
WINDOW = Window(duration="30m", calendar_aligned=True)


def manifest() -> dict[str, Any]:
    return tiny_sla_manifest(
        NAME,
        {
            "availability": {"targetPercent": 99.0},
            "window": {"duration": WINDOW.duration, "calendarAligned": True},
        },
        model="tiny",
    )


@dataclass(frozen=True)
class Settled:
    ledger: Ledger
    url: str
    sla: SLARef
    period: Period
    prometheus_url: str
    api: TestClient

    def get(self, path: str, **params: Any) -> Any:
        return get_sla_route(
            self.api, token=TOKEN, namespace=self.sla.namespace, name=NAME, path=path, params=params
        )


@pytest.fixture(params=["sqlite", "postgres"])
def settled(
    request: pytest.FixtureRequest,
    k8s: Any,
    namespace: str,
    tmp_path: Path,
    services_dir: Path,
    prometheus_bin: Path,
) -> Iterator[Settled]:
    url = ledger_url_for(request, tmp_path)
    body = client.CustomObjectsApi(k8s).create_namespaced_custom_object(
        "aiconn.io", "v1alpha1", namespace, "aiinferenceslas", manifest()
    )
    # A period well in the past (backfilled blocks stay clear of Prometheus's head), and an SLA
    # in force before it.
    period = period_containing(WINDOW, datetime.now(UTC) - timedelta(minutes=75))
    sla = dataclasses.replace(SLARef.from_body(body), created=period.start - timedelta(days=1))
    history = History(start=period.start)
    history.gauge("up", {"job": "prometheus", "instance": "self"}, 1, range(period.minutes))
    serving(history, NAME, "0", range(period.minutes), per_minute=60, namespace=namespace)
    # The only replica's vLLM is unreachable in minutes 10 and 11: two bad minutes.
    history.gauge(mn.GATEWAY_UPSTREAM_UP, gateway_pod(NAME, "0", namespace), 0, range(10, 12))
    server, group = backfilled_prometheus(history, services_dir, binary=prometheus_bin)
    ledger = Ledger.open(url)
    settings = static_token_settings(
        tmp_path / "tokens.csv", [f"{TOKEN},reporter,{namespace}"], ledger_url=url
    )
    try:
        [settlement] = settle_closed(
            PrometheusSource.from_url(server.url),
            ledger,
            [sla],
            period,
            coverage_floor_percent=95.0,
            window=sla.spec.objectives.window,
        )
        assert settlement.state == SettlementState.SETTLED
        with TestClient(create_app(settings, ledger=ledger, kube=k8s)) as api:
            yield Settled(ledger, url, sla, period, server.url, api)
    finally:
        ledger.close()
        group.stop_all()


def test_the_settlement_stores_the_minutes_queries_and_terms_it_was_decided_on(
    settled: Settled,
) -> None:
    stored = settled.ledger.evidence(settled.sla.uid, settled.period.start)
    assert stored is not None
    document = stored.document
    assert document["verdicts"]["minutes"] == "10g2b18g"
    assert document["counts"]["minutes"]["bad"] == 2
    assert document["counts"]["tokens"] == 30 * 60 * 10
    assert document["sla"]["generation"] == 1
    assert document["terms"]["pricePerMillionTokens"] == "1000.0"
    # 28/30 good minutes: 93.3 %, under the derived 99 % tier, not 90 % (10 % credit).
    assert document["decided"]["creditPercent"] == "10.0"
    settlement = settled.ledger.settlement(settled.sla.uid, settled.period)
    assert settlement is not None
    penalty = [
        t
        for t in settled.ledger.transfers(sla_uid=settled.sla.uid, kind=Kind.PENALTY)
        if t.period == settled.period
    ]
    assert [t.amount for t in penalty] == [document["decided"]["creditMicros"]] == [1_800_000]
    # Each query's hash is of what this Prometheus answers about this SLA: asked again, the same.
    queries = document["queries"]
    assert any(q["query"].startswith("count(count_over_time(up[") for q in queries), queries
    prometheus = PrometheusConnect(url=settled.prometheus_url)
    for record in queries:
        if "start" not in record:
            continue
        answer = prometheus.custom_query_range(
            record["query"],
            start_time=datetime.fromisoformat(record["start"].replace("Z", "+00:00")),
            end_time=datetime.fromisoformat(record["end"].replace("Z", "+00:00")),
            step=record["step"],
        )
        mine = [
            s
            for s in answer
            if (s["metric"].get("namespace"), s["metric"].get("sla"))
            in ((settled.sla.namespace, NAME), (None, None))
        ]
        assert result_sha256(mine) == record["resultSha256"], record["query"]


def test_the_api_serves_the_evidence_and_verify_matches_it_in_process_and_as_a_command(
    settled: Settled, tmp_path: Path
) -> None:
    answer = settled.get("/evidence", period=settled.period.start_iso)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["uid"] == settled.sla.uid
    assert body["settlement"]["creditMicros"] == 1_800_000
    document, sha256, figures = from_download(body)
    assert verify(document, sha256, ledger=figures).ok

    download = tmp_path / "evidence.json"
    download.write_text(answer.text)
    ran = aiconn_cli("verify", str(download))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ": match" in ran.stdout


def test_verify_from_the_ledger_matches_then_reports_the_tampered_figures(
    settled: Settled,
) -> None:
    where = ["--ledger", settled.url, "--sla", f"{settled.sla.namespace}/{NAME}"]
    ran = aiconn_cli("verify", *where, "--period", settled.period.start_iso)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ": match" in ran.stdout

    with settled.ledger.engine.begin() as conn:
        changed = conn.execute(
            text(
                "UPDATE settlement_evidence SET document = replace(document, '10g2b18g',"
                " '10g2g18g') WHERE sla_uid = :uid"
            ),
            {"uid": settled.sla.uid},
        ).rowcount
    assert changed == 1

    ran = aiconn_cli("verify", *where, "--period", settled.period.start_iso)
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "MISMATCH" in ran.stdout
    assert "good minutes: stored 28, recomputed 30" in ran.stdout
    assert "creditMicros: stored 1800000, recomputed 0" in ran.stdout
    assert "evidence sha256" in ran.stdout
    # The API serves what is stored; the download verifies as a mismatch too.
    body = settled.get("/evidence", period=settled.period.start_iso).json()
    document, sha256, figures = from_download(body)
    assert not verify(document, sha256, ledger=figures).ok


def test_the_evidence_route_answers_4xx_with_a_reason_never_5xx(settled: Settled) -> None:
    earlier = settled.period.start - timedelta(minutes=30)
    answer = settled.get("/evidence", period=earlier.isoformat())
    assert answer.status_code == 404
    assert "no settlement" in answer.json()["detail"]
    answer = settled.get("/evidence", period="current")
    assert answer.status_code == 404 and "still open" in answer.json()["detail"]
    answer = settled.get(
        "/evidence", period=(settled.period.start + timedelta(minutes=7)).isoformat()
    )
    assert answer.status_code == 400 and "does not start a period" in answer.json()["detail"]
    assert settled.get("/evidence").status_code == 422
    other = settled.api.get(
        f"/v1/namespaces/not-{uuid.uuid4().hex[:6]}/slas/{NAME}/evidence",
        params={"period": settled.period.start_iso},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert other.status_code == 404 and other.json()["detail"] == "not found"
    assert (
        settled.api.get(f"/v1/namespaces/{settled.sla.namespace}/slas/{NAME}/evidence").status_code
        == 401
    )

    with settled.ledger.engine.begin() as conn:
        conn.execute(
            text("UPDATE settlement_evidence SET document = '[1,2' WHERE sla_uid = :uid"),
            {"uid": settled.sla.uid},
        )
    answer = settled.get("/evidence", period=settled.period.start_iso)
    assert answer.status_code == 409 and "altered" in answer.json()["detail"]
    ran = aiconn_cli(
        "verify",
        "--ledger",
        settled.url,
        "--sla",
        f"{settled.sla.namespace}/{NAME}",
        "--period",
        settled.period.start_iso,
    )
    assert ran.returncode == 2 and "cannot read" in ran.stderr


def test_the_demo_step_prints_a_match_then_a_mismatch_and_restores_the_evidence(
    settled: Settled, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the demo's `aiconn verify` runs this checkout
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(settled.api.app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        eventually(lambda: httpx.get(f"{url}/healthz").status_code == 200, what="API up")
        endpoints = stack.Endpoints(
            kubeconfig="",
            api=url,
            noc="",
            prometheus=settled.prometheus_url,
            gateway="",
            vllm="",
            injector_control="",
            ledger_url=settled.url,
            api_token=TOKEN,
            gateway_key="",
            sla_name=NAME,
            namespace=settled.sla.namespace,
        )
        result = demo.DemoResult(endpoints=endpoints, period_start=settled.period.start_iso)
        demo.verify_evidence(result, directory=tmp_path)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert ": match" in result.verified
    assert "MISMATCH" in result.tampered
    assert "bad minutes: stored 2, recomputed 0" in result.tampered
    assert json.loads((tmp_path / "evidence.json").read_text())["uid"] == settled.sla.uid
    stored = settled.ledger.evidence(settled.sla.uid, settled.period.start)
    assert stored is not None and verify(stored.document, stored.sha256).ok
