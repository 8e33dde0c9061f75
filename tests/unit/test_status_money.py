"""Money in every custom resource's status is an exact decimal string, never a float (issue 10):
what the SLA evaluation computes as a Decimal is what status, the API and the printed table read."""

from __future__ import annotations

import types
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel

from aiconn.api.fleetview import group_summaries
from aiconn.api.models import FleetItem
from aiconn.operator import health
from aiconn.operator.evaluation import period_status
from aiconn.resources.v1alpha1.crds import RESOURCES
from aiconn.resources.v1alpha1.meta import CamelModel
from aiconn.resources.v1alpha1.sla import PeriodStatus, Window
from aiconn.sla.credits import CreditBreakdown
from aiconn.sla.periods import period_containing
from tests.factories import sla_evaluation

MONEY_WORDS = ("charge", "credit", "penalt", "balance", "price", "cost", "fee", "amount")
"""A field whose name holds one of these is money, unless it is a percent."""


def _types(annotation: Any) -> Iterator[Any]:
    """Every type an annotation names: through unions, lists and dicts."""
    origin = get_origin(annotation)
    if origin is None:
        yield annotation
        return
    if origin not in (Union, types.UnionType):
        yield origin
    for arg in get_args(annotation):
        yield from _types(arg)


def _money_fields(
    model: type[BaseModel], seen: set[type] | None = None
) -> Iterator[tuple[str, Any]]:
    """(Model.field, annotation) of each money field of `model` and the models it holds."""
    seen = set() if seen is None else seen
    if model in seen:
        return
    seen.add(model)
    for name, info in model.model_fields.items():
        if any(w in name for w in MONEY_WORDS) and not name.endswith("_percent"):
            yield f"{model.__name__}.{name}", info.annotation
        for t in _types(info.annotation):
            if isinstance(t, type) and issubclass(t, BaseModel):
                yield from _money_fields(t, seen)


def _float_money(model: type[BaseModel]) -> list[str]:
    return [name for name, a in _money_fields(model) if float in set(_types(a))]


def test_no_money_field_of_any_status_is_a_float() -> None:
    statuses = [info.status for info in RESOURCES if info.status is not None]
    found = {name for status in statuses for name, _ in _money_fields(status)}
    # The walk reaches the amounts it guards (a walk that found nothing would pass vacuously).
    assert {
        "PeriodStatus.charges",
        "PeriodStatus.credits_accrued",
        "SettlementStatus.charges",
        "SettlementStatus.credits",
        "AssuranceAction.capacity_cost",
        "AssuranceAction.expected_credit",
    } <= found
    assert [name for status in statuses for name in _float_money(status)] == []


def test_the_walk_would_catch_a_float_amount_nested_in_a_list() -> None:
    class Entry(CamelModel):
        penalty: float | None = None
        penalty_percent: float | None = None

    class Status(CamelModel):
        entries: list[Entry] = []
        fees: dict[str, float] = {}

    assert _float_money(Status) == ["Entry.penalty", "Status.fees"]


def _written(charges: Decimal, credit: Decimal) -> dict[str, Any]:
    result = sla_evaluation(
        minutes=60,
        good_minutes=59,
        bad_minutes=1,
        availability_percent=59 / 60 * 100,
        tokens_used=1_000_000,
        price_per_million_tokens=Decimal("0.5"),
        charges=charges,
        credit=CreditBreakdown(
            availability_percent=Decimal(10),
            latency_percent=Decimal(0),
            total_percent=Decimal(10),
            amount=credit,
        ),
    )
    period = period_containing(Window(), datetime(2026, 3, 15, tzinfo=UTC))
    return period_status(period, result, at="2026-03-15T12:00:00Z")


def test_the_period_status_carries_the_evaluations_exact_decimal_strings() -> None:
    # 18 significant digits: a float on the way would have lost the last ones.
    charges, credit = Decimal("123456789012.345679"), Decimal("12345678901.234568")
    written = _written(charges, credit)
    assert (written["charges"], written["creditsAccrued"]) == (
        "123456789012.345679",
        "12345678901.234568",
    )
    assert (Decimal(written["charges"]), Decimal(written["creditsAccrued"])) == (charges, credit)
    read = PeriodStatus.model_validate(written)
    assert (read.charges, read.credits_accrued) == ("123456789012.345679", "12345678901.234568")


def test_a_period_status_amount_is_written_to_the_micro_unit() -> None:
    written = _written(Decimal("0.1"), Decimal(0))
    assert (written["charges"], written["creditsAccrued"]) == ("0.100000", "0.000000")


def test_a_period_written_with_numbers_by_an_earlier_version_still_reads() -> None:
    old = PeriodStatus.model_validate({"charges": 0.018267, "creditsAccrued": 0})
    assert (old.charges, old.credits_accrued) == ("0.018267", "0.000000")


def test_the_printed_credits_round_the_decimal_string() -> None:
    shown = health.summary({"period": {"creditsAccrued": "12.345678"}}, currency="EUR")
    assert shown["credits"] == "12.35 EUR"
    # Half-even on the decimal as written (a float 0.165 is 0.16500000000000000777 and shows 0.17).
    shown = health.summary({"period": {"creditsAccrued": "0.165000"}}, currency="EUR")
    assert shown["credits"] == "0.16 EUR"


def _item(credits: str | None, currency: str = "EUR") -> FleetItem:
    return FleetItem(
        namespace="n", name="s", tenant="t", model="m", tier="edge", site=None, phase="Ready",
        compliant="True", availability_percent=None, ttft_attainment_percent=None,
        tpot_attainment_percent=None, budget_remaining_percent=None, coverage_percent=None,
        alerts=[], credits_accrued=None if credits is None else Decimal(credits),
        currency=currency, evaluated_at=None, risk=0, evaluation_age_seconds=None,
    )  # fmt: skip


def test_the_fleets_credits_add_up_as_decimals() -> None:
    items = [_item("0.100000"), _item("0.200000"), _item(None), _item("1.000001", "USD")]
    (edge,) = group_summaries(items, lambda i: i.tier)
    # As floats, 0.1 + 0.2 is 0.30000000000000004.
    assert edge.credits_accrued == {"EUR": Decimal("0.300000"), "USD": Decimal("1.000001")}
    assert edge.model_dump(mode="json", by_alias=True)["creditsAccrued"] == {
        "EUR": "0.300000",
        "USD": "1.000001",
    }
