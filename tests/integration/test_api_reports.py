"""Report numbers are the ledger's and the status's, in JSON and CSV, on SQLite and PostgreSQL;
bad input is a 4xx that says what is wrong.

SLAs live in the real API server (written by the admin client, as the operator would); the API
reads them with its own client and checks callers with a static token file.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kubernetes import client

from aiconn.api.app import create_app
from aiconn.resources.v1alpha1.kinds import SLA
from aiconn.resources.v1alpha1.meta import GROUP, VERSION
from aiconn.resources.v1alpha1.sla import Window
from aiconn.sla.accounting import Kind, Settlement, UsageReading, wallet_account
from aiconn.sla.credits import money, to_micros
from aiconn.sla.periods import period_containing
from aiconn.sla.settlement import settle_period
from aiconn.store.ledger import Ledger
from tests.factories import sla_evaluation
from tests.helpers import get_sla_route, ledger_url_for, static_token_settings
from tests.seeding import create_sla, settle_history

pytestmark = pytest.mark.integration
TOKEN = "reports-token"


@dataclass(frozen=True)
class Seeded:
    api: TestClient
    ledger: Ledger
    namespace: str
    uid: str
    settlements: list[Settlement]
    status: dict[str, Any]

    def get(self, path: str, **params: Any) -> Any:
        return get_sla_route(
            self.api, token=TOKEN, namespace=self.namespace, name="chat", path=path, params=params
        )


@pytest.fixture(params=["sqlite", "postgres"])
def seeded(
    request: pytest.FixtureRequest, k8s: Any, namespace: str, tmp_path: Path
) -> Iterator[Seeded]:
    url = ledger_url_for(request, tmp_path)
    ledger = Ledger.open(url)
    tenant = f"acme-{uuid.uuid4().hex[:8]}"  # a fresh wallet, also on the shared PostgreSQL
    # Index 3 misses its objectives, so the closed periods carry credits and penalties.
    uid = create_sla(k8s, namespace, "chat", tenant=tenant, index=3)
    settlements = settle_history(
        ledger,
        sla_uid=uid,
        namespace=namespace,
        name="chat",
        tenant=tenant,
        index=3,
        months=3,
        now=datetime.now(UTC),
    )
    obj = client.CustomObjectsApi(k8s).get_namespaced_custom_object(
        GROUP, VERSION, namespace, SLA.plural, "chat"
    )
    settings = static_token_settings(
        tmp_path / "tokens.csv", [f"{TOKEN},reporter,{namespace}"], ledger_url=url
    )
    with TestClient(create_app(settings, ledger=ledger, kube=k8s)) as api:
        yield Seeded(api, ledger, namespace, uid, settlements, obj["status"])
    ledger.close()


def _csv_fields(text: str) -> dict[str, str]:
    head = text.split("\n\n", 1)[0]
    rows = list(csv.reader(io.StringIO(head)))
    assert rows[0] == ["field", "value"]
    return dict(rows[1:])


def test_closed_period_report_is_the_ledgers_settlement_and_transfers(seeded: Seeded) -> None:
    settlement = seeded.settlements[-1]
    assert settlement.credit_micros > 0
    month = settlement.period.start.strftime("%Y-%m")
    transfers = {
        t.kind: t
        for t in seeded.ledger.transfers(sla_uid=seeded.uid)
        if t.period.start == settlement.period.start
    }
    report = seeded.get("/report", period=month).json()
    assert report["source"] == "ledger"
    assert report["state"] == "Settled"
    assert report["periodStart"].startswith(settlement.period.start.strftime("%Y-%m-%dT00:00:00"))
    assert report["tokensUsed"] == transfers[Kind.USAGE].amount == settlement.tokens_used
    assert report["chargesMicros"] == transfers[Kind.CHARGE].amount
    credit = report["credit"]
    assert credit["creditMicros"] == transfers[Kind.PENALTY].amount == credit["penaltyMicros"]
    assert credit["creditTokens"] == transfers[Kind.CREDIT].amount
    assert credit["creditPercent"] == str(settlement.credit_percent)
    assert credit["charges"] == f"{settlement.charges_micros / 1_000_000:.6f}"
    assert (
        report["availabilityPercent"]
        == settlement.availability_percent
        == credit["availabilityPercent"]
    )
    assert credit["worseLatencyAttainmentPercent"] == min(
        settlement.ttft_attainment_percent or 100, settlement.tpot_attainment_percent or 100
    )
    assert sorted(t["id"] for t in report["transfers"]) == sorted(settlement.transfer_ids)
    # The same period named by its start instant is the same report.
    by_start = seeded.get("/report", period=settlement.period.start_iso).json()
    assert by_start == report

    as_csv = seeded.get("/report", period=month, format="csv")
    assert as_csv.headers["content-type"].startswith("text/csv")
    fields = _csv_fields(as_csv.text)
    assert int(fields["tokensUsed"]) == transfers[Kind.USAGE].amount
    assert int(fields["chargesMicros"]) == transfers[Kind.CHARGE].amount
    assert int(fields["credit.creditMicros"]) == transfers[Kind.PENALTY].amount
    assert int(fields["credit.creditTokens"]) == transfers[Kind.CREDIT].amount
    assert float(fields["availabilityPercent"]) == settlement.availability_percent
    transfer_rows = list(csv.reader(io.StringIO(as_csv.text.split("\n\n", 1)[1])))
    assert {r[1] for r in transfer_rows[1:]} == set(settlement.transfer_ids)
    by_accept = seeded.api.get(
        f"/v1/namespaces/{seeded.namespace}/slas/chat/report",
        params={"period": month},
        headers={"Authorization": f"Bearer {TOKEN}", "Accept": "text/csv"},
    )
    assert by_accept.text == as_csv.text


def test_closed_period_report_shows_minutes_judged_and_excused(seeded: Seeded) -> None:
    # A period settled with 60 minutes of announced maintenance, from the ledger alone.
    first = seeded.settlements[0]
    earlier = period_containing(Window(), first.period.start - timedelta(microseconds=1))
    evaluation = sla_evaluation(
        minutes=earlier.minutes,
        good_minutes=12_540,
        bad_minutes=0,
        availability_percent=100.0,
        tokens_used=0,
        price_per_million_tokens=Decimal(1),
        charges=Decimal(0),
        excused_minutes=60,
        judged_minutes=12_540,
    )
    settle_period(
        seeded.ledger,
        sla_uid=seeded.uid,
        namespace=seeded.namespace,
        name="chat",
        tenant=first.tenant,
        period=earlier,
        outcome=evaluation.outcome(),
        coverage_floor_percent=90.0,
    )
    report = seeded.get("/report", period=earlier.start.strftime("%Y-%m")).json()
    assert (report["judgedMinutes"], report["excusedMinutes"]) == (12_540, 60)
    assert report["availabilityPercent"] == 100.0


def test_current_period_report_is_the_sla_status(seeded: Seeded) -> None:
    period = seeded.status["period"]
    report = seeded.get("/report").json()
    assert report["source"] == "status"
    assert report["state"] == "Open"
    assert report["availabilityPercent"] == period["availabilityPercent"]
    assert report["ttftAttainmentPercent"] == period["ttftAttainmentPercent"]
    assert report["tpotAttainmentPercent"] == period["tpotAttainmentPercent"]
    assert report["budgetRemainingPercent"] == period["budgetRemainingPercent"]
    assert report["coveragePercent"] == period["coveragePercent"]
    assert report["alerts"] == period["alerts"]
    assert report["tokensUsed"] == period["tokensUsed"]
    assert report["chargesMicros"] == to_micros(money(period["charges"]))
    assert report["credit"]["creditAmount"] == str(money(period["creditsAccrued"]))
    assert report["evaluatedAt"] == period["evaluatedAt"]
    fields = _csv_fields(seeded.get("/report", format="csv").text)
    assert float(fields["availabilityPercent"]) == period["availabilityPercent"]
    assert int(fields["tokensUsed"]) == period["tokensUsed"]
    assert fields["credit.creditAmount"] == str(money(period["creditsAccrued"]))


def test_statement_pages_through_the_tenants_wallet(seeded: Seeded) -> None:
    tenant = seeded.settlements[0].tenant
    expected = seeded.ledger.statement(wallet_account(tenant), limit=1000).entries
    seen: list[dict[str, Any]] = []
    after: int | None = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if after is not None:
            params["after"] = after
        page = seeded.get("/statement", **params).json()
        seen.extend(page["entries"])
        after = page["nextAfter"]
        if after is None:
            break
    assert [e["id"] for e in seen] == [e.transfer.id for e in expected]
    assert [e["signedAmount"] for e in seen] == [e.signed_amount for e in expected]
    rows = list(csv.DictReader(io.StringIO(seeded.get("/statement", format="csv").text)))
    assert [int(r["signedAmount"]) for r in rows] == [e.signed_amount for e in expected]
    tokens_only = seeded.get("/statement", unit="tokens").json()["entries"]
    assert {e["unit"] for e in tokens_only} == {"tokens"}
    # The open period's usage so far, as the SLA loop records it.
    now = datetime.now(UTC)
    current = period_containing(Window(duration="1M", calendar_aligned=True), now)
    seeded.ledger.record_usage(
        [
            UsageReading(
                sla_uid=seeded.uid, tenant=tenant, period=current, tokens=1234, measured_at=now
            )
        ]
    )
    wallet = seeded.api.get(
        f"/v1/namespaces/{seeded.namespace}/wallet", headers={"Authorization": f"Bearer {TOKEN}"}
    ).json()["wallets"][0]
    assert wallet["tokens"] == seeded.ledger.wallet_balance(tenant)
    assert wallet["pendingUsageTokens"] == 1234
    assert wallet["availableTokens"] == wallet["tokens"] - 1234


@pytest.mark.parametrize(
    ("path", "params", "code", "says"),
    [
        ("/report", {"period": "last-tuesday"}, 400, "is not 'current', a month YYYY-MM"),
        ("/report", {"period": "2999-01"}, 400, "has not started yet"),
        ("/report", {"period": "2025-01-15T00:00:00Z"}, 400, "does not start a period"),
        ("/report", {"period": "1969-12"}, 400, "before 1970"),
        ("/report", {"period": "2001-01"}, 404, "has no settlement"),
        ("/report", {"format": "xml"}, 422, "query parameter 'format'"),
        ("/statement", {"limit": 501}, 422, "over the largest page, 500"),
        ("/statement", {"limit": 0}, 422, "query parameter 'limit'"),
        ("/statement", {"after": -1}, 422, "query parameter 'after'"),
        ("/statement", {"limit": "many"}, 422, "query parameter 'limit'"),
        ("/statement", {"unit": "EUR micro"}, 422, "query parameter 'unit'"),
    ],
)
def test_bad_input_gets_a_4xx_that_says_why(
    seeded: Seeded, path: str, params: dict[str, Any], code: int, says: str
) -> None:
    response = seeded.get(path, **params)
    assert response.status_code == code, response.text
    assert says in response.json()["detail"]


def test_unknown_sla_is_404(seeded: Seeded) -> None:
    response = seeded.api.get(
        f"/v1/namespaces/{seeded.namespace}/slas/nope/report",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert (response.status_code, response.json()) == (404, {"detail": "not found"})
