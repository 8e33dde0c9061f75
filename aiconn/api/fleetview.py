"""The NOC's view of the fleet: every SLA ranked by risk, and totals per tier and per site.

Risk orders the table so the SLA that needs a human comes first. It is a sum of documented parts:

| part                                                        | points   |
|-------------------------------------------------------------|----------|
| breach: Compliant=False (an objective missed, credits owed) | 1000     |
| failing reconcile: phase Failed or Invalid                  | 800      |
| unplaceable: phase Unplaceable or EditUnplaceable           | 700      |
| degraded: the network slice failed (phase Degraded)         | 500      |
| each paging burn-rate alert (page-*) / other alert          | 200 / 50 |
| error budget spent: 100 - remaining %, capped               | 0 to 200 |
| not measured yet: Compliant=Unknown                         | 25       |

So a breach outranks anything that is not one, an SLA the operator cannot run outranks an alert,
and among healthy SLAs the one that has burnt more of its budget comes first. An SLA merely not
measured yet ranks just above a healthy one, not above every SLA with a problem.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal

from aiconn.api.models import FleetItem, GroupSummary
from aiconn.api.reports import summary
from aiconn.api.slas import SLA
from aiconn.sla.credits import money

BREACH_RISK = 1000.0
FAILING_RISK = 800.0
UNPLACEABLE_RISK = 700.0
DEGRADED_RISK = 500.0
PAGE_ALERT_RISK = 200.0
TICKET_ALERT_RISK = 50.0
UNMEASURED_RISK = 25.0
# Budget spent counts up to twice over (an overspent budget is -100 % remaining).
MAX_BUDGET_RISK = 200.0
PHASE_RISK = {
    "Failed": FAILING_RISK,
    "Invalid": FAILING_RISK,
    "Unplaceable": UNPLACEABLE_RISK,
    "EditUnplaceable": UNPLACEABLE_RISK,
    "Degraded": DEGRADED_RISK,
}


def risk(item: FleetItem) -> float:
    """A score where higher needs a human sooner (the table in the module doc)."""
    score = {"False": BREACH_RISK, "Unknown": UNMEASURED_RISK}.get(item.compliant, 0.0)
    score += PHASE_RISK.get(item.phase or "", 0.0)
    for alert in item.alerts:
        score += PAGE_ALERT_RISK if alert.startswith("page") else TICKET_ALERT_RISK
    if item.budget_remaining_percent is not None:
        score += min(max(100.0 - item.budget_remaining_percent, 0.0), MAX_BUDGET_RISK)
    return round(score, 3)


def fleet_items(slas: Sequence[SLA], now: datetime) -> list[FleetItem]:
    """Every SLA with its risk and evaluation age, riskiest first."""
    items = []
    for sla in slas:
        base = summary(sla).model_dump()
        item = FleetItem(**base, risk=0.0, evaluation_age_seconds=_age(base["evaluated_at"], now))
        items.append(item.model_copy(update={"risk": risk(item)}))
    return sorted(items, key=lambda i: (-i.risk, i.namespace, i.name))


def group_summaries(
    items: Sequence[FleetItem], key: Callable[[FleetItem], str | None]
) -> list[GroupSummary]:
    """Counts, worst budget, mean availability and credits for each value of `key`."""
    groups: dict[str, list[FleetItem]] = defaultdict(list)
    for item in items:
        groups[key(item) or "unplaced"].append(item)
    return [_summarize(name, members) for name, members in sorted(groups.items())]


def _summarize(name: str, members: list[FleetItem]) -> GroupSummary:
    availability = [m.availability_percent for m in members if m.availability_percent is not None]
    budgets = [
        m.budget_remaining_percent for m in members if m.budget_remaining_percent is not None
    ]
    credits: dict[str, Decimal] = defaultdict(Decimal)
    for member in members:
        credits[member.currency] += member.credits_accrued or 0
    return GroupSummary(
        key=name,
        slas=len(members),
        compliant=sum(m.compliant == "True" for m in members),
        non_compliant=sum(m.compliant == "False" for m in members),
        unknown=sum(m.compliant == "Unknown" for m in members),
        alerts_firing=sum(len(m.alerts) for m in members),
        mean_availability_percent=sum(availability) / len(availability) if availability else None,
        min_budget_remaining_percent=min(budgets) if budgets else None,
        credits_accrued={c: money(v) for c, v in sorted(credits.items())},
    )


def _age(evaluated_at: str | None, now: datetime) -> float | None:
    if not evaluated_at:
        return None
    try:
        at = datetime.fromisoformat(evaluated_at)
    except ValueError:
        return None
    if at.tzinfo is None:
        return None
    return round(max((now - at).total_seconds(), 0.0), 3)
