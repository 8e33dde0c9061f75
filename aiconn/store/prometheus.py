"""The Prometheus source: the gateway's metrics for a whole fleet, as `evaluate_fleet`'s arrays.

One batched query per SLI for all SLAs, grouped `by (namespace, sla)`: the cost of an evaluation
grows with the number of series Prometheus scans, not with round trips per SLA (`per_sla_query`
exists only so a benchmark can show the difference). Range queries are split into chunks because
Prometheus refuses more than 11,000 points per series, and a month of minutes is 44,640.

Monitoring that failed and a service that was gone are kept apart. Prometheus unreachable, timing
out or answering with an error raises `SourceUnavailable`: the engine must not read that as the
service being down, it leaves those minutes unknown and tries again. Whether Prometheus was
scraping in a minute is its own signal: a sample of any `up` series in that minute (Prometheus
writes `up` for every scrape it attempts, so it should scrape at least itself). A minute in which
Prometheus was scraping but an SLA has no up-state at all had no endpoint to serve it (pods
deleted, evicted or never scheduled take their series with them), and an SLA always promises at
least one replica (`spec.capacity.replicas >= 1`): that minute is *down*. Only a minute in which
Prometheus itself scraped nothing is unknown. Missing request counters in a known minute mean no
requests (counters appear with the first request).

The up-state is the service's, not the worst replica's: a replica is up in a minute when its
gateway answered every scrape and saw its upstream healthy throughout (`min_over_time`), and the
service is up when any replica was (`max by (namespace, sla)`). Failures are judged from the
requests all replicas served together (the failed share in `aiconn.sla.sli`).

The minute in column j is (start + j min, start + (j + 1) min]: a sample exactly on a boundary
belongs to the minute that ends there. Counters are read at the minute boundaries (the latest
sample at or before each) and differenced (`counter_increments`), never extrapolated by
`increase()`; up-states take the samples of each minute's range, evaluated at its end. Prometheus 3
selects a range `[1m]` left-open, (end - 1m, end], exactly that minute; Prometheus 2 selects it
closed, [end - 1m, end], which also holds the sample on the minute's first boundary (a failed
scrape there would cost two minutes). Each pass asks Prometheus which rule it follows
(`RangeRule.ask`, one query that reads no data) and selects 1 ms less on Prometheus 2: the same
samples on both.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, TypedDict, Unpack

import numpy as np
from numpy.typing import NDArray
from prometheus_api_client.exceptions import PrometheusApiClientException
from requests import RequestException

from aiconn.sla import metricnames as mn
from aiconn.sla.evaluate import FleetSeries
from aiconn.sla.periods import Period
from aiconn.sla.promql import BY_SLA, MONITORING_SELECTOR, POD_LABEL, UP_SELECTOR, pod_counter
from aiconn.sla.sli import Occurrences, occurrences_from_buckets

RANGE_PROBE = "count_over_time(vector(1)[1m:1m])"
"""At a minute boundary: 2 where ranges include their left edge (Prometheus 2), 1 where they are
left-open (Prometheus 3). A subquery over `vector(1)` reads no stored data."""
PROBE_AT = 3600.0
"""Any minute boundary; the probe's answer does not depend on it. Passes ask at their period's
start, which stores keeping only recent data still answer for."""
MAX_POINTS_PER_QUERY = 10_000
"""Below Prometheus's 11,000-points-per-series limit for range queries."""
STEP = "60s"


class SourceUnavailable(Exception):
    """Prometheus could not answer (unreachable, timed out, or an error): data unknown, not bad."""


class QueryOptions(TypedDict, total=False):
    """The keywords both of `QueryClient`'s queries take, none of them required."""

    params: dict[str, Any] | None
    """More GET parameters, such as an instant query's "time"."""
    timeout: int | None
    """In seconds."""


class RangeOptions(QueryOptions):
    """A range query's keywords: its span and step, and `QueryOptions`."""

    start_time: datetime
    end_time: datetime
    step: str


class QueryClient(Protocol):
    """The part of `prometheus_api_client.PrometheusConnect` the source uses, all but the query
    passed by keyword."""

    def custom_query(self, query: str, **options: Unpack[QueryOptions]) -> Any: ...

    def custom_query_range(self, query: str, **options: Unpack[RangeOptions]) -> Any: ...


@dataclass(frozen=True)
class RangeRule:
    """How the Prometheus being asked selects a range: left-open (3.x) or closed (2.x)."""

    left_open: bool

    @classmethod
    def ask(cls, client: QueryClient, *, timeout_s: int, at: float = PROBE_AT) -> RangeRule:
        """The rule of the Prometheus behind `client`, from one query that reads no data, asked
        at `at` (a minute boundary; remote stores may refuse times long past)."""
        found = _guarded(
            lambda: client.custom_query(RANGE_PROBE, params={"time": at}, timeout=timeout_s),
            RANGE_PROBE,
        )
        try:
            points = {_value(series["value"]) for series in found}
        except (KeyError, IndexError, TypeError, ValueError):
            points = set()
        if points == {1.0}:
            return cls(left_open=True)
        if points == {2.0}:
            return cls(left_open=False)
        raise SourceUnavailable(f"Prometheus answered {RANGE_PROBE!r} with {found!r}")

    def window(self, seconds: int) -> str:
        """A range selector holding the samples in (end - seconds, end] on either rule."""
        return f"[{seconds}s]" if self.left_open else f"[{seconds * 1000 - 1}ms]"


@dataclass(frozen=True)
class SLATarget:
    """One SLA to fetch: its labels and its latency thresholds in seconds."""

    namespace: str
    name: str
    ttft_threshold_s: float
    tpot_threshold_s: float


@dataclass(frozen=True)
class TokenCounts:
    """Tokens metered per SLA over the period, by type (prompt, completion)."""

    by_type: dict[str, NDArray[np.int64]]
    slas: int
    """Fleet size: with no tokens metered yet, the total is still one zero per SLA."""

    @property
    def total(self) -> NDArray[np.int64]:
        """All token types together."""
        arrays = list(self.by_type.values())
        return np.sum(arrays, axis=0, dtype=np.int64) if arrays else np.zeros(self.slas, np.int64)


@dataclass
class PrometheusSource:
    """Fetches a fleet's period from Prometheus.

    Build it from a URL (`PrometheusSource.from_url("http://prometheus:9090")`) or around any
    client with PrometheusConnect's query methods.
    """

    client: QueryClient
    _: KW_ONLY
    timeout_s: int = 30
    up_selector: str = UP_SELECTOR
    monitoring_selector: str = MONITORING_SELECTOR
    max_points: int = MAX_POINTS_PER_QUERY

    @classmethod
    def from_url(cls, url: str, *, timeout_s: int = 30) -> PrometheusSource:
        """A source talking to the Prometheus at `url`."""
        from prometheus_api_client import PrometheusConnect

        return cls(PrometheusConnect(url=url, timeout=timeout_s), timeout_s=timeout_s)

    def fetch_fleet(
        self, targets: Sequence[SLATarget], period: Period, *, lookback_minutes: int = 0
    ) -> FleetSeries:
        """Everything `evaluate_fleet` needs for `targets` (in order) over `period`.

        `period.end` may be "now" (an open period): pass the period up to the current minute.
        """
        index = {(t.namespace, t.name): i for i, t in enumerate(targets)}
        start = period.start - timedelta(minutes=lookback_minutes)
        minutes = period.minutes + lookback_minutes
        rule = RangeRule.ask(self.client, timeout_s=self.timeout_s, at=period.start.timestamp())
        minute = rule.window(60)
        in_contract = self._counter_minutes(
            pod_counter(mn.GATEWAY_REQUESTS, mn.IN_CONTRACT_OUTCOMES), index, start, minutes
        )
        failed = self._counter_minutes(
            pod_counter(mn.GATEWAY_REQUESTS, mn.FAILED_OUTCOMES), index, start, minutes
        )
        upstream = self._minute_matrix(
            f"max by ({BY_SLA}) (min_over_time({mn.GATEWAY_UPSTREAM_UP}{minute}))",
            index,
            start,
            minutes,
        )
        scrape = self._minute_matrix(
            f"max by ({BY_SLA}) (min_over_time({self.up_selector}{minute}))", index, start, minutes
        )
        monitored = self.monitoring_minutes(start, minutes, rule=rule)
        up = service_up(upstream=upstream, scrape=scrape, monitored=monitored)
        known = ~np.isnan(up)
        in_contract = np.where(known, np.nan_to_num(in_contract), np.nan)
        failed = np.where(known, np.nan_to_num(failed), np.nan)
        thresholds_ttft = [t.ttft_threshold_s for t in targets]
        # Tokens bill money: read the counters from an hour earlier still, so a gateway whose
        # sample at the period's first boundary is missing (a failed scrape, a short Prometheus
        # outage) carries its earlier value instead of reading as born at 0 inside the period,
        # which would bill tokens of earlier periods again.
        carry = timedelta(minutes=TOKEN_CARRY_MINUTES)
        tokens = self.tokens(
            index,
            start - carry,
            minutes + TOKEN_CARRY_MINUTES,
            lookback_minutes=lookback_minutes + TOKEN_CARRY_MINUTES,
        )
        return FleetSeries(
            in_contract=in_contract.astype(np.float32),
            failed=failed.astype(np.float32),
            up=up.astype(np.float32),
            ttft=self.occurrences(mn.GATEWAY_TTFT, index, thresholds_ttft, period, rule=rule),
            tpot=self.occurrences(
                mn.GATEWAY_TPOT, index, [t.tpot_threshold_s for t in targets], period, rule=rule
            ),
            tokens=tokens.total,
            inference_ttft=self.occurrences(
                mn.VLLM_TTFT, index, thresholds_ttft, period, rule=rule
            ),
            lookback_minutes=lookback_minutes,
        )

    def monitoring_minutes(
        self, start: datetime, minutes: int, *, rule: RangeRule
    ) -> NDArray[np.bool_]:
        """Minutes in which Prometheus scraped anything at all (its own `up` samples)."""
        query = f"count(count_over_time({self.monitoring_selector}{rule.window(60)}))"
        counts = self._minute_matrix(query, {("", ""): 0}, start, minutes)[0]
        return np.asarray(counts > 0, dtype=np.bool_)

    def occurrences(
        self,
        histogram: str,
        index: Mapping[tuple[str, str], int],
        thresholds_s: Sequence[float],
        period: Period,
        *,
        rule: RangeRule,
    ) -> Occurrences:
        """Good/total at each SLA's own threshold, from one query of all buckets of all SLAs.

        Buckets are fetched per pod, because pods of one SLA need not share a bucket set (a
        threshold edit rolls out pods with a new bound). Summing per `le` across them would take
        the new bound's count from new pods only and `+Inf` from all. So: the pods that carry the
        SLA's threshold as a bound are counted, exactly, and the others do not contribute (an
        edited threshold starts a clean measurement with the pods that carry it); when no pod
        carries it, the count is interpolated from the bounds every pod has, flagged inexact.
        """
        window = rule.window(_seconds(period))
        query = f"sum by ({BY_SLA}, {POD_LABEL}, le) (increase({histogram}_bucket{window}))"
        pods: list[dict[str, dict[float, float]]] = [{} for _ in index]
        for series in self._instant(query, period.end):
            row = _row(series, index)
            if row is None:
                continue
            # Prometheus 3 writes le="1" as le="1.0": parsing both to a float merges them.
            le = float(series["metric"]["le"])
            pod = pods[row].setdefault(series["metric"].get(POD_LABEL, ""), {})
            pod[le] = pod.get(le, 0.0) + _value(series["value"])
        buckets = [
            consistent_buckets(found, threshold)
            for found, threshold in zip(pods, thresholds_s, strict=True)
        ]
        width = max((len(b) for b in buckets), default=0) or 1
        bounds = np.full((len(buckets), width), np.nan)
        counts = np.zeros((len(buckets), width))
        totals = np.zeros(len(buckets))
        for row, found in enumerate(buckets):
            finite = sorted((le, c) for le, c in found.items() if math.isfinite(le))
            bounds[row, : len(finite)] = [le for le, _ in finite]
            counts[row, : len(finite)] = [c for _, c in finite]
            totals[row] = found.get(math.inf, 0.0)
        return occurrences_from_buckets(
            bounds=bounds, counts=counts, totals=totals, thresholds=thresholds_s
        )

    def tokens(
        self,
        index: Mapping[tuple[str, str], int],
        start: datetime,
        minutes: int,
        *,
        lookback_minutes: int = 0,
    ) -> TokenCounts:
        """Tokens per SLA and type over the minutes after the look-back, exactly as counted.

        From the gateways' counters at minute boundaries (`counter_increments`), so the tokens
        billed over consecutive periods add up to what the gateways counted, whatever the scrape
        offset; rounded to whole tokens once, per SLA and type.
        """
        query = pod_counter(mn.GATEWAY_TOKENS, by=mn.TOKEN_TYPE_LABEL)
        by_type: dict[str, NDArray[np.int64]] = {}
        per_minute = self._counter_increments(query, index, start, minutes, by=mn.TOKEN_TYPE_LABEL)
        for (row, kind), counts in per_minute.items():
            totals = by_type.setdefault(kind, np.zeros(len(index), dtype=np.int64))
            totals[row] += round(float(np.nansum(counts[lookback_minutes:])))
        return TokenCounts(by_type=by_type, slas=len(index))

    def _counter_minutes(
        self, query: str, index: Mapping[tuple[str, str], int], start: datetime, minutes: int
    ) -> NDArray[np.float64]:
        """SLAs x minutes of a counter's increments (NaN where no pod of the SLA had a value)."""
        matrix = np.full((len(index), minutes), np.nan)
        for (row, _label), increments in self._counter_increments(
            query, index, start, minutes
        ).items():
            matrix[row] = increments
        return matrix

    def _counter_increments(
        self,
        query: str,
        index: Mapping[tuple[str, str], int],
        start: datetime,
        minutes: int,
        *,
        by: str = "",
    ) -> dict[tuple[int, str], NDArray[np.float64]]:
        """{(SLA row, value of label `by`): increments per minute} of a counter per pod.

        The query (`pod_counter`) is evaluated at the minutes' boundaries, start included
        (minutes + 1 points); each pod's series becomes increments (`counter_increments`) and the
        pods of an SLA are added.
        """
        boundaries = minutes + 1
        values: dict[tuple[int, str, str], NDArray[np.float64]] = {}
        for chunk_start in range(0, boundaries, self.max_points):
            chunk = min(self.max_points, boundaries - chunk_start)
            first = start + timedelta(minutes=chunk_start)
            last = start + timedelta(minutes=chunk_start + chunk - 1)
            for series in self._range(query, first, last):
                row = _row(series, index)
                if row is None:
                    continue
                labels = series["metric"]
                key = (row, labels.get(POD_LABEL, ""), labels.get(by, "") if by else "")
                at = values.setdefault(key, np.full(boundaries, np.nan))
                _fill_at(at, series["values"], start)
        summed: dict[tuple[int, str], NDArray[np.float64]] = {}
        for (row, _pod, label), at in values.items():
            increments = counter_increments(at)
            previous = summed.get((row, label))
            summed[row, label] = increments if previous is None else previous + increments
        return summed

    def _minute_matrix(
        self, query: str, index: Mapping[tuple[str, str], int], start: datetime, minutes: int
    ) -> NDArray[np.float64]:
        matrix = np.full((len(index), minutes), np.nan)
        for chunk_start in range(0, minutes, self.max_points):
            chunk_minutes = min(self.max_points, minutes - chunk_start)
            first = start + timedelta(minutes=chunk_start + 1)
            last = start + timedelta(minutes=chunk_start + chunk_minutes)
            for series in self._range(query, first, last):
                row = _row(series, index)
                if row is None:
                    continue
                _fill(matrix[row], series["values"], start)
        return matrix

    def _range(self, query: str, first: datetime, last: datetime) -> list[dict[str, Any]]:
        return _guarded(
            lambda: self.client.custom_query_range(
                query, start_time=first, end_time=last, step=STEP, timeout=self.timeout_s
            ),
            query,
        )

    def _instant(self, query: str, at: datetime) -> list[dict[str, Any]]:
        return _guarded(
            lambda: self.client.custom_query(
                query, params={"time": at.timestamp()}, timeout=self.timeout_s
            ),
            query,
        )


def consistent_buckets(
    pods: Mapping[str, Mapping[float, float]], threshold_s: float
) -> dict[float, float]:
    """One SLA's cumulative buckets summed over pods, from bounds every contributing pod has.

    Pods whose buckets include `threshold_s` contribute alone when there are any; otherwise all
    pods contribute, over the bounds they share. A pod without `+Inf` has no request count and
    never contributes.
    """
    counted = {pod: found for pod, found in pods.items() if math.inf in found}
    carrying = {
        pod: found
        for pod, found in counted.items()
        if any(math.isclose(le, threshold_s, rel_tol=1e-9) for le in found)
    }
    contributing = list((carrying or counted).values())
    if not contributing:
        return {}
    shared = set(contributing[0]).intersection(*contributing[1:])
    return {le: sum(found[le] for found in contributing) for le in shared}


def service_up(
    *, upstream: NDArray[np.float64], scrape: NDArray[np.float64], monitored: NDArray[np.bool_]
) -> NDArray[np.float64]:
    """Each SLA's up-state per minute: 1 up, 0 down, NaN only where monitoring saw nothing.

    `upstream` and `scrape` are SLAs x minutes, already the best replica's (NaN where the SLA had
    no series); `monitored` is per minute. A monitored minute without the gateway's upstream
    signal has no endpoint serving: down.
    """
    seen = np.asarray(monitored, dtype=np.bool_)[None, :]
    gateway = np.where(seen & np.isnan(upstream), 0.0, upstream)
    # Down if either says down; known if either is known (fmin ignores one missing side).
    return np.asarray(np.fmin(gateway, scrape), dtype=np.float64)


def per_sla_query(
    source: PrometheusSource, targets: Sequence[SLATarget], period: Period
) -> NDArray[np.float64]:
    """In-contract requests per minute with one query per SLA: the anti-pattern, for benchmarks."""
    matrix = np.full((len(targets), period.minutes), np.nan)
    for row, target in enumerate(targets):
        selector = f'{mn.NAMESPACE_LABEL}="{target.namespace}",{mn.SLA_LABEL}="{target.name}"'
        outcomes = "|".join(mn.IN_CONTRACT_OUTCOMES)
        query = (
            f"sum by ({POD_LABEL})"
            f' ({mn.GATEWAY_REQUESTS}{{{selector},{mn.OUTCOME_LABEL}=~"{outcomes}"}})'
        )
        single = source._counter_minutes(query, {("", ""): 0}, period.start, period.minutes)
        matrix[row] = single[0]
    return matrix


TOKEN_CARRY_MINUTES = 60
"""How far before a window the token counters are read, to carry a value over a missing boundary."""


def counter_increments(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """Increments per minute of one counter from its values at the minute boundaries.

    No `increase()`: it extrapolates to the window's edges, so counts depended on where scrapes
    fell and tokens billed differed from tokens counted. Here a minute's count is the counter at
    its end minus the counter at its start, the latest samples at or before each boundary (the
    same on Prometheus 2 and 3: both include a sample at the right edge), so a sample exactly on
    a boundary counts in the minute that ends there. A boundary without a
    value carries the previous one; before its first value a counter is 0 (series are born at
    0, with the first request); a value lower than the one before is a restart, counted from 0.
    Summed over minutes, the counts telescope to exactly what the counter counted.
    """
    seen = ~np.isnan(values)
    latest = np.where(seen, np.arange(values.shape[0]), 0)
    np.maximum.accumulate(latest, out=latest)
    carried = np.where(seen[latest], values[latest], 0.0)
    delta = np.diff(carried)
    return np.asarray(np.where(delta < 0, carried[1:], delta), dtype=np.float64)


def _seconds(period: Period) -> int:
    return int((period.end - period.start).total_seconds())


def _row(series: Mapping[str, Any], index: Mapping[tuple[str, str], int]) -> int | None:
    labels = series.get("metric", {})
    key = (labels.get(mn.NAMESPACE_LABEL, ""), labels.get(mn.SLA_LABEL, ""))
    # An aggregate without the grouping labels (per_sla_query's sum) maps to the single row.
    return index.get(key)


def _fill_at(row: NDArray[np.float64], values: Sequence[Sequence[Any]], start: datetime) -> None:
    """Values at minute boundaries: column k is start + k minutes."""
    if not values:
        return
    samples = np.asarray(values, dtype=np.float64)
    columns = np.rint((samples[:, 0] - start.timestamp()) / 60).astype(np.int64)
    inside = (columns >= 0) & (columns < row.shape[0])
    row[columns[inside]] = samples[inside, 1]


def _fill(row: NDArray[np.float64], values: Sequence[Sequence[Any]], start: datetime) -> None:
    if not values:
        return
    samples = np.asarray(values, dtype=np.float64)
    columns = np.rint((samples[:, 0] - start.timestamp()) / 60).astype(np.int64) - 1
    inside = (columns >= 0) & (columns < row.shape[0])
    row[columns[inside]] = samples[inside, 1]


def _value(sample: Sequence[Any]) -> float:
    return float(sample[1])


def _guarded(call: Callable[[], Any], query: str) -> list[dict[str, Any]]:
    try:
        result = call()
    except (RequestException, PrometheusApiClientException, ValueError, KeyError) as error:
        raise SourceUnavailable(f"Prometheus did not answer {query!r}: {error}") from error
    if not isinstance(result, list):
        raise SourceUnavailable(f"Prometheus answered {query!r} with {type(result).__name__}")
    return result
