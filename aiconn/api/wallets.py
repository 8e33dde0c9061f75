"""A tenant's wallet as reports and the NOC show it: balance, recent burn, projected exhaustion.

The figures are the ledger's (`Ledger.balance`, `available_tokens`, `open_usage`) and the
projection's (`aiconn.sla.exhaustion`); nothing here computes money or time on its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from aiconn.api.models import Wallet
from aiconn.api.slas import SLA
from aiconn.sla.accounting import TOKENS, currency_unit, wallet_account
from aiconn.sla.exhaustion import project
from aiconn.sla.plans import overage_mode
from aiconn.store.ledger import Ledger


def wallet(ledger: Ledger, tenant: str, currencies: Iterable[str]) -> Wallet:
    """One tenant's wallet with its burn and projected exhaustion."""
    account = wallet_account(tenant)
    # Read before the balance: usage recorded in between is then in `availableTokens` and a
    # gateway counts it twice (refuses early), never forgets it unpaid.
    through = ledger.usage_recorded_through(tenant)
    tokens = ledger.balance(account, TOKENS).net
    pending = ledger.pending_usage(tenant)
    projection = project(tokens - pending, ledger.open_usage(tenant))
    return Wallet(
        tenant=tenant,
        account=account,
        tokens=tokens,
        pending_usage_tokens=pending,
        available_tokens=tokens - pending,
        usage_recorded_through=through,
        overage=overage_mode(ledger, tenant),
        money_micros={
            currency_unit(c): ledger.balance(account, currency_unit(c)).net
            for c in sorted(set(currencies))
        },
        burn_tokens_per_day=projection.burn_tokens_per_day,
        burn_measured_to=projection.as_of,
        projected_exhaustion=projection.exhausts_at,
    )


def currencies_by_tenant(slas: Iterable[SLA]) -> dict[str, set[str]]:
    """The currencies each tenant's SLAs are priced in: the money balances its wallet shows."""
    currencies: dict[str, set[str]] = {}
    for sla in slas:
        currencies.setdefault(sla.tenant, set()).add(sla.spec.tokens.currency)
    return currencies


def wallets(ledger: Ledger, currencies: Mapping[str, Iterable[str]]) -> list[Wallet]:
    """The wallets of `currencies`' tenants, soonest exhaustion first (never-exhausting last)."""
    found = [wallet(ledger, tenant, held) for tenant, held in sorted(currencies.items())]
    return sorted(found, key=lambda w: (w.projected_exhaustion is None, _key(w)))


def _key(found: Wallet) -> float:
    at = found.projected_exhaustion
    return 0.0 if at is None else at.timestamp()
