"""Token plans fund wallets per tenant and plan period, exactly once, whatever happens to SLAs.

Funding per SLA (the legacy `fund_allowance`, keyed by the SLA's uid) pays again whenever a
tenant deletes and re-creates an SLA, or runs two. A plan's allowance belongs to the tenant's
subscription to an offer instead: its idempotency key is `plan:<tenant>:<offer>/<period start>/
allowance`, so the ledger's unique key makes a second funding of the same tenant, offer and
period a no-op, across SLAs, restarts and racing operators alike.
"""

from __future__ import annotations

from datetime import datetime

from aiconn.sla.ledger import (
    ALLOWANCE,
    TOKENS,
    Kind,
    Ledger,
    Transfer,
    TransferSpec,
    wallet_account,
)
from aiconn.sla.offer import TokenPlan
from aiconn.sla.periods import Period, period_containing


def plan_subject(tenant: str, offer: str) -> str:
    """What a plan's transfers are keyed by (the ledger's `sla_uid` column): tenant and offer."""
    return f"plan:{tenant}:{offer}"


def plan_period(plan: TokenPlan, at: datetime) -> Period:
    """The plan period containing `at` (calendar-aligned in UTC)."""
    return period_containing(plan.window, at)


def fund_plan(
    ledger: Ledger,
    *,
    tenant: str,
    namespace: str,
    offer: str,
    plan: TokenPlan,
    at: datetime,
) -> Transfer | None:
    """Fund the tenant's wallet with the plan's included tokens for the period containing `at`,
    once per tenant, offer and period. None when the plan includes no tokens.

    Raises TransferConflict when the period was funded with another amount (the plan changed
    mid-period): the funded amount stands, transfers are immutable.
    """
    if plan.included_tokens_per_period == 0:
        return None
    return ledger.post_transfer(
        TransferSpec(
            debit_account=ALLOWANCE,
            credit_account=wallet_account(tenant),
            amount=plan.included_tokens_per_period,
            unit=TOKENS,
            kind=Kind.ALLOWANCE,
            sla_uid=plan_subject(tenant, offer),
            sla_namespace=namespace,
            sla_name=offer,
            period=plan_period(plan, at),
            metadata={"offer": offer, "source": "plan"},
        )
    )
