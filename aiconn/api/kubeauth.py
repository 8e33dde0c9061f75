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
        from kubernetes import client

        if audience is None and not accept_default_audience:
            raise ValueError("no audience to accept: name one or accept the default audience")
        self._audiences: tuple[list[str] | None, ...] = (
            *(([audience],) if audience else ()),
            *((None,) if accept_default_audience else ()),
        )
        self._authn = client.AuthenticationV1Api(api)
        self._authz = client.AuthorizationV1Api(api)
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
        from kubernetes import client

        spec = client.V1TokenReviewSpec(token=token, audiences=audiences)
        review = client.V1TokenReview(spec=spec)
        result = _call(lambda: self._authn.create_token_review(review))
        status = result.status
        if status is None or not status.authenticated or status.user is None:
            return None
        # An authenticator that ignores audiences answers without them; the token is then not
        # shown to be meant for us (Kubernetes asks clients to check this field).
        if audiences and not set(status.audiences or ()) & set(audiences):
            return None
        user = status.user
        extra = tuple(sorted((k, tuple(v)) for k, v in (user.extra or {}).items()))
        return Caller(
            username=user.username or "",
            groups=tuple(user.groups or ()),
            uid=user.uid or "",
            extra=extra,
        )

    def _allowed(
        self, caller: Caller, verb: str, namespace: str | None, *, resource: str = RESOURCE
    ) -> bool:
        key = (caller, f"{verb} {resource}", namespace)
        cached = self._decisions.get(key)
        if cached is not None:
            return cached
        from kubernetes import client

        review = client.V1SubjectAccessReview(
            spec=client.V1SubjectAccessReviewSpec(
                user=caller.username,
                groups=list(caller.groups),
                uid=caller.uid or None,
                extra={k: list(v) for k, v in caller.extra} or None,
                resource_attributes=client.V1ResourceAttributes(
                    group=GROUP, resource=resource, verb=verb, namespace=namespace
                ),
            )
        )
        result = _call(lambda: self._authz.create_subject_access_review(review))
        allowed = bool(result.status is not None and result.status.allowed)
        self._decisions.put(key, allowed)
        return allowed


def _call(request: Any) -> Any:
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        return request()
    except (ApiException, HTTPError, OSError) as err:
        status = getattr(err, "status", None)
        raise AuthUnavailable(
            f"the Kubernetes API refused or failed a review (status {status});"
            " the API's service account needs create on tokenreviews and subjectaccessreviews"
        ) from err
