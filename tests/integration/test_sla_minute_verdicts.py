"""Minute verdicts against a real Prometheus: down is not unseen, and a service is not its worst
replica (issue 11, item 1).

Each test writes an exact scrape history (see `tests.integration.promdata`), starts a real
Prometheus on it and runs the operator's own `measure` over it, on Debian's Prometheus 2.x and on
3.x (`prometheus_bin`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aiconn.devstack.processes import ProcessGroup
from aiconn.operator.evaluation import SLARef, measure
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec
from aiconn.sla import metricnames as mn
from aiconn.sla.evaluate import SLAEvaluation
from aiconn.sla.periods import Period, floor_minute
from aiconn.store.prometheus import PrometheusSource
from tests.factories import sla_ref
from tests.integration.promdata import History, backfilled_prometheus, gateway_pod, serving

pytestmark = [pytest.mark.integration]

MINUTES = 30
SPEC = {
    "model": {"name": "tiny", "source": "hf://aiconn/tiny", "parametersBillions": 1},
    "objectives": {"availability": {"targetPercent": 99.0}, "window": {"duration": "1d"}},
    "network": {"rttBudgetMs": 50},
    "tokens": {"pricePerMillionTokens": 1000},
}


def sla(name: str) -> SLARef:
    return sla_ref(name, AIInferenceSLASpec.model_validate(SPEC))


def measured(
    history: History,
    name: str,
    services_dir: Path,
    prometheus_bin: Path,
    groups: list[ProcessGroup],
) -> SLAEvaluation:
    """SLA `name` measured over the first MINUTES of `history`, backfilled into a Prometheus of
    its own (stopped with `groups`), with no look-back."""
    server, group = backfilled_prometheus(history, services_dir, binary=prometheus_bin)
    groups.append(group)
    return measure(
        PrometheusSource.from_url(server.url),
        [sla(name)],
        Period(start=history.start, end=history.start + timedelta(minutes=MINUTES)),
        lookback_minutes=0,
    ).sla(0)


def test_pods_gone_while_prometheus_scrapes_are_down_and_prometheus_down_is_unknown(
    services_dir: Path, prometheus_bin: Path, groups: list[ProcessGroup]
) -> None:
    start = floor_minute(datetime.now(UTC)) - timedelta(minutes=MINUTES + 10)
    history = History(start=start)
    # Prometheus scrapes itself for minutes 0-24, then is down for minutes 25-29.
    history.gauge("up", {"job": "prometheus", "instance": "self"}, 1, range(25))
    # The SLA's only pod serves minutes 0-9, then is deleted: its series vanish.
    serving(history, "gone", "0", range(10), per_minute=60)
    result = measured(history, "gone", services_dir, prometheus_bin, groups)

    assert result.good_minutes == 10  # served
    assert result.bad_minutes == 15  # monitored, nothing serving (was: unknown)
    assert result.coverage_percent == pytest.approx(100 * 25 / 30)  # Prometheus down: unknown
    assert result.availability_percent == pytest.approx(40.0)
    # 99 % target missed by far: the first availability tier pays.
    assert result.credit.availability_percent > 0


def test_a_replica_loading_while_another_serves_everything_is_a_good_minute(
    services_dir: Path, prometheus_bin: Path, groups: list[ProcessGroup]
) -> None:
    start = floor_minute(datetime.now(UTC)) - timedelta(minutes=MINUTES + 10)
    history = History(start=start)
    history.gauge("up", {"job": "prometheus", "instance": "self"}, 1, range(MINUTES))
    serving(history, "pair", "a", range(MINUTES), per_minute=60)
    # Replica b is scraped throughout but loading its model (upstream down) for minutes 0-9 and
    # not answering scrapes in minutes 10-11; it serves from minute 12.
    b = gateway_pod("pair", "b")
    history.gauge("up", b, 1, [*range(10), *range(12, MINUTES)])
    history.gauge("up", b, 0, range(10, 12))
    history.gauge(mn.GATEWAY_UPSTREAM_UP, b, 0, range(10))
    history.gauge(mn.GATEWAY_UPSTREAM_UP, b, 1, range(12, MINUTES))
    # Both replicas down together in minutes 20-21: the service was down.
    history.gauge(mn.GATEWAY_UPSTREAM_UP, gateway_pod("pair", "a"), 0, range(20, 22))
    history.gauge(mn.GATEWAY_UPSTREAM_UP, b, 0, range(20, 22))
    result = measured(history, "pair", services_dir, prometheus_bin, groups)

    assert result.coverage_percent == 100.0
    assert result.bad_minutes == 2  # only the minutes no replica could serve (was: 12)
    assert result.good_minutes == MINUTES - 2
