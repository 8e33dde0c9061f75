"""Burn-rate windows that scale with the SLA's window, the one table both alert paths read.

The multi-window alerts of the Google SRE workbook are written for a 30-day period: page when 1 h
and 5 min both burn faster than 14.4 (2 % of the budget in an hour), or 6 h and 30 min faster
than 6; open a ticket when 1 d and 2 h burn faster than 3, or 3 d and 6 h faster than 1. Fixed
windows do not fit other periods: a 1-day SLA's whole budget would be gone before a 3-day window
noticed. So, as Pyrra does, every window is scaled by the SLA's window over 30 days and the
factors stay: each alert still means "this share of the period's budget spent this fast".

Windows are whole minutes (the timeslice resolution): a scaled window is rounded to the nearest
minute and never shorter than one. On a window so short that two alerts of one severity collapse
onto the same long window, the one with the lower factor is kept (it fires whenever the other
would). A calendar month counts as 30 days here, so a month's windows are the workbook's and do
not move between February and March.

The operator's alerts (`aiconn.sla.budget`) and the generated PrometheusRule
(`aiconn.sla.alertrules`) both take their windows and factors from `alert_rules`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from aiconn.resources.v1alpha1.sla import Window
from aiconn.sla.periods import parse_duration

Severity = Literal["page", "ticket"]

MINUTES_PER: Mapping[str, int] = {"m": 1, "h": 60, "d": 1440, "w": 7 * 1440, "M": 30 * 1440}
"""Nominal minutes of each OpenSLO duration unit; a calendar month counts as 30 days."""
BASE_PERIOD_MINUTES = 30 * 1440
"""The period the workbook's table is written for."""


@dataclass(frozen=True)
class BurnWindow:
    """A trailing window of whole minutes, named by its length (w5m, w1h, w2h24m, w3d)."""

    name: str
    minutes: int


@dataclass(frozen=True)
class AlertRule:
    """Fire when both windows burn strictly faster than `factor` budgets per period."""

    name: str
    severity: Severity
    long: BurnWindow
    short: BurnWindow
    factor: float
    """Compared as the decimal it is written as (14.4 is 72/5), never as its binary value."""

    @property
    def exact_factor(self) -> Fraction:
        """The factor as the fraction its decimal spelling is."""
        return Fraction(repr(self.factor))


@dataclass(frozen=True)
class _Base:
    severity: Severity
    long_minutes: int
    short_minutes: int
    factor: float


BASE_RULES = (
    _Base("page", 60, 5, 14.4),
    _Base("page", 360, 30, 6.0),
    _Base("ticket", 1440, 120, 3.0),
    _Base("ticket", 4320, 360, 1.0),
)
"""The workbook's table for a 30-day period."""

DEFAULT_WINDOW = Window()
"""A calendar month: the workbook's windows unscaled."""


def window_minutes(window: Window) -> int:
    """Nominal length of an SLA window in minutes (`1M` is 30 days, `1w` 7 days); parsed by
    `parse_duration`, as periods are, so the alerts and the periods accept the same spellings."""
    duration = parse_duration(window.duration)
    return duration.count * MINUTES_PER[duration.unit]


def scaled_minutes(base_minutes: int, period_minutes: int) -> int:
    """`base_minutes` x period / 30 days, rounded half up to whole minutes, at least 1."""
    numerator = base_minutes * period_minutes
    return max(1, (2 * numerator + BASE_PERIOD_MINUTES) // (2 * BASE_PERIOD_MINUTES))


def duration_text(minutes: int) -> str:
    """Minutes as a readable duration: 5 -> `5m`, 60 -> `1h`, 144 -> `2h24m`, 4320 -> `3d`."""
    if minutes <= 0:
        raise ValueError(f"a window is at least one minute, got {minutes}")
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (mins, "m")]
    return "".join(f"{count}{unit}" for count, unit in parts if count)


def burn_window(minutes: int) -> BurnWindow:
    """The window of `minutes`, named `w` + its readable duration."""
    return BurnWindow(f"w{duration_text(minutes)}", minutes)


_NAME = re.compile(r"^w(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?$")


def name_minutes(name: str) -> int | None:
    """Minutes of a window name (`w2h24m` -> 144); None when it is not one (case-insensitive)."""
    match = _NAME.match(name.lower())
    if match is None or not any(match.groups()):
        return None
    days, hours, mins = (int(g or 0) for g in match.groups())
    return days * 1440 + hours * 60 + mins


def alert_rules(window: Window = DEFAULT_WINDOW) -> tuple[AlertRule, ...]:
    """The multi-window alerts of an SLA window, named severity + long window (`page-1h`)."""
    period = window_minutes(window)
    rules: dict[str, AlertRule] = {}
    for base in BASE_RULES:
        long = burn_window(scaled_minutes(base.long_minutes, period))
        short = burn_window(min(long.minutes, scaled_minutes(base.short_minutes, period)))
        name = f"{base.severity}-{long.name[1:]}"
        rule = AlertRule(name, base.severity, long, short, base.factor)
        kept = rules.get(rule.name)
        if kept is None or rule.factor < kept.factor:
            rules[rule.name] = rule
    return tuple(rules.values())


def burn_windows(rules: Iterable[AlertRule]) -> tuple[BurnWindow, ...]:
    """Every window the rules read, shortest first (the status's `burnRates` keys)."""
    found = {w.minutes: w for rule in rules for w in (rule.long, rule.short)}
    return tuple(found[m] for m in sorted(found))


def longest_minutes(rules: Iterable[AlertRule]) -> int:
    """The look-back the rules need before a period starts."""
    return max(w.minutes for w in burn_windows(rules))


CURRENT_BURN_MINUTES = 5
"""The shortest window the current burn is read from: a 1-day SLA's 1-minute window turns one
bad minute into a 1000x burn, too jumpy to scale or fail over on."""


def shortest_burn_rate(rates: Mapping[str, float | None]) -> float | None:
    """The current burn from a status's `burnRates`: the shortest window of at least
    CURRENT_BURN_MINUTES (5 min for a monthly SLA), or the shortest when every window is shorter
    (an SLA window of an hour or less); None when there is none or it knows no minute."""
    named = {
        minutes: value
        for name, value in rates.items()
        if (minutes := name_minutes(name)) is not None
    }
    if not named:
        return None
    steady = [minutes for minutes in named if minutes >= CURRENT_BURN_MINUTES]
    return named[min(steady or named)]
