"""Top-ups on a real SQLite ledger: once per idempotency key, with who, when and why."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from aiconn.sla.accounting import transfer_id
from aiconn.sla.topups import TopUpConflict, top_up
from aiconn.store.ledger import Ledger

AT = datetime(2026, 12, 2, 10, 30, 15, tzinfo=UTC)


def buy(ledger: Ledger, *, tokens: int = 1000, key: str = "k-1", at: datetime = AT) -> int:
    return top_up(
        ledger,
        tenant="acme",
        namespace="acme",
        tokens=tokens,
        idempotency_key=key,
        by="alice",
        why="campaign week",
        at=at,
    ).seq


def test_a_top_up_credits_the_wallet_and_says_who_when_and_why(ledger: Ledger) -> None:
    buy(ledger)
    assert ledger.wallet_balance("acme") == 1000
    (transfer,) = ledger.transfers(kind="topup")
    assert transfer.metadata["by"] == "alice"
    assert transfer.metadata["why"] == "campaign week"
    assert transfer.metadata["at"] == AT.isoformat()
    assert ledger.check_invariant()["tokens"] == 1000


def test_a_retry_with_the_same_key_tops_up_once_even_minutes_later(ledger: Ledger) -> None:
    first = buy(ledger)
    assert buy(ledger, at=AT + timedelta(minutes=7)) == first
    assert ledger.wallet_balance("acme") == 1000


def test_racing_retries_top_up_once(ledger: Ledger) -> None:
    with ThreadPoolExecutor(8) as pool:
        seqs = set(pool.map(lambda i: buy(ledger, at=AT + timedelta(seconds=i)), range(16)))
    assert len(seqs) == 1
    assert ledger.wallet_balance("acme") == 1000


def test_a_key_reused_for_another_amount_is_refused(ledger: Ledger) -> None:
    buy(ledger)
    with pytest.raises(TopUpConflict):
        buy(ledger, tokens=5000)
    assert ledger.wallet_balance("acme") == 1000


def test_new_keys_are_new_top_ups(ledger: Ledger) -> None:
    buy(ledger, key="k-1")
    buy(ledger, key="k-2")
    assert ledger.wallet_balance("acme") == 2000


def test_a_posted_top_up_keeps_the_key_it_was_posted_under(ledger: Ledger) -> None:
    """A stored top-up's key is the caller's, not the `<subject>/<period>/<kind>` of a
    settlement line: the transfer read back names the same key and id it was posted with."""
    buy(ledger, key="k-7")
    (transfer,) = ledger.transfers(kind="topup")
    assert transfer.key == transfer.idempotency_key == "topup:acme:k-7"
    assert transfer.id == transfer_id(transfer.key)


@pytest.mark.parametrize("note", ["\x1f", " \x1c\t", "\u3000"])
def test_a_note_the_ledger_reads_as_blank_is_refused_by_the_api_model(note: str) -> None:
    """The API refuses (422) what the ledger would refuse (a 500): `str.strip` strips the
    separators \\x1c-\\x1f, which a schema pattern of `\\S` lets through."""
    from pydantic import ValidationError

    from aiconn.api.routes.topups import TopUpRequest

    assert not note.strip()
    with pytest.raises(ValidationError):
        TopUpRequest(tokens=10, idempotencyKey="key-00001", note=note)
    assert TopUpRequest(tokens=10, idempotencyKey="key-00001", note="\x1forder 7").note
