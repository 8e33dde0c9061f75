"""Excused minutes: planned maintenance announced in advance, never retroactively, and service
hours; what the fleet evaluation counts with them (issue 11, item 8)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from aiconn.operator.evaluation import SLARef
from aiconn.resources.v1alpha1.offer import AIInferenceOfferSpec
from aiconn.resources.v1alpha1.servicehours import ServiceHours
from aiconn.sla.evaluate import FleetSeries, FleetTerms, evaluate_fleet
from aiconn.sla.evidence import Verdict, decode_runs, minute_verdicts
from aiconn.sla.judged import MinuteRule, MinuteRules
from aiconn.sla.maintenance import MaintenanceWindow, excused_minutes, excused_spans
from aiconn.sla.sli import Occurrences
from tests.factories import small_sla_spec

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
SPEC = small_sla_spec(tokens={"pricePerMillionTokens": 1})


def window(*, start: datetime, end: datetime, declared: datetime) -> MaintenanceWindow:
    return MaintenanceWindow(
        name="w", start=start, end=end, offers=frozenset({"gold"}), declared=declared
    )


def test_a_window_declared_with_the_notice_excuses_all_of_it() -> None:
    w = window(start=T0, end=T0 + HOUR, declared=T0 - 3 * HOUR)
    assert excused_spans([w], offer="gold", notice=2 * HOUR) == ((T0, T0 + HOUR),)


def test_a_window_declared_late_excuses_only_what_begins_after_declaration_plus_notice() -> None:
    # Declared at 09:30:20 with 1 h notice: 10:30:20, so the first excused minute is 10:31.
    w = window(start=T0, end=T0 + HOUR, declared=T0 - timedelta(minutes=29, seconds=40))
    assert excused_spans([w], offer="gold", notice=HOUR) == (
        (T0 + timedelta(minutes=31), T0 + HOUR),
    )


def test_a_window_declared_during_or_after_an_outage_excuses_nothing() -> None:
    after = window(start=T0, end=T0 + HOUR, declared=T0 + 2 * HOUR)
    during = window(start=T0, end=T0 + HOUR, declared=T0 + timedelta(minutes=59, seconds=1))
    assert excused_spans([after, during], offer="gold", notice=timedelta(0)) == ()


def test_a_window_excuses_only_the_offers_it_names() -> None:
    w = window(start=T0, end=T0 + HOUR, declared=T0 - HOUR)
    assert excused_spans([w], offer="silver", notice=timedelta(0)) == ()


def test_the_declaration_time_is_the_api_servers_creation_timestamp() -> None:
    body: dict[str, Any] = {
        "metadata": {
            "name": "db-upgrade",
            "creationTimestamp": "2026-03-01T09:00:00Z",
            "annotations": {"declared": "2026-01-01T00:00:00Z"},
        },
        "spec": {
            "start": "2026-03-02T10:00:00Z",
            "end": "2026-03-02T11:00:00Z",
            "offers": ["gold"],
        },
    }
    w = MaintenanceWindow.from_body(body)
    assert w.declared == datetime(2026, 3, 1, 9, tzinfo=UTC)
    assert w.excused_from(timedelta(days=2)) == datetime(2026, 3, 3, 9, tzinfo=UTC)


def test_excused_minutes_are_whole_minutes_of_the_span() -> None:
    mask = excused_minutes(
        ((T0 + timedelta(minutes=2), T0 + timedelta(minutes=5)),), start=T0, minutes=10
    )
    assert mask.tolist() == [False, False, True, True, True, False, False, False, False, False]


def test_minute_verdicts_carry_excused_and_not_judged_as_codes() -> None:
    codes = minute_verdicts(
        bad=np.array([False, True, False, True, False]),
        known=np.array([True, True, False, True, True]),
        off_hours=np.array([False, False, False, False, True]),
        excused=np.array([False, False, False, True, False]),
    )
    assert [v for v, n in decode_runs(codes) for _ in range(n)] == [
        Verdict.GOOD,
        Verdict.BAD,
        Verdict.UNKNOWN,
        Verdict.EXCUSED,
        Verdict.OFF_HOURS,
    ]


def _evaluate(up: np.ndarray, rules: MinuteRules | None, lookback: int = 0) -> Any:
    n, minutes = up.shape
    one = np.ones(n, dtype=bool)
    full = np.full(n, 100.0)
    return evaluate_fleet(
        terms=FleetTerms.from_specs([SPEC] * n),
        series=FleetSeries(
            in_contract=np.zeros((n, minutes), dtype=np.uint16),
            failed=np.zeros((n, minutes), dtype=np.uint16),
            up=up.astype(np.float32),
            ttft=Occurrences(good=full, total=full, exact=one),
            tpot=Occurrences(good=full, total=full, exact=one),
            tokens=np.full(n, 1_000_000, dtype=np.int64),
            lookback_minutes=lookback,
        ),
        minute_rules=rules,
    )


def test_excused_minutes_are_neither_good_bad_nor_unknown_and_other_slas_are_untouched() -> None:
    minutes = 100
    up = np.ones((2, minutes))
    up[:, 10:30] = 0  # down 20 minutes
    up[:, 30:40] = np.nan  # monitoring blind 10 minutes
    spans = ((T0 + timedelta(minutes=20), T0 + timedelta(minutes=35)),)
    rules = MinuteRules.build([MinuteRule(excused=spans), MinuteRule()], start=T0, columns=minutes)
    fleet = _evaluate(up, rules)
    excused, plain = fleet.sla(0), fleet.sla(1)
    # Minutes 20-34 excused: 10 of the bad ones and 5 of the unknown ones.
    assert (excused.bad_minutes, excused.good_minutes, excused.excused_minutes) == (10, 70, 15)
    assert excused.judged_minutes == 85
    assert excused.coverage_percent == 100 * 80 / 85
    assert (plain.bad_minutes, plain.good_minutes, plain.excused_minutes) == (20, 70, 0)
    assert plain.judged_minutes == 100 and plain.coverage_percent == 90.0


def test_minutes_outside_service_hours_are_not_judged_and_excused_only_inside_them() -> None:
    # Monday 2 March 2026, Berlin is UTC+1: 08:00-18:00 local is 07:00-17:00 UTC.
    start = datetime(2026, 3, 2, tzinfo=UTC)
    minutes = 1440
    hours = ServiceHours(time_zone="Europe/Berlin", days=["Mon"], start="08:00", end="18:00")
    up = np.ones((1, minutes))
    up[0, 0 : 7 * 60] = 0  # down all night until 07:00 UTC: outside service hours
    up[0, 7 * 60 : 7 * 60 + 5] = 0  # 5 bad minutes inside
    # Maintenance 16:30-18:00 UTC: only 16:30-17:00 is inside service hours.
    spans = ((start + timedelta(hours=16, minutes=30), start + timedelta(hours=18)),)
    rules = MinuteRules.build(
        [MinuteRule(service_hours=hours, excused=spans)], start=start, columns=minutes
    )
    result = _evaluate(up, rules).sla(0)
    assert result.judged_minutes == 600 - 30
    assert result.excused_minutes == 30
    assert result.bad_minutes == 5
    assert result.good_minutes == 565


def test_burn_windows_leave_out_excused_minutes() -> None:
    minutes = 120
    up = np.ones((1, minutes))
    up[0, -5:] = 0  # the last five minutes down, all excused
    spans = ((T0 + timedelta(minutes=minutes - 5), T0 + timedelta(minutes=minutes)),)
    with_rules = _evaluate(
        up, MinuteRules.build([MinuteRule(excused=spans)], start=T0, columns=minutes)
    )
    without = _evaluate(up, None)
    assert without.sla(0).alerts, "five bad minutes in a row page without the excusal"
    assert with_rules.sla(0).alerts == ()
    assert {r for r in with_rules.sla(0).burn_rates.values() if r is not None} == {0.0}


def test_an_sla_without_an_offer_or_without_maintenance_terms_is_never_excused() -> None:
    w = window(start=T0, end=T0 + HOUR, declared=T0 - 30 * HOUR)
    offer = AIInferenceOfferSpec.model_validate(
        {
            "modelClasses": [{"name": "s", "models": [{"name": "m"}], "pricePerMillionTokens": 1}],
            "plan": {"includedTokensPerPeriod": 1},
            "sliceProfiles": [{"name": "embb", "sst": 1, "fiveQI": 9}],
            "allowedTiers": ["edge"],
        }
    )
    ref = SLARef(
        uid="u",
        namespace="n",
        name="s",
        created=T0,
        spec=SPEC.model_copy(update={"offer": "gold"}),
        status={},
        offer=offer,
    )
    assert ref.minute_rule([w]) == MinuteRule()
    terms = AIInferenceOfferSpec.model_validate(
        offer.model_dump() | {"maintenance": {"notice_minutes": 60}}
    )
    assert dataclasses.replace(ref, offer=terms).minute_rule([w]).excused == ((T0, T0 + HOUR),)
    legacy = SLARef(uid="u", namespace="n", name="s", created=T0, spec=SPEC, status={})
    assert legacy.minute_rule([w]) == MinuteRule()


def test_an_sla_created_mid_period_counts_excused_minutes_only_from_its_first_minute() -> None:
    minutes = 100
    up = np.ones((2, minutes), dtype=np.float32)
    up[:, 40:60] = 0
    spans = ((T0 + timedelta(minutes=40), T0 + timedelta(minutes=60)),)
    rules = MinuteRules.build([MinuteRule(excused=spans), MinuteRule()], start=T0, columns=minutes)
    one = np.ones(2, dtype=bool)
    full = np.full(2, 100.0)
    fleet = evaluate_fleet(
        terms=FleetTerms.from_specs([SPEC] * 2),
        series=FleetSeries(
            in_contract=np.zeros((2, minutes), dtype=np.uint16),
            failed=np.zeros((2, minutes), dtype=np.uint16),
            up=up,
            ttft=Occurrences(good=full, total=full, exact=one),
            tpot=Occurrences(good=full, total=full, exact=one),
            tokens=np.zeros(2, dtype=np.int64),
        ),
        in_force_from=[50, 50],
        minute_rules=rules,
    )
    excused, plain = fleet.sla(0), fleet.sla(1)
    assert (excused.judged_minutes, excused.excused_minutes, excused.bad_minutes) == (40, 10, 0)
    assert (plain.judged_minutes, plain.excused_minutes, plain.bad_minutes) == (50, 0, 10)
