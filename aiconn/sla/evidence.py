"""The evidence stored with every settlement: enough to recompute its credit without aiconn.

A settlement pays money on figures nobody can re-measure later (Prometheus forgets, pods go), so
the facts it was decided on are kept with it, once, in the same transaction: each minute's
verdict, the counts, the queries asked and a hash of what Prometheus answered, the spec
generation and the terms, and what was decided. `aiconn.sla.verify` recomputes the decision from
that document alone with the same pure functions the settlement used.

Minute verdicts are one character each, run-length encoded (`1437g3b` is 1,437 good minutes and
then 3 bad ones): a month is a few dozen characters when little happens and stays readable. The
code set is open: a new verdict adds a letter to `CODES` and says whether it is judged (counted
in the coverage denominator), nothing else changes in the format.

The document is canonical JSON (sorted keys, no spaces, floats as Python writes them, which
round-trip exactly), and its SHA-256 is stored beside it, so any edit of the stored text shows.
The hash proves the document unchanged since it was written, not who wrote it: a reader who can
rewrite the ledger can rewrite both, and `verify` then still catches figures that do not follow
from the minutes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
from numpy.typing import NDArray

EVIDENCE_VERSION = 1
RLE = "rle"


class Verdict(StrEnum):
    """What a minute was judged."""

    GOOD = "good"
    BAD = "bad"
    UNKNOWN = "unknown"
    """Monitoring could not see the service (counts against coverage, not availability)."""
    EXCUSED = "excused"
    """In announced maintenance: neither judged nor counted (the settlement's excused minutes)."""
    OFF_HOURS = "off-hours"
    """Outside the offer's service hours: not judged."""
    NOT_IN_FORCE = "not-in-force"
    """Before the SLA's first whole minute: nothing was promised."""


CODES: Mapping[Verdict, str] = {
    Verdict.GOOD: "g",
    Verdict.BAD: "b",
    Verdict.UNKNOWN: "u",
    Verdict.EXCUSED: "x",
    Verdict.OFF_HOURS: "o",
    Verdict.NOT_IN_FORCE: "n",
}
JUDGED = frozenset({Verdict.GOOD, Verdict.BAD, Verdict.UNKNOWN})
"""Verdicts of minutes the SLA promised something for: the coverage denominator."""
_BY_CODE = {code: verdict for verdict, code in CODES.items()}
_RUN = re.compile(r"([1-9][0-9]*)([a-z])")


class EvidenceError(ValueError):
    """Evidence that cannot be read: malformed verdicts, a missing field, a foreign version."""


def minute_verdicts(
    *,
    bad: NDArray[np.bool_],
    known: NDArray[np.bool_],
    in_force_from: int = 0,
    excused: NDArray[np.bool_] | None = None,
    off_hours: NDArray[np.bool_] | None = None,
) -> str:
    """One SLA's minutes (from `sli.classify_minutes`) as a run-length string of verdict codes.

    Minutes before `in_force_from` are not in force; `excused` minutes (announced maintenance)
    are excused and `off_hours` minutes (outside service hours) not judged, whatever was
    measured in them. Vectorized: a month of minutes costs a few numpy passes.
    """
    known = np.asarray(known, dtype=np.bool_)
    bad = np.asarray(bad, dtype=np.bool_)
    if known.ndim != 1 or bad.shape != known.shape:
        raise ValueError(f"bad and known must be one SLA's minutes, got {bad.shape} {known.shape}")
    letters = np.array([ord(CODES[v]) for v in Verdict], dtype=np.uint8)
    order = {v: i for i, v in enumerate(Verdict)}
    index = np.full(known.shape, order[Verdict.UNKNOWN], dtype=np.uint8)
    index[known] = order[Verdict.GOOD]
    index[known & bad] = order[Verdict.BAD]
    if off_hours is not None:
        index[np.asarray(off_hours, dtype=np.bool_)] = order[Verdict.OFF_HOURS]
    if excused is not None:
        index[np.asarray(excused, dtype=np.bool_)] = order[Verdict.EXCUSED]
    index[: max(0, in_force_from)] = order[Verdict.NOT_IN_FORCE]
    return encode_runs(letters[index])


def encode_runs(codes: NDArray[np.uint8]) -> str:
    """Run-length encode an array of code letters (as bytes)."""
    if codes.size == 0:
        return ""
    starts = np.concatenate(([0], np.flatnonzero(codes[1:] != codes[:-1]) + 1))
    lengths = np.diff(np.concatenate((starts, [codes.size])))
    return "".join(f"{n}{chr(codes[s])}" for s, n in zip(starts, lengths, strict=True))


def decode_runs(text: str) -> list[tuple[Verdict, int]]:
    """`1437g3b` as [(GOOD, 1437), (BAD, 3)]; EvidenceError names what is wrong."""
    runs: list[tuple[Verdict, int]] = []
    at = 0
    for match in _RUN.finditer(text):
        if match.start() != at:
            break
        code = match.group(2)
        if code not in _BY_CODE:
            raise EvidenceError(
                f"verdict code {code!r} at character {match.start(2)} is not one of"
                f" {', '.join(f'{c} ({v})' for v, c in CODES.items())}"
            )
        runs.append((_BY_CODE[code], int(match.group(1))))
        at = match.end()
    if at != len(text):
        raise EvidenceError(
            f"verdicts are not runs of <count><code> from character {at}: {text[at : at + 20]!r}"
        )
    return runs


def verdict_counts(text: str) -> dict[Verdict, int]:
    """Minutes per verdict of a run-length string (every verdict present, zeros included)."""
    counts = dict.fromkeys(Verdict, 0)
    for verdict, n in decode_runs(text):
        counts[verdict] += n
    return counts


@dataclass(frozen=True)
class LatencyCounts:
    """Good and total requests of a latency objective, and the bucket bounds on `good`."""

    good: float
    total: float
    exact: bool
    good_low: float
    good_high: float

    def to_json(self) -> dict[str, Any]:
        return {
            "good": self.good,
            "total": self.total,
            "exact": self.exact,
            "goodLow": self.good_low,
            "goodHigh": self.good_high,
        }


@dataclass(frozen=True)
class QueryRecord:
    """One query Prometheus answered, and the SHA-256 of the part of the answer about the SLA."""

    query: str
    result_sha256: str
    time: str | None = None
    """Evaluation time of an instant query (RFC 3339)."""
    start: str | None = None
    """First and last evaluation time and step of a range query."""
    end: str | None = None
    step: str | None = None

    def to_json(self) -> dict[str, Any]:
        fields = {"time": self.time, "start": self.start, "end": self.end, "step": self.step}
        return {
            "query": self.query,
            "resultSha256": self.result_sha256,
            **{k: v for k, v in fields.items() if v is not None},
        }


@dataclass(frozen=True)
class Measured:
    """What the operator measured for one SLA's closed period, before anything was decided.

    `settle_period` adds the decision and stores the document; see `evidence_document`.
    """

    namespace: str
    name: str
    generation: int | None
    verdicts: str
    ttft: LatencyCounts
    tpot: LatencyCounts
    queries: tuple[QueryRecord, ...]
    terms: Mapping[str, Any]
    """Objectives, price, currency and credit schedule as the credit was computed with them."""


@dataclass(frozen=True)
class Decided:
    """What the settlement decided, as the ledger stores it."""

    state: str
    hold_reason: str | None
    good_minutes: int
    bad_minutes: int
    """The minute counts the evaluation decided on (the verdicts must add up to them)."""
    coverage_floor_percent: float
    coverage_percent: float | None
    availability_percent: str | None
    """The decimal attainment the credit tiers were compared with (None: nothing judged)."""
    tokens: int
    charges_micros: int
    availability_credit_percent: str
    latency_credit_percent: str
    credit_percent: str
    credit_micros: int
    """The credit the period earns (paid, or held with it)."""
    credit_tokens: int


def evidence_document(
    measured: Measured,
    *,
    sla_uid: str,
    tenant: str,
    period_start: str,
    period_end: str,
    minutes: int,
    decided: Decided,
) -> dict[str, Any]:
    """The document stored with a settlement (plain JSON types only)."""
    counts = {
        **verdict_counts(measured.verdicts),
        Verdict.GOOD: decided.good_minutes,
        Verdict.BAD: decided.bad_minutes,
    }
    return {
        "version": EVIDENCE_VERSION,
        "sla": {
            "uid": sla_uid,
            "namespace": measured.namespace,
            "name": measured.name,
            "tenant": tenant,
            "generation": measured.generation,
        },
        "period": {"start": period_start, "end": period_end, "minutes": minutes},
        "verdicts": {
            "encoding": RLE,
            "codes": {code: str(verdict) for verdict, code in CODES.items()},
            "minutes": measured.verdicts,
        },
        "counts": {
            "minutes": {str(v): n for v, n in counts.items()},
            "tokens": decided.tokens,
            "ttft": measured.ttft.to_json(),
            "tpot": measured.tpot.to_json(),
        },
        "queries": [q.to_json() for q in measured.queries],
        "terms": {**measured.terms, "coverageFloorPercent": decided.coverage_floor_percent},
        "decided": {
            "state": decided.state,
            "holdReason": decided.hold_reason,
            "coveragePercent": decided.coverage_percent,
            "availabilityPercent": decided.availability_percent,
            "chargesMicros": decided.charges_micros,
            "availabilityCreditPercent": decided.availability_credit_percent,
            "latencyCreditPercent": decided.latency_credit_percent,
            "creditPercent": decided.credit_percent,
            "creditMicros": decided.credit_micros,
            "creditTokens": decided.credit_tokens,
        },
    }


def canonical(document: Mapping[str, Any]) -> str:
    """The one text of a document: sorted keys, no whitespace, UTF-8 kept as is."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_of(document: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the document's canonical text."""
    return hashlib.sha256(canonical(document).encode()).hexdigest()


def result_sha256(series: Sequence[Mapping[str, Any]]) -> str:
    """SHA-256 of query-result series, independent of the order Prometheus listed them in."""
    texts = sorted(canonical(s) for s in series)
    return hashlib.sha256(("[" + ",".join(texts) + "]").encode()).hexdigest()
