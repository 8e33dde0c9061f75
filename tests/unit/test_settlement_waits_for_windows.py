"""A settlement is final, so it never goes ahead without the MaintenanceWindows: a failed list
(503, 403, a timeout) postpones the pass's settlements; only a missing CRD (404) means none."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from aiconn.kube import kube_error
from aiconn.operator.evaluation import FleetEvaluator, PassReport
from aiconn.operator.settings import OperatorSettings
from aiconn.resources.v1alpha1.sla import Window
from aiconn.store.ledger import Ledger
from aiconn.store.prometheus import PrometheusSource


class _Kube:
    def __init__(self, status: int) -> None:
        self.status = status

    async def list(self, kind: str) -> list[dict[str, Any]]:
        raise kube_error(ApiException(status=self.status, reason="refused"))


def _evaluator(tmp_path: Path, status: int) -> FleetEvaluator:
    return FleetEvaluator(
        kube=_Kube(status),  # type: ignore[arg-type]
        source=PrometheusSource.from_url("http://127.0.0.1:9"),
        ledger=Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}"),
        settings=OperatorSettings(),
        clock=lambda: datetime(2026, 12, 1, 0, 5, tzinfo=UTC),
    )


@pytest.mark.parametrize(("status", "settles"), [(503, False), (403, False), (404, True)])
def test_settling_waits_unless_the_windows_were_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: int, settles: bool
) -> None:
    evaluator = _evaluator(tmp_path, status)
    assert asyncio.run(evaluator.list_maintenance()) == ()
    asked: list[str] = []

    def unsettled(sla: Any, closed: Any) -> bool:
        asked.append(sla)
        return False  # nothing due: the test only sees whether settling looked at all

    monkeypatch.setattr("aiconn.operator.evaluation._unsettled_in_status", unsettled)
    sla: Any = type("SLA", (), {"in_force": datetime(2020, 1, 1, tzinfo=UTC)})()
    report = PassReport(slas=1)
    asyncio.run(evaluator._settle_group(Window(), [sla], evaluator.clock(), report))
    assert (asked == [sla]) is settles
