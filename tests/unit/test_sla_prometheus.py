"""The Prometheus source's assembly of answers into arrays (a fake client stands in for HTTP)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
import requests

from aiconn.sla.periods import Period
from aiconn.store.prometheus import (
    RANGE_PROBE,
    PrometheusSource,
    RangeRule,
    SLATarget,
    SourceUnavailable,
    per_sla_query,
)

START = datetime(2025, 1, 1, tzinfo=UTC)
PERIOD = Period(start=START, end=START + timedelta(minutes=5))
TARGETS = [SLATarget("acme", "chat", 0.5, 0.1), SLATarget("beta", "code", 1.0, 0.05)]


def at(minute: int) -> float:
    return (START + timedelta(minutes=minute)).timestamp()


class FakeClient:
    """Answers as a Prometheus 3 (left-open ranges) unless `probe_points` says otherwise."""

    def __init__(self, *, fail: Exception | None = None, probe_points: str = "1") -> None:
        self.fail = fail
        self.probe_points = probe_points
        self.queries: list[str] = []

    def custom_query_range(self, query: str, **_: Any) -> list[dict[str, Any]]:
        self.queries.append(query)
        if self.fail:
            raise self.fail
        acme = {"namespace": "acme", "sla": "chat"}
        if "upstream_up" in query:
            # acme: minute 3 (ending at 4) down, minute 5 missing; beta: never reported.
            return [
                {"metric": acme, "values": [[at(m), "0" if m == 4 else "1"] for m in (1, 2, 3, 4)]}
            ]
        if query.startswith("min by") and "up{" in query:
            return []
        if 'upstream_error|timeout"' in query and "success" not in query:
            return [{"metric": acme, "values": [[at(2), "7"]]}]
        if "requests_total" in query:
            # Counter values at minute boundaries (issue 11): 100 requests in each of minutes 0, 1.
            return [{"metric": acme, "values": [[at(m), str(100 * m)] for m in (1, 2)]}]
        if "tokens_total" in query:
            return [
                {"metric": {**acme, "type": "prompt"}, "values": [[at(5), "1000.4"]]},
                {"metric": {**acme, "type": "completion"}, "values": [[at(5), "500"]]},
            ]
        return []

    def custom_query(self, query: str, **_: Any) -> list[dict[str, Any]]:
        self.queries.append(query)
        if self.fail:
            raise self.fail
        if query == RANGE_PROBE:
            return [{"metric": {}, "value": [3600, self.probe_points]}]
        if "aiconn_gateway_ttft_seconds_bucket" in query:
            return [
                {"metric": {"namespace": "acme", "sla": "chat", "le": le}, "value": [0, v]}
                for le, v in (
                    ("0.25", "50"),
                    ("0.5", "90"),
                    ("1", "60"),
                    ("1.0", "39"),
                    ("+Inf", "100"),
                )
            ]
        return []


def test_one_query_per_sli_for_the_whole_fleet() -> None:
    client = FakeClient()
    series = PrometheusSource(client).fetch_fleet(TARGETS, PERIOD)
    # Five per-minute series (requests in contract, failed, upstream up, scrape up, tokens),
    # whether Prometheus was scraping at all, then TTFT, TPOT and vLLM TTFT, and how Prometheus
    # selects ranges: ten, whatever the fleet size (issue 11 added the monitoring signal, counts
    # tokens per minute, and asks for the range rule so 2.x and 3.x judge the same minutes).
    assert len(client.queries) == 10
    grouped = [q for q in client.queries if "by (namespace, sla" in q]
    assert len(grouped) == 8
    assert set(client.queries) - set(grouped) == {"count(count_over_time(up[60s]))", RANGE_PROBE}
    np.testing.assert_array_equal(series.up[0], [1, 1, 1, 0, np.nan])
    assert np.isnan(series.up[1]).all()  # missing series: unknown, not down
    np.testing.assert_array_equal(series.in_contract[0], [100, 100, 0, 0, np.nan])
    np.testing.assert_array_equal(series.failed[0], [0, 7, 0, 0, np.nan])
    assert series.tokens.tolist() == [1500, 0]
    assert series.ttft.good[0] == 90 and bool(series.ttft.exact[0])
    assert series.ttft.total[1] == 0


@pytest.mark.parametrize(
    ("points", "minute", "period"), [("1", "[60s]", "[300s]"), ("2", "[59999ms]", "[299999ms]")]
)
def test_ranges_hold_the_same_samples_on_prometheus_2_and_3(
    points: str, minute: str, period: str
) -> None:
    """Prometheus 3 counts one point of `vector(1)` in the probe's left-open range, Prometheus 2
    two (its range includes the left edge): there every range is selected 1 ms shorter, so both
    hold the samples in (end - range, end]."""
    client = FakeClient(probe_points=points)
    PrometheusSource(client).fetch_fleet(TARGETS, PERIOD)
    assert f"count(count_over_time(up{minute}))" in client.queries
    assert sum(f'_over_time(up{{sla!=""}}{minute})' in q for q in client.queries) == 1
    assert sum(f"upstream_up{minute}" in q for q in client.queries) == 1
    assert sum(f"_bucket{period}" in q for q in client.queries) == 3


@pytest.mark.parametrize(
    "answer", [[], [{"metric": {}, "value": [3600, "3"]}], [{"metric": {}, "values": []}]]
)
def test_an_unexpected_range_rule_answer_is_source_unavailable(answer: list[Any]) -> None:
    class Client(FakeClient):
        def custom_query(self, query: str, **kwargs: Any) -> list[dict[str, Any]]:
            return answer if query == RANGE_PROBE else super().custom_query(query, **kwargs)

    with pytest.raises(SourceUnavailable, match="count_over_time"):
        RangeRule.ask(Client(), timeout_s=1)


def test_le_spelled_1_and_1_0_are_one_bucket() -> None:
    series = PrometheusSource(FakeClient()).fetch_fleet(
        [SLATarget("acme", "chat", 1.0, 0.1)], PERIOD
    )
    assert series.ttft.good[0] == 99


@pytest.mark.parametrize(
    "error", [requests.ConnectionError("refused"), requests.Timeout("slow"), ValueError("bad json")]
)
def test_unreachable_prometheus_is_source_unavailable_not_downtime(error: Exception) -> None:
    with pytest.raises(SourceUnavailable, match="did not answer"):
        PrometheusSource(FakeClient(fail=error)).fetch_fleet(TARGETS, PERIOD)


def test_month_range_is_split_under_the_points_limit() -> None:
    client = FakeClient()
    month = Period(start=START, end=START + timedelta(days=31))
    source = PrometheusSource(client)
    source._minute_matrix("q", {("acme", "chat"): 0}, month.start, month.minutes)
    assert len(client.queries) == math.ceil(month.minutes / 10_000)


def test_per_sla_query_asks_once_per_sla() -> None:
    client = FakeClient()
    per_sla_query(PrometheusSource(client), TARGETS, PERIOD)
    assert len(client.queries) == len(TARGETS)


def test_no_tokens_metered_yet_is_one_zero_per_sla() -> None:
    from aiconn.store.prometheus import TokenCounts

    assert TokenCounts(by_type={}, slas=3).total.tolist() == [0, 0, 0]


def test_service_up_is_down_when_monitored_without_series_and_unknown_only_unmonitored() -> None:
    from aiconn.store.prometheus import service_up

    nan = np.nan
    upstream = np.array([[1.0, nan, nan, 0.0]])
    scrape = np.array([[1.0, nan, nan, 1.0]])
    monitored = np.array([True, True, False, True])
    np.testing.assert_array_equal(
        service_up(upstream=upstream, scrape=scrape, monitored=monitored), [[1, 0, nan, 0]]
    )


def test_buckets_come_from_the_pods_carrying_the_threshold_else_from_shared_bounds() -> None:
    from aiconn.store.prometheus import consistent_buckets

    inf = math.inf
    pods = {
        "old": {0.25: 95.0, 0.5: 99.0, inf: 100.0},
        "new": {0.25: 90.0, 0.3: 99.0, 0.5: 100.0, inf: 100.0},
        "broken": {0.3: 5.0},  # no +Inf: no request count, never counted
    }
    assert consistent_buckets(pods, 0.3) == {0.25: 90.0, 0.3: 99.0, 0.5: 100.0, inf: 100.0}
    assert consistent_buckets(pods, 0.4) == {0.25: 185.0, 0.5: 199.0, inf: 200.0}
    assert consistent_buckets({}, 0.4) == {}


def test_counter_increments_carry_gaps_start_at_zero_and_count_restarts() -> None:
    from aiconn.store.prometheus import counter_increments

    nan = np.nan
    # Born between boundaries 1 and 2 at 5; a gap at 4 carries 9; restarted to 2 at 6.
    values = np.array([nan, nan, 5.0, 9.0, nan, 12.0, 2.0, 2.0])
    np.testing.assert_array_equal(counter_increments(values), [0, 5, 4, 0, 3, 2, 0])
    # Summed over the minutes: exactly what the counter counted (5 + 4 + 3, then 2 after).
    assert counter_increments(values).sum() == 14
    # A series already counting at the first boundary: its value there is the baseline.
    np.testing.assert_array_equal(counter_increments(np.array([100.0, 160.0])), [60])


def test_a_missing_sample_at_the_periods_first_boundary_does_not_bill_earlier_tokens() -> None:
    """A gateway that has counted 50M tokens before the period, whose sample at the period's
    start is missing (a failed scrape): only the 100 tokens counted inside the period are billed,
    because the counters are read from before the window and carry over the gap."""
    acme = {"namespace": "acme", "sla": "chat", "pod": "p-1"}

    class Client(FakeClient):
        def custom_query_range(self, query: str, **kwargs: Any) -> list[dict[str, Any]]:
            if "tokens_total" in query:
                self.queries.append(query)
                before = [[at(m), "50000000"] for m in (-30, -20, -10)]
                inside = [[at(m), "50000100"] for m in (2, 3, 4, 5)]
                return [{"metric": {**acme, "type": "completion"}, "values": before + inside}]
            return super().custom_query_range(query, **kwargs)

    series = PrometheusSource(Client()).fetch_fleet(TARGETS[:1], PERIOD)
    assert int(series.tokens[0]) == 100
