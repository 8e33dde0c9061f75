"""Failures as people see them: one short sentence, one Event per distinct failure, a backoff.

Any reconcile failure becomes the Ready=False condition with a reason and a bounded message, and
an Event only when that failure is new (the same reason and message already on a condition is not
said again), so a failing object retried for hours posts one Warning, not one per retry.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from kubernetes.client.rest import ApiException

MAX_MESSAGE = 1024
FIRST_RETRY_S = 15.0
MAX_RETRY_S = 600.0


def short(text: str, limit: int = MAX_MESSAGE) -> str:
    """`text` on one line, at most `limit` characters (an ellipsis marks a cut)."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def describe(err: BaseException) -> str:
    """One sentence for a failure: the API server's own message when it refused something."""
    if isinstance(err, ApiException):
        detail = str(err.reason or "")
        with contextlib.suppress(TypeError, ValueError, AttributeError):
            detail = json.loads(err.body or "{}").get("message") or detail
        return short(f"the API server answered {err.status}: {detail}")
    return short(f"{type(err).__name__}: {err}")


def transient(err: BaseException) -> bool:
    """Conflicts, throttling and server errors: worth a quiet retry before telling anyone."""
    return isinstance(err, ApiException) and (err.status in (409, 429) or (err.status or 0) >= 500)


def backoff(retry: int) -> float:
    """Seconds before retry number `retry`: doubling from FIRST_RETRY_S, capped at MAX_RETRY_S."""
    return min(FIRST_RETRY_S * float(2 ** min(retry, 16)), MAX_RETRY_S)


def already_said(conditions: Iterable[Mapping[str, Any]], *, reason: str, message: str) -> bool:
    """Whether a condition already carries this reason and message (its Event was posted)."""
    return any(c.get("reason") == reason and c.get("message") == message for c in conditions)
