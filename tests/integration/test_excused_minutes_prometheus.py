"""Announced maintenance against a real Prometheus: the operator's own `measure` excuses the
minutes of a window declared in time, judges those a late declaration cannot cover, and lines the
window up with the minutes Prometheus returns, look-back included (issue 11, item 8).

The declaration times here lie in the past, which only a constructed window can have (the API
server stamps the present: `test_maintenance_windows.py` proves that side).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aiconn.devstack.processes import ProcessGroup
from aiconn.operator.evaluation import SLARef, measure
from aiconn.resources.v1alpha1.offer import AIInferenceOfferSpec
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec
from aiconn.sla import metricnames as mn
from aiconn.sla.maintenance import MaintenanceWindow
from aiconn.sla.periods import Period, floor_minute
from aiconn.store.prometheus import PrometheusSource
from tests.factories import sla_ref
from tests.integration.promdata import History, backfilled_prometheus, gateway_pod, serving

pytestmark = [pytest.mark.integration]

OFFER = AIInferenceOfferSpec.model_validate(
    {
        "modelClasses": [{"name": "s", "models": [{"name": "tiny"}], "pricePerMillionTokens": 1}],
        "plan": {"includedTokensPerPeriod": 1000},
        "sliceProfiles": [{"name": "embb", "sst": 1, "fiveQI": 9}],
        "allowedTiers": ["edge"],
        "maintenance": {"noticeMinutes": 60},
    }
)
SPEC = AIInferenceSLASpec.model_validate(
    {
        "offer": "gold",
        "model": {"name": "tiny", "source": "hf://aiconn/tiny", "parametersBillions": 1},
        "objectives": {"availability": {"targetPercent": 99.0}, "window": {"duration": "1d"}},
        "network": {"rttBudgetMs": 50},
    }
)


def sla(name: str) -> SLARef:
    return sla_ref(name, SPEC, offer=OFFER)


def test_an_outage_in_announced_maintenance_is_excused_and_a_late_announcement_is_not(
    services_dir: Path, groups: list[ProcessGroup], prometheus_bin: Path
) -> None:
    origin = floor_minute(datetime.now(UTC)) - timedelta(minutes=50)
    history = History(start=origin)
    history.gauge("up", {"job": "prometheus", "instance": "self"}, 1, range(40))
    for name in ("early", "late"):
        serving(history, name, "0", range(40), per_minute=60)
        # The model server is down in minutes 15-24 (of the history).
        history.gauge(mn.GATEWAY_UPSTREAM_UP, gateway_pod(name, "0"), 0, range(15, 25))
    server, group = backfilled_prometheus(history, services_dir, binary=prometheus_bin)
    groups.append(group)

    def at(minute: int) -> datetime:
        return origin + timedelta(minutes=minute)

    def minutes_20_to_24(name: str, *, ahead: timedelta) -> list[MaintenanceWindow]:
        """The gold offer's window `name` over minutes 20-24, declared `ahead` of its start."""
        gold = frozenset({"gold"})
        return [
            MaintenanceWindow(name, start=at(20), end=at(25), offers=gold, declared=at(20) - ahead)
        ]

    # Declared a day ahead: all of 20-24 excused.
    windows = minutes_20_to_24("in-time", ahead=timedelta(days=1))
    # Declared 58 minutes ahead with 60 minutes' notice: only minute 22 on is excused.
    late = minutes_20_to_24("late", ahead=timedelta(minutes=58))
    source = PrometheusSource.from_url(server.url)
    # The period starts at minute 10 and the 10 minutes before it are fetched as look-back.
    period = Period(start=at(10), end=at(40))
    early = measure(source, [sla("early")], period, lookback_minutes=10, windows=windows).sla(0)
    delayed = measure(source, [sla("late")], period, lookback_minutes=10, windows=late).sla(0)

    assert (early.bad_minutes, early.excused_minutes, early.judged_minutes) == (5, 5, 25)
    assert early.good_minutes == 20 and early.coverage_percent == 100.0
    assert (delayed.bad_minutes, delayed.excused_minutes, delayed.judged_minutes) == (7, 3, 27)
    assert early.availability_percent == 80.0
    assert delayed.availability_percent == pytest.approx(100 * 20 / 27)
