"""How many tokens the tenant may still spend, as the gateway sees it before each request.

The balance lives in the ledger (`aiconn.store.ledger`), which the gateway does not import: the
lead wires a plain `Callable[[], int | None]` that reads the tenant's wallet into `LedgerAllowance`
(None: the tenant's token plan pays overage per use, so there is nothing to refuse), so
the gateway stays an adapter that can run, and be tested, without a database.

Remaining = the tenant's available tokens as last read from the ledger (wallet balance minus the
usage the operator's SLA loop has recorded for periods not yet settled) minus the tokens this
gateway metered since that read. The ledger is read in a thread (it is a blocking database call)
at most every `cache_seconds`; between reads the local count keeps the estimate current.

Policy when the ledger cannot be read (a stated choice, because it moves money either way):

- `fail_mode="open"` (the default): keep serving and keep counting, bounded. For at most
  `grace_seconds` (300 by default) since the last successful read the gateway answers from that
  read minus the tokens metered since, so an exhausted wallet is still refused; with no successful
  read at all it serves (remaining unknown) for `grace_seconds` from start. Past the grace it
  refuses.
- `fail_mode="closed"`: refuse as soon as a due read fails.

A refusal because the allowance cannot be verified raises `AllowanceUnavailable`; the gateway
answers 503 and counts it as an upstream error, because a ledger outage is the provider's failure,
not the tenant's. Settings: `AICONN_ALLOWANCE_FAIL_MODE=open|closed`,
`AICONN_ALLOWANCE_GRACE_SECONDS`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Literal, Protocol

log = logging.getLogger(__name__)

FailMode = Literal["open", "closed"]


class AllowanceUnavailable(Exception):
    """The allowance cannot be verified and the fail-mode policy says refuse."""


class AllowanceSource(Protocol):
    """Where the gateway learns the tenant's remaining tokens and reports what it metered."""

    async def remaining(self) -> int | None:
        """Tokens the tenant may still spend; None when unknown (the gateway then serves)."""
        ...

    def record(self, tokens: int) -> None:
        """Tokens metered by this gateway (prompt plus completion of one request)."""
        ...


class StaticAllowance:
    """A fixed allowance for this process (`AICONN_ALLOWANCE_TOKENS`), spent by metered tokens."""

    def __init__(self, tokens: int) -> None:
        self._left = tokens

    async def remaining(self) -> int:
        return self._left

    def record(self, tokens: int) -> None:
        self._left -= tokens


class LedgerAllowance:
    """The ledger's wallet balance, read in a thread and cached, minus tokens metered since."""

    def __init__(
        self,
        read_balance: Callable[[], int | None],
        *,
        fail_mode: FailMode = "open",
        grace_seconds: float = 300.0,
        cache_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read_balance = read_balance
        self._fail_mode = fail_mode
        self._grace = grace_seconds
        self._cache = cache_seconds
        self._clock = clock
        self._balance: int | None = None
        self._read_at: float | None = None
        self._attempted_at: float | None = None
        self._started_at = clock()
        self._metered_since_read = 0
        self._lock = asyncio.Lock()

    async def remaining(self) -> int | None:
        if self._due():
            if self._lock.locked() and self._balance is not None:
                # Another request is reading; the estimate is seconds old, good enough.
                return self._estimate()
            async with self._lock:
                if self._due():
                    await self._refresh()
        if self._read_at is not None and self._clock() - self._read_at < self._cache:
            return self._estimate()
        return self._after_failure()

    def record(self, tokens: int) -> None:
        self._metered_since_read += tokens

    def _due(self) -> bool:
        return self._attempted_at is None or self._clock() - self._attempted_at >= self._cache

    def _estimate(self) -> int | None:
        return None if self._balance is None else self._balance - self._metered_since_read

    async def _refresh(self) -> None:
        started = self._clock()
        self._attempted_at = started
        metered_before = self._metered_since_read
        try:
            balance = await asyncio.to_thread(self._read_balance)
        except Exception as exc:
            log.warning(
                "ledger balance unreadable (%s); allowance fail mode %s",
                type(exc).__name__,
                self._fail_mode,
            )
            return
        # None: the plan pays overage per use, nothing to refuse (`WalletApiReader`).
        self._balance = None if balance is None else int(balance)
        self._read_at = started
        # Tokens metered while the read was in flight may be missing from the balance: keep them.
        self._metered_since_read -= metered_before

    def _after_failure(self) -> int | None:
        if self._fail_mode == "closed":
            raise AllowanceUnavailable("the token ledger cannot be read (fail mode closed)")
        since = self._read_at if self._read_at is not None else self._started_at
        if self._clock() - since > self._grace:
            raise AllowanceUnavailable(
                f"the token ledger has not been read for over {self._grace:g} s (fail mode open)"
            )
        return self._estimate()
