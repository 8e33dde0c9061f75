"""Kubernetes resource quantities ("2", "500m", "1Gi", "1e3") as exact Decimals, as the API
server reads them: a number, then at most one suffix, binary (Ki ... Ei), decimal (n, u, m, k,
M, G, T, P, E) or an exponent (e3, E-2)."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))([eE][+-]?\d+|[KMGTPE]i|[numkMGTPE]?)$")


def parse_quantity(value: str | int | float | Decimal) -> Decimal:
    """`value` as a Decimal; ValueError naming it when it is not a quantity."""
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(str(value))
    match = _QUANTITY.match(value.strip())
    if match is None:
        raise ValueError(f"{value!r} is not a Kubernetes quantity")
    number, suffix = match.groups()
    try:
        amount = Decimal(number)
    except InvalidOperation as err:
        raise ValueError(f"{value!r} is not a Kubernetes quantity") from err
    if suffix in BINARY:
        return amount * Decimal(1024 ** BINARY[suffix])
    exponent = DECIMAL[suffix] if suffix in DECIMAL else int(suffix[1:])
    return amount.scaleb(exponent)
