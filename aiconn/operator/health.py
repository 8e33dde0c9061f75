"""What people read about an SLA: its phase in words and its numbers rounded.

kubectl prints a number column with Go's `%v`, so a float status field shows as
`33.333333333333336`; the table therefore reads the preformatted strings of `status.summary`,
written whenever they change. The phase of a serving SLA says how it is doing, not only that its
pods run:

- Breached: the Compliant condition is False (an objective is missed this period);
- AtRisk: a burn-rate alert fires, or less than AT_RISK_BUDGET_PERCENT of the error budget is left;
- Ready: serving and on track.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiconn.sla.burnwindows import name_minutes
from aiconn.sla.credits import exact_decimal

AT_RISK_BUDGET_PERCENT = 25.0
SERVING_PHASES = ("Ready", "AtRisk", "Breached")


def _conditions(status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {c.get("type", ""): c for c in status.get("conditions") or []}


def serving_phase(status: Mapping[str, Any]) -> str:
    """Ready, AtRisk or Breached for an SLA whose children are ready (see the module doc)."""
    if (_conditions(status).get("Compliant") or {}).get("status") == "False":
        return "Breached"
    period = status.get("period") or {}
    budget = period.get("budgetRemainingPercent")
    if period.get("alerts") or (budget is not None and budget < AT_RISK_BUDGET_PERCENT):
        return "AtRisk"
    return "Ready"


def percent(value: float | None, *, decimals: int) -> str | None:
    """`value` rounded for people; a figure under 100 never shows as 100 (99.996 % is a miss)."""
    if value is None:
        return None
    text = f"{value:.{decimals}f}"
    if value < 100 <= float(text):
        text = f"{100 - 10**-decimals:.{decimals}f}"
    return f"{text}%"


def money(value: str | float | None, currency: str) -> str | None:
    """An amount (a decimal string; a number from a status written before amounts were strings)
    with two decimals, rounded half-even as a decimal, and its currency, e.g. `12.35 EUR`."""
    return None if value is None else f"{exact_decimal(value):.2f} {currency}"


def summary(status: Mapping[str, Any], *, currency: str) -> dict[str, str]:
    """`status.summary`: the strings the printer columns show (absent figures are left out)."""
    period = status.get("period") or {}
    compliant = (_conditions(status).get("Compliant") or {}).get("status")
    fields = {
        "availability": percent(period.get("availabilityPercent"), decimals=2),
        "budget": percent(period.get("budgetRemainingPercent"), decimals=1),
        "credits": money(period.get("creditsAccrued"), currency),
        "compliant": {"True": "Yes", "False": "No"}.get(compliant or "", "Unknown"),
    }
    return {k: v for k, v in fields.items() if v is not None}


def display_update(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The status patch that brings phase and summary up to date; None when they are."""
    status = body.get("status") or {}
    currency = ((body.get("spec") or {}).get("tokens") or {}).get("currency", "EUR")
    patch: dict[str, Any] = {}
    wanted = summary(status, currency=currency)
    if wanted != (status.get("summary") or {}):
        # A merge patch merges maps: figures that disappeared are removed with an explicit null.
        gone = {k: None for k in status.get("summary") or {} if k not in wanted}
        patch["summary"] = {**gone, **wanted}
    phase = status.get("phase")
    if phase in SERVING_PHASES and not status.get("pending"):
        new_phase = serving_phase(status)
        if new_phase != phase:
            patch["phase"] = new_phase
    return patch or None


def burn_rates_sentence(rates: Mapping[str, float | None]) -> str:
    """Burn rates as people read them, e.g. `burn rate 200x over 5 min, 14.4x over 1 h` (1x spends
    the budget exactly by the period's end); an Event's text, not a dict's repr."""
    parts = [
        f"{_rate(value)}x over {_window_words(key)}"
        for key, value in rates.items()
        if value is not None
    ]
    return "burn rate " + ", ".join(parts) if parts else "no burn rate yet"


def _window_words(name: str) -> str:
    """A window name as words: w5m -> `5 min`, w2h24m -> `2 h 24 min`, w3d -> `3 days`."""
    minutes = name_minutes(name)
    if minutes is None:
        return name
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    words = [
        f"{days} day" + ("s" if days > 1 else "") if days else "",
        f"{hours} h" if hours else "",
        f"{mins} min" if mins else "",
    ]
    return " ".join(w for w in words if w)


def _rate(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
