"""Settlement evidence: minute verdicts encode compactly and exactly, and `verify` recomputes the
credit from the stored evidence alone, matching what was settled and catching any edit."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import text

from aiconn import cli
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec
from aiconn.sla.accounting import Settlement, SettlementState
from aiconn.sla.evaluate import FleetSeries, FleetTerms, evaluate_fleet
from aiconn.sla.evidence import (
    CODES,
    EvidenceError,
    LatencyCounts,
    Measured,
    QueryRecord,
    Verdict,
    decode_runs,
    minute_verdicts,
    result_sha256,
    sha256_of,
    verdict_counts,
)
from aiconn.sla.periods import Period
from aiconn.sla.settlement import settle_period
from aiconn.sla.sli import Occurrences, classify_minutes
from aiconn.sla.verify import LedgerFigures, verify
from aiconn.store.ledger import Ledger, release_held
from aiconn.store.querylog import QueryRecorder

START = datetime(2024, 2, 1, tzinfo=UTC)
MINUTES = 60
SPEC = {
    "model": {"name": "tiny", "source": "hf://aiconn/tiny", "parametersBillions": 1},
    "objectives": {"availability": {"targetPercent": 99.9}, "window": {"duration": "1h"}},
    "network": {"rttBudgetMs": 50},
    "tokens": {"pricePerMillionTokens": 1000, "currency": "EUR"},
}


def test_verdicts_run_length_encode_every_minute_in_order() -> None:
    known = np.array([True] * 6 + [False] * 2 + [True] * 4)
    bad = np.array([False] * 3 + [True] + [False] * 8)
    excused = np.zeros(12, dtype=np.bool_)
    excused[9:11] = True
    encoded = minute_verdicts(bad=bad, known=known, in_force_from=2, excused=excused)
    assert encoded == "2n1g1b2g2u1g2x1g"
    assert decode_runs(encoded)[:3] == [
        (Verdict.NOT_IN_FORCE, 2),
        (Verdict.GOOD, 1),
        (Verdict.BAD, 1),
    ]
    counts = verdict_counts(encoded)
    assert counts == {
        Verdict.GOOD: 5,
        Verdict.BAD: 1,
        Verdict.UNKNOWN: 2,
        Verdict.EXCUSED: 2,
        Verdict.OFF_HOURS: 0,
        Verdict.NOT_IN_FORCE: 2,
    }
    assert sum(counts.values()) == 12


def test_minutes_outside_service_hours_are_their_own_verdict() -> None:
    """Not judged is not excused: the settlement counts only maintenance as excused minutes."""
    known = np.ones(6, dtype=np.bool_)
    bad = np.array([False, True, False, False, False, True])
    excused = np.array([False, False, True, False, False, False])
    off_hours = np.array([False, True, False, False, True, False])
    encoded = minute_verdicts(bad=bad, known=known, excused=excused, off_hours=off_hours)
    assert encoded == "1g1o1x1g1o1b"
    counts = verdict_counts(encoded)
    assert (counts[Verdict.EXCUSED], counts[Verdict.OFF_HOURS], counts[Verdict.BAD]) == (1, 2, 1)


def test_a_quiet_month_is_a_few_characters() -> None:
    minutes = 31 * 1440
    known = np.ones(minutes, dtype=np.bool_)
    bad = np.zeros(minutes, dtype=np.bool_)
    bad[1000:1003] = True
    assert minute_verdicts(bad=bad, known=known) == f"1000g3b{minutes - 1003}g"


def test_every_verdict_has_its_own_code() -> None:
    assert len(set(CODES.values())) == len(Verdict) == len(CODES)


@pytest.mark.parametrize(
    ("encoded", "complaint"),
    [("3g2q", "'q'"), ("3g0b", "from character 2"), ("g3", "from character 0"), ("3g 2b", "2")],
)
def test_malformed_verdicts_are_refused_naming_the_place(encoded: str, complaint: str) -> None:
    with pytest.raises(EvidenceError, match=complaint):
        decode_runs(encoded)


@dataclass(frozen=True)
class Settled:
    ledger: Ledger
    settlement: Settlement
    uid: str

    def stored(self) -> tuple[dict[str, Any], str]:
        found = self.ledger.evidence(self.uid, START)
        assert found is not None
        return found.document, found.sha256

    def figures(self) -> LedgerFigures:
        return LedgerFigures.of(self.settlement)


def _settle(
    ledger: Ledger,
    *,
    up: np.ndarray[Any, Any],
    ttft_good: float = 990,
    ttft_exact: bool = True,
    ttft_bounds: tuple[float, float] | None = None,
    tokens: int = 2_000_000,
    in_force_from: int = 5,
) -> Settled:
    """Settle one synthetic hour the way `settle_closed` does, from arrays instead of
    Prometheus: the evaluation, the verdicts of the same arrays, and the settlement."""
    spec = AIInferenceSLASpec.model_validate(SPEC)
    low, high = ttft_bounds or (ttft_good, ttft_good)
    ttft = Occurrences(
        good=np.array([ttft_good]),
        total=np.array([1000.0]),
        exact=np.array([ttft_exact]),
        good_low=np.array([low]),
        good_high=np.array([high]),
    )
    tpot = Occurrences(good=np.array([500.0]), total=np.array([500.0]), exact=np.array([True]))
    requests = np.full((1, MINUTES), 60.0)
    series = FleetSeries(
        in_contract=requests,
        failed=np.zeros((1, MINUTES)),
        up=up.reshape(1, MINUTES),
        ttft=ttft,
        tpot=tpot,
        tokens=np.array([tokens], dtype=np.int64),
    )
    fleet = evaluate_fleet(
        terms=FleetTerms.from_specs([spec]), series=series, in_force_from=[in_force_from]
    )
    result = fleet.sla(0)
    slices = classify_minutes(series.in_contract[0], series.failed[0], series.up[0])
    measured = Measured(
        namespace="acme",
        name="chat",
        generation=3,
        verdicts=minute_verdicts(bad=slices.bad, known=slices.known, in_force_from=in_force_from),
        ttft=LatencyCounts(ttft_good, 1000.0, ttft_exact, low, high),
        tpot=LatencyCounts(500.0, 500.0, True, 500.0, 500.0),
        queries=(QueryRecord(query="up", result_sha256="0" * 64, time="2024-02-01T01:00:00Z"),),
        terms={
            "pricePerMillionTokens": str(result.price_per_million_tokens),
            "currency": "EUR",
            "credits": spec.credits.to_k8s(),
        },
    )
    uid = "uid-evidence"
    settlement = settle_period(
        ledger,
        sla_uid=uid,
        namespace="acme",
        name="chat",
        tenant="acme/acme",
        period=Period(start=START, end=START + timedelta(minutes=MINUTES)),
        outcome=result.outcome(),
        coverage_floor_percent=95.0,
        evidence=measured,
    )
    return Settled(ledger, settlement, uid)


def _hour(bad: range = range(20, 21), unknown: range = range(40, 42)) -> np.ndarray[Any, Any]:
    up = np.ones(MINUTES, dtype=np.float32)
    up[bad.start : bad.stop] = 0
    up[unknown.start : unknown.stop] = math.nan
    return up


def test_verify_recomputes_the_settled_credit_from_the_evidence(ledger: Ledger) -> None:
    settled = _settle(ledger, up=_hour())
    document, sha256 = settled.stored()
    # 5 minutes before the SLA was in force, 52 good, 1 bad, 2 unknown: availability 52/53
    # (98.11 %) is under 99 %, the 25 % tier; coverage 53/55 is above the 95 % floor.
    assert document["verdicts"]["minutes"] == "5n15g1b19g2u18g"
    assert settled.settlement.state == SettlementState.SETTLED
    assert settled.settlement.credit_micros == 500_000_000  # 25 % of 2,000 EUR
    outcome = verify(document, sha256, ledger=settled.figures())
    assert outcome.ok, outcome.render()
    assert outcome.credit_micros == settled.settlement.credit_micros
    assert "match" in outcome.render()
    assert document["sla"]["generation"] == 3
    assert document["decided"]["creditMicros"] == 500_000_000
    assert document["counts"]["minutes"] == {
        "good": 52,
        "bad": 1,
        "unknown": 2,
        "excused": 0,
        "off-hours": 0,
        "not-in-force": 5,
    }
    # The settlement row's excused minutes are the evidence's: one more is a mismatch.
    assert settled.settlement.excused_minutes == 0
    wrong = dataclasses.replace(settled.figures(), excused_minutes=1)
    found = verify(document, sha256, ledger=wrong)
    assert not found.ok and "ledger excused minutes" in found.render()


def test_a_tampered_verdict_is_a_mismatch_naming_the_figures(ledger: Ledger) -> None:
    settled = _settle(ledger, up=_hour())
    document, sha256 = settled.stored()
    document["verdicts"]["minutes"] = "5n35g2u18g"  # the bad minute turned good

    outcome = verify(document, sha256, ledger=settled.figures())

    assert not outcome.ok
    figures = {m.figure: m for m in outcome.mismatches}
    assert figures["good minutes"].stored == 52 and figures["good minutes"].recomputed == 53
    assert figures["creditMicros"].stored == 500_000_000
    assert figures["creditMicros"].recomputed == 0
    assert "evidence sha256" in figures
    assert "MISMATCH" in outcome.render() and "creditMicros: stored 500000000" in outcome.render()


def test_a_tampered_amount_is_a_mismatch_even_with_a_fresh_hash(ledger: Ledger) -> None:
    settled = _settle(ledger, up=_hour())
    document, _ = settled.stored()
    document["decided"]["creditMicros"] = 50_000_000

    outcome = verify(document, sha256_of(document), ledger=settled.figures())

    assert [str(m) for m in outcome.mismatches] == [
        "creditMicros: stored 50000000, recomputed 500000000",
        "ledger creditMicros: stored 500000000, recomputed 50000000",
    ]


def test_an_edit_of_the_stored_text_breaks_the_hash(ledger: Ledger) -> None:
    settled = _settle(ledger, up=_hour())
    with ledger.engine.begin() as conn:
        conn.execute(
            text("UPDATE settlement_evidence SET document = replace(document, :a, :b)"),
            {"a": '"generation":3', "b": '"generation":4'},
        )
    document, sha256 = settled.stored()
    outcome = verify(document, sha256)
    assert [m.figure for m in outcome.mismatches] == ["evidence sha256"]


def test_a_held_period_verifies_with_its_hold_reason(ledger: Ledger) -> None:
    settled = _settle(ledger, up=_hour(unknown=range(30, 50)))
    document, sha256 = settled.stored()
    assert settled.settlement.state == SettlementState.HELD_FOR_REVIEW
    assert document["decided"]["holdReason"] == "LowCoverage"
    assert verify(document, sha256, ledger=settled.figures()).ok


def test_an_inexact_attainment_that_could_change_the_credit_is_recomputed_as_held(
    ledger: Ledger,
) -> None:
    # 99.0 % interpolated between 98.5 % and 99.5 %: the 5 % latency tier may or may not apply.
    settled = _settle(ledger, up=_hour(), ttft_exact=False, ttft_bounds=(985.0, 995.0))
    document, sha256 = settled.stored()
    assert document["decided"]["holdReason"] == "InexactAttainment"
    assert verify(document, sha256, ledger=settled.figures()).ok
    document["decided"]["holdReason"], document["decided"]["state"] = None, "Settled"
    outcome = verify(document, sha256_of(document))
    assert {m.figure for m in outcome.mismatches} == {"holdReason", "state"}


def test_evidence_is_written_once_with_the_settlement(ledger: Ledger) -> None:
    first = _settle(ledger, up=_hour())
    again = _settle(ledger, up=_hour(bad=range(0, 30)))
    assert again.settlement == first.settlement
    with ledger.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM settlement_evidence")).scalar() == 1
    document, sha256 = first.stored()
    assert verify(document, sha256).ok


def test_unreadable_evidence_raises_rather_than_matching() -> None:
    with pytest.raises(EvidenceError, match="version"):
        verify({"version": 99}, "")
    with pytest.raises(EvidenceError, match="malformed"):
        verify({"version": 1, "period": {}}, "")


def test_the_document_survives_a_json_round_trip(ledger: Ledger) -> None:
    document, sha256 = _settle(ledger, up=_hour(), ttft_good=987.654321).stored()
    reread = json.loads(json.dumps({"evidence": document}))["evidence"]
    assert sha256_of(reread) == sha256
    assert verify(reread, sha256).ok


def test_a_released_held_period_verifies_against_what_the_release_paid(ledger: Ledger) -> None:
    held = _settle(ledger, up=_hour(unknown=range(30, 50)))
    released = release_held(
        ledger, sla_uid=held.uid, period_start=START, reviewer="noc", note="gateway logs agree"
    )
    assert released is not None and released.credit_micros > 0
    document, sha256 = held.stored()
    paid = dataclasses.replace(held, settlement=released)
    assert verify(document, sha256, ledger=paid.figures()).ok
    short = dataclasses.replace(paid.figures(), credit_micros=released.credit_micros - 1)
    assert [m.figure for m in verify(document, sha256, ledger=short).mismatches] == [
        "ledger creditMicros"
    ]


class _Answers:
    """Canned Prometheus answers: two SLAs' series and a label-less aggregate."""

    def __init__(self) -> None:
        self.series = [
            {"metric": {"namespace": "acme", "sla": "chat"}, "values": [[60, "1"]]},
            {"metric": {"namespace": "acme", "sla": "other"}, "values": [[60, "0"]]},
            {"metric": {}, "values": [[60, "3"]]},
        ]

    def custom_query(self, query: str, params: Any = None, timeout: Any = None) -> Any:
        return self.series

    def custom_query_range(self, query: str, **_: Any) -> Any:
        return list(reversed(self.series))


def test_each_sla_hashes_only_its_own_series_and_the_aggregates() -> None:
    answers = _Answers()
    recorder = QueryRecorder(answers)
    recorder.custom_query("q1", params={"time": START.timestamp()})
    recorder.custom_query_range("q2", start_time=START, end_time=START, step="60s")
    chat = recorder.records_for("acme", "chat")
    mine = [answers.series[0], answers.series[2]]
    assert [r.query for r in chat] == ["q1", "q2"]
    assert chat[0].time == "2024-02-01T00:00:00Z" and chat[1].step == "60s"
    # Order-independent, and another SLA's series changes nothing of this SLA's hash.
    assert chat[0].result_sha256 == chat[1].result_sha256 == result_sha256(mine)
    assert recorder.records_for("acme", "other")[0].result_sha256 != chat[0].result_sha256


def test_the_command_exits_0_on_a_match_1_on_a_mismatch_2_on_unreadable_input(
    ledger: Ledger, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settled = _settle(ledger, up=_hour())
    document, sha256 = settled.stored()
    figures = settled.figures()
    body = {
        "evidence": document,
        "sha256": sha256,
        "settlement": {
            "state": figures.state,
            "chargesMicros": figures.charges_micros,
            "creditMicros": figures.credit_micros,
            "creditTokens": figures.credit_tokens,
            "creditPercent": figures.credit_percent,
        },
    }
    download = tmp_path / "evidence.json"
    download.write_text(json.dumps(body))
    assert cli.main(["verify", str(download)]) == 0
    assert ": match" in capsys.readouterr().out

    body["settlement"]["creditMicros"] = 1
    download.write_text(json.dumps(body))
    assert cli.main(["verify", str(download)]) == 1
    assert "ledger creditMicros: stored 1, recomputed 500000000" in capsys.readouterr().out

    for garbage in ("[1, 2]", "{", json.dumps({**body, "evidence": {"version": 1, "counts": 3}})):
        download.write_text(garbage)
        assert cli.main(["verify", str(download)]) == 2
        assert "cannot read" in capsys.readouterr().err
