"""Settlement with service hours and announced maintenance, through to `aiconn verify`: the
evidence marks maintenance `excused` and the hours outside service `off-hours`, the ledger's
excused minutes are the evidence's, and a bad minute rewritten as excused no longer matches."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from aiconn.operator.evaluation import SLARef, settle_closed
from aiconn.resources.v1alpha1.maintenance import MaintenanceTerms
from aiconn.resources.v1alpha1.offer import AIInferenceOfferSpec
from aiconn.resources.v1alpha1.servicehours import ServiceHours
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec, Window
from aiconn.sla.evaluate import FleetSeries
from aiconn.sla.evidence import Verdict, sha256_of, verdict_counts
from aiconn.sla.maintenance import MaintenanceWindow
from aiconn.sla.periods import Period
from aiconn.sla.sli import Occurrences
from aiconn.sla.verify import LedgerFigures, verify
from aiconn.store.ledger import Ledger
from tests.unit.test_evidence import SPEC

MINUTES = 60
START = datetime(2024, 2, 5, 7, 0, tzinfo=UTC)  # a Monday, 08:00 in Berlin


class _Source:
    """An hour served at 60 requests a minute: down in minutes 10-19, unseen in 50-51."""

    client: Any = None

    def fetch_fleet(
        self, targets: Sequence[Any], period: Period, lookback_minutes: int = 0
    ) -> FleetSeries:
        up = np.ones((1, MINUTES), dtype=np.float32)
        up[0, 10:20] = 0
        up[0, 50:52] = math.nan
        latency = Occurrences(
            good=np.array([990.0]), total=np.array([1000.0]), exact=np.array([True])
        )
        return FleetSeries(
            in_contract=np.full((1, MINUTES), 60.0, dtype=np.float32),
            failed=np.zeros((1, MINUTES), dtype=np.float32),
            up=up,
            ttft=latency,
            tpot=latency,
            tokens=np.array([2_000_000], dtype=np.int64),
        )


def test_excused_and_off_hours_minutes_settle_and_verify(tmp_path: Path) -> None:
    offer = AIInferenceOfferSpec.model_construct(
        service_hours=ServiceHours(
            time_zone="Europe/Berlin", days=["Mon"], start="08:30", end="18:00"
        ),
        maintenance=MaintenanceTerms(notice_minutes=0),
    )
    sla = SLARef(
        uid="u1",
        namespace="acme",
        name="chat",
        created=START - timedelta(days=1),
        spec=AIInferenceSLASpec.model_validate({**SPEC, "offer": "gold"}),
        status={},
        offer=offer,
    )
    announced = MaintenanceWindow(
        name="upgrade",
        start=START + timedelta(minutes=40),
        end=START + timedelta(minutes=45),
        offers=frozenset({"gold"}),
        declared=START - timedelta(days=1),
    )
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    period = Period(start=START, end=START + timedelta(minutes=MINUTES))
    [settled] = settle_closed(
        _Source(),  # type: ignore[arg-type]
        ledger,
        [sla],
        period,
        coverage_floor_percent=90.0,
        window=Window(duration="1h"),
        windows=[announced],
    )
    # 08:00-08:30 Berlin is outside service hours (the outage in minutes 10-19 with it); 40-44
    # are announced maintenance; 50-51 unseen: 25 judged, 23 known, all good.
    assert (settled.judged_minutes, settled.excused_minutes, settled.bad_minutes) == (25, 5, 0)
    stored = ledger.evidence("u1", START)
    assert stored is not None
    document = stored.document
    counts = verdict_counts(document["verdicts"]["minutes"])
    assert (counts[Verdict.OFF_HOURS], counts[Verdict.EXCUSED], counts[Verdict.UNKNOWN]) == (
        30,
        5,
        2,
    )
    assert document["terms"]["serviceHours"]["timeZone"] == "Europe/Berlin"
    assert document["terms"]["excusedSpans"] == [["2024-02-05T07:40:00Z", "2024-02-05T07:45:00Z"]]
    figures = LedgerFigures.of(settled)
    outcome = verify(document, stored.sha256, ledger=figures)
    assert outcome.ok, outcome.render()

    # Off-hours minutes rewritten as excused, counts and hash made consistent: the figures still
    # follow, but the ledger's excused minutes do not.
    tampered = dict(document)
    tampered["verdicts"] = {
        **document["verdicts"],
        "minutes": re.sub(r"(\d+)o", r"\1x", document["verdicts"]["minutes"], count=1),
    }
    tampered["counts"] = {
        **document["counts"],
        "minutes": {str(v): n for v, n in verdict_counts(tampered["verdicts"]["minutes"]).items()},
    }
    found = verify(tampered, sha256_of(tampered), ledger=figures)
    assert not found.ok and "ledger excused minutes" in found.render(), found.render()
