"""Planned maintenance: minutes excused from availability, and only when announced in advance.

A MaintenanceWindow is a small cluster-scoped resource the provider creates (tenants have no
cluster-wide rights: tenants choose, the provider decides). It names the offers whose SLAs it
excuses and a UTC span of whole minutes. Each offer states, in `maintenance.noticeMinutes`, how
far in advance a window must be declared; an offer without `maintenance` excuses nothing.

Never retroactive: a window excuses only minutes that begin at or after the moment it was
declared plus the notice. "Declared" is the window's `metadata.creationTimestamp`, which the API
server sets and nobody can write; the spec is immutable once created (a CEL transition rule), so
a window cannot be stretched over an outage after the fact: a changed plan is a new window, and
its notice counts from its own creation. Deleting a window un-excuses its minutes (a cancelled
maintenance owes nothing), as long as the period is not settled yet.

An excused minute is neither good, bad nor unknown (`aiconn.sla.evidence.Verdict.EXCUSED`): it
leaves the availability ratio and the coverage denominator, and is counted and shown on its own.

The resource the provider writes is `aiconn.resources.v1alpha1.maintenance`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiconn.resources.v1alpha1.maintenance import MaintenanceWindowSpec
from aiconn.sla.periods import ceil_minute
from aiconn.sla.timestamps import parse_iso

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray


@dataclass(frozen=True)
class MaintenanceWindow:
    """A declared window as the SLA engine uses it: its span, its offers, when it was declared."""

    name: str
    start: datetime
    end: datetime
    offers: frozenset[str]
    declared: datetime
    """The API server's creationTimestamp: the only clock a declaration is judged by."""
    reason: str = ""

    def excused_from(self, notice: timedelta) -> datetime:
        """The first minute this window may excuse under `notice`: never before it was known."""
        return max(self.start, ceil_minute(self.declared + notice))

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> MaintenanceWindow:
        """A window from its stored object (raises ValueError or KeyError when malformed)."""
        spec = MaintenanceWindowSpec.model_validate(body.get("spec") or {})
        meta = body["metadata"]
        return cls(
            name=meta["name"],
            start=_parse(spec.start),
            end=_parse(spec.end),
            offers=frozenset(spec.offers),
            declared=_parse(meta["creationTimestamp"]),
            reason=spec.reason,
        )


def excused_spans(
    windows: Iterable[MaintenanceWindow], *, offer: str, notice: timedelta
) -> tuple[tuple[datetime, datetime], ...]:
    """The [from, end) spans an SLA of `offer` is excused, sorted; empty spans left out."""
    spans = {
        (w.excused_from(notice), w.end)
        for w in windows
        if offer in w.offers and w.excused_from(notice) < w.end
    }
    return tuple(sorted(spans))


def excused_minutes(
    spans: Sequence[tuple[datetime, datetime]], *, start: datetime, minutes: int
) -> NDArray[np.bool_]:
    """For each minute [start + j, start + j + 1), whether it begins inside an excused span."""
    import numpy as np  # here, not at the top: the offer model (and the operator) need no numpy

    mask = np.zeros(minutes, dtype=np.bool_)
    for lo, hi in spans:
        first = -(-int((lo - start).total_seconds()) // 60)
        stop = -(-int((hi - start).total_seconds()) // 60)
        mask[max(first, 0) : max(min(stop, minutes), 0)] = True
    return mask


def _parse(text: str) -> datetime:
    return parse_iso(text).astimezone(UTC)
