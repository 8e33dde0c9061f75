"""The terms of a period are pinned once, in the ledger, and read back unchanged
(`aiconn.sla.terms`, `Ledger.pin_terms`): a later pin for the same SLA and period returns the
first, whatever the offer says by then; the next period pins afresh."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec
from aiconn.sla.accounting import TermsPin
from aiconn.sla.periods import Period
from aiconn.sla.terms import PeriodTerms
from aiconn.store.ledger import Ledger

SPEC = AIInferenceSLASpec.model_validate(
    {
        "offer": "bundle",
        "model": {"name": "m", "source": "hf://o/m", "parametersBillions": 8},
        "network": {"rttBudgetMs": 20},
        "tokens": {"pricePerMillionTokens": 0.0000015, "currency": "EUR"},
        "credits": {"availability": [{"belowPercent": 99, "creditPercent": 20}], "capPercent": 40},
    }
)
DECEMBER = Period(start=datetime(2026, 12, 1, tzinfo=UTC), end=datetime(2027, 1, 1, tzinfo=UTC))
JANUARY = Period(start=DECEMBER.end, end=datetime(2027, 2, 1, tzinfo=UTC))


def test_terms_round_trip_exactly() -> None:
    terms = PeriodTerms.of(SPEC)
    assert terms.price_per_million_tokens == Decimal("0.0000015")
    assert PeriodTerms.from_json(terms.to_json()) == terms
    assert (
        terms.apply(
            SPEC.model_copy(
                update={"tokens": SPEC.tokens.model_copy(update={"price_per_million_tokens": 99.0})}
            )
        ).tokens.price_per_million_tokens
        == 0.0000015
    )


def test_the_first_pin_of_a_period_stands(tmp_path: Path) -> None:
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    first = PeriodTerms.of(SPEC)
    repriced = PeriodTerms.of(
        SPEC.model_copy(
            update={"tokens": SPEC.tokens.model_copy(update={"price_per_million_tokens": 7.0})}
        )
    )
    assert ledger.pin_terms([TermsPin(sla_uid="u", period=DECEMBER, terms=first)]) == [first]
    got = ledger.pin_terms(
        [
            TermsPin(sla_uid="u", period=DECEMBER, terms=repriced),
            TermsPin(sla_uid="u", period=JANUARY, terms=repriced),
            TermsPin(sla_uid="v", period=DECEMBER, terms=repriced),
        ]
    )
    assert got == [first, repriced, repriced]
    assert ledger.pinned_terms("u", DECEMBER.start) == first
    assert ledger.pinned_terms("u", JANUARY.start) == repriced
    assert ledger.pinned_terms("w", DECEMBER.start) is None
    ledger.close()
