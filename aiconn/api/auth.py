"""Who is calling and what they may read: the interface the routes depend on.

Tenant isolation is Kubernetes RBAC: a caller may read an SLA's reports exactly when it may `get`
`aiinferenceslas` in that SLA's namespace, the NOC views need `list` on them cluster-wide, and
releasing a held settlement needs `approve` on `settlements` in the SLA's namespace, and a
top-up needs `create` on `topups` there.
Two implementations exist: `kubeauth` (TokenReview + SubjectAccessReview, the production one) and
`staticauth` (a token file for local use). The routes only ever see this protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from aiconn.resources.v1alpha1.kinds import SLA, TOPUP

RESOURCE = SLA.plural
SETTLEMENTS = "settlements"
APPROVE = "approve"
TOPUPS = TOPUP.plural
CREATE = "create"


@dataclass(frozen=True)
class Caller:
    """An authenticated user, as the API server's TokenReview describes it."""

    username: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())


class AuthUnavailable(Exception):
    """The authority that checks tokens or permissions could not be asked (answered 503)."""


class Authorizer(Protocol):
    """Checks bearer tokens and answers the two questions the API asks."""

    def authenticate(self, token: str) -> Caller | None:
        """The caller the token belongs to, or None when the token is not valid."""

    def may_read_namespace(self, caller: Caller, namespace: str) -> bool:
        """Whether the caller may `get` AIInferenceSLAs in `namespace`."""

    def may_read_fleet(self, caller: Caller) -> bool:
        """Whether the caller may `list` AIInferenceSLAs in every namespace (the NOC views)."""

    def may_review_settlements(self, caller: Caller, namespace: str) -> bool:
        """Whether the caller may `approve` `settlements` (aiconn.io) in `namespace`: release a
        period held for review, which moves money. No such resource is served; RBAC rules name
        it all the same, and the platform team binds it to whoever reviews held periods."""

    def may_top_up(self, caller: Caller, namespace: str) -> bool:
        """Whether the caller may `create` `topups` (aiconn.io) in `namespace`: buy tokens for a
        wallet there, which moves money. Like settlements, a resource RBAC names but no server
        serves; billing staff (or a billing system's ServiceAccount) get it, tenants do not."""
