"""Recompute a settlement from its evidence alone and say whether it matches (`aiconn verify`).

Nothing here asks Prometheus, the API server or the operator: availability comes from the minute
verdicts, coverage from the verdicts that were judged, latency attainments from the stored good
and total counts, the charge from the tokens and the price, and the credit from the stored
schedule, with the functions the settlement itself used (`aiconn.sla.credits`). Every figure the
evidence states is compared with its recomputation, the document with its SHA-256, and, when
the ledger's own settlement row is at hand, the ledger with the evidence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from pydantic import ValidationError

from aiconn.resources.v1alpha1.sla import CreditsSpec
from aiconn.sla.credits import (
    CreditBreakdown,
    attainment_percent,
    exact_decimal,
    period_credit,
    to_micros,
    tokens_for_amount,
    usage_charge,
)
from aiconn.sla.evidence import (
    EVIDENCE_VERSION,
    JUDGED,
    EvidenceError,
    Verdict,
    sha256_of,
    verdict_counts,
)
from aiconn.sla.timestamps import parse_iso

SETTLED = "Settled"
HELD = "HeldForReview"
LOW_COVERAGE = "LowCoverage"
INEXACT_ATTAINMENT = "InexactAttainment"


@dataclass(frozen=True)
class Mismatch:
    """A figure whose stored value differs from what the evidence recomputes to."""

    figure: str
    stored: Any
    recomputed: Any

    def __str__(self) -> str:
        return f"{self.figure}: stored {self.stored!r}, recomputed {self.recomputed!r}"


@dataclass(frozen=True)
class LedgerFigures:
    """The ledger's settlement row of the period, to compare with the evidence."""

    state: str
    charges_micros: int
    credit_micros: int
    credit_tokens: int
    credit_percent: str
    excused_minutes: int | None = None
    """Minutes the settlement excused for announced maintenance (None: not recorded)."""

    @classmethod
    def of(cls, settlement: SettlementRecord) -> LedgerFigures:
        """The figures of a ledger `Settlement` (verify itself never reads the ledger)."""
        return cls(
            state=str(settlement.state),
            charges_micros=settlement.charges_micros,
            credit_micros=settlement.credit_micros,
            credit_tokens=settlement.credit_tokens,
            credit_percent=str(settlement.credit_percent),
            excused_minutes=settlement.excused_minutes,
        )


class SettlementRecord(Protocol):
    """What `LedgerFigures.of` reads of `aiconn.sla.accounting.Settlement`."""

    @property
    def state(self) -> object: ...
    @property
    def charges_micros(self) -> int: ...
    @property
    def credit_micros(self) -> int: ...
    @property
    def credit_tokens(self) -> int: ...
    @property
    def credit_percent(self) -> object: ...
    @property
    def excused_minutes(self) -> int | None: ...


@dataclass(frozen=True)
class Verification:
    """The outcome: `ok` when nothing differs."""

    namespace: str
    name: str
    period_start: str
    period_end: str
    currency: str
    availability_percent: Decimal | None
    coverage_percent: float | None
    credit_percent: Decimal
    credit_micros: int
    mismatches: tuple[Mismatch, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def render(self) -> str:
        """What `aiconn verify` prints."""
        head = (
            f"evidence of {self.namespace}/{self.name}, period {self.period_start}"
            f" .. {self.period_end}"
        )
        if not self.ok:
            lines = [f"{head}: MISMATCH", *(f"  {m}" for m in self.mismatches)]
            return "\n".join(lines)
        availability = (
            "none judged"
            if self.availability_percent is None
            else f"{self.availability_percent:.4f} %"
        )
        coverage = "none" if self.coverage_percent is None else f"{self.coverage_percent:.2f} %"
        amount = Decimal(self.credit_micros) / 1_000_000
        return (
            f"{head}: match\n  availability {availability}, coverage {coverage},"
            f" credit {self.credit_percent} % = {amount:.6f} {self.currency}"
            " (recomputed from the minute verdicts and counts; evidence hash intact)"
        )


def from_download(body: Mapping[str, Any]) -> tuple[dict[str, Any], str, LedgerFigures]:
    """The evidence, its hash and the ledger's figures from the reporting API's evidence body
    (`GET .../slas/{name}/evidence`); EvidenceError names what is missing."""
    try:
        figures = body["settlement"]
        return (
            dict(body["evidence"]),
            str(body["sha256"]),
            LedgerFigures(
                state=str(figures["state"]),
                charges_micros=int(figures["chargesMicros"]),
                credit_micros=int(figures["creditMicros"]),
                credit_tokens=int(figures["creditTokens"]),
                credit_percent=str(figures["creditPercent"]),
                excused_minutes=figures.get("excusedMinutes"),
            ),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise EvidenceError(
            f"not an evidence download (GET .../slas/<name>/evidence): {type(err).__name__} {err}"
        ) from err


def verify(
    document: Mapping[str, Any], sha256: str, *, ledger: LedgerFigures | None = None
) -> Verification:
    """Recompute `document`'s decision; raises EvidenceError when it cannot even be read."""
    try:
        return _verify(document, sha256, ledger)
    except (
        AttributeError,
        KeyError,
        TypeError,
        ValueError,
        ArithmeticError,
        ValidationError,
    ) as err:
        if isinstance(err, EvidenceError):
            raise
        raise EvidenceError(f"the evidence is malformed: {type(err).__name__}: {err}") from err


def _verify(document: Mapping[str, Any], sha256: str, ledger: LedgerFigures | None) -> Verification:
    if document.get("version") != EVIDENCE_VERSION:
        raise EvidenceError(
            f"evidence version {document.get('version')!r}; this verifier reads {EVIDENCE_VERSION}"
        )
    found: list[Mismatch] = []

    def check(figure: str, stored: Any, recomputed: Any) -> None:
        if stored != recomputed:
            found.append(Mismatch(figure, stored, recomputed))

    check("evidence sha256", sha256, sha256_of(document))
    period, counts, terms = document["period"], document["counts"], document["terms"]
    decided = document["decided"]

    minutes = verdict_counts(document["verdicts"]["minutes"])
    start = parse_iso(period["start"])
    end = parse_iso(period["end"])
    check("period minutes", int((end - start).total_seconds()) // 60, sum(minutes.values()))
    for verdict in Verdict:
        check(f"{verdict} minutes", counts["minutes"].get(str(verdict), 0), minutes[verdict])

    good, bad = minutes[Verdict.GOOD], minutes[Verdict.BAD]
    judged = sum(minutes[v] for v in JUDGED)
    availability = attainment_percent(good, good + bad)
    # The same float the evaluation computed (`evaluate_fleet`): it only decides a hold.
    coverage = 100.0 * (good + bad) / judged if judged > 0 else None
    check("availabilityPercent", decided["availabilityPercent"], _text(availability))
    check("coveragePercent", decided["coveragePercent"], coverage)

    price = exact_decimal(terms["pricePerMillionTokens"])
    schedule = CreditsSpec.model_validate(terms["credits"])
    charges = usage_charge(int(counts["tokens"]), price)
    ttft, tpot = counts["ttft"], counts["tpot"]

    def credit_at(ttft_good: float, tpot_good: float) -> CreditBreakdown:
        return period_credit(
            charges=charges,
            availability=availability,
            ttft=attainment_percent(ttft_good, ttft["total"]),
            tpot=attainment_percent(tpot_good, tpot["total"]),
            schedule=schedule,
        )

    credit = credit_at(ttft["good"], tpot["good"])
    credit_micros = to_micros(credit.amount)
    check("chargesMicros", decided["chargesMicros"], to_micros(charges))
    check(
        "availabilityCreditPercent",
        decided["availabilityCreditPercent"],
        _text(credit.availability_percent),
    )
    check("latencyCreditPercent", decided["latencyCreditPercent"], _text(credit.latency_percent))
    check("creditPercent", decided["creditPercent"], _text(credit.total_percent))
    check("creditMicros", decided["creditMicros"], credit_micros)
    check("creditTokens", decided["creditTokens"], tokens_for_amount(credit.amount, price))

    floor = float(terms["coverageFloorPercent"])
    reason: str | None = None
    if coverage is None or coverage < floor:
        reason = LOW_COVERAGE
    elif not (ttft["exact"] and tpot["exact"]):
        fewest = credit_at(ttft["goodLow"], tpot["goodLow"])
        most = credit_at(ttft["goodHigh"], tpot["goodHigh"])
        reason = INEXACT_ATTAINMENT if fewest.amount != most.amount else None
    check("holdReason", decided["holdReason"], reason)
    check("state", decided["state"], HELD if reason else SETTLED)

    if ledger is not None:
        check("ledger chargesMicros", ledger.charges_micros, decided["chargesMicros"])
        check("ledger creditPercent", ledger.credit_percent, decided["creditPercent"])
        if ledger.excused_minutes is not None:
            # Excused minutes leave the figures: the settlement's count is the evidence's.
            check("ledger excused minutes", ledger.excused_minutes, minutes[Verdict.EXCUSED])
        if ledger.state == SETTLED:
            # A held period is paid what it was held with when a reviewer releases it.
            check("ledger creditMicros", ledger.credit_micros, decided["creditMicros"])
            check("ledger creditTokens", ledger.credit_tokens, decided["creditTokens"])
        elif decided["state"] == SETTLED:
            check("ledger state", ledger.state, SETTLED)

    sla = document["sla"]
    return Verification(
        namespace=str(sla["namespace"]),
        name=str(sla["name"]),
        period_start=str(period["start"]),
        period_end=str(period["end"]),
        currency=str(terms.get("currency", "")),
        availability_percent=availability,
        coverage_percent=coverage,
        credit_percent=credit.total_percent,
        credit_micros=credit_micros,
        mismatches=tuple(found),
    )


def _text(value: Decimal | None) -> str | None:
    """Decimals travel as their exact text."""
    return None if value is None else str(value)
