"""Pure parts of the reporting API: period selection, risk ranking, static tokens, the cache, a
closed period's figures as settled."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiconn.api.auth import Caller
from aiconn.api.fleetview import risk
from aiconn.api.models import FleetItem
from aiconn.api.reports import PeriodError, resolve_period, settled_report
from aiconn.api.slas import SLA
from aiconn.api.staticauth import StaticAuthorizer, load_static_tokens
from aiconn.api.ttlcache import TTLCache
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec, AIInferenceSLAStatus, Window
from aiconn.sla.evaluate import FleetTerms, evaluate_fleet
from aiconn.sla.periods import Period
from aiconn.store.ledger import Ledger
from tests.factories import availability_series, llama_8b_spec, settle

NOW = datetime(2025, 3, 17, 12, 0, tzinfo=UTC)
JAN = Period(start=datetime(2025, 1, 1, tzinfo=UTC), end=datetime(2025, 2, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ("2025-02", datetime(2025, 2, 1, tzinfo=UTC)),
        ("2024-12", datetime(2024, 12, 1, tzinfo=UTC)),
        ("2025-02-01T00:00:00Z", datetime(2025, 2, 1, tzinfo=UTC)),
        ("2025-02-01T01:00:00+01:00", datetime(2025, 2, 1, tzinfo=UTC)),
        ("2025-02-01", datetime(2025, 2, 1, tzinfo=UTC)),
    ],
)
def test_closed_periods_are_named_by_month_or_start(text: str, start: datetime) -> None:
    period = resolve_period(text, Window(), NOW)
    assert period is not None and period.start == start


@pytest.mark.parametrize("text", ["current", "2025-03", "2025-03-01T00:00:00Z"])
def test_the_running_period_is_current(text: str) -> None:
    assert resolve_period(text, Window(), NOW) is None


@pytest.mark.parametrize(
    ("text", "window", "says"),
    [
        ("2025-13", Window(), "is not 'current'"),
        ("yesterday", Window(), "is not 'current'"),
        ("2025-04", Window(), "has not started yet"),
        (
            "2025-02-02T00:00:00Z",
            Window(),
            "the period containing it starts at 2025-02-01T00:00:00Z",
        ),
        ("2025-02", Window(duration="1w"), "does not start a period"),
        ("2025-02", Window(duration="30d", calendar_aligned=False), "rolling"),
        ("1900-01", Window(), "before 1970"),
        ("9999-12", Window(), "out of range"),
        # Calendar edges: an offset that moves the start past year 1 or year 9999 in UTC.
        ("0001-01-01T00:00:00+23:59", Window(), "out of range"),
        ("0001-01-01T00:00:00+00:01", Window(), "out of range"),
        ("9999-12-31T23:59:59-23:59", Window(), "out of range"),
        ("9999-12-31T23:59:59.999999-00:01", Window(), "out of range"),
        ("9999-12-31T23:59:59Z", Window(), "out of range"),
        ("9999-12-01T00:00:00Z", Window(), "out of range"),
        ("0001-01-01T00:00:00Z", Window(), "before 1970"),
        ("1969-12-31T23:59:59Z", Window(), "before 1970"),
        ("9999-12", Window(duration="1d"), "has not started yet"),
        ("9999-12-31T00:00:00Z", Window(duration="1d"), "out of range"),
        ("9999-12-31T23:00:00Z", Window(duration="1h"), "out of range"),
        ("9999-12-31T23:59:00Z", Window(duration="1m"), "out of range"),
        ("2024-02-30T00:00:00Z", Window(), "is not 'current'"),
    ],
)
def test_bad_periods_say_what_would_be_accepted(text: str, window: Window, says: str) -> None:
    with pytest.raises(PeriodError, match=says):
        resolve_period(text, window, NOW)


def _item(
    compliant: str, budget: float | None, alerts: list[str], phase: str | None = None
) -> FleetItem:
    return FleetItem(
        namespace="n", name="s", tenant="t", model="m", tier=None, site=None, phase=phase,
        compliant=compliant, availability_percent=None, ttft_attainment_percent=None,
        tpot_attainment_percent=None, budget_remaining_percent=budget, coverage_percent=None,
        alerts=alerts, credits_accrued=None, currency="EUR", evaluated_at=None, risk=0,
        evaluation_age_seconds=None,
    )  # fmt: skip


def test_risk_puts_non_compliance_then_pages_then_spent_budget_first() -> None:
    # Issue 15 changed one rank: an SLA not measured yet no longer outranks alerts and spent
    # budget (it scored 500, so a fleet of new SLAs was all 500); it ranks just above healthy.
    ranked = [
        _item("False", 90, []),
        _item("True", 50, ["page-1h"]),
        _item("True", 20, ["ticket-1d"]),
        _item("True", 10, []),
        _item("Unknown", None, []),
        _item("True", 95, []),
    ]
    scores = [risk(i) for i in ranked]
    assert scores == sorted(scores, reverse=True)
    assert len(set(scores)) == len(scores)


def test_risk_puts_failing_and_unplaceable_slas_above_alerts_and_below_a_breach() -> None:
    ranked = [
        _item("False", -50, ["page-1h"], phase="Breached"),
        _item("Unknown", None, [], phase="Failed"),
        _item("Unknown", None, [], phase="Unplaceable"),
        _item("Unknown", None, [], phase="Degraded"),
        _item("True", 40, ["page-1h", "page-6h"], phase="AtRisk"),
        _item("True", 70, [], phase="Ready"),
        _item("Unknown", None, [], phase="Provisioning"),
        _item("True", 100, [], phase="Ready"),
    ]
    scores = [risk(i) for i in ranked]
    assert scores == sorted(scores, reverse=True)
    assert len(set(scores)) == len(scores)


def test_static_tokens_grant_namespaces_and_star_grants_the_fleet(tmp_path: Path) -> None:
    path = tmp_path / "tokens.csv"
    path.write_text("# local tokens\ntok-a,alice,ns-a,ns-c\n\ntok-noc,noc,*\ntok-a2,alice,ns-d\n")
    auth = StaticAuthorizer.from_file(path)
    alice = auth.authenticate("tok-a")
    assert alice == Caller(username="alice")
    assert [auth.may_read_namespace(alice, ns) for ns in ("ns-a", "ns-c", "ns-d", "ns-b")] == [
        True, True, True, False,
    ]  # fmt: skip
    assert not auth.may_read_fleet(alice)
    noc = auth.authenticate("tok-noc")
    assert noc is not None and auth.may_read_fleet(noc) and auth.may_read_namespace(noc, "any")
    assert auth.authenticate("tok-") is None


def test_a_malformed_tokens_line_is_named_without_its_token(tmp_path: Path) -> None:
    path = tmp_path / "tokens.csv"
    path.write_text("secret-token,alice\n")
    with pytest.raises(ValueError, match=r"tokens.csv:1: expected") as err:
        load_static_tokens(path)
    assert "secret-token" not in str(err.value)


def test_cache_entries_expire_and_the_least_recently_used_goes_first() -> None:
    now = [0.0]
    cache: TTLCache[str, int] = TTLCache(size=2, seconds=5, clock=lambda: now[0])
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)  # evicts b, the least recently used
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)
    now[0] = 5.0
    assert cache.get("a") is None and len(cache) == 1


_OFFSETS = st.builds(
    timezone,
    st.timedeltas(
        min_value=-timedelta(hours=23, minutes=59), max_value=timedelta(hours=23, minutes=59)
    ),
)
_WINDOWS = st.sampled_from(
    [
        Window(),
        Window(duration="1d"),
        Window(duration="1h"),
        Window(duration="1m"),
        Window(duration="1w"),
    ]
)


@given(
    start=st.datetimes(timezones=_OFFSETS) | st.datetimes(),
    window=_WINDOWS,
    spec=st.sampled_from(["seconds", "microseconds", "minutes"]),
)
@settings(max_examples=400, deadline=None, database=None)
def test_any_period_start_is_resolved_or_refused_with_a_reason(
    start: datetime, window: Window, spec: str
) -> None:
    """Hypothesis reaches the calendar's edges (year 1, year 9999, +-23:59 offsets) on its own."""
    text = start.isoformat(timespec=spec)
    try:
        resolve_period(text, window, NOW)
    except PeriodError as err:
        assert str(err).startswith(f"period {text!r}")


@pytest.mark.parametrize("offset", ["+23:59", "-23:59", "+00:01", "-00:01", "Z"])
@pytest.mark.parametrize("day", ["0001-01-01T00:00:00", "9999-12-31T23:59:59"])
def test_calendar_edges_are_refused_not_crashed(day: str, offset: str) -> None:
    with pytest.raises(PeriodError):
        resolve_period(day + offset, Window(), NOW)


def _targeting(availability: float) -> AIInferenceSLASpec:
    return llama_8b_spec(
        objectives={
            "availability": {"targetPercent": availability},
            "ttft": {"thresholdMs": 300, "targetPercent": 99},
            "tpot": {"thresholdMs": 45, "targetPercent": 99},
        }
    )


def test_a_closed_periods_budget_is_the_one_settled_not_derived_at_todays_target(
    ledger: Ledger,
) -> None:
    # January at a 99.9 % target: 45 bad minutes, 300 without data, the rest good.
    up = np.ones((1, JAN.minutes))
    up[0, :45] = 0.0
    up[0, 45:345] = np.nan
    result = evaluate_fleet(
        terms=FleetTerms.from_specs([_targeting(99.9)]), series=availability_series(up)
    ).sla(0)
    assert result.budget_remaining_percent is not None
    assert result.budget_remaining_percent < 0  # 45 of 44,340 known minutes overspend 0.1 %
    settle(ledger, period=JAN, result=result, sla_uid="u-1")
    stored = ledger.settlement("u-1", JAN)
    assert stored is not None
    # The tenant relaxed the target to 99.5 % in February; January was settled at 99.9 %.
    relaxed = SLA(
        namespace="acme",
        name="chat",
        uid="u-1",
        spec=_targeting(99.5),
        status=AIInferenceSLAStatus(),
    )
    report = settled_report(relaxed, stored, [])
    assert report.budget_remaining_percent == result.budget_remaining_percent
    assert report.credit.credit_percent == stored.credit_percent
    # A settlement stored before budgets were (migration 10) has none: derived at today's target.
    older = settled_report(relaxed, dataclasses.replace(stored, budget_remaining_percent=None), [])
    assert older.budget_remaining_percent == pytest.approx(100 * (1 - 45 / 44_340 / 0.005))
