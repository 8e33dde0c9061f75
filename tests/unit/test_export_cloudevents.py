"""The ledger as CloudEvents on a real SQLite ledger: stable ids, exact amounts, cursor paging,
and the reporting API's tenant-scoped route (static auth)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aiconn.api.app import create_app
from aiconn.cli import main
from aiconn.export.cloudevents import Cursor, export_page, settlement_id
from aiconn.sla.evaluate import SLAEvaluation
from aiconn.sla.periods import Period
from aiconn.sla.settlement import fund_allowance
from aiconn.sla.topups import top_up
from aiconn.store.ledger import Ledger
from tests.factories import month_evaluation, settle
from tests.helpers import static_token_settings

JAN = Period(start=datetime(2025, 1, 1, tzinfo=UTC), end=datetime(2025, 2, 1, tzinfo=UTC))
REQUIRED = {"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data"}


def _evaluation() -> SLAEvaluation:
    return month_evaluation(
        tokens=10_000_001, charges=Decimal("5.0000005"), credit_amount="0.5000001"
    )


def _fill(ledger: Ledger, namespace: str, uid: str) -> None:
    fund_allowance(
        ledger,
        sla_uid=uid,
        namespace=namespace,
        name="chat",
        tenant=namespace,
        period=JAN,
        tokens=100_000_000,
    )
    settle(
        ledger,
        sla_uid=uid,
        namespace=namespace,
        period=JAN,
        result=_evaluation(),
        coverage_floor_percent=95.0,
    )
    top_up(
        ledger,
        tenant=namespace,
        namespace=namespace,
        tokens=5000,
        idempotency_key=f"order-{namespace}",
        by="billing",
        why="order 1",
        at=datetime(2025, 2, 3, 10, 0, tzinfo=UTC),
    )


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    _fill(opened, "acme", "uid-acme")
    _fill(opened, "globex", "uid-globex")
    yield opened
    opened.close()


def _all(ledger: Ledger, namespace: str | None, limit: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    cursor = Cursor()
    while True:
        page = export_page(ledger, namespace=namespace, cursor=cursor, limit=limit)
        events.extend(page.events)
        if not page.more:
            return events
        cursor = page.next_cursor


def _no_floats(value: Any) -> bool:
    if isinstance(value, dict):
        return all(_no_floats(v) for v in value.values())
    if isinstance(value, list):
        return all(_no_floats(v) for v in value)
    return not isinstance(value, float)


def test_every_transfer_and_settlement_is_one_event_with_the_ledgers_id(ledger: Ledger) -> None:
    events = _all(ledger, "acme", limit=1000)
    transfers = [t for t in ledger.transfers() if t.sla_namespace == "acme"]
    [settlement] = [s for s in ledger.settlements() if s.sla_namespace == "acme"]
    by_id = {e["id"]: e for e in events}
    assert len(by_id) == len(events) == len(transfers) + 1
    assert {t.id for t in transfers} <= by_id.keys()
    assert settlement_id("uid-acme", JAN.start) in by_id
    for event in events:
        assert event.keys() >= REQUIRED and event["specversion"] == "1.0"
        assert event["source"] == "/aiconn/namespaces/acme"
        assert event["subject"].startswith("acme/")
        assert event["time"].endswith("Z")
        assert _no_floats(event), event
    charge = next(e for e in events if e["type"] == "io.aiconn.ledger.transfer.charge.v1")
    assert charge["data"]["unit"] == "EUR-micro" and charge["data"]["currency"] == "EUR"
    assert Decimal(charge["data"]["amountDecimal"]) * 1_000_000 == charge["data"]["amount"]
    settled = by_id[settlement_id("uid-acme", JAN.start)]["data"]
    assert settled["chargesMicros"] == settlement.charges_micros
    assert Decimal(settled["charges"]) == Decimal(settlement.charges_micros) / 1_000_000
    assert settled["availabilityPercent"] == "99.69"
    assert settled["tokensUsed"] == 10_000_001
    topup = next(e for e in events if e["data"].get("kind") == "topup")
    assert topup["data"]["amount"] == 5000 and topup["subject"] == "acme/top-up"


def test_a_reexport_names_every_event_the_same_and_pages_lose_nothing(ledger: Ledger) -> None:
    whole = _all(ledger, None, limit=1000)
    assert [e["id"] for e in _all(ledger, None, limit=1000)] == [e["id"] for e in whole]
    for size in (1, 2, 3, 5):
        paged = _all(ledger, None, limit=size)
        assert sorted(e["id"] for e in paged) == sorted(e["id"] for e in whole), size
        assert len({e["id"] for e in paged}) == len(paged)
    # Namespaces see only their own events.
    acme = {e["id"] for e in _all(ledger, "acme", limit=1000)}
    globex = {e["id"] for e in _all(ledger, "globex", limit=1000)}
    assert not acme & globex and acme | globex == {e["id"] for e in whole}


def test_new_rows_after_the_last_cursor_come_next(ledger: Ledger) -> None:
    first = export_page(ledger, namespace="acme", cursor=Cursor(), limit=1000)
    assert not first.more
    top_up(
        ledger,
        tenant="acme",
        namespace="acme",
        tokens=7,
        idempotency_key="order-late",
        by="billing",
        why="late",
        at=datetime(2025, 2, 4, tzinfo=UTC),
    )
    later = export_page(ledger, namespace="acme", cursor=first.next_cursor, limit=1000)
    assert [e["data"]["amount"] for e in later.events] == [7]


def test_the_cli_prints_json_lines_and_the_cursor(
    ledger: Ledger, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    assert main(["export", "cloudevents", "--ledger", url, "--limit", "2"]) == 0
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 2 and "(more)" in err
    cursor = err.split("next cursor: ")[1].split()[0]
    assert main(["export", "cloudevents", "--ledger", url, "--after", cursor]) == 0
    rest = [json.loads(line)["id"] for line in capsys.readouterr()[0].splitlines()]
    assert {e["id"] for e in lines}.isdisjoint(rest)
    assert len(lines) + len(rest) == len(_all(ledger, None, limit=1000))
    assert main(["export", "cloudevents", "--ledger", url, "--after", "x"]) == 2


@pytest.fixture
def http(ledger: Ledger, tmp_path: Path) -> Iterator[TestClient]:
    settings = static_token_settings(
        tmp_path / "tokens.csv", ["tok-acme,alice,acme"], max_page_size=3
    )
    # The usage feed reads only the ledger; no Kubernetes client is needed.
    with TestClient(create_app(settings, ledger=ledger, kube=object())) as client:
        client.headers["Authorization"] = "Bearer tok-acme"
        yield client


def test_the_api_serves_the_namespaces_events_in_pages(http: TestClient, ledger: Ledger) -> None:
    path = "/v1/namespaces/acme/usage/cloudevents"
    ids: list[str] = []
    after = "0.0"
    while True:
        page = http.get(path, params={"after": after, "limit": 3})
        assert page.status_code == 200, page.text
        assert page.headers["content-type"].startswith("application/cloudevents-batch+json")
        ids.extend(e["id"] for e in page.json())
        after = page.headers["Next-Cursor"]
        if page.headers["More-Events"] == "false":
            break
    assert ids == [e["id"] for e in _all(ledger, "acme", limit=1000)]
    lines = http.get(path, params={"format": "jsonl", "limit": 2})
    assert [json.loads(x)["id"] for x in lines.text.splitlines()] == ids[:2]
    assert http.get(path, params={"limit": 4}).status_code == 422
    assert http.get(path, params={"after": "1"}).status_code == 422
    assert http.get("/v1/namespaces/globex/usage/cloudevents").status_code == 404
    anonymous = http.get(path, headers={"Authorization": f"Bearer {uuid.uuid4().hex}"})
    assert anonymous.status_code == 401
