"""Burn rates in a real API server's status (issue 11, item 10): windows are named for their
length whatever the SLA window, and windows no longer measured (keys written before windows
scaled, such as `w5M`, or an edited SLA window's) leave the status instead of lingering under a
merge patch."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest
from kubernetes import client

from aiconn.operator.evaluation import FleetEvaluator, SLARef
from aiconn.operator.kubeapi import KubeApi
from aiconn.operator.settings import OperatorSettings
from aiconn.resources.v1alpha1.meta import GROUP, VERSION
from aiconn.sla.evaluate import SLAEvaluation
from aiconn.sla.periods import Period, floor_minute
from aiconn.store.ledger import Ledger
from aiconn.store.prometheus import PrometheusSource
from tests.factories import sla_evaluation
from tests.integration.test_status_writers import sample_sla

pytestmark = pytest.mark.integration


def evaluation(burn_rates: dict[str, float | None], alerts: tuple[str, ...]) -> SLAEvaluation:
    return sla_evaluation(
        minutes=60,
        good_minutes=59,
        bad_minutes=1,
        availability_percent=100 * 59 / 60,
        budget_remaining_percent=-1566.0,
        burn_rates=burn_rates,
        alerts=alerts,
        tokens_used=0,
        price_per_million_tokens=Decimal("2"),
        charges=Decimal(0),
    )


def test_status_shows_scaled_windows_and_drops_stale_ones(
    k8s: Any, namespace: str, tmp_path: Path
) -> None:
    body = sample_sla(k8s, "burn", window="1d")
    api = client.CustomObjectsApi(k8s)
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, "aiinferenceslas", body)
    # What an operator before scaled windows wrote: camel-cased fixed windows.
    old = {"period": {"burnRates": {"w5M": 12.0, "w1H": 3.0}, "alerts": ["page-1h"]}}
    api.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "aiinferenceslas", "burn", {"status": old}
    )
    sla = SLARef.from_body(
        api.get_namespaced_custom_object(GROUP, VERSION, namespace, "aiinferenceslas", "burn")
    )
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    evaluator = FleetEvaluator(
        kube=KubeApi(k8s),
        source=cast(PrometheusSource, None),
        ledger=ledger,
        settings=OperatorSettings(),
    )
    now = floor_minute(datetime.now(UTC))
    period = Period(start=now - timedelta(hours=1), end=now + timedelta(hours=23))
    rates: dict[str, float | None] = {
        "w1m": 1000.0,
        "w2m": 500.0,
        "w4m": 250.0,
        "w12m": 83.3,
        "w48m": 20.8,
        "w2h24m": None,
    }

    def shown() -> dict[str, Any]:
        found = api.get_namespaced_custom_object(
            GROUP, VERSION, namespace, "aiinferenceslas", "burn"
        )
        return dict(found["status"]["period"])

    try:
        asyncio.run(
            evaluator._write_period(
                sla, period, evaluation(rates, ("page-2m", "page-12m", "ticket-48m")), "t"
            )
        )
        first = shown()
        # Stale keys gone; a window with no known minute is not shown.
        assert first["burnRates"] == {k: v for k, v in rates.items() if v is not None}
        assert first["alerts"] == ["page-2m", "page-12m", "ticket-48m"]
        # The SLA window edited to a month: its windows replace the day's.
        again = dataclasses.replace(sla, status={"period": first})
        asyncio.run(evaluator._write_period(again, period, evaluation({"w5m": 2.0}, ()), "t"))
        assert shown()["burnRates"] == {"w5m": 2.0}
    finally:
        ledger.close()
