"""Which minutes each SLA's availability objective judges, for a whole fleet at once.

An SLA's offer may limit the objective to service hours (`aiconn.sla.servicehours`) and excuse
planned maintenance (`aiconn.sla.maintenance`). SLAs of one offer share these rules, so the
masks are computed once per distinct rule, not once per SLA: a fleet of 10,000 SLAs under a
handful of offers costs a handful of masks, and the evaluation picks each SLA's row by index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from aiconn.resources.v1alpha1.servicehours import ServiceHours
from aiconn.sla.maintenance import excused_minutes
from aiconn.sla.servicehours import service_minutes

Spans = tuple[tuple[datetime, datetime], ...]


@dataclass(frozen=True)
class MinuteRule:
    """One SLA's rule: its service hours (None: all hours) and its excused spans."""

    service_hours: ServiceHours | None = None
    excused: Spans = ()

    @property
    def key(self) -> str:
        """The service hours as text: the pydantic model (it holds a list) does not hash."""
        return "" if self.service_hours is None else self.service_hours.model_dump_json()

    @property
    def limits(self) -> bool:
        """Whether the rule leaves any minute out (the default judges every minute)."""
        return self.service_hours is not None or bool(self.excused)


@dataclass(frozen=True)
class MinuteRules:
    """Masks over the series' columns (look-back included), one row per distinct rule."""

    judged: NDArray[np.bool_]
    """Rules x columns: the minute is in service hours and not excused."""
    excused: NDArray[np.bool_]
    """Rules x columns: the minute is in service hours and excused."""
    rule_of: NDArray[np.intp]
    """Per SLA, its row; -1 for an SLA whose every minute is judged and none excused."""

    @classmethod
    def build(cls, rules: Sequence[MinuteRule], *, start: datetime, columns: int) -> MinuteRules:
        """Masks for `rules` (one per SLA) over `columns` minutes from `start` (a UTC minute)."""
        rows: dict[tuple[str, Spans], int] = {}
        judged: list[NDArray[np.bool_]] = []
        excused: list[NDArray[np.bool_]] = []
        rule_of = np.full(len(rules), -1, dtype=np.intp)
        for i, rule in enumerate(rules):
            if not rule.limits:
                continue
            key = (rule.key, rule.excused)
            if key not in rows:
                served = (
                    np.ones(columns, dtype=np.bool_)
                    if rule.service_hours is None
                    else service_minutes(rule.service_hours, start=start, minutes=columns)
                )
                off = excused_minutes(rule.excused, start=start, minutes=columns) & served
                rows[key] = len(judged)
                judged.append(served & ~off)
                excused.append(off)
            rule_of[i] = rows[key]
        empty = np.zeros((0, columns), dtype=np.bool_)
        return cls(
            judged=np.stack(judged) if judged else empty,
            excused=np.stack(excused) if excused else empty,
            rule_of=rule_of,
        )

    def masks(self, sla: int) -> tuple[NDArray[np.bool_], NDArray[np.bool_]] | None:
        """One SLA's (excused, outside service hours) minutes; None when it has no rule."""
        row = int(self.rule_of[sla])
        if row < 0:
            return None
        excused = self.excused[row]
        return excused, ~(self.judged[row] | excused)

    def rows(self, slas: slice) -> NDArray[np.bool_] | None:
        """The judged masks of the SLAs in `slas` (all True for an unlimited SLA); None when none
        of them is limited, so an unlimited fleet pays nothing for the rules."""
        index = self.rule_of[slas]
        if not (index >= 0).any():
            return None
        judged = self.judged[np.maximum(index, 0)]
        judged[index < 0] = True
        return judged

    def counts(
        self, slas: slice, columns: slice, in_force: NDArray[np.bool_] | None
    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Judged and excused minutes of the SLAs in `slas` over `columns`, counting only minutes
        in force (`in_force`, SLAs x those columns; None: all). Unlimited SLAs: all, none. For
        SLAs `rows` found limited (so there is at least one rule)."""
        index = self.rule_of[slas]
        free = index < 0
        rows = np.maximum(index, 0)
        judged_masks, excused_masks = self.judged[:, columns], self.excused[:, columns]
        if in_force is None:
            # Every SLA of a rule has the same counts: count each rule once.
            judged = np.count_nonzero(judged_masks, axis=1)[rows]
            excused = np.count_nonzero(excused_masks, axis=1)[rows]
            judged = np.where(free, judged_masks.shape[1], judged)
        else:
            mine = judged_masks[rows]
            mine[free] = True
            judged = np.count_nonzero(mine & in_force, axis=1)
            excused = np.count_nonzero(excused_masks[rows] & in_force, axis=1)
        excused = np.where(free, 0, excused)
        return judged.astype(np.int64), excused.astype(np.int64)
