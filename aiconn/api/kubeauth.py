"""Bearer tokens checked the Kubernetes way: TokenReview, then SubjectAccessReview.

The API calls both with its own service account (which needs `create` on tokenreviews and
subjectaccessreviews), so a tenant's token is never used to act, only to be reviewed. Answers are
reused for a few seconds from a bounded LRU keyed by a SHA-256 of the token, so the raw token is
not even kept in memory longer than the request.

Tokens are reviewed for the API's own audience first (the inference gateways' projected tokens
carry it, so they cannot be replayed against the Kubernetes API server), then, unless turned off,
for the API server's default audience, which is what `kubectl create token` issues.
"""

from __future__ import annotations

import hashlib
from typing import Any

from urllib3.exceptions import HTTPError

from aiconn.api.auth import (
    APPROVE,
    CREATE,
    RESOURCE,
    SETTLEMENTS,
    TOPUPS,
    AuthUnavailable,
    Caller,
)
from aiconn.api.ttlcache import TTLCache
from aiconn.kube import KINDS, Kube, KubeError
from aiconn.resources.v1alpha1.meta import GROUP

AccessKey = tuple[Caller, str, str | None]


class KubernetesAuthorizer:
    """TokenReview (authentication.k8s.io/v1) and SubjectAccessReview (authorization.k8s.io/v1)."""

    def __init__(
        self,
        api: Any,
        *,
        cache_seconds: float,
        cache_size: int,
        audience: str | None = None,
        accept_default_audience: bool = True,
    ) -> None:
        if audience is None and not accept_default_audience:
            raise ValueError("no audience to accept: name one or accept the default audience")
        self._audiences: tuple[list[str] | None, ...] = (
            *(([audience],) if audience else ()),
            *((None,) if accept_default_audience else ()),
        )
        self._kube = Kube(api)
        self._tokens: TTLCache[str, Caller | bool] = TTLCache(
            size=cache_size, seconds=cache_seconds
        )
        self._decisions: TTLCache[AccessKey, bool] = TTLCache(
            size=cache_size, seconds=cache_seconds
        )

    def authenticate(self, token: str) -> Caller | None:
        key = hashlib.sha256(token.encode()).hexdigest()
        cached = self._tokens.get(key)
        if cached is not None:
            return cached if isinstance(cached, Caller) else None
        caller = self._review_token(token)
        self._tokens.put(key, caller if caller is not None else False)
        return caller

    def may_read_namespace(self, caller: Caller, namespace: str) -> bool:
        return self._allowed(caller, "get", namespace)

    def may_read_fleet(self, caller: Caller) -> bool:
        return self._allowed(caller, "list", None)

    def may_review_settlements(self, caller: Caller, namespace: str) -> bool:
        return self._allowed(caller, APPROVE, namespace, resource=SETTLEMENTS)

    def may_top_up(self, caller: Caller, namespace: str) -> bool:
        return self._allowed(caller, CREATE, namespace, resource=TOPUPS)

    def _review_token(self, token: str) -> Caller | None:
        for audiences in self._audiences:
            caller = self._review_for(token, audiences)
            if caller is not None:
                return caller
        return None

    def _review_for(self, token: str, audiences: list[str] | None) -> Caller | None:
        """The token's user if it is valid for one of `audiences` (None: the API server's own)."""
        spec = {"token": token, **({"audiences": audiences} if audiences is not None else {})}
        status = self._review("TokenReview", spec)
        user = status.get("user")
        if not status.get("authenticated") or user is None:
            return None
        # An authenticator that ignores audiences answers without them; the token is then not
        # shown to be meant for us (Kubernetes asks clients to check this field).
        if audiences and not set(status.get("audiences") or ()) & set(audiences):
            return None
        extra = tuple(sorted((k, tuple(v)) for k, v in (user.get("extra") or {}).items()))
        return Caller(
            username=user.get("username") or "",
            groups=tuple(user.get("groups") or ()),
            uid=user.get("uid") or "",
            extra=extra,
        )

    def _allowed(
        self, caller: Caller, verb: str, namespace: str | None, *, resource: str = RESOURCE
    ) -> bool:
        key = (caller, f"{verb} {resource}", namespace)
        cached = self._decisions.get(key)
        if cached is not None:
            return cached
        attributes = {"group": GROUP, "resource": resource, "verb": verb, "namespace": namespace}
        spec = {
            "user": caller.username,
            "groups": list(caller.groups),
            "uid": caller.uid or None,
            "extra": {k: list(v) for k, v in caller.extra} or None,
            "resourceAttributes": _present(attributes),
        }
        allowed = bool(self._review("SubjectAccessReview", _present(spec)).get("allowed"))
        self._decisions.put(key, allowed)
        return allowed

    def _review(self, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
        """The API server's answer (the review's status) to a review of `kind` about `spec`."""
        review = {"apiVersion": KINDS[kind].api_version, "kind": kind, "spec": spec}
        try:
            answer = self._kube.create(review)
        except (KubeError, HTTPError, OSError) as err:
            status = getattr(err, "status", None)
            raise AuthUnavailable(
                f"the Kubernetes API refused or failed a review (status {status});"
                " the API's service account needs create on tokenreviews and subjectaccessreviews"
            ) from err
        found: dict[str, Any] = answer.get("status") or {}
        return found


def _present(fields: dict[str, Any]) -> dict[str, Any]:
    """`fields` less those that are None: a review leaves a field it does not set out."""
    return {k: v for k, v in fields.items() if v is not None}
