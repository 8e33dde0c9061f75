"""Standard conditions: set one, keep its lastTransitionTime while its status does not change."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from aiconn.operator.failures import short
from aiconn.sla.timestamps import iso_seconds


def now_iso() -> str:
    return iso_seconds(dt.datetime.now(dt.UTC))


def condition(
    type_: str, ok: bool | None, reason: str, message: str, *, generation: int | None
) -> dict[str, Any]:
    status = "Unknown" if ok is None else ("True" if ok else "False")
    cond: dict[str, Any] = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": short(message),
    }
    if generation is not None:
        cond["observedGeneration"] = generation
    return cond


def merge(
    previous: Iterable[Mapping[str, Any]], updates: Iterable[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The updated condition list: new entries replace old ones of the same type; a transition
    time moves only when the status flips. Types not updated are kept as they were."""
    old = {c["type"]: c for c in previous}
    merged = dict(old)
    for cond in updates:
        before = old.get(cond["type"])
        same = before is not None and before.get("status") == cond["status"]
        stamp = before.get("lastTransitionTime") if same and before else None
        merged[cond["type"]] = {**cond, "lastTransitionTime": stamp or now_iso()}
    return list(merged.values())
