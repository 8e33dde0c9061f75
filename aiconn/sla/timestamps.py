"""How instants are written and read back: one spelling for status, events and the ledger.

Kubernetes status and events carry RFC 3339 strings with a `Z`; the ledger stores UTC, but SQLite
hands datetimes back naive. These are the only conversions; every module uses them, so a status
written by one component parses in another and compares equal to the ledger's instant.
"""

from __future__ import annotations

from datetime import UTC, datetime


def as_utc(t: datetime) -> datetime:
    """`t` as an aware UTC datetime; a naive one (as SQLite returns it) is taken to be UTC."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def iso_z(t: datetime) -> str:
    """`t` in UTC, RFC 3339 with `Z`, microseconds kept (period bounds, idempotency keys)."""
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def iso_seconds(t: datetime) -> str:
    """`t` to the second, RFC 3339 with `Z` (the form of Kubernetes timestamps); an aware `t` is
    converted to UTC first."""
    if t.tzinfo is not None:
        t = t.astimezone(UTC)
    return t.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    """An RFC 3339 string (with `Z` or an offset) back to an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
