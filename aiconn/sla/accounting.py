"""The double-entry scheme SLA settlements move tokens and money in, as plain values.

Every transfer moves a positive integer `amount` of one `unit` out of `debit_account` into
`credit_account`; an account's balance in a unit is what it received minus what it gave, so the
balances of all accounts in a unit always sum to zero (Σ debits == Σ credits). Transfers are
immutable: a correction is a new transfer.

Idempotency follows TigerBeetle: each transfer carries a client-chosen key, unique in the
database, `<sla uid>/<period start>/<kind>`, and its id is derived from that key (uuid5), so the
same key always names the same transfer. Posting it again returns the stored transfer when the
contents match and raises `TransferConflict` when they differ.

Accounts and units (the scheme every settlement follows):

- `allowance` -> `wallet:<tenant>`, tokens (`allowance`): the period's commitment, funding the
  wallet the gateway checks before serving (402 when empty).
- `wallet:<tenant>` -> `revenue`, tokens (`usage`): tokens the tenant consumed.
- `wallet:<tenant>` -> `revenue`, `<CUR>-micro` (`charge`): what that usage costs.
- `sla-penalty` -> `wallet:<tenant>`, tokens (`credit`): the credit, paid back in tokens at the
  SLA's price, so the tenant can spend it through the gateway.
- `revenue` -> `sla-penalty`, `<CUR>-micro` (`penalty`): the same credit's money value, moved from
  revenue into the penalty expense; revenue in currency is then net of penalties.

Money is integer micro-units of the currency (see `aiconn.sla.credits`); tokens are integers.
Wallets may go negative: metering records what was served, even past the allowance.

These types are what the domain, the API and the exports read and write; the database that
stores them is `aiconn.store.ledger`, which the domain reaches only through `TransferBook` (and
`aiconn.sla.settlement.SettlementBook`), passed in.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

from aiconn.sla.periods import Period
from aiconn.sla.terms import PeriodTerms

TOKENS = "tokens"
ALLOWANCE = "allowance"
REVENUE = "revenue"
SLA_PENALTY = "sla-penalty"
# uuid5 namespace for transfer ids: the same idempotency key always names the same transfer id.
_TRANSFER_NAMESPACE = uuid.UUID("6d1f1b2e-4a52-5b8e-9c1e-61696c656467")


class Kind(StrEnum):
    """Why a transfer exists; part of its idempotency key."""

    ALLOWANCE = "allowance"
    USAGE = "usage"
    CHARGE = "charge"
    CREDIT = "credit"
    PENALTY = "penalty"


class SettlementState(StrEnum):
    """Outcome of settling a period."""

    SETTLED = "Settled"
    HELD_FOR_REVIEW = "HeldForReview"


class HoldReason(StrEnum):
    """Why a closed period was held for review instead of paid."""

    LOW_COVERAGE = "LowCoverage"
    """Data coverage below the floor (or no minute judged at all)."""
    INEXACT_ATTAINMENT = "InexactAttainment"
    """A latency attainment interpolated inside a bucket could earn a different credit."""
    TERMS_UNKNOWN = "TermsUnknown"
    """No terms were pinned for the period and its offer is gone: the usage is recorded, the
    price is the reviewer's to settle (released, it charges nothing; corrections are new
    transfers)."""


def wallet_account(tenant: str) -> str:
    """The tenant's token wallet."""
    return f"wallet:{tenant}"


def currency_unit(currency: str) -> str:
    """The ledger unit for a currency: integer micro-units, e.g. `EUR-micro`."""
    return f"{currency}-micro"


def idempotency_key(sla_uid: str, period: Period, kind: str) -> str:
    """`<sla uid>/<period start>/<kind>`: one transfer of each kind per SLA and period."""
    return f"{sla_uid}/{period.start_iso}/{kind}"


class TransferConflict(Exception):
    """A transfer with this idempotency key exists with different contents."""

    def __init__(self, key: str, differences: Mapping[str, tuple[Any, Any]]) -> None:
        detail = ", ".join(f"{k}: stored {a!r}, posted {b!r}" for k, a, b in _triples(differences))
        super().__init__(f"transfer {key!r} already exists with different contents ({detail})")
        self.key = key
        self.differences = dict(differences)


class LedgerInvariantError(Exception):
    """Σ debits != Σ credits in some unit, or a malformed transfer: the ledger is corrupt."""


@dataclass(frozen=True)
class TermsPin:
    """Terms to pin for one SLA period unless terms are pinned for it already."""

    sla_uid: str
    period: Period
    terms: PeriodTerms


@dataclass(frozen=True)
class StoredEvidence:
    """A settlement's evidence as stored: the document's text and the hash written with it."""

    sla_uid: str
    period: Period
    text: str
    sha256: str

    @property
    def document(self) -> dict[str, Any]:
        """The parsed document; ValueError when the stored text is not a JSON object."""
        parsed = json.loads(self.text)
        if not isinstance(parsed, dict):
            raise ValueError(f"a JSON {type(parsed).__name__}, not an object")
        return parsed


@dataclass(frozen=True)
class UsageReading:
    """One SLA's tokens metered from its period's start until `measured_at`."""

    sla_uid: str
    tenant: str
    period: Period
    tokens: int
    measured_at: datetime

    def __post_init__(self) -> None:
        if self.tokens < 0:
            raise ValueError(f"tokens must not be negative, got {self.tokens}")


@dataclass(frozen=True)
class TransferSpec:
    """The contents of a transfer to post; two posts with equal specs are the same transfer."""

    debit_account: str
    credit_account: str
    amount: int
    unit: str
    kind: str
    sla_uid: str
    sla_namespace: str
    sla_name: str
    period: Period
    metadata: dict[str, Any] = field(default_factory=dict)
    price_version: int | None = None
    """The offer's price version the line was charged at (settlement lines; None elsewhere)."""

    def __post_init__(self) -> None:
        if self.amount <= 0:
            raise ValueError(f"transfer amount must be a positive integer, got {self.amount}")
        if self.debit_account == self.credit_account:
            raise ValueError(f"transfer debits and credits the same account {self.debit_account!r}")

    @property
    def key(self) -> str:
        """The idempotency key."""
        return idempotency_key(self.sla_uid, self.period, self.kind)


@dataclass(frozen=True, kw_only=True)
class Transfer(TransferSpec):
    """A posted transfer: its contents and where the ledger put them."""

    seq: int
    id: str
    idempotency_key: str
    created_at: datetime

    @property
    def key(self) -> str:
        """The key it was posted under (a top-up's is the caller's, not SLA, period and kind)."""
        return self.idempotency_key

    def spec(self) -> TransferSpec:
        """The contents, for comparison with a replayed post."""
        return TransferSpec(**{f.name: getattr(self, f.name) for f in fields(TransferSpec)})


@dataclass(frozen=True)
class Settlement:
    """A settled (or held) period of one SLA."""

    sla_uid: str
    sla_namespace: str
    sla_name: str
    tenant: str
    period: Period
    state: SettlementState
    currency: str
    tokens_used: int
    charges_micros: int
    credit_micros: int
    credit_tokens: int
    credit_percent: Decimal
    coverage_percent: float | None
    availability_percent: float | None
    ttft_attainment_percent: float | None
    tpot_attainment_percent: float | None
    transfer_ids: tuple[str, ...]
    created_at: datetime
    reviewed_by: str | None = None
    """Who released this period from review (None: settled when it closed, or still held)."""
    reviewed_at: datetime | None = None
    review_note: str | None = None
    ttft_exact: bool | None = None
    """False when the TTFT attainment was interpolated inside a bucket (None: not recorded)."""
    tpot_exact: bool | None = None
    """False when the TPOT attainment was interpolated inside a bucket (None: not recorded)."""
    hold_reason: HoldReason | None = None
    """Why the period was held for review; None when it settled."""
    judged_minutes: int | None = None
    """Minutes the availability objective covered (None: settled before this was recorded)."""
    good_minutes: int | None = None
    bad_minutes: int | None = None
    excused_minutes: int | None = None
    """Minutes excused by maintenance announced in advance (neither good, bad nor unknown)."""
    price_version: int | None = None
    """The offer's price version the period was charged at (None: settled before versions)."""
    units_per_million_tokens: int | None = None
    """The token plan's exchange rate for the SLA's model class: the usage and credit transfers
    moved `units(tokens)` wallet units (None: one unit per token)."""
    budget_remaining_percent: Decimal | None = None
    """The availability error budget left at the period's end, as the evaluation it was settled
    on decided it (negative when overspent); None when no minute was known, or settled before
    this was recorded."""


def units(tokens: int, units_per_million_tokens: int | None) -> int:
    """Wallet units for `tokens` at a plan's exchange rate, rounded up to a whole unit (None:
    one unit per token)."""
    if units_per_million_tokens is None:
        return tokens
    return -(-tokens * units_per_million_tokens // 1_000_000)


@dataclass(frozen=True)
class Balance:
    """An account's totals in one unit."""

    debits: int
    credits: int

    @property
    def net(self) -> int:
        """Credits minus debits: what the account holds."""
        return self.credits - self.debits


@dataclass(frozen=True)
class StatementEntry:
    """One transfer seen from one account: positive when it received, negative when it gave."""

    transfer: Transfer
    signed_amount: int


@dataclass(frozen=True)
class StatementPage:
    """A page of an account's statement, oldest first; pass `next_after` to get the next page."""

    account: str
    entries: tuple[StatementEntry, ...]
    next_after: int | None


class NotHeld(Exception):
    """The period was settled when it closed: there is nothing to release."""


def transfer_id(key: str) -> str:
    """The id of the transfer with this idempotency key (the same key, the same id)."""
    return str(uuid.uuid5(_TRANSFER_NAMESPACE, key))


class TransferBook(Protocol):
    """The part of the ledger that posts single transfers (`aiconn.store.ledger.Ledger`)."""

    def post_transfer(self, spec: TransferSpec) -> Transfer: ...

    def transfer_by_key(self, key: str) -> Transfer | None: ...


def _triples(differences: Mapping[str, tuple[Any, Any]]) -> list[tuple[str, Any, Any]]:
    return [(k, a, b) for k, (a, b) in differences.items()]
