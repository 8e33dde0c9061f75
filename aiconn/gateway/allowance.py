"""How many tokens the tenant may still spend, as the gateway sees it before each request.

The balance lives in the ledger (`aiconn.store.ledger`), which the gateway does not import: the
lead wires a plain callable that reads the tenant's wallet (a `WalletReading`, or just the number
of tokens) into `LedgerAllowance` (None tokens: the tenant's token plan pays overage per use, so
there is nothing to refuse), so
the gateway stays an adapter that can run, and be tested, without a database.

Remaining = the tenant's available tokens as last read from the ledger (wallet balance minus the
usage the operator's SLA loop has recorded for periods not yet settled) minus the tokens this
gateway metered that the ledger does not count yet. The ledger is read in a thread (it is a
blocking database call) at most every `cache_seconds`; between reads the local count keeps the
estimate current.

The ledger counts usage late: the SLA loop records it from Prometheus, through the last whole
minute, every evaluation interval. So a read that says up to when its usage is recorded
(`WalletReading.usage_through`) lets the gateway forget only the tokens it metered before that
instant, less `USAGE_MARGIN_SECONDS` for the scrape the reading may have missed; the rest stay
counted against the balance. Forgetting everything metered before each read instead served a
1,000-token wallet 3,000 tokens in the minute before the loop recorded any. A wallet that says
its usage was never recorded (`NOTHING_RECORDED`: a new tenant before the loop's first reading,
or one whose usage the loop never records) has none of the metered tokens in its balance, so
they all stay counted; only a read that says nothing of the instant (a plain number) counts
everything metered before it as in the balance.

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
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
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


USAGE_MARGIN_SECONDS = 30.0
"""Tokens metered this long before a reading's `usage_through` stay counted: the SLA loop's
Prometheus read may have missed the last scrape interval (15-30 s) before it."""


NOTHING_RECORDED = datetime.fromtimestamp(0, UTC)
"""`WalletReading.usage_through` of a wallet in which no usage was ever recorded: nothing this
gateway metered is in its balance (every token it meters is after this instant)."""

MAX_SECONDS_KEPT = 3_600
"""Seconds of metered tokens kept apart; older ones merge (a bound on memory, not on tokens)."""


@dataclass(frozen=True)
class WalletReading:
    """A read of the tenant's wallet: the tokens available (None: the plan pays overage per use)
    and the instant up to which its usage is recorded in them (`NOTHING_RECORDED`: none ever
    was; None: not said)."""

    available: int | None
    usage_through: datetime | None = None


class LedgerAllowance:
    """The ledger's wallet balance, read in a thread and cached, minus the tokens metered that it
    does not count yet."""

    def __init__(
        self,
        read_balance: Callable[[], int | WalletReading | None],
        *,
        fail_mode: FailMode = "open",
        grace_seconds: float = 300.0,
        cache_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._read_balance = read_balance
        self._fail_mode = fail_mode
        self._grace = grace_seconds
        self._cache = cache_seconds
        self._clock = clock
        self._wall_clock = wall_clock
        self._balance: int | None = None
        self._read_at: float | None = None
        self._attempted_at: float | None = None
        self._started_at = clock()
        # Tokens metered and not yet known to be in the balance, by the wall-clock second they
        # were metered in (one entry a second, oldest first; a read in flight starts a new
        # entry, so the ones before it are whole), and their sum.
        self._metered: deque[list[int]] = deque()
        self._sealed = False
        self._merges = 0
        self._unrecorded = 0
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
        second = int(self._wall_clock())
        if self._metered and not self._sealed and self._metered[-1][0] == second:
            self._metered[-1][1] += tokens
        else:
            self._metered.append([second, tokens])
            self._sealed = False
            if len(self._metered) > MAX_SECONDS_KEPT:
                # The ledger has not read usage for an hour: the two oldest seconds become one,
                # at the later second (forgotten no sooner than either would be).
                oldest = self._metered.popleft()
                self._metered[0][1] += oldest[1]
                self._merges += 1
        self._unrecorded += tokens

    def _forget(self, entries: int, *, before: float | None = None) -> None:
        """Of the oldest `entries`, those metered before the second `before` (all when None)
        are in the balance now."""
        for _ in range(entries):
            if not self._metered or (before is not None and self._metered[0][0] >= before):
                return
            self._unrecorded -= self._metered.popleft()[1]

    def _due(self) -> bool:
        return self._attempted_at is None or self._clock() - self._attempted_at >= self._cache

    def _estimate(self) -> int | None:
        return None if self._balance is None else self._balance - self._unrecorded

    async def _refresh(self) -> None:
        started = self._clock()
        self._attempted_at = started
        # What was metered before the read began: the entries now, closed to later tokens.
        present, merges, self._sealed = len(self._metered), self._merges, True
        try:
            read = await asyncio.to_thread(self._read_balance)
        except Exception as exc:
            log.warning(
                "ledger balance unreadable (%s); allowance fail mode %s",
                type(exc).__name__,
                self._fail_mode,
            )
            return
        reading = read if isinstance(read, WalletReading) else WalletReading(read)
        # None: the plan pays overage per use, nothing to refuse (`WalletApiReader`).
        self._balance = None if reading.available is None else int(reading.available)
        self._read_at = started
        # Tokens metered while the read was in flight may be missing from the balance: kept.
        present -= self._merges - merges  # entries before the read merged meanwhile
        if reading.usage_through is None:
            self._forget(present)
        else:
            self._forget(present, before=reading.usage_through.timestamp() - USAGE_MARGIN_SECONDS)

    def _after_failure(self) -> int | None:
        if self._fail_mode == "closed":
            raise AllowanceUnavailable("the token ledger cannot be read (fail mode closed)")
        since = self._read_at if self._read_at is not None else self._started_at
        if self._clock() - since > self._grace:
            raise AllowanceUnavailable(
                f"the token ledger has not been read for over {self._grace:g} s (fail mode open)"
            )
        return self._estimate()
