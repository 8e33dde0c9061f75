"""Failures as people see them: one short sentence, one Event per distinct failure, a backoff.

Any reconcile failure becomes the Ready=False condition with a reason and a bounded message, and
an Event only when that failure is new: the same reason and message already on a condition is not
said again, and the same Event on the same object is said at most once an hour even when several
handlers (an SLA's own, a tier edit's re-planning) hit it at once, before any condition is written.
A failing object retried for hours posts one Warning, not one per retry.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aiconn.kube import KubeError

MAX_MESSAGE = 1024
FIRST_RETRY_S = 15.0
MAX_RETRY_S = 600.0
REPEAT_AFTER_S = 3600.0
# A Normal Event (placed, realized) may truly recur: only simultaneous duplicates are dropped.
NORMAL_REPEAT_AFTER_S = 60.0


def short(text: str, limit: int = MAX_MESSAGE) -> str:
    """`text` on one line, at most `limit` characters (an ellipsis marks a cut)."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def describe(err: BaseException) -> str:
    """One sentence for a failure: the API server's own message when it refused something."""
    if isinstance(err, KubeError):
        detail = str(err.reason or "")
        with contextlib.suppress(TypeError, ValueError, AttributeError):
            detail = json.loads(err.body or "{}").get("message") or detail
        return short(f"the API server answered {err.status}: {detail}")
    return short(f"{type(err).__name__}: {err}")


def transient(err: BaseException) -> bool:
    """Conflicts, throttling and server errors: worth a quiet retry before telling anyone."""
    return isinstance(err, KubeError) and (err.status in (409, 429) or (err.status or 0) >= 500)


def backoff(retry: int) -> float:
    """Seconds before retry number `retry`: doubling from FIRST_RETRY_S, capped at MAX_RETRY_S."""
    return min(FIRST_RETRY_S * float(2 ** min(retry, 16)), MAX_RETRY_S)


def already_said(conditions: Iterable[Mapping[str, Any]], *, reason: str, message: str) -> bool:
    """Whether a condition already carries this reason and message (its Event was posted)."""
    return any(c.get("reason") == reason and c.get("message") == message for c in conditions)


class EventLimiter:
    """Says yes to an (object, reason, message) at most once every `repeat_after_s` seconds.

    Process-wide and synchronous (check and record in one step), so concurrent handlers on one
    event loop cannot both post; bounded to `size` entries, the oldest forgotten first."""

    def __init__(
        self,
        *,
        repeat_after_s: float = REPEAT_AFTER_S,
        size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._repeat_after_s = repeat_after_s
        self._size = size
        self._clock = clock
        self._said: OrderedDict[tuple[str, ...], float] = OrderedDict()

    def allow(self, *key: str, repeat_after_s: float | None = None) -> bool:
        """Whether to say `key` now (and, if so, remember that it was said)."""
        now = self._clock()
        said = self._said.get(key)
        window = self._repeat_after_s if repeat_after_s is None else repeat_after_s
        if said is not None and now - said < window:
            return False
        self._said[key] = now
        self._said.move_to_end(key)
        while len(self._said) > self._size:
            self._said.popitem(last=False)
        return True
