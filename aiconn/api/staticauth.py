"""Static bearer tokens for local use, from a CSV file named explicitly in the settings.

Each line is `token,user,namespace[,namespace...]`; the namespace `*` stands for every namespace
and grants the fleet (NOC) views and the release of held settlements. Blank lines and lines
starting with `#` are ignored. Tokens are compared in constant time and never appear in errors.
"""

from __future__ import annotations

import csv
import hmac
from dataclasses import dataclass
from pathlib import Path

from aiconn.api.auth import Caller

ALL_NAMESPACES = "*"


@dataclass(frozen=True)
class StaticGrant:
    """One line of the tokens file."""

    token: str
    caller: Caller
    namespaces: frozenset[str]


def load_static_tokens(path: Path) -> tuple[StaticGrant, ...]:
    """Parse the tokens file; an error names the line, never the token."""
    grants: list[StaticGrant] = []
    with path.open(newline="") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            cells = [cell.strip() for cell in row]
            if not cells or not cells[0] or cells[0].startswith("#"):
                continue
            if len(cells) < 3 or not all(cells[:3]):
                raise ValueError(
                    f"{path}:{number}: expected `token,user,namespace[,namespace...]`"
                    f" with a non-empty token, user and at least one namespace"
                )
            grants.append(
                StaticGrant(
                    token=cells[0],
                    caller=Caller(username=cells[1]),
                    namespaces=frozenset(c for c in cells[2:] if c),
                )
            )
    return tuple(grants)


class StaticAuthorizer:
    """Tokens and their namespaces from a file."""

    def __init__(self, grants: tuple[StaticGrant, ...]) -> None:
        self._grants = grants
        self._namespaces: dict[Caller, frozenset[str]] = {}
        for grant in grants:
            # A user on several lines holds the union of their namespaces.
            held = self._namespaces.get(grant.caller, frozenset())
            self._namespaces[grant.caller] = held | grant.namespaces

    @classmethod
    def from_file(cls, path: Path) -> StaticAuthorizer:
        """Read the grants from `path`."""
        return cls(load_static_tokens(path))

    def authenticate(self, token: str) -> Caller | None:
        found: Caller | None = None
        for grant in self._grants:
            # Compare with every grant so timing says nothing about which token is close.
            if hmac.compare_digest(grant.token.encode(), token.encode()):
                found = grant.caller
        return found

    def may_read_namespace(self, caller: Caller, namespace: str) -> bool:
        allowed = self._namespaces.get(caller, frozenset())
        return namespace in allowed or ALL_NAMESPACES in allowed

    def may_read_fleet(self, caller: Caller) -> bool:
        return ALL_NAMESPACES in self._namespaces.get(caller, frozenset())

    def may_review_settlements(self, caller: Caller, namespace: str) -> bool:
        # Local use only: the NOC (every namespace) reviews.
        return self.may_read_fleet(caller)

    def may_top_up(self, caller: Caller, namespace: str) -> bool:
        # Local use only: the NOC (every namespace) tops up.
        return self.may_read_fleet(caller)
