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
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from aiconn.sla.evaluate import FleetSeries, FleetTerms, evaluate_fleet
from aiconn.sla.ledger import Ledger, SettlementState, settle_period
from aiconn.sla.periods import period_containing
from aiconn.sla.sli import Occurrences
from aiconn.sla.spec import AIInferenceSLASpec, Window

TOKENS = 123_456_789
CHARGE_MICROS = 61_728_394
MONTH = Window(duration="1M")
SPEC = AIInferenceSLASpec.model_validate(
    {
        "model": {"name": "m", "source": "hf://org/m", "parametersBillions": 8},
        "network": {"rttBudgetMs": 20},
        "tokens": {"pricePerMillionTokens": 0.5},
    }
)


@dataclass(frozen=True)
class Scenario:
    name: str
    month: tuple[int, int]
    minutes: int
    bad: int
    unknown: int = 0
    ttft_good_per_mille: int = 1000
    state: SettlementState = SettlementState.SETTLED
    credit_percent: str = "0"
    credit_micros: int = 0


SCENARIOS = [
    Scenario("leap Feb, 41 bad: within budget", (2028, 2), 41_760, bad=41),
    Scenario(
        "leap Feb, 42 bad", (2028, 2), 41_760, bad=42, credit_percent="10", credit_micros=6_172_839
    ),
    Scenario(
        "Feb 2027, 41 bad: 28 days make it a miss",
        (2027, 2),
        40_320,
        bad=41,
        credit_percent="10",
        credit_micros=6_172_839,
    ),
    Scenario(
        "417 bad: still >= 99 %",
        (2028, 2),
        41_760,
        bad=417,
        credit_percent="10",
        credit_micros=6_172_839,
    ),
    Scenario(
        "418 bad: < 99 %",
        (2028, 2),
        41_760,
        bad=418,
        credit_percent="25",
        credit_micros=15_432_098,
    ),
    Scenario(
        "2089 bad and TTFT 98.5 %: 100 % + 5 % capped at 100 %",
        (2028, 2),
        41_760,
        bad=2_089,
        ttft_good_per_mille=985,
        credit_percent="100",
        credit_micros=CHARGE_MICROS,
    ),
    Scenario(
        "TTFT 98.5 % only",
        (2028, 2),
        41_760,
        bad=0,
        ttft_good_per_mille=985,
        credit_percent="5",
        credit_micros=3_086_420,
    ),
    Scenario("coverage exactly at the 90 % floor", (2028, 2), 41_760, bad=0, unknown=4_176),
    Scenario(
        "coverage just below the floor",
        (2028, 2),
        41_760,
        bad=0,
        unknown=4_177,
        state=SettlementState.HELD_FOR_REVIEW,
    ),
]


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield opened
    opened.close()


@pytest.mark.parametrize("case", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_settlement_to_the_micro_unit(case: Scenario, ledger: Ledger) -> None:
    period = period_containing(MONTH, datetime(*case.month, 10, tzinfo=UTC))
    assert period.minutes == case.minutes
    up = np.ones((1, case.minutes), dtype=np.float32)
    up[0, : case.bad] = 0
    up[0, case.bad : case.bad + case.unknown] = np.nan
    one = np.ones(1, dtype=bool)
    result = evaluate_fleet(
        terms=FleetTerms.from_specs([SPEC]),
        series=FleetSeries(
            in_contract=np.zeros((1, case.minutes), dtype=np.uint16),
            failed=np.zeros((1, case.minutes), dtype=np.uint16),
            up=up,
            ttft=Occurrences(
                good=np.array([float(case.ttft_good_per_mille)]),
                total=np.array([1000.0]),
                exact=one,
            ),
            tpot=Occurrences(good=np.array([1000.0]), total=np.array([1000.0]), exact=one),
            tokens=np.array([TOKENS], dtype=np.int64),
        ),
    ).sla(0)
    settlement = settle_period(
        ledger,
        sla_uid="uid",
        namespace="acme",
        name="chat",
        tenant="acme",
        period=period,
        result=result,
        coverage_floor_percent=90.0,
    )
    assert settlement.state is case.state
    assert settlement.charges_micros == CHARGE_MICROS
    assert settlement.credit_percent == Decimal(case.credit_percent)
    assert settlement.credit_micros == case.credit_micros
