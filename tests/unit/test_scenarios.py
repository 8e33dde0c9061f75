"""Hand-computed settlements to the micro-unit (issue 11, "Must show"): calendar months (February
of a leap year and not), coverage at and below the floor, every tier boundary, the cap.

Every expected number below was worked out by hand, not by the code under test:

- February 2028 has 29 x 1440 = 41,760 minutes; February 2027 has 28 x 1440 = 40,320.
- 123,456,789 tokens at 0.5 per million cost 61.7283945, half-even to 61.728394.
- 99.9 % of 41,760 minutes leaves 41.76 minutes of budget: 41 bad minutes is 99.90182 %
  (no credit), 42 is 99.89943 % (< 99.9: 10 %). In February 2027, 41 bad is 99.89831 % (10 %).
- 1 % of 41,760 is 417.6: 417 bad is 99.00144 % (10 %), 418 is 98.99904 % (< 99: 25 %).
- 5 % is 2,088: 2,089 bad is 94.99760 % (< 95: 100 %).
- 10 % of 61.728394 is 6.1728394 -> 6.172839; 25 % is 15.4320985 -> 15.432098 (half-even);
  5 % is 3.0864197 -> 3.086420.
- Coverage: 4,176 unknown minutes of 41,760 is exactly 90.0 % known (settles at a 90 % floor);
  4,177 is 89.9976 % (held).

The published business-hours SLA (`manifests/samples`: offer business-hours-sla, SLA
service-desk-8b): 99.9 % during Mon-Fri 08:00-18:00 Europe/Berlin per UTC calendar month, 5 / 10
/ 25 % below 99.9 / 99.7 / 95 %, maintenance announced 72 h ahead excused:

- Business days: February 2028 has 21 (Tue 1 .. Tue 29), so 21 x 600 = 12,600 judged minutes;
  March 2026 and October 2026 have 22 each, 13,200. Berlin is UTC+1 in winter (08:00-18:00 is
  07:00-17:00 UTC) and UTC+2 from Sunday 29 March / until Sunday 25 October 2026 (06:00-16:00).
- 123,456,789 tokens at 1.2 per million cost 148.1481468, half-even to 148.148147; 5 % is
  7.40740735 -> 7.407407, 10 % is 14.8148147 -> 14.814815, 25 % 37.03703675 -> 37.037037.
- 99.9 % of 12,600 leaves 12.6 minutes: 12 bad is 99.90476 % (none), 13 is 99.89683 % (5 %).
  5 % of 12,600 is 630: 630 bad is exactly 95 % (10 %), 631 is 94.99206 % (25 %).
- A 50-minute outage from 09:00 UTC on Wed 9 February 2028 inside a 09:00-10:00 window: declared
  96 h ahead, all 60 window minutes are excused (12,540 judged, none bad); declared 48 h ahead,
  none (50 bad of 12,600 is 99.60317 %: 10 %); declared 71 h 30 min ahead, only 09:30-10:00
  (30 bad of 12,570 is 99.76134 %: 5 %).
- Monitoring blind 09:00-11:00 UTC with the window declared in time: 60 excused, 60 unknown,
  coverage 12,480 / 12,540 = 99.52 %, settles with no credit.
- Around DST: down 06:00-07:00 UTC on Fri 27 March 2026 (07:00 CET: outside) and Mon 30 March
  (08:00 CEST: inside) is 60 bad of 13,200, 99.54545 % (10 %); down 16:00-17:00 UTC on Mon 30
  March (18:00 CEST: outside) is none, where a fixed UTC+1 would have counted it. In October,
  down 06:00-07:00 UTC on Fri 23 (08:00 CEST: inside) and Mon 26 (07:00 CET: outside): 60 bad.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from aiconn.operator.evaluation import SLARef
from aiconn.resources.v1alpha1.offer import AIInferenceOfferSpec
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec, Window
from aiconn.sla.accounting import SettlementState
from aiconn.sla.evaluate import FleetSeries, FleetTerms, evaluate_fleet
from aiconn.sla.judged import MinuteRules
from aiconn.sla.maintenance import MaintenanceWindow
from aiconn.sla.offer import effective_spec
from aiconn.sla.periods import period_containing
from aiconn.sla.sli import Occurrences
from aiconn.store.ledger import Ledger
from tests.factories import settle, settle_ref, small_sla_spec

TOKENS = 123_456_789
CHARGE_MICROS = 61_728_394
MONTH = Window(duration="1M")
SPEC = small_sla_spec(tokens={"pricePerMillionTokens": 0.5})


LEAP_FEB = (2028, 2)


@dataclass(frozen=True)
class Scenario:
    name: str
    bad: int
    month: tuple[int, int] = LEAP_FEB
    minutes: int = 41_760
    unknown: int = 0
    ttft_good_per_mille: int = 1000
    state: SettlementState = SettlementState.SETTLED
    credit_percent: str = "0"


CREDIT_MICROS = {
    "0": 0,
    "5": 3_086_420,
    "10": 6_172_839,
    "25": 15_432_098,
    "100": CHARGE_MICROS,
}
"""Each credit percent of CHARGE_MICROS, worked out by hand in the module's docstring."""

SCENARIOS = [
    Scenario("leap Feb, 41 bad: within budget", bad=41),
    Scenario("leap Feb, 42 bad", bad=42, credit_percent="10"),
    Scenario(
        "Feb 2027, 41 bad: 28 days make it a miss",
        bad=41,
        month=(2027, 2),
        minutes=40_320,
        credit_percent="10",
    ),
    Scenario("417 bad: still >= 99 %", bad=417, credit_percent="10"),
    Scenario("418 bad: < 99 %", bad=418, credit_percent="25"),
    Scenario(
        "2089 bad and TTFT 98.5 %: 100 % + 5 % capped at 100 %",
        bad=2_089,
        ttft_good_per_mille=985,
        credit_percent="100",
    ),
    Scenario(
        "TTFT 98.5 % only",
        bad=0,
        ttft_good_per_mille=985,
        credit_percent="5",
    ),
    Scenario("coverage exactly at the 90 % floor", bad=0, unknown=4_176),
    Scenario(
        "coverage just below the floor",
        bad=0,
        unknown=4_177,
        state=SettlementState.HELD_FOR_REVIEW,
    ),
]


def month_series(up: np.ndarray, *, ttft_good: float, tpot_good: float) -> FleetSeries:
    """One SLA's month: availability `up`, no request in contract, `ttft_good` and `tpot_good` of
    1,000 requests within their thresholds (exact), TOKENS metered."""
    minutes = up.shape[1]
    one = np.ones(1, dtype=bool)
    return FleetSeries(
        in_contract=np.zeros((1, minutes), dtype=np.uint16),
        failed=np.zeros((1, minutes), dtype=np.uint16),
        up=up,
        ttft=Occurrences(good=np.array([ttft_good]), total=np.array([1000.0]), exact=one),
        tpot=Occurrences(good=np.array([tpot_good]), total=np.array([1000.0]), exact=one),
        tokens=np.array([TOKENS], dtype=np.int64),
    )


@pytest.mark.parametrize("case", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_settlement_to_the_micro_unit(case: Scenario, ledger: Ledger) -> None:
    period = period_containing(MONTH, datetime(*case.month, 10, tzinfo=UTC))
    assert period.minutes == case.minutes
    up = np.ones((1, case.minutes), dtype=np.float32)
    up[0, : case.bad] = 0
    up[0, case.bad : case.bad + case.unknown] = np.nan
    series = month_series(up, ttft_good=float(case.ttft_good_per_mille), tpot_good=1000.0)
    result = evaluate_fleet(terms=FleetTerms.from_specs([SPEC]), series=series).sla(0)
    settlement = settle(ledger, period=period, result=result)
    assert settlement.state is case.state
    assert settlement.charges_micros == CHARGE_MICROS
    assert settlement.credit_percent == Decimal(case.credit_percent)
    assert settlement.credit_micros == CREDIT_MICROS[case.credit_percent]


SAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "samples"
PUBLISHED_CHARGE_MICROS = 148_148_147
PUBLISHED_CREDIT_MICROS = {"0": 0, "5": 7_407_407, "10": 14_814_815, "25": 37_037_037}
"""Each credit percent of PUBLISHED_CHARGE_MICROS, worked out by hand in the module's docstring."""


def published_sla() -> SLARef:
    """The shipped sample SLA under the shipped offer, as the operator acts on it."""
    offers = {
        d["metadata"]["name"]: d for d in yaml.safe_load_all((SAMPLES / "offers.yaml").read_text())
    }
    body = yaml.safe_load((SAMPLES / "sla-business-hours.yaml").read_text())
    offer = AIInferenceOfferSpec.model_validate(offers[body["spec"]["offer"]]["spec"])
    spec = effective_spec(AIInferenceSLASpec.model_validate(body["spec"]), offer)
    return SLARef(
        uid="published",
        namespace="stadtwerke",
        name=body["metadata"]["name"],
        created=datetime(2020, 1, 1, tzinfo=UTC),
        spec=spec,
        status={},
        offer=offer,
    )


def utc(day: str, clock: str) -> datetime:
    return datetime.fromisoformat(f"{day}T{clock}:00+00:00")


@dataclass(frozen=True)
class Span:
    start: datetime
    minutes: int


@dataclass(frozen=True)
class CalendarScenario:
    name: str
    bad: int
    month: tuple[int, int] = LEAP_FEB
    judged: int = 12_600
    credit_percent: str = "0"
    excused: int = 0
    down: tuple[Span, ...] = ()
    blind: tuple[Span, ...] = ()
    windows: tuple[MaintenanceWindow, ...] = ()


FEB9 = MaintenanceWindow(
    name="feb9",
    start=utc("2028-02-09", "09:00"),
    end=utc("2028-02-09", "10:00"),
    offers=frozenset({"business-hours-sla"}),
    declared=utc("2028-02-05", "09:00"),
)
OUTAGE_FEB9 = Span(utc("2028-02-09", "09:00"), 50)


def outage_in_feb9(name: str, *, hours_ahead: float, **outcome: Any) -> CalendarScenario:
    """`OUTAGE_FEB9` inside window FEB9, the window declared `hours_ahead` before it starts."""
    declared = FEB9.start - timedelta(hours=hours_ahead)
    window = dataclasses.replace(FEB9, declared=declared)
    return CalendarScenario(name, down=(OUTAGE_FEB9,), windows=(window,), **outcome)


def six_utc_across_dst(name: str, friday: str, monday: str) -> CalendarScenario:
    """Down 06:00-07:00 UTC on `friday` and on `monday`, either side of a 2026 clock change (a
    month of 22 business days): one of the two hours is inside business hours, whichever way the
    clocks went, so 60 of 13,200 judged minutes are bad (10 %)."""
    first, second = utc(friday, "06:00"), utc(monday, "06:00")
    return CalendarScenario(
        name,
        month=(first.year, first.month),
        judged=13_200,
        bad=60,
        credit_percent="10",
        down=(Span(first, 60), Span(second, 60)),
    )


CALENDAR_SCENARIOS = [
    CalendarScenario(
        "leap Feb, 12 bad minutes in business hours",
        bad=12,
        down=(Span(utc("2028-02-01", "07:00"), 12),),
    ),
    CalendarScenario(
        "leap Feb, 13 bad",
        bad=13,
        credit_percent="5",
        down=(Span(utc("2028-02-01", "07:00"), 13),),
    ),
    CalendarScenario(
        "a ten-hour night outage is outside business hours",
        bad=12,
        down=(Span(utc("2028-02-01", "07:00"), 12), Span(utc("2028-02-01", "20:00"), 600)),
    ),
    CalendarScenario(
        "630 bad: exactly 95 %",
        bad=630,
        credit_percent="10",
        down=(Span(utc("2028-02-01", "07:00"), 600), Span(utc("2028-02-02", "07:00"), 30)),
    ),
    CalendarScenario(
        "631 bad: below 95 %",
        bad=631,
        credit_percent="25",
        down=(Span(utc("2028-02-01", "07:00"), 600), Span(utc("2028-02-02", "07:00"), 31)),
    ),
    outage_in_feb9(
        "maintenance announced 96 h ahead excuses the outage in it",
        hours_ahead=96,
        judged=12_540,
        bad=0,
        excused=60,
    ),
    outage_in_feb9(
        "maintenance announced 48 h ahead (under the notice) excuses nothing",
        hours_ahead=48,
        bad=50,
        credit_percent="10",
    ),
    outage_in_feb9(
        "maintenance announced 71 h 30 min ahead excuses only its last half hour",
        hours_ahead=71.5,
        judged=12_570,
        bad=30,
        credit_percent="5",
        excused=30,
    ),
    CalendarScenario(
        "unseen minutes in an announced window are excused, not unknown",
        judged=12_540,
        bad=0,
        excused=60,
        blind=(Span(utc("2028-02-09", "09:00"), 120),),
        windows=(FEB9,),
    ),
    six_utc_across_dst(
        "spring DST: 06:00 UTC is outside on Friday, inside on Monday", "2026-03-27", "2026-03-30"
    ),
    CalendarScenario(
        "spring DST: 16:00 UTC on Monday is after closing",
        month=(2026, 3),
        judged=13_200,
        bad=0,
        down=(Span(utc("2026-03-30", "16:00"), 60),),
    ),
    six_utc_across_dst(
        "autumn DST: 06:00 UTC is inside on Friday, outside on Monday", "2026-10-23", "2026-10-26"
    ),
]


@pytest.mark.parametrize("case", CALENDAR_SCENARIOS, ids=[s.name for s in CALENDAR_SCENARIOS])
def test_the_published_business_hours_sla_settles_to_the_micro_unit(
    case: CalendarScenario, ledger: Ledger
) -> None:
    sla = published_sla()
    period = period_containing(sla.spec.objectives.window, datetime(*case.month, 10, tzinfo=UTC))
    up = np.ones((1, period.minutes), dtype=np.float32)
    for value, spans in ((0.0, case.down), (np.nan, case.blind)):
        for span in spans:
            first = int((span.start - period.start) / timedelta(minutes=1))
            up[0, first : first + span.minutes] = value
    rules = MinuteRules.build(
        [sla.minute_rule(case.windows)], start=period.start, columns=period.minutes
    )
    result = evaluate_fleet(
        terms=FleetTerms.from_specs([sla.spec]),
        series=month_series(up, ttft_good=900.0, tpot_good=900.0),
        minute_rules=rules,
    ).sla(0)
    assert (result.judged_minutes, result.bad_minutes, result.excused_minutes) == (
        case.judged,
        case.bad,
        case.excused,
    )
    settlement = settle_ref(ledger, sla, period=period, result=result)
    assert settlement.state is SettlementState.SETTLED
    assert settlement.charges_micros == PUBLISHED_CHARGE_MICROS
    # Latency at 90 % earns nothing: the published SLA credits availability only.
    assert settlement.credit_percent == Decimal(case.credit_percent)
    assert settlement.credit_micros == PUBLISHED_CREDIT_MICROS[case.credit_percent]
    assert (settlement.judged_minutes, settlement.excused_minutes) == (case.judged, case.excused)
